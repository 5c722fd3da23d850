"""The benchmarks run end to end at toy sizes and return what run_all reads (no timings checked)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench import (
    budget,
    cost,
    fanout,
    fetch_cost,
    hop_overhead,
    prefix,
    profile_leg,
    report,
    run_all,
    sampler,
    throughput,
    versus,
)
from bench import crawl as crawl_bench
from bench.baseline_crawler import crawl
from devstack.site import Site, SiteConfig
from worker.config import Settings
from worker.tasks import parse_task_list

pytestmark = pytest.mark.integration

TOY = throughput.ThroughputConfig(
    baseline_rounds=1,
    pages=24,
    timeout_s=3.0,
    margin_ms=500,
    latency_median_ms=5.0,
    latency_sigma=0.0,
    page_bytes=(2_000, 6_000),
    max_wait_s=60.0,
)


VERSUS_TOY = versus.VersusConfig(
    pages=24,
    rounds=1,
    hosts=2,
    page_bytes=(2_000, 6_000),
    latency_ms=(5.0, 10.0),
    contenders=("baton_default", "plain_64", "aiohttp_64"),
    throttle_pages=24,
    throttle_above=4,
    throttle_contenders=("baton_default",),
    function_timeout_s=30.0,
    bench_python="/nonexistent/.venv-bench/bin/python",
    max_wait_s=60.0,
)
"""Baton and the plain loop (the project's venv) only: no peer's virtualenv is needed."""


@pytest.fixture(scope="module")
def toy() -> tuple[dict[str, Any], throughput.BatonRun]:
    return throughput.measure(TOY)


@pytest.fixture(scope="module")
def compared() -> tuple[dict[str, Any], list[str]]:
    said: list[str] = []
    return versus.measure(VERSUS_TOY, say=said.append), said


@pytest.fixture(scope="module")
def probed() -> dict[str, Any]:
    return hop_overhead.probe(hop_overhead.HopConfig(tasks=20, warm_legs=2, cold_runs=1))


def test_bench_baseline_crawler_works_every_page() -> None:
    with Site(SiteConfig(pages=6, page_bytes=(2_000, 4_000))) as site:
        tasks = parse_task_list(b"\n".join(f'"{url}"'.encode() for url in site.urls()))
        result = crawl(tasks, Settings(concurrency=2, allow_nets=("127.0.0.0/8",)))

    assert (result.pages, result.ok, result.failed) == (6, 6, 0)
    assert result.pages_per_s > 0
    assert result.bytes > 0


def test_bench_throughput_reports_both_sides(
    toy: tuple[dict[str, Any], throughput.BatonRun],
) -> None:
    figures, run = toy

    assert figures["throughput_ratio"] > 0
    assert figures["baseline"]["pages"] == TOY.pages
    baton = figures["baton"]
    assert baton["status"] == "done"
    assert (baton["pages"], baton["results_rows"], baton["duplicate_rows"]) == (TOY.pages,) * 2 + (
        0,
    )
    assert baton["pages_per_s"] > 0
    assert baton["legs"] >= 1
    assert set(figures["time_breakdown_s"]) >= {"run", "tasks_busy", "leg_hops"}
    assert run.batches
    assert run.s3_requests["put"] > 0
    assert len(run.task_latencies_ms) == TOY.pages


def test_bench_hop_probe_times_warm_and_cold_legs(probed: dict[str, Any]) -> None:
    assert probed["unexpected_exits"] == []
    assert probed["warm_legs"] == 2
    assert probed["warm_ms_median"] > 0
    assert probed["cold_ms_median"] > probed["warm_ms_median"]
    assert probed["warm_ops"]["calls_per_leg"]["PutObject"] == 2
    assert all(ms > 0 for ms in probed["cold_parts_ms"].values())


def test_bench_hop_figures_and_chain_hops(
    toy: tuple[dict[str, Any], throughput.BatonRun], probed: dict[str, Any]
) -> None:
    chain = hop_overhead.chain_hops(toy[1])
    figures = hop_overhead.figures(probed, chain)

    assert set(chain) >= {"commit_gap_ms_median", "hops", "warm_ms_median"}
    assert figures["hop_overhead_ms_warm"] > 0
    assert figures["hop_overhead_ms_cold"] > 0


def test_bench_budget_measures_and_models(
    toy: tuple[dict[str, Any], throughput.BatonRun], probed: dict[str, Any]
) -> None:
    run = toy[1]
    hop = hop_overhead.figures(probed, hop_overhead.chain_hops(run))

    figures = budget.figures(run, hop, timeout_s=20.0)

    assert 0 < figures["budget_use"] <= 1
    assert 0 < figures["budget_use_900s_model"] <= 1
    assert isinstance(figures["variants"], dict)
    for scenario in figures["model"]["scenarios"].values():
        assert scenario["tasks"] > 0
        assert 0 < scenario["budget_use"] <= 1
        assert 0 < scenario["fill"] <= 1
        assert scenario["commits"] >= 1
    assert figures["model"]["parameters"]["commit_ms"] > 0
    for variants in figures["variants"].values():
        assert set(variants) == {label for label, _ in budget.COMMIT_VARIANTS}


def test_bench_cost_model_and_report(
    toy: tuple[dict[str, Any], throughput.BatonRun], probed: dict[str, Any]
) -> None:
    figures, run = toy
    hop = hop_overhead.figures(probed, hop_overhead.chain_hops(run))
    bud = budget.figures(run, hop, timeout_s=20.0)

    costs = cost.cost_model(figures, run, hop, bud)
    rss, note = run_all.peak_rss_10m({"rows": [{"tasks": 10_000_000, "rss_peak_mb": 90.5}]})

    assert costs["headline"]["total_usd"] > 0
    assert abs(sum(costs["headline"]["share"].values()) - 1) < 0.01
    assert (rss, run_all.peak_rss_10m(None)[0]) == (90.5, None)
    assert note
    text = report.render(
        {
            "throughput_ratio": figures["throughput_ratio"],
            "throughput_ratio_e2e": figures["throughput_ratio_e2e"],
            "budget_use": bud["budget_use"],
            "budget_use_900s_model": bud["budget_use_900s_model"],
            "budget_use_900s_model_real_s3": 0.98,
            "hop_overhead_ms_warm": hop["hop_overhead_ms_warm"],
            "hop_overhead_ms_cold": hop["hop_overhead_ms_cold"],
            "peak_rss_mb_10m": None,
            "peak_rss_mb_10m_note": "not run",
            "quick": True,
            "seconds": 1.0,
            "machine": sampler.machine_facts(),
            "throughput": figures,
            "hop_overhead": hop,
            "budget": bud,
            "cost": costs,
            "external": {},
        }
    )
    assert "throughput_ratio" in text
    assert "Cost per million tasks" in text


def test_bench_versus_measures_baton_and_the_plain_loop_and_skips_absent_peers(
    compared: tuple[dict[str, Any], list[str]],
) -> None:
    figures, said = compared

    assert set(figures["skipped"]) == {"aiohttp_64"}
    assert any("skipping aiohttp 64" in line for line in said)
    for origin in ("latency", "fast"):
        row = figures["table"][origin]
        assert "skipped" in row["aiohttp_64"]
        for key in ("baton_default", "plain_64"):
            assert row[key]["rounds"] == 1
            assert row[key]["pages_per_s_median"] > 0
            assert row[key]["cpu_ms_per_page_median"] > 0
        assert figures["fields_agree"][origin]["agree"]
    assert figures["latency_vs_aiohttp_64"] is None
    assert figures["cpu_ms_per_page"] > 0
    assert figures["cpu_ms_per_page_plain_loop"] > 0
    assert all(run["error"] is None for run in figures["runs"])
    [throttled] = figures["throttle"]
    assert throttled["pages"] == VERSUS_TOY.throttle_pages
    assert throttled["levels"]
    assert all(len(level) == 5 for level in throttled["levels"])
    assert all(level[1] is not None for level in throttled["levels"])


def test_bench_report_renders_the_comparison(
    toy: tuple[dict[str, Any], throughput.BatonRun],
    probed: dict[str, Any],
    compared: tuple[dict[str, Any], list[str]],
) -> None:
    figures, run = toy
    hop = hop_overhead.figures(probed, hop_overhead.chain_hops(run))
    bud = budget.figures(run, hop, timeout_s=20.0)
    results = {
        "throughput_ratio": figures["throughput_ratio"],
        "throughput_ratio_e2e": figures["throughput_ratio_e2e"],
        "budget_use": bud["budget_use"],
        "budget_use_900s_model": bud["budget_use_900s_model"],
        "budget_use_900s_model_real_s3": 0.98,
        "hop_overhead_ms_warm": hop["hop_overhead_ms_warm"],
        "hop_overhead_ms_cold": hop["hop_overhead_ms_cold"],
        "peak_rss_mb_10m": None,
        "peak_rss_mb_10m_note": "not run",
        "quick": True,
        "seconds": 1.0,
        "machine": sampler.machine_facts(),
        "throughput": figures,
        "hop_overhead": hop,
        "budget": bud,
        "cost": cost.cost_model(figures, run, hop, bud),
        "external": {},
    }

    text = report.render(run_all._with_versus(results, compared[0]))

    assert "## Against other crawlers" in text
    assert "Not run: aiohttp 64" in text
    assert "baton default, throttling origin" in text
    assert "`latency_vs_crawlee_default` | **n/a**" in text
    assert "## Where baton's CPU per page goes" in text
    assert "${" not in text


def test_bench_fanout_scales_straggles_and_prices(tmp_path: Any) -> None:
    """The fan-out bench at a toy size: every cell, the straggler pair, the cost rows, and
    the section it renders (shapes and invariants only, no timings)."""
    found = fanout.measure(fanout.SMOKE, tmp_path)

    assert [r["error"] for r in found["runs"]] == [None] * len(found["runs"])
    assert {r["kind"] for r in found["runs"]} == {"scaling", "straggler"}
    for c in fanout.SMOKE.chains:
        cell = found["scaling"][str(c)]
        assert cell["rounds"] == fanout.SMOKE.rounds
        assert cell["wall_s_median"] > 0
        assert cell["ranges_median"] >= c
        assert cell["per_task"]["legs"] > 0
        assert cell["per_task"]["s3_put_list"] > 0
        assert len(cell["chain_ends_s"]) == cell["ranges_median"]
    assert found["efficiency"]["1"]["value"] == 1.0
    assert found["efficiency"]["2"]["value"] > 0
    assert found["fanout_efficiency_16"] is None  # C=16 is not in the toy's list
    assert found["straggler_wall_ratio"] > 0
    assert found["slow_tasks"] == fanout.SMOKE.tasks // fanout.SMOKE.straggler_chains
    assert not any(r["steals"] for r in found["runs"] if not r["steal"])
    rows = found["cost"]["rows"]
    assert set(rows) == set(report.FANOUT_COST_LABELS)
    assert rows["sfn_standard"]["total_usd"] > rows["sfn_standard_batched"]["total_usd"]
    assert all(row["total_usd"] > 0 for row in rows.values())

    section = report._fanout(found)
    assert "## Fan-out (issue 11)" in section["fanout"]
    assert "${" not in section["fanout"]
    assert section["straggler_wall_ratio"] != "n/a"
    assert "Not measured" in report._fanout(None)["fanout"]


def test_bench_prefix_only_measures_both_sides_and_folds_them_into_the_results(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run_all --prefix-only` at a toy size: every side's figures are numbers above 0,
    every baton run checked its rows, and the keys reach results.json and BENCHMARKS.md
    (no timings asserted)."""
    results, benchmarks = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    results.write_text(run_all.RESULTS_JSON.read_text())
    monkeypatch.setattr(run_all, "RESULTS_JSON", results)
    monkeypatch.setattr(run_all, "BENCHMARKS_MD", benchmarks)
    monkeypatch.setattr(run_all, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(prefix, "RESULTS_FILE", tmp_path / "prefix.json")
    monkeypatch.setattr(prefix, "QUICK", prefix.SMOKE)

    assert run_all.main(["--prefix-only", "--quick"]) == 0

    found = json.loads((tmp_path / "prefix.json").read_text())
    assert [r["error"] for r in found["runs"]] == [None] * len(found["runs"])
    for what in ("list", "presign", "sha256"):
        assert found["plain"][what]["keys_per_s_median"] > 0
    for c in prefix.SMOKE.chains:
        presign, sha256 = found["baton"][str(c)]["presign"], found["baton"][str(c)]["sha256"]
        assert presign["objects"] == prefix.SMOKE.objects
        assert sha256["objects"] == prefix.SMOKE.checksum_objects
        assert presign["keys_per_s_median"] > 0
        assert presign["lister_keys_per_s_median"] > 0
        assert sha256["mb_per_s_median"] > 0
        assert presign["cpu_ms_per_key_median"] > 0
    assert found["prefix_ratio"] > 0
    assert found["prefix_ratio_sha256"] > 0
    assert found["prefix_speedup_2"] > 0  # C=16 is not in the toy's list
    folded = json.loads(results.read_text())
    assert folded["prefix_ratio"] == found["prefix_ratio"]
    assert "runs" not in folded["prefix"]
    text = benchmarks.read_text()
    assert "## Prefix runs (issue 16)" in text
    assert "${" not in text
    assert "Not measured" in report._prefix(None)["prefix"]


POOL = "_worker (/x/lib/python3.11/concurrent/futures/thread.py:83)"
CHILD = "<module> (/r/bench/profile_leg.py:600)"
STACKS = (
    ([POOL, "run_one (/r/worker/processor.py:121)", "extract (/r/worker/extract.py:1)"], 6),
    (
        [
            POOL,
            "Fetcher.fetch (/r/worker/fetch.py:146)",
            "Session.get (/v/site-packages/requests/sessions.py:671)",
        ],
        3,
    ),
    (
        [
            CHILD,
            "Leg.work (/r/worker/leg.py:287)",
            "TimeBudget.slow_task_ms (/r/worker/budget.py:43)",
        ],
        2,
    ),
    ([CHILD, "_find_and_load (<frozen importlib._bootstrap>:1176)"], 5),
    (
        [
            "Leg._commit_state (/r/worker/leg.py:397)",
            "BaseClient._make_api_call (/v/site-packages/botocore/client.py:1044)",
        ],
        1,
    ),
)
"""py-spy's raw lines: the frames, root first, and a count."""


def test_bench_profile_sorts_samples_into_stages(tmp_path: Any) -> None:
    raw = tmp_path / "spy.txt"
    raw.write_text("".join(";".join(frames) + f" {n}\n" for frames, n in STACKS))

    tally = profile_leg.read_raw(raw)

    assert tally.outside == 5
    assert tally.samples == 12
    assert tally.counts["fetch: HTTP request and headers"] == 3
    assert tally.counts["leg bookkeeping"] == 2
    assert tally.counts["S3 calls"] == 1
    assert tally.counts["row"] == 6  # extract.py:1 is not a line the stages know
    assert abs(sum(tally.shares().values()) - 1) < 0.01
    assert tally.overhead_shares()[0][0] in profile_leg.OVERHEAD
    measured = profile_leg.Measured("after", "sequential", "fast", 1, cpu_ms_per_page=[2.0])
    measured.stages = tally.shares()
    split = profile_leg.stage_ms(measured)
    assert abs(sum(split.values()) - 2.0) < 0.01
    assert split["fetch: HTTP request and headers"] == 0.5


CRAWL_TOY = crawl_bench.CrawlBenchConfig(
    hosts=2,
    pages_per_host=4,
    rounds=1,
    contenders=("baton_1", "baton_16", "crawlee_default", "scrapy_default"),
    memory_bench=False,
    max_wait_s=120.0,
)
"""Two hosts of a few pages; Crawlee and Scrapy only where the peers' virtualenv exists."""


@pytest.fixture(scope="module")
def crawled() -> dict[str, Any]:
    return crawl_bench.run(CRAWL_TOY, say=lambda _: None)


def test_bench_crawl_baton_finds_the_oracles_pages(crawled: dict[str, Any]) -> None:
    reachable = crawled["site"]["reachable"]
    for key in ("baton_1", "baton_16"):
        cell = crawled["table"][key]
        assert cell["rounds"] == 1, cell
        assert cell["pages_per_s_median"] > 0
        assert cell["cpu_ms_per_page_median"] > 0
        assert max(cell["found"]) <= reachable
        assert cell["chains_ran"], cell
        assert cell["chains_ran"][0] >= 1
    assert crawled["table"]["baton_1"]["found"] == [reachable]
    assert crawled["crawl_peak_rss_mb_100k"] > 0
    assert crawled["crawl_peak_rss_mb_1m"] > 0
    section = report._crawl(crawled)
    assert "## Crawl (issue 12)" in section
    assert "${" not in section
    assert "Not measured" in report._crawl(None)


@pytest.mark.skipif(
    not crawl_bench.BENCH_PYTHON.exists(), reason="no .venv-bench (make bench-setup)"
)
def test_bench_crawl_keys_are_numbers(crawled: dict[str, Any]) -> None:
    for key in ("crawl_vs_crawlee", "crawl_vs_crawlee_16", "crawl_vs_scrapy"):
        assert isinstance(crawled[key], float), key
        assert crawled[key] > 0


def test_fetch_cost_measures_every_client_on_the_same_pages() -> None:
    """At a toy size: each client in its own process, CPU per request above 0, each beside
    baton's fetch; aiohttp only where `.venv-bench` is (else said so)."""
    found = fetch_cost.measure(pages=48, repeat=1, say=lambda _: None)
    rows = {row["client"]: row for row in found["clients"]}
    assert list(rows) == list(fetch_cost.CLIENTS)
    for client, row in rows.items():
        if client == "aiohttp" and "skipped" in row:
            continue
        assert row.get("cpu_ms_per_request", 0) > 0, row
        assert row["vs_baton_fetch"] > 0
    assert rows["baton fetch"]["vs_baton_fetch"] == 1.0
