"""The chaos harness's fault table, and what derives from it, without starting a stack."""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections import Counter
from pathlib import Path

import pytest

from devstack.chaos import FAULTS, ChaosConfig, ChaosReport, RunCheck, Source
from devstack.chaos.faults import RATES, Layer, Seen, counts
from devstack.chaos.harness import ChaosS3Faults
from devstack.chaos.oracle import EventLog
from devstack.chaos.processor import ProcessorChaos
from devstack.chaos.soak import parse
from devstack.lambda_runtime import FunctionStats
from devstack.s3server import S3Call

CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(ChaosConfig)}


def test_chaos_faults_every_kind_reads_a_rate_field_of_the_config() -> None:
    for kind in FAULTS:
        assert CONFIG_FIELDS[kind.rate].type == "float", kind.name
        assert all(name in CONFIG_FIELDS for name in kind.planted_by), kind.name


def test_chaos_faults_kinds_have_unique_names_and_s3_kinds_alone_carry_a_response() -> None:
    assert len({kind.name for kind in FAULTS}) == len(FAULTS)
    for kind in FAULTS:
        assert (kind.response is not None) == (kind.where is Layer.S3), kind.name


def test_chaos_faults_one_rate_answers_either_before_or_after_the_write() -> None:
    for rate in RATES:
        after = {kind.response.after for kind in FAULTS if kind.rate == rate and kind.response}
        assert len(after) <= 1, rate


def test_chaos_faults_quiet_config_enables_none_and_the_default_enables_every_kind() -> None:
    assert ChaosConfig.quiet().enabled_kinds() == []
    assert ChaosConfig().enabled_kinds() == [kind.name for kind in FAULTS]
    assert ChaosConfig.quiet(once=1).enabled_kinds() == ["crash", "timeout"]


def test_chaos_faults_counts_read_each_kind_where_it_happened() -> None:
    seen = Seen(
        s3={"InternalError": 1, "SlowDown": 2, "ServiceUnavailable": 3},
        runtime=FunctionStats(fault_throttles=4, fault_drops=5, fault_duplicates=6, timeouts=8),
        processor=Counter({"crash": 7, "hang": 1, "defer": 9}),
    )

    assert counts(seen) == {
        "s3_500": 1,
        "s3_503": 2,
        "s3_after_write": 3,
        "throttle": 4,
        "drop": 5,
        "duplicate": 6,
        "crash": 7,
        "timeout": 8,
        "defer": 9,
    }


def test_chaos_faults_function_runs_the_chaos_processor_with_its_rates(tmp_path: Path) -> None:
    config = ChaosConfig(crash_rate=0.25, hang_rate=0.125, defer_rate=0.5, task_ms=3)
    environment = config.function("bucket", tmp_path).environment

    module, _, name = environment["BATON_PROCESSOR"].partition(":")
    assert module == "devstack.chaos.processor"
    assert callable(getattr(importlib.import_module(module), name))
    chaos = ProcessorChaos.from_env(environment)
    assert chaos == config.processor(tmp_path)
    assert (chaos.rates, chaos.directory) == (
        {"crash": 0.25, "timeout": 0.125, "defer": 0.5},
        tmp_path,
    )


def test_chaos_faults_s3_hook_spares_the_harness_and_answers_after_writes_only() -> None:
    hook = ChaosS3Faults("b", ChaosConfig.quiet(s3_error_rate=1.0, s3_after_write_rate=1.0))
    hook.enabled = True
    upload = S3Call("PUT", "b", "tasks/list.jsonl", frozenset(), conditional=False)
    read = S3Call("GET", "b", "runs/r/checkpoint.json", frozenset(), conditional=False)

    assert hook(upload) is None
    fault = hook(read)
    assert fault is not None
    assert (fault.code in {"InternalError", "SlowDown"}, fault.after) == (True, False)
    after_only = ChaosS3Faults("b", ChaosConfig.quiet(s3_after_write_rate=1.0))
    after_only.enabled = True
    assert after_only(read) is None
    written = after_only(
        S3Call("PUT", "b", "runs/r/checkpoint.json", frozenset(), conditional=False)
    )
    assert written is not None
    assert written.after


def test_chaos_faults_cli_sets_a_rate_by_its_flag() -> None:
    config, work_dir = parse(["--crash-rate", "0.5", "--s3-error-rate", "0", "--timeout", "3"])

    assert (config.crash_rate, config.s3_error_rate, config.timeout_s) == (0.5, 0.0, 3.0)
    assert (config.runs, config.tasks, work_dir) == (6, 300, None)


def test_chaos_faults_report_line_counts_every_kind_in_table_order() -> None:
    check = RunCheck(Source("r0", "tasks/r0.jsonl", '"e"', 10), "run", "done", summary_ok=True)
    report = ChaosReport([check], {"crash": 2, "s3_503": 1}, ["crash"])

    assert report.line() == (
        "chaos: runs=1 tasks=10 faults=3 (s3_500=0 s3_503=1 s3_after_write=0 throttle=0 "
        "drop=0 duplicate=0 crash=2 timeout=0 defer=0) lost=0 duplicated=0 forks=0 unfinished=0"
    )
    assert report.ok


@pytest.mark.parametrize("event", ["leg", "task_skipped"])
def test_chaos_oracle_event_log_keeps_complete_structured_lines_of_its_events(
    tmp_path: Path, event: str
) -> None:
    path = tmp_path / "containers.log"
    line = {"event": event, "run_id": "r", "index": 4, "strikes": 3}
    path.write_text(
        f"[c1] {json.dumps(line)}\n"
        "[c1] START RequestId: 1\n"
        '[c2] {"event": "batch"}\n'
        "[c2] {not json\n"
        f'[c1] {{"event": "{event}", "partial": '
    )
    log = EventLog(path, frozenset({"leg", "task_skipped"}))

    assert log.events(event) == [line]
    with path.open("a") as handle:
        handle.write("true}\n")
    assert log.events(event) == [line, {"event": event, "partial": True}]
