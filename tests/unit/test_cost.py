"""What a run costs: each leg's usage lands in its chain's checkpoint once, the totals add up
over legs and chains, and the summary prices them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import put_tasks
from tests.fakes import Killed, ticking_processor
from tests.unit.harness import Harness, settings
from worker.checkpoint import Checkpoint
from worker.cost import cost_section, pricing_config
from worker.exceptions import TransientError
from worker.prices import DEFAULT_PRICES, architecture, parse_overrides
from worker.usage import Usage

URLS = [f"https://example.com/{i}" for i in range(23)]
QUIET = {"duplicate", "stale", "lost_cas", "already_finished"}


def billed_s(legs: list[dict[str, Any]], extra_ms: float = 0) -> Any:
    """The legs' own wall time (whole ms each: a leg reports it truncated, Lambda bills
    it rounded up, so one ms per leg either way)."""
    total = sum(leg["elapsed_ms"] for leg in legs) + extra_ms
    return pytest.approx(total / 1000, abs=len(legs) / 1000 + 1e-9)


def legs_of(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        a["results"][0] for a in answers if a.get("ok") and a["results"][0]["exit"] not in QUIET
    ]


def run_all(h: Harness, chains: int = 1) -> tuple[str, list[dict[str, Any]]]:
    put_tasks(h.s3, h.bucket, "tasks/list.jsonl", URLS, jsonl=True)
    answers = h.drive({"bucket": h.bucket, "key": "tasks/list.jsonl", "chains": chains})
    run_id = answers[0]["results"][0]["run_id"]
    return run_id, legs_of(answers)


@pytest.fixture
def h(s3: Any, bucket: str) -> Harness:
    return Harness(s3, bucket, settings(), timeout_ms=1_600)


def test_cost_billed_time_is_every_legs_wall_time_once(h: Harness) -> None:
    run_id, legs = run_all(h)
    cost = h.summary(run_id)["cost"]
    assert len(legs) > 3
    assert cost["lambda"]["billed_s"] == billed_s(legs)  # the start takes no fake time
    assert cost["lambda"]["gb_s"] == cost["lambda"]["billed_s"]  # at 1024 MB


def test_cost_counts_every_invocation_and_every_invoke(h: Harness) -> None:
    run_id, legs = run_all(h)
    cost = h.summary(run_id)["cost"]
    assert cost["lambda"]["requests"] == len(legs) + 1  # and the start
    assert cost["lambda"]["invokes"] == len(legs)  # leg 0 by the start, then each hand-off


def test_cost_counts_s3_requests_by_kind_up_to_the_summary(h: Harness) -> None:
    run_id, _ = run_all(h)
    counted = h.summary(run_id)["cost"]["s3_requests"]
    made = h.container.s3.counts()
    for kind in ("get", "put", "head", "copy"):
        assert counted[kind] <= made[kind]
    # Not counted: the completion's own reads and writes after its chain's last write
    # (done markers and chains listed, the checkpoint read, the summary, the manifest's
    # listings and PUT, the notice, the active marker's delete): about ten requests.
    assert 0 <= sum(made.values()) - sum(counted.values()) <= 12
    assert counted["put"] >= len(list(h.store.result_keys(run_id)))


def test_cost_adds_up_across_chains(h: Harness) -> None:
    run_id, legs = run_all(h, chains=3)
    summary = h.summary(run_id)
    cost = summary["cost"]
    assert summary["chains"] == 3
    assert cost["lambda"]["requests"] == len(legs) + 1
    assert cost["lambda"]["billed_s"] == billed_s(legs)
    per_chain = [Usage.of(cp.usage) for cp in h.store.load_chains(run_id)]
    assert sum(u.requests for u in per_chain) == len(legs) + 1


class LostAnswers:
    """An S3 client whose conditional PUTs land, but whose answer is lost once in
    `every`: botocore's retry then fails its IfMatch on the write itself (a 412)."""

    def __init__(self, client: Any, every: int) -> None:
        self._client = client
        self._every = every
        self._count = 0
        self.lost = 0

    def put_object(self, **params: Any) -> Any:
        answer = self._client.put_object(**params)
        if "IfMatch" in params:
            self._count += 1
            if self._count % self._every == 0:
                self.lost += 1
                raise ClientError(
                    {"Error": {"Code": "PreconditionFailed"}, "ResponseMetadata": {}}, "PutObject"
                )
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_cost_is_not_counted_twice_when_a_write_answer_is_lost(s3: Any, bucket: str) -> None:
    lossy = LostAnswers(s3, every=3)
    h = Harness(lossy, bucket, settings(), timeout_ms=1_600)
    run_id, legs = run_all(h)
    cost = h.summary(run_id)["cost"]
    assert lossy.lost > 3
    assert cost["lambda"]["requests"] == len(legs) + 1
    assert cost["lambda"]["billed_s"] == billed_s(legs)


class LandsThenFails:
    """An S3 client whose conditional PUTs land, but once in `every` botocore then gives up
    (a 500 after its retries): the caller sees a transient error for a write that landed.
    With `blind_reads`, the next GETs of that key fail too (no read-back possible)."""

    def __init__(self, client: Any, every: int, blind_reads: int = 0) -> None:
        self._client = client
        self._every = every
        self._blind_reads = blind_reads
        self._blind: dict[str, int] = {}
        self._count = 0
        self.failed = 0

    def put_object(self, **params: Any) -> Any:
        answer = self._client.put_object(**params)
        if "IfMatch" in params:
            self._count += 1
            if self._count % self._every == 0:
                self.failed += 1
                self._blind[params["Key"]] = self._blind_reads
                raise ClientError(
                    {
                        "Error": {"Code": "InternalError"},
                        "ResponseMetadata": {"HTTPStatusCode": 500},
                    },
                    "PutObject",
                )
        return answer

    def get_object(self, **params: Any) -> Any:
        if self._blind.get(params["Key"], 0) > 0:
            self._blind[params["Key"]] -= 1
            raise ClientError(
                {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
                "GetObject",
            )
        return self._client.get_object(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def drive_with_retries(h: Harness, first: dict[str, Any]) -> str:
    """Like `Harness.drive`, and an invocation that raises is delivered again (Lambda's
    retry of an asynchronous event); the run id."""
    run_id = h.invoke(first)["results"][0]["run_id"]
    for _ in range(200):
        if not h.invoker.calls:
            return str(run_id)
        event = h.invoker.calls[0][1]
        try:
            h.invoke(event)
        except TransientError:
            continue  # delivered again
        h.invoker.pop()
    raise AssertionError("the run never ended")


@pytest.mark.parametrize("blind_reads", [0, 1], ids=["read-back", "released"])
def test_cost_is_not_counted_twice_when_a_write_lands_but_its_call_fails(
    s3: Any, bucket: str, blind_reads: int
) -> None:
    """The PUT landed, then the call failed: read back, the write is recorded as landed
    (or, when even the read-back failed, the release finds its own write in place)."""
    flaky = LandsThenFails(s3, every=3, blind_reads=blind_reads)
    h = Harness(flaky, bucket, settings(), timeout_ms=1_600)
    put_tasks(s3, bucket, "tasks/list.jsonl", URLS, jsonl=True)
    run_id = drive_with_retries(h, {"bucket": bucket, "key": "tasks/list.jsonl"})
    assert flaky.failed > 2
    assert sorted(h.result_indices(run_id)) == list(range(len(URLS)))
    usage = sum((Usage.of(cp.usage) for cp in h.store.load_chains(run_id)), Usage())
    assert usage.items == len(URLS)  # each task's row counted once


def test_cost_counts_a_dead_leg_until_its_deadline(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    put_tasks(s3, bucket, "tasks/list.jsonl", URLS, jsonl=True)
    h.invoke({"bucket": bucket, "key": "tasks/list.jsonl"})
    leg0 = h.invoker.pop()
    h.container.processor = ticking_processor(h.clock, 100, kill_on=lambda t: t.index == 3)
    with pytest.raises(Killed):
        h.invoke(leg0)  # SIGKILL: no write after its last commit
    h.container.processor = ticking_processor(h.clock, 100)
    h.clock.advance(1_600)  # its lease is over: it is dead
    answers = h.drive(leg0)  # Lambda's retry of the dead leg
    legs = legs_of(answers)
    cost = h.summary(leg0["run_id"])["cost"]
    assert cost["lambda"]["billed_s"] == billed_s(legs, 1_600)  # the dead leg: its timeout
    assert cost["lambda"]["dead_legs_s"] > 0
    assert cost["lambda"]["requests"] == len(legs) + 2  # the start, the dead leg, the rest


def test_cost_prices_the_run_as_it_was_started(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(architecture="arm64", prices="s3_put=0.00001"))
    run_id, _ = run_all(h)
    cost = h.summary(run_id)["cost"]
    assert cost["lambda"]["architecture"] == "arm64"
    assert cost["prices"]["lambda_gb_s_arm64"] == DEFAULT_PRICES["lambda_gb_s_arm64"]
    assert cost["prices"]["s3_put"] == 0.00001
    gb_s = cost["lambda"]["gb_s"]
    assert cost["usd"]["compute"] == pytest.approx(gb_s * 0.0000133334, abs=1e-6)
    puts = sum(cost["s3_requests"][k] for k in ("put", "list", "copy"))
    gets = sum(cost["s3_requests"][k] for k in ("get", "head"))
    assert cost["usd"]["s3"] == pytest.approx(puts * 0.00001 + gets * 0.0000004, abs=1e-6)


def test_cost_section_names_its_prices_date_and_sources(h: Harness) -> None:
    run_id, _ = run_all(h)
    cost = h.summary(run_id)["cost"]
    assert cost["prices"]["read"] == "2026-11-29"
    assert "aws.amazon.com/step-functions/pricing" in json.dumps(cost["prices"]["sources"])
    assert cost["usd_total"] == pytest.approx(sum(cost["usd"].values()), abs=1e-6)


def test_cost_alternatives_price_the_same_tasks() -> None:
    usage = Usage(
        requests=10, billed_ms=100_000, mb_ms=100_000 * 1024, items=1_000, item_ms=500_000
    )
    alt = cost_section(usage, None, 1024)["alternatives"]
    standard = alt["step_functions_standard"]
    assert standard["state_transitions"] == 2 * 1_000 + 3
    lambda_part = 500 * 0.0000166667 + 1_000 * 0.2e-6
    assert standard["usd"] == pytest.approx(2_003 * 0.000025 + lambda_part, abs=1e-6)
    express = alt["step_functions_express"]
    express_duration = 1_000 * 0.5 * 64 / 1024 * 0.00001667
    assert express["usd"] == pytest.approx(
        1_003 * 0.000025 + 1_000 * 1e-6 + express_duration + lambda_part, abs=1e-6
    )
    durable = alt["lambda_durable_functions"]
    assert durable["usd"] == pytest.approx(
        1_000 * 8e-6 + 100 * 0.0000166667 + 10 * 0.2e-6, abs=1e-6
    )


def test_cost_an_old_checkpoint_reads_as_zero_usage() -> None:
    old = {"run_id": "r", "total": 5, "position": 2, "leg": 1}
    cp = Checkpoint.from_json(old)
    assert Usage.of(cp.usage) == Usage()


def test_prices_overrides_refuse_unknown_names_and_negative_prices() -> None:
    assert parse_overrides("s3_put=0.00001, lambda_request=0") == {
        "s3_put": 0.00001,
        "lambda_request": 0.0,
    }
    with pytest.raises(ValueError, match="expected name=price"):
        parse_overrides("s3_puts=1")
    with pytest.raises(ValueError, match="negative"):
        parse_overrides("s3_put=-1")


def test_prices_architecture_comes_from_the_setting_or_the_machine() -> None:
    assert architecture("arm64", "x86_64") == "arm64"
    assert architecture("", "aarch64") == "arm64"
    assert architecture("", "x86_64") == "x86_64"


def started_init_ms(h: Harness) -> int:
    """The INIT the start recorded (in chain 0000's first checkpoint)."""
    put_tasks(h.s3, h.bucket, "tasks/list.jsonl", URLS, jsonl=True)
    started = h.invoke({"bucket": h.bucket, "key": "tasks/list.jsonl"})["results"][0]
    return Usage.of(h.store.load_checkpoint(started["run_id"], "0000").checkpoint.usage).init_ms


def test_cost_init_is_taken_by_a_start_that_is_the_containers_first_invocation(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
    h = Harness(s3, bucket, settings(bucket=bucket))
    assert started_init_ms(h) > 0


@pytest.mark.parametrize("first", ["sweep", "ignored"])
def test_cost_init_belongs_to_the_containers_first_invocation_whatever_it_was(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    """A container whose first invocation was a sweep or an ignored event: its INIT was
    billed then, never to a later start or leg as the process's whole age."""
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
    h = Harness(s3, bucket, settings(bucket=bucket))
    event = {"action": "sweep"} if first == "sweep" else h.upload_event("elsewhere/x.json", "e1")
    answer = h.invoke(event)
    assert answer["ok"]
    assert answer["results"][0]["action"] == first
    assert started_init_ms(h) == 0


def test_cost_of_a_run_started_before_metering_is_partial_on_the_set_architecture(
    s3: Any, bucket: str
) -> None:
    """A run.json written by older code pins no prices: the run is priced on the function's
    architecture setting (not x86_64 whatever it is), and marked partly metered."""
    h = Harness(s3, bucket, settings(architecture="arm64"), timeout_ms=1_600)
    put_tasks(s3, bucket, "tasks/list.jsonl", URLS, jsonl=True)
    h.invoke({"bucket": bucket, "key": "tasks/list.jsonl"})
    leg0 = h.invoker.pop()
    key = f"runs/{leg0['run_id']}/run.json"
    record = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    del record["config"]["pricing"]  # as the code before the deploy wrote it
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(record).encode())
    h.drive(leg0)
    cost = h.summary(leg0["run_id"])["cost"]
    assert cost["lambda"]["architecture"] == "arm64"
    assert cost["metered"] == "partial"


def test_cost_of_a_run_started_with_metering_is_full(h: Harness) -> None:
    run_id, _ = run_all(h)
    assert h.summary(run_id)["cost"]["metered"] == "full"


@pytest.mark.parametrize(
    "source",
    [
        {"key": "tasks/list.jsonl"},
        {"prefix": {"prefix": "data/"}},
        {"crawl": {"seeds": ["http://127.0.0.1:9/"]}},
    ],
    ids=["list", "prefix", "crawl"],
)
def test_cost_prices_are_pinned_by_the_start_of_every_kind_of_run(
    s3: Any, bucket: str, source: dict[str, Any]
) -> None:
    """A prefix run or a crawl is priced as it started, as a list is: not at a later
    deploy's prices, and never reported as partly metered."""
    overrides = "lambda_gb_s_arm64=0.00002,s3_put=0.000006"
    h = Harness(s3, bucket, settings(architecture="arm64", prices=overrides))
    put_tasks(s3, bucket, "tasks/list.jsonl", URLS, jsonl=True)
    started = h.invoke({"bucket": bucket, **source})["results"][0]
    key = f"runs/{started['run_id']}/run.json"
    record = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert record["config"]["pricing"] == pricing_config(
        architecture("arm64"), parse_overrides(overrides)
    )
