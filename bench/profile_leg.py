"""Where baton's CPU per page goes: one leg profiled stage by stage, next to the plain loop.

    python -m bench.profile_leg [--tree before=/tmp/before] [--pages 2000] [--repeat 2]

A leg is profiled as it runs on Lambda, minus the Lambda runtime: a child process
imports `handler` from a code tree (this checkout, or another commit's worktree, so a
"before" and an "after" are measured by one harness), starts a run on a task list in
the S3 emulator (which runs in this process, so its CPU is not the leg's), and works
the whole list in one leg (900 s left, no hand-off). The pages come from the loopback
origins of `bench.versus` (16 hosts, 80 KB pages, in a process of their own):

- **sequential**: `BATON_CONCURRENCY=1` on the origin without latency: one thread, so
  CPU per page is the work itself plus the leg's own overheads, with no contention;
- **concurrent**: 64 threads pinned on the latency origin (100-300 ms a page);
- **default**: `BATON_CONCURRENCY` unset (the tree's default) on the latency origin.

The plain requests+selectolax loop (`bench.peers.plain_requests`) runs the same URL
lists at 1 and 64 threads.

Each case runs `--repeat` times without a profiler (CPU per page: the child's user +
system time over the leg call alone, start-up excluded; the plain loop's over its crawl
call) and once under py-spy (`--rate` samples a second of the thread that holds the
GIL, so an idle thread is never sampled), whose samples are sorted into stages by the
frames on their stacks (`STAGES`, `classify`). A stage's CPU ms per page is its share of
the samples times the measured CPU per page (`stage_ms`). py-spy comes with
`.venv-bench` (`make bench-setup`); without it only the CPU per page is measured.
`PROFILE_LEG_SPY_FLAGS` replaces `--gil --nonblocking` (e.g. `--idle` to see where the
wall time goes).

Writes bench/results/profile_leg.json; `bench.run_all` copies it into
bench/results.json (`profile`) and BENCHMARKS.md shows it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results" / "profile_leg.json"
PY_SPY = REPO_ROOT / ".venv-bench" / "bin" / "py-spy"
BUCKET = "baton-profile"
MEMORY_MB = 1769

STAGES = {
    "fetch: HTTP request and headers": (
        "requests, urllib3, http.client, socket: send, read the status line and headers"
    ),
    "fetch: body read": (
        "reading the body in chunks (baton: `Fetcher._read_body`; plain: `response.content`)"
    ),
    "fetch: retry wrapper": "tenacity's `Retrying` around each request",
    "fetch: connection guard": (
        "`worker.netguard` (address checks) and `worker.watchdog` (the deadline)"
    ),
    "decode": "charset detection and decoding (`worker.charset`, w3lib)",
    "parse": "Lexbor building the tree (`LexborHTMLParser`), and `worker.parse_budget`'s pre-scan",
    "CSS selects": "`css_first` and `css` on the tree",
    "links": "resolving and filtering hrefs (`absolute_links`: ada-url or urllib.parse)",
    "body text (text_length)": (
        "the whole body's text, only for `text_length` (the plain loop has no such field)"
    ),
    "field text": "title, description and h1 text, whitespace normalised",
    "row": "the task's row: `result_base`, `run_one`, `process` outside the calls above",
    "JSON encoding": (
        "rows to JSON lines for the results object (the plain loop: its JSON-lines file)"
    ),
    "S3 calls": (
        "boto3/botocore: the results PUT, the checkpoint CAS, the cancel HEAD (signing, HTTP, XML)"
    ),
    "logging": "log lines and their JSON",
    "thread hand-offs": "the pool's queue, futures, `wait`, locks and conditions",
    "leg bookkeeping": (
        "the rolling window, the task queue per host, the autoscaler, the budget, the checkpoint"
    ),
    "other": "anything else (see `top_other` in the JSON)",
}
"""Every stage a sample is sorted into, and what it holds."""
OUTSIDE = "outside the leg"
"""Start-up and the run's creation in the child's main thread: left out of the shares."""


@dataclass(frozen=True)
class Case:
    name: str
    origin: str
    """`latency` or `fast` (bench.versus's origins)."""
    concurrency: int | None
    """BATON_CONCURRENCY and the plain loop's threads; None: baton's default, no plain loop."""


CASES = (
    Case("sequential", "fast", 1),
    Case("concurrent", "latency", 64),
    Case("default", "latency", None),
)


@dataclass
class Measured:
    contender: str
    """A tree's label, or `plain`."""
    case: str
    origin: str
    concurrency: int | None
    pages: int = 0
    cpu_ms_per_page: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    samples: int = 0
    """GIL samples of the leg (OUTSIDE left out)."""
    gil_share: float | None = None
    """The leg's GIL time (samples / rate) over its CPU time, in the profiled run."""
    stages: dict[str, float] = field(default_factory=dict)
    """Share of the leg's GIL samples per stage."""
    outside_samples: int = 0
    top_other: list[tuple[str, int]] = field(default_factory=list)
    overhead: list[tuple[str, str, float]] = field(default_factory=list)
    """The leg's own overhead (OVERHEAD stages) by the project's innermost function and
    the function it was in: (stage, "project function > innermost", share of samples)."""
    levels: list[int] = field(default_factory=list)
    """The autoscaler's levels on the commit lines (a tree that logs them)."""
    contention: dict[str, float] | None = None
    """Runnable threads of other processes meanwhile (`bench.sampler`)."""
    error: str | None = None

    @property
    def cpu_ms(self) -> float | None:
        return round(statistics.median(self.cpu_ms_per_page), 3) if self.cpu_ms_per_page else None


# --- the child: one leg of one tree ----------------------------------------------------


def child(tree: str, key: str, report: str) -> None:
    """In the child process: start a run on `key`, then work it in one leg; print figures."""
    sys.path.insert(0, tree)
    os.chdir(tree)
    import handler
    from worker.config import Settings
    from worker.container import Container
    from worker.telemetry import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format == "json")
    payloads: list[Any] = []

    class Capture:
        def invoke_async(self, arn: str, payload: Any, *args: Any, **kwargs: Any) -> None:
            payloads.append(payload)

    class Context:
        aws_request_id = "profile"
        invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:baton-worker"

        def __init__(self, seconds: float) -> None:
            self.deadline = time.time() + seconds

        def get_remaining_time_in_millis(self) -> int:
            return max(0, int((self.deadline - time.time()) * 1000))

    container = Container.create(settings, invoker=Capture())  # type: ignore[arg-type]
    handler._container = container  # the warm container the handler keeps
    etag = _etag(key)
    event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "awsRegion": "us-east-1",
                "s3": {
                    "bucket": {"name": BUCKET},
                    "object": {"key": key, "etag": etag, "eTag": etag, "size": 1},
                },
            }
        ]
    }
    started = handler.handler(event, Context(60))
    if not payloads:
        raise SystemExit(f"the run did not start: {started}")
    leg = payloads[-1]
    leg = json.loads(leg) if isinstance(leg, str | bytes) else leg
    before, wall = os.times(), time.monotonic()
    result = handler.handler(leg, Context(900))
    after, wall = os.times(), time.monotonic() - wall
    cpu_s = (after.user + after.system) - (before.user + before.system)
    outcome = (result.get("results") or [{}])[0]
    Path(report).write_text(
        json.dumps(
            {
                "pages": outcome.get("processed", 0),
                "exit": outcome.get("exit"),
                "cpu_s": round(cpu_s, 4),
                "wall_s": round(wall, 3),
            }
        )
    )


def reclassify(found: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The stages again from the raw stacks a run kept (`--workdir`), after `classify`
    changed; the CPU figures and the sample counts stay as measured."""
    for run in found["runs"]:
        raws = sorted(workdir.glob(f"spy-{run['contender']}-{run['case']}*.txt"))
        if not raws:
            continue
        tally = Tally()
        for raw in raws:
            tally = read_raw(raw, tally)
        run["stages"], run["overhead"] = tally.shares(), tally.overhead_shares()
        run["top_other"] = tally.other.most_common(8)
        m = Measured(**{k: v for k, v in run.items() if k in Measured.__dataclass_fields__})
        run["stage_ms"] = stage_ms(m)
    found["stages"] = STAGES
    return found


def _etag(key: str) -> str:
    import boto3

    client = boto3.client("s3")
    return str(client.head_object(Bucket=BUCKET, Key=key)["ETag"]).strip('"')


# --- the parent ------------------------------------------------------------------------


def measure(
    trees: dict[str, Path],
    *,
    pages: int = 2000,
    repeat: int = 2,
    rate: int = 250,
    profiled_runs: int = 1,
    cases: tuple[Case, ...] = CASES,
    say: Any = print,
    workdir: Path | None = None,
) -> dict[str, Any]:
    from bench.origins import Origin
    from bench.sampler import Contention
    from bench.versus import VersusConfig
    from devstack.s3server import EmbeddedS3

    config = VersusConfig(pages=pages)
    origins = config.origins()
    spy = str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy")
    found: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="baton-profile-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with (
            Contention() as contention,
            EmbeddedS3() as s3server,
            Origin(origins["latency"]) as latency,
            Origin(origins["fast"]) as fast,
        ):
            by_name = {"latency": latency, "fast": fast}
            env = _environment(s3server.endpoint_url)
            client = _client(s3server.endpoint_url)
            client.create_bucket(Bucket=BUCKET)
            serial = iter(range(10**6))
            for case in cases:
                origin = by_name[case.origin]
                urls = origin.urls()
                body = "".join(json.dumps(u) + "\n" for u in urls).encode()
                url_file = work / f"urls-{case.origin}.txt"
                url_file.write_text("\n".join(urls) + "\n")
                contenders: list[tuple[str, Path | None]] = list(trees.items())
                if case.concurrency is not None:
                    contenders.append(("plain", None))
                for label, tree in contenders:
                    m = Measured(label, case.name, case.origin, case.concurrency)
                    mark = len(contention.samples)
                    tally = Tally()
                    profiled_cpu_s = 0.0
                    for profiled in [False] * repeat + [True] * (profiled_runs if spy else 0):
                        origin.reset()
                        out = work / f"spy-{label}-{case.name}-{next(serial)}.txt"
                        try:
                            if tree is None:
                                figures = _plain(
                                    url_file, case, out if profiled else None, spy, rate
                                )
                            else:
                                key = f"tasks/profile-{next(serial)}.jsonl"
                                client.put_object(Bucket=BUCKET, Key=key, Body=body)
                                figures = _leg(
                                    tree=tree,
                                    key=key,
                                    case=case,
                                    env=env,
                                    work=work,
                                    spy_out=out if profiled else None,
                                    spy=spy,
                                    rate=rate,
                                )
                        except (OSError, RuntimeError, ValueError) as exc:
                            m.error = f"{type(exc).__name__}: {exc}"[:400]
                            break
                        m.pages = int(figures["pages"])
                        m.levels = figures.get("levels") or m.levels
                        if profiled:
                            tally = read_raw(out, tally)
                            profiled_cpu_s += float(figures["cpu_s"])
                            m.samples, m.outside_samples = tally.samples, tally.outside
                            m.stages, m.top_other = tally.shares(), tally.other.most_common(8)
                            m.overhead = tally.overhead_shares()
                            if profiled_cpu_s:
                                gil_s = tally.samples / rate
                                m.gil_share = round(gil_s / profiled_cpu_s, 3)
                        elif m.pages:
                            m.cpu_ms_per_page.append(round(figures["cpu_s"] * 1000 / m.pages, 3))
                            m.wall_s.append(figures["wall_s"])
                    m.contention = contention.since(mark)
                    say(
                        f"  {case.name:10} {label:8} {m.pages:5} pages  "
                        f"{m.cpu_ms} CPU ms/page  {m.samples} samples"
                        + (f"  ERROR {m.error}" if m.error else "")
                    )
                    found.append(m)
    return {
        "pages": pages,
        "repeat": repeat,
        "rate": rate,
        "profiled_runs": profiled_runs,
        "profiler": _version(spy) if spy else None,
        "memory_mb": MEMORY_MB,
        "trees": {label: _describe(tree) for label, tree in trees.items()},
        "stages": STAGES,
        "cases": [asdict(c) for c in cases],
        "runs": [asdict(m) | {"cpu_ms": m.cpu_ms, "stage_ms": stage_ms(m)} for m in found],
    }


def _environment(endpoint: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ} | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY_MB),
        "AWS_LAMBDA_FUNCTION_NAME": "baton-worker",
        "BATON_BUCKET": BUCKET,
        "BATON_ALLOW_NETS": "127.0.0.0/8",
        "BATON_LOG_FORMAT": "json",
        "BATON_CHECK_RECURSION": "false",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _leg(
    *,
    tree: Path,
    key: str,
    case: Case,
    env: dict[str, str],
    work: Path,
    spy_out: Path | None,
    spy: str | None,
    rate: int,
) -> dict[str, Any]:
    report = work / "leg.json"
    report.unlink(missing_ok=True)
    environment = dict(env)
    if case.concurrency is not None:
        environment["BATON_CONCURRENCY"] = str(case.concurrency)
    command = [sys.executable, "-m", "bench.profile_leg", "--child", str(tree), key, str(report)]
    if spy_out is not None and spy:
        command = [*_spy(spy, spy_out, rate), *command]
    log = work / "leg.log"
    with log.open("w") as stderr:
        done = subprocess.run(
            command, cwd=REPO_ROOT, env=environment, stdout=stderr, stderr=stderr, check=False
        )
    if done.returncode != 0 or not report.exists():
        raise RuntimeError(f"leg exit {done.returncode}: {log.read_text()[-600:]}")
    figures: dict[str, Any] = json.loads(report.read_text())
    figures["levels"] = _levels(log)
    return figures


def _plain(
    urls: Path, case: Case, spy_out: Path | None, spy: str | None, rate: int
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.peers.plain_requests",
        "--urls",
        str(urls),
        "--concurrency",
        str(case.concurrency),
    ]
    if spy_out is not None and spy:
        command = [*_spy(spy, spy_out, rate), *command]
    environment = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"plain loop exit {done.returncode}: {done.stderr[-600:]}")
    summary = json.loads(lines[-1])
    return {"pages": summary["pages"], "cpu_s": summary["cpu_s"], "wall_s": summary["elapsed_s"]}


def _spy(spy: str, out: Path, rate: int) -> list[str]:
    """py-spy sampling the thread that holds the GIL (an idle thread never does), raw stacks.

    Without `--gil`, py-spy counts some samples of threads blocked in a queue or a
    condition as active; with it, a sample is Python work (or C and kernel work called
    from Python without letting the GIL go) by construction. `--nonblocking`: the
    process is not stopped for each sample, which with 64 threads would slow it more
    than the work being measured (a sample may now and then be a torn stack).
    """
    return [
        spy,
        "record",
        *os.environ.get("PROFILE_LEG_SPY_FLAGS", "--gil --nonblocking").split(),
        "--full-filenames",
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        "--",
    ]


def _levels(log: Path) -> list[int]:
    levels = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"batch"' in line:
            try:
                level = json.loads(line).get("concurrency")
            except ValueError:
                continue
            if isinstance(level, int):
                levels.append(level)
    return levels


def _describe(tree: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        done = subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    return {
        "path": str(tree),
        "commit": git("rev-parse", "--short", "HEAD"),
        "worker_tree": git("rev-parse", "HEAD:worker"),
        "uncommitted": bool(git("status", "--porcelain", "--", "worker", "handler.py")),
    }


def _version(spy: str) -> str:
    done = subprocess.run([spy, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


# --- sorting samples into stages -------------------------------------------------------


OVERHEAD = ("thread hand-offs", "leg bookkeeping", "row", "logging", "fetch: retry wrapper")
"""Stages that are not the work of fetching, decoding, parsing, encoding and storing."""


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    other: Counter[str] = field(default_factory=Counter)
    overhead: Counter[tuple[str, str]] = field(default_factory=Counter)
    outside: int = 0

    def overhead_shares(self, top: int = 12) -> list[tuple[str, str, float]]:
        total = self.samples
        return [
            (stage, where, round(n / total, 4))
            for (stage, where), n in self.overhead.most_common(top)
            if total
        ]

    @property
    def samples(self) -> int:
        return sum(self.counts.values())

    def shares(self) -> dict[str, float]:
        total = self.samples
        return {s: round(self.counts[s] / total, 4) for s in STAGES if total and self.counts[s]}


def read_raw(path: Path, tally: Tally | None = None) -> Tally:
    """py-spy's raw output (`frame;frame;... count`, the root first) sorted into stages,
    added to `tally` if given."""
    tally = tally if tally is not None else Tally()
    if not path.exists():
        return tally
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        stage = classify(frames)
        if stage == OUTSIDE:
            tally.outside += int(count)
            continue
        tally.counts[stage] += int(count)
        if stage in OVERHEAD:
            tally.overhead[(stage, _where(frames))] += int(count)
        if stage == "other":
            tally.other[
                " < ".join(f"{n} ({p.rsplit('/', 1)[-1]})" for n, p, _ in frames[-3:][::-1])
            ] += int(count)
    return tally


Frame = tuple[str, str, int]
"""(function, file, line)."""


def _where(frames: list[Frame]) -> str:
    """`worker/leg.py:Leg._collect > threading.py:Condition.notify`: the innermost frame of
    the project (worker/, bench/peers/) and the innermost frame of all."""
    ours = [f for f in frames if _in(f[1], "/worker/", "/bench/peers/")]
    pool = any(f[1].endswith("/concurrent/futures/thread.py") for f in frames)
    mine = _short(ours[-1]) if ours else ("(pool thread, outside its task)" if pool else "-")
    inner = _short(frames[-1]) if frames else "-"
    return mine if mine == inner else f"{mine} > {inner}"


def _short(frame: Frame) -> str:
    name, path, line = frame
    for root in ("/worker/", "/bench/peers/", "/site-packages/", "/lib/python3"):
        if root in path:
            tail = path.split(root, 1)[1]
            path = tail.split("/", 1)[1] if root == "/lib/python3" else root.strip("/") + "/" + tail
            if root == "/site-packages/":
                path = tail
            break
    return f"{path}:{name}:{line}"


def _frame(text: str) -> Frame:
    name, _, rest = text.partition(" (")
    path, _, line = rest.rstrip(")").rpartition(":")
    return name, path, int(line) if line.isdigit() else 0


def classify(frames: list[Frame]) -> str:
    """The stage of one stack (root first): a few contexts by any frame, then the innermost."""
    paths = [p for _, p, _ in frames]
    names = [n for n, _, _ in frames]
    if any(p.endswith("/bench/profile_leg.py") for p in paths) and not any(
        p.endswith("/worker/leg.py") for p in paths
    ):
        return OUTSIDE  # the child's main thread before and after its leg
    if any(_in(p, "importlib", "<frozen runpy>") for p in paths) and not any(
        _in(p, "/worker/", "/bench/peers/common.py") for p in paths
    ):
        return OUTSIDE  # imports, a peer's too
    if any(_in(p, "/botocore/", "/boto3/", "/s3transfer/", "/worker/s3.py") for p in paths):
        return "S3 calls"
    if any(_in(p, "/logging/", "/worker/telemetry.py") for p in paths):
        return "logging"
    if "_run" in names and any(p.endswith("/worker/watchdog.py") for p in paths):
        return "fetch: connection guard"
    if any(n in _BODY or n.startswith("Response.iter_content") for n in names):
        return "fetch: body read"
    for name, path, line in reversed(frames):
        stage = _innermost(name, path, line)
        if stage is not None:
            return stage
    return "other"


def _innermost(name: str, path: str, line: int) -> str | None:
    if _in(path, "/json/"):
        return "JSON encoding"
    if _in(path, "/worker/charset.py", "/w3lib/", "/encodings/"):
        return "decode"
    if _in(path, "/worker/parse_budget.py", "/selectolax/"):
        return "parse"
    if _in(path, "/ada_url/", "/urllib/parse.py"):
        return "links"
    if _in(path, "/worker/extract.py", "/bench/peers/common.py"):
        return _extract_stage(name, path, line)
    if _in(path, "/tenacity/"):
        return "fetch: retry wrapper"
    if _in(path, "/worker/netguard.py", "/worker/watchdog.py", "/ipaddress.py"):
        return "fetch: connection guard"
    if _in(path, *_HTTP):
        return "fetch: HTTP request and headers"
    if _in(path, "/concurrent/futures/", "/threading.py", "/queue.py"):
        return "thread hand-offs"
    if _in(path, *_LEG):
        return "leg bookkeeping"
    if _in(path, "/worker/processor.py", "/dataclasses.py", "/bench/peers/"):
        return "row"
    return None


_BODY = frozenset({"Fetcher._read_body", "Response.content"})
"""Frames that read a body: baton's chunked read, and requests' `content` (the plain loop)."""
_HTTP = (
    "/requests/",
    "/urllib3/",
    "/http/client.py",
    "/socket.py",
    "/ssl.py",
    "/email/",
    "/http/cookiejar.py",
    "/worker/fetch.py",
    "/selectors.py",
    "/idna/",
    "/charset_normalizer/",
)
_LEG = (
    "/worker/leg.py",
    "/worker/window.py",
    "/worker/hosts.py",
    "/worker/autoscale.py",
    "/worker/budget.py",
    "/worker/checkpoint.py",
    "/worker/store.py",
    "/worker/summary.py",
    "/worker/tasks/",
    "/heapq.py",
)


def _extract_stage(name: str, path: str, line: int) -> str:
    if name in ("absolute_links", "join", "_absolute", "without_userinfo", "<genexpr>"):
        return "links"
    if name in ("shown_text", "normalize_space", "_clip", "squash"):
        return "field text"
    text = _source(path, line)
    if "LexborHTMLParser(" in text:
        return "parse"
    if ".text(" in text and "body" in text:
        return "body text (text_length)"
    if "css" in text:
        return "CSS selects"
    if ".text(" in text:
        return "field text"
    if "utf8_html" in text or "affordable" in text:
        return "decode"
    return "row"


@cache
def _source(path: str, line: int) -> str:
    try:
        return Path(path).read_text().splitlines()[line - 1]
    except (OSError, IndexError):
        return ""


def _in(path: str, *parts: str) -> bool:
    return any(part in path for part in parts)


# --- the report ------------------------------------------------------------------------


def stage_ms(m: Measured) -> dict[str, float]:
    """CPU ms per page by stage: the measured CPU split by the shares of the GIL samples.

    What runs without the GIL (the kernel's socket and futex work, C code that releases
    it) is thereby spread over the stages in proportion; the GIL time itself is not used
    to size it (`gil_share` is kept for reading), because on a busy machine a preempted
    thread holds the GIL without using a CPU, which inflates it.
    """
    if m.cpu_ms is None or not m.stages:
        return {}
    return {stage: round(m.cpu_ms * share, 3) for stage, share in m.stages.items()}


def table(found: dict[str, Any]) -> str:
    """A Markdown table: CPU ms per page, per stage, per contender and case."""
    runs = [r for r in found["runs"] if r.get("stage_ms")]
    head = [f"{r['contender']}, {r['case']}" for r in runs]
    lines = [
        "| stage (CPU ms per page) | " + " | ".join(head) + " |",
        "| --- | " + " | ".join("---" for _ in runs) + " |",
    ]
    for stage in STAGES:
        cells = [f"{r['stage_ms'][stage]:.2f}" if stage in r["stage_ms"] else "-" for r in runs]
        if any(c != "-" for c in cells):
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{r['cpu_ms']:.2f}**" for r in runs) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_leg", description=__doc__)
    parser.add_argument(
        "--child", nargs=3, metavar=("TREE", "KEY", "REPORT"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a code tree to profile besides this checkout (after), e.g. before=/tmp/before",
    )
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rate", type=int, default=250)
    parser.add_argument(
        "--profiled-runs", type=int, default=1, help="runs under py-spy, their samples summed"
    )
    parser.add_argument("--only", nargs="+", choices=[c.name for c in CASES])
    parser.add_argument("--workdir", type=Path, help="keep py-spy's raw stacks and the logs here")
    parser.add_argument(
        "--reclassify",
        action="store_true",
        help="measure nothing: sort the raw stacks kept in --workdir into stages again",
    )
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    if args.reclassify:
        found = reclassify(json.loads(RESULTS.read_text()), args.workdir or Path("."))
        RESULTS.write_text(json.dumps(found, indent=2) + "\n")
        print(table(found))
        return 0
    trees = dict(t.split("=", 1) for t in args.tree)
    chosen = {label: Path(path).resolve() for label, path in trees.items()} | {"after": REPO_ROOT}
    cases = tuple(c for c in CASES if not args.only or c.name in args.only)
    found = measure(
        chosen,
        pages=args.pages,
        repeat=args.repeat,
        rate=args.rate,
        profiled_runs=args.profiled_runs,
        cases=cases,
        say=_stderr,
        workdir=args.workdir,
    )
    if args.only and RESULTS.exists():  # keep the cases not run again
        found = merge(json.loads(RESULTS.read_text()), found)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(found, indent=2) + "\n")
    print(table(found))
    return 0


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`new`'s runs in place of `old`'s for the same contender and case; the rest kept."""
    fresh = {(r["contender"], r["case"]) for r in new["runs"]}
    kept = [r for r in old.get("runs", []) if (r["contender"], r["case"]) not in fresh]
    names = [c["name"] for c in old.get("cases", [])]
    cases = old.get("cases", []) + [c for c in new["cases"] if c["name"] not in names]
    return new | {
        "runs": kept + new["runs"],
        "cases": cases,
        "trees": old.get("trees", {}) | new["trees"],
    }


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
