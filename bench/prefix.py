"""Prefix runs (issue 16): list, presign and checksum the objects under a prefix.

    python -m bench.prefix [--quick] [--objects N]    writes bench/results/prefix.json

On the embedded stack (moto's S3 over HTTP, the local Lambda runtime), in one run:

1. **Seeding** (not measured): `objects` small objects (sizes drawn from `sizes`,
   seeded) under `keys/` and `checksum_objects` more under `sums/` of a data bucket,
   written straight into moto's backend in this process (the S3 server serves that
   backend), then a 1.1 s pause (S3 keeps whole seconds; the runs' cutoff must follow).
2. **The plain loop**: one process, one boto3 client, no threads. (a) `list`: the
   `list_objects_v2` paginator over `keys/`, 1,000 keys a page; (b) `presign`: the
   same listing with `generate_presigned_url` per key, writing `{key,url,size,etag}`
   JSONL to a local file; (c) `sha256`: listing `sums/`, then `get_object` streamed
   into hashlib per key.
3. **baton**: the manual payload `{"bucket", "prefix": {"prefix", "processor"},
   "chains": C}` (what `baton start --prefix` sends), invoked synchronously through
   the local runtime; wall time from that invoke to `summary.json` being readable
   (polled every 50 ms), so it includes the start, the listing, the work chains, the
   completion and `presigned.jsonl`. `presign` over `keys/` and `sha256` over `sums/`,
   at C = 1 and C = 16.

Fairness: the function runs with production settings (BATON_CONCURRENCY unset: the
autoscaler's level; 1,000-key pages, 10 pages a segment), except legs: 60 s as the
worker sees it (`BENCH_LEG_S`, bench/fanout_handler.py, with the production 2 s margin)
so a run of 100k objects hands off between legs, as one of millions does at 900 s.
The run state lives in the data bucket (a prefix run keeps its state in the bucket it
lists), as it would on AWS.

Keys:
- `prefix_ratio` = baton's presign keys/s at C=1 (objects listed and presigned ÷ wall
  from the invoke to summary.json) ÷ the plain loop's presign keys/s (objects listed and
  presigned ÷ its wall, listing included). Target: >= 0.9.
- `prefix_ratio_sha256` = baton's checksum MB/s at C=1 ÷ the plain loop's.
- `prefix_speedup_16` = baton's presign keys/s at C=16 ÷ at C=1.
Each side is measured `rounds` times, alternating which goes first; figures are medians.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from botocore.config import Config

from bench.fanout import _containers_cpu_s
from bench.sampler import Contention, machine_facts
from devstack.lambda_runtime import FunctionConfig, log_record
from devstack.stack import EmbeddedStack
from worker.config import Settings
from worker.listing import LISTER
from worker.store import RunStore

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_FILE = BENCH_DIR / "results" / "prefix.json"
FUNCTION = "baton-prefix"
HANDLER = "bench/fanout_handler.handler"
KEYS = "keys/"
SUMS = "sums/"
WARM = "warm/"
WARM_OBJECTS = 40
PAGE = 1000


@dataclass(frozen=True)
class PrefixConfig:
    objects: int = 100_000
    """Objects under keys/: listed and presigned."""
    checksum_objects: int = 10_000
    """Objects under sums/: checksummed (every one a GET over HTTP; 100k of them would
    take the bench past half an hour on the emulator, for the same per-object figure)."""
    sizes: tuple[int, int] = (200, 2000)
    chains: tuple[int, ...] = (1, 16)
    rounds: int = 1
    leg_s: float = 60.0
    """Each leg's time as the worker sees it (`BENCH_LEG_S`)."""
    timeout_s: float = 120.0
    memory_mb: int = 1024
    max_wait_s: float = 900.0
    seed: int = 16

    def function(self, bucket: str) -> FunctionConfig:
        return FunctionConfig(
            name=FUNCTION,
            handler=HANDLER,
            timeout_s=self.timeout_s,
            memory_mb=self.memory_mb,
            environment={
                "BATON_BUCKET": bucket,
                "BATON_LOG_FORMAT": "json",
                "BENCH_LEG_S": f"{self.leg_s:g}",
            },
            max_concurrency=max(self.chains) + 8,
            max_retries=2,
            retry_delay_s=6.0,
            recursive_loop="Allow",
        )


FULL = PrefixConfig()
QUICK = PrefixConfig(objects=5_000, checksum_objects=1_000, leg_s=20.0)
SMOKE = PrefixConfig(
    objects=300, checksum_objects=60, chains=(1, 2), leg_s=5.0, timeout_s=30.0, max_wait_s=90.0
)


@dataclass
class Measured:
    """One measurement: a side, a processor, C (0 for the plain loop), a round."""

    side: str
    """`plain` or `baton`."""
    processor: str
    """`list` (plain only), `presign` or `sha256`."""
    chains: int
    round: int
    objects: int = 0
    bytes: int = 0
    wall_s: float = 0.0
    keys_per_s: float = 0.0
    mb_per_s: float = 0.0
    run_id: str = ""
    legs: int = 0
    listed_s: float = 0.0
    """From the invoke to the lister's last `listed` line (the listing's end)."""
    lister_keys_per_s: float = 0.0
    work_busy_s: float = 0.0
    """The work chains' legs' time, summed: against `wall_s`, how long they waited for
    segments (at C=1) rather than worked."""
    segments: int = 0
    rows: int = 0
    presigned_lines: int = 0
    cpu_s: float = 0.0
    """CPU meanwhile of this process (the S3 emulator, the Lambda API, the plain loop) and
    of the live Lambda containers: what the side cost the two cores."""
    cpu_ms_per_key: float = 0.0
    contention: dict[str, float] | None = None
    error: str | None = None

    def rate(self, wall_s: float, cpu_s: float = 0.0) -> None:
        self.wall_s = round(wall_s, 3)
        self.cpu_s = round(cpu_s, 3)
        self.cpu_ms_per_key = round(cpu_s * 1000 / self.objects, 4) if self.objects else 0.0
        self.keys_per_s = round(self.objects / wall_s, 1) if wall_s else 0.0
        self.mb_per_s = round(self.bytes / 1e6 / wall_s, 3) if wall_s else 0.0


@dataclass
class Seeded:
    keys: int = 0
    sums: int = 0
    bytes_keys: int = 0
    bytes_sums: int = 0
    seconds: float = 0.0
    sums_digests: dict[str, str] = field(default_factory=dict)


def seed(bucket: str, config: PrefixConfig) -> Seeded:
    """Write the objects into moto's backend in this process (the S3 server serves it):
    about 30x faster than PUTs over HTTP, and not what is measured."""
    from moto.backends import get_backend

    started = time.monotonic()
    backend = next(
        backend
        for account in get_backend("s3").values()
        for backend in account.values()
        if bucket in backend.buckets
    )
    rng = random.Random(config.seed)
    out = Seeded()
    counts = ((KEYS, config.objects), (SUMS, config.checksum_objects), (WARM, WARM_OBJECTS))
    for prefix, count in counts:
        for i in range(count):
            size = rng.randint(*config.sizes)
            body = rng.randbytes(size)
            key = f"{prefix}{i:07d}.bin"
            backend.put_object(bucket, key, body)
            if prefix == KEYS:
                out.keys += 1
                out.bytes_keys += size
            elif prefix == SUMS:
                out.sums += 1
                out.bytes_sums += size
                out.sums_digests[key] = hashlib.sha256(body).hexdigest()
    time.sleep(1.1)  # S3 keeps whole seconds: the runs' cutoff must be after these
    out.seconds = round(time.monotonic() - started, 1)
    return out


# the plain loop
def plain_list(s3: Any, bucket: str) -> Measured:
    m = Measured("plain", "list", 0, 0)
    started = time.perf_counter()
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=KEYS, PaginationConfig={"PageSize": PAGE}
    ):
        m.objects += len(page.get("Contents", ()))
    m.rate(time.perf_counter() - started)
    return m


def plain_presign(s3: Any, bucket: str, out: Path, expires_s: int = 3600) -> Measured:
    m = Measured("plain", "presign", 0, 0)
    started = time.perf_counter()
    with out.open("w") as sink:
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=KEYS, PaginationConfig={"PageSize": PAGE}
        ):
            for obj in page.get("Contents", ()):
                url = s3.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": bucket, "Key": obj["Key"]},
                    ExpiresIn=expires_s,
                )
                line = {"key": obj["Key"], "url": url, "size": obj["Size"], "etag": obj["ETag"]}
                sink.write(json.dumps(line) + "\n")
                m.objects += 1
    m.rate(time.perf_counter() - started)
    return m


def plain_sha256(s3: Any, bucket: str, expected: dict[str, str]) -> Measured:
    m = Measured("plain", "sha256", 0, 0)
    started = time.perf_counter()
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=SUMS, PaginationConfig={"PageSize": PAGE}
    ):
        for obj in page.get("Contents", ()):
            digest = hashlib.sha256()
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"]
            for piece in body.iter_chunks(1 << 20):
                digest.update(piece)
                m.bytes += len(piece)
            if digest.hexdigest() != expected[obj["Key"]]:
                m.error = f"wrong digest for {obj['Key']}"
            m.objects += 1
    m.rate(time.perf_counter() - started)
    return m


class Bench:
    """One embedded stack and one data bucket, shared by every measurement."""

    def __init__(self, config: PrefixConfig, work: Path, contention: Contention | None) -> None:
        self.config = config
        self.work = work
        self.contention = contention
        self.bucket = f"baton-prefix-{time.time_ns() % 10**12}"
        self.log_path = work / "containers.log"
        self.seeded = Seeded()

    @contextmanager
    def running(self) -> Iterator[Bench]:
        with ExitStack() as stack:
            self.stack = stack.enter_context(
                EmbeddedStack(
                    self.config.function(self.bucket), bucket=self.bucket, log_file=self.log_path
                )
            )
            self.s3 = self.stack.s3_client(Config(max_pool_connections=32))
            stack.callback(self.s3.close)
            self.lam = self.stack.lambda_client(
                Config(read_timeout=120, retries={"mode": "standard"})
            )
            stack.callback(self.lam.close)
            self.store = RunStore.over(self.s3, self.bucket, "runs/")
            yield self

    def warm(self) -> float:
        """Start the containers the largest C uses (cold starts are not what is measured:
        a run of 100k objects on Lambda pays one per chain, amortised)."""
        started = time.monotonic()
        for processor in ("presign", "sha256"):
            run_id = self._start(WARM, processor, max(self.config.chains))
            self._summary(run_id)
        self.stack.runtime.wait_idle(60)
        return round(time.monotonic() - started, 1)

    def _start(self, prefix: str, processor: str, chains: int) -> str:
        payload = {
            "bucket": self.bucket,
            "prefix": {"prefix": prefix, "processor": processor},
            "chains": chains,
        }
        response = self.lam.invoke(
            FunctionName=FUNCTION, InvocationType="RequestResponse", Payload=json.dumps(payload)
        )
        answer = json.loads(response["Payload"].read())
        if not answer.get("ok"):
            raise RuntimeError(f"the start was refused: {answer}")
        return str(answer["results"][0]["run_id"])

    def _summary(self, run_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.config.max_wait_s
        summary = self.store.load_summary(run_id)
        while summary is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id}: no summary in {self.config.max_wait_s:.0f} s")
            time.sleep(0.05)
            summary = self.store.load_summary(run_id)
        return summary

    def measure(self, side: str, processor: str, chains: int, round_: int) -> Measured:
        sample = len(self.contention.samples) if self.contention is not None else 0
        try:
            m = self._plain(processor) if side == "plain" else self._baton(processor, chains)
        except (OSError, RuntimeError, TimeoutError, ValueError, KeyError) as exc:
            m = Measured(side, processor, chains, round_, error=f"{type(exc).__name__}: {exc}")
        m.round = round_
        if self.contention is not None:
            m.contention = self.contention.since(sample)
        return m

    def _plain(self, processor: str) -> Measured:
        s3 = self.stack.s3_client()  # a fresh client, as a script would start with
        cpu0 = _cpu_s()
        try:
            if processor == "list":
                m = plain_list(s3, self.bucket)
            elif processor == "presign":
                m = plain_presign(s3, self.bucket, self.work / "plain-presigned.jsonl")
            else:
                m = plain_sha256(s3, self.bucket, self.seeded.sums_digests)
        finally:
            s3.close()
        m.rate(m.wall_s, _cpu_s() - cpu0)
        return m

    def _baton(self, processor: str, chains: int) -> Measured:
        prefix = KEYS if processor == "presign" else SUMS
        m = Measured("baton", processor, chains, 0)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        cpu0 = _cpu_s()
        started, started_at = time.perf_counter(), time.time()
        run_id = m.run_id = self._start(prefix, processor, chains)
        summary = self._summary(run_id)
        wall = time.perf_counter() - started
        self.stack.runtime.wait_idle(60)
        cpu = _cpu_s() - cpu0
        m.objects = int(summary["total"])
        m.segments = int((summary.get("listing") or {}).get("segments") or 0)
        rows = list(self.store.rows(run_id))
        m.rows = len(rows)
        m.bytes = sum(int(row.get("bytes") or 0) for row in rows)
        m.rate(wall, cpu)
        expected = self.seeded.keys if processor == "presign" else self.seeded.sums
        problems = []
        if summary["status"] != "done" or int(summary["ok"]) != expected:
            problems.append(f"run {summary['status']}, {summary['ok']} ok of {expected}")
        if len({row["id"] for row in rows}) != expected:
            problems.append(f"{len(rows)} rows, {len({r['id'] for r in rows})} distinct")
        if processor == "presign":
            body = self.s3.get_object(Bucket=self.bucket, Key=self.store.presigned_key(run_id))
            m.presigned_lines = body["Body"].read().count(b"\n")
            if m.presigned_lines != expected:
                problems.append(f"presigned.jsonl has {m.presigned_lines} lines")
        else:
            wrong = [r["id"] for r in rows if r.get("sha256") != self.seeded.sums_digests[r["id"]]]
            if wrong:
                problems.append(f"{len(wrong)} wrong digests, first {wrong[0]}")
        with self.log_path.open("rb") as log:
            log.seek(offset)
            found = log_figures(log.read().decode("utf-8", errors="replace"), run_id, started_at)
        m.legs, m.listed_s, m.work_busy_s = found["legs"], found["listed_s"], found["work_busy_s"]
        m.lister_keys_per_s = round(m.objects / m.listed_s, 1) if m.listed_s else 0.0
        if problems:
            m.error = "; ".join(problems)
        return m


def log_figures(text: str, run_id: str, started_at: float) -> dict[str, Any]:
    """A run's legs, how long its lister took from `started_at` (the invoke, epoch s), and
    how long its work chains worked, from the containers' log lines."""
    legs, listed, busy_ms = 0, 0.0, 0
    for raw in text.splitlines():
        _, line = log_record(raw)
        if line is None or line.get("run_id") != run_id:
            continue
        at = float(line.get("time") or 0)
        if line.get("event") == "leg":
            legs += 1
            if line.get("chain") != LISTER:
                busy_ms += int(line.get("elapsed_ms") or 0)
        elif line.get("event") == "listed":
            listed = at
    return {
        "legs": legs,
        "listed_s": round(listed - started_at, 3) if listed else 0.0,
        "work_busy_s": round(busy_ms / 1000, 3),
    }


def _cpu_s() -> float:
    """This process's CPU and its live Lambda containers' (they outlive a run)."""
    return _containers_cpu_s() + time.process_time()


def measure(
    config: PrefixConfig,
    workdir: Path | None = None,
    contention: Contention | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Seed, then every round: the plain loop and baton (order alternating), each C."""
    with tempfile.TemporaryDirectory(prefix="baton-prefix-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        found: list[Measured] = []
        with Bench(config, work, contention).running() as bench:
            bench.seeded = seed(bench.bucket, config)
            say(
                f"  seeded {bench.seeded.keys:,} + {bench.seeded.sums:,} objects "
                f"in {bench.seeded.seconds} s"
            )
            say(f"  warmed the containers in {bench.warm()} s")
            plain = [("plain", p, 0) for p in ("list", "presign", "sha256")]
            baton = [("baton", p, c) for c in config.chains for p in ("presign", "sha256")]
            for round_ in range(config.rounds):
                order = plain + baton if round_ % 2 == 0 else baton + plain
                for side, processor, chains in order:
                    m = bench.measure(side, processor, chains, round_)
                    found.append(m)
                    say(_line(m))
            seeded = asdict(bench.seeded) | {"sums_digests": len(bench.seeded.sums_digests)}
    return figures(config, found, seeded)


def _line(m: Measured) -> str:
    what = f"{m.side} {m.processor}" + (f" C={m.chains}" if m.side == "baton" else "")
    load = (m.contention or {}).get("mean_runnable")
    return (
        f"  round {m.round + 1} {what:22} {m.objects:7,} objects  wall {m.wall_s:8.2f} s  "
        f"{m.keys_per_s:8.1f} keys/s  {m.mb_per_s:6.2f} MB/s  legs {m.legs:3}  "
        f"CPU {m.cpu_ms_per_key:6.3f} ms/key  "
        f"other runnable {load}" + (f"  ERROR {m.error}" if m.error else "")
    )


def _cell(runs: list[Measured]) -> dict[str, Any]:
    ok = [m for m in runs if not m.error]
    if not ok:
        return {"missing": "; ".join(str(m.error) for m in runs) or "not measured"}
    load = [m.contention["mean_runnable"] for m in ok if m.contention]
    return {
        "rounds": len(ok),
        "objects": ok[0].objects,
        "wall_s": [m.wall_s for m in ok],
        "wall_s_median": round(statistics.median(m.wall_s for m in ok), 3),
        "keys_per_s_median": round(statistics.median(m.keys_per_s for m in ok), 1),
        "mb_per_s_median": round(statistics.median(m.mb_per_s for m in ok), 3),
        "cpu_ms_per_key_median": round(statistics.median(m.cpu_ms_per_key for m in ok), 4),
        "legs_median": statistics.median(m.legs for m in ok),
        "lister_keys_per_s_median": round(statistics.median(m.lister_keys_per_s for m in ok), 1),
        "work_busy_s_median": round(statistics.median(m.work_busy_s for m in ok), 3),
        "segments": ok[0].segments,
        "other_runnable_median": round(statistics.median(load), 2) if load else None,
    }


def _ratio(top: dict[str, Any], bottom: dict[str, Any], key: str) -> float | None:
    if "missing" in top or "missing" in bottom or not bottom.get(key):
        return None
    return round(float(top[key]) / float(bottom[key]), 3)


def figures(config: PrefixConfig, found: list[Measured], seeded: dict[str, Any]) -> dict[str, Any]:
    def cell(side: str, processor: str, chains: int = 0) -> dict[str, Any]:
        return _cell(
            [m for m in found if (m.side, m.processor, m.chains) == (side, processor, chains)]
        )

    plain = {p: cell("plain", p) for p in ("list", "presign", "sha256")}
    baton = {str(c): {p: cell("baton", p, c) for p in ("presign", "sha256")} for c in config.chains}
    for c in config.chains:
        for processor, row in baton[str(c)].items():
            if "missing" not in row:
                key = "keys_per_s_median" if processor == "presign" else "mb_per_s_median"
                row["per_chain"] = round(row[key] / c, 3)
    one = baton.get("1", {})
    top = str(max(config.chains))
    return {
        "prefix_ratio": _ratio(one.get("presign", {}), plain["presign"], "keys_per_s_median"),
        "prefix_ratio_sha256": _ratio(one.get("sha256", {}), plain["sha256"], "mb_per_s_median"),
        f"prefix_speedup_{top}": _ratio(
            baton[top]["presign"], one.get("presign", {}), "keys_per_s_median"
        ),
        "config": asdict(config),
        "segment_pages": Settings.segment_pages,
        "seeded": seeded,
        "plain": plain,
        "baton": baton,
        "runs": [asdict(m) for m in found],
    }


PREFIX_KEYS = ("prefix_ratio", "prefix_ratio_sha256", "prefix_speedup_16")
"""Issue 16's keys: copied from bench/results/prefix.json to the top of bench/results.json."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prefix", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5,000 + 1,000 objects")
    parser.add_argument("--objects", type=int)
    parser.add_argument("--checksum-objects", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--workdir", type=Path, help="keep the containers' log here")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    if args.objects:
        config = replace(config, objects=args.objects)
    if args.checksum_objects:
        config = replace(config, checksum_objects=args.checksum_objects)
    if args.rounds:
        config = replace(config, rounds=args.rounds)
    found = run(config, args.workdir, args.quick, say=_stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(found, indent=2, default=str) + "\n")
    _stderr(f"wrote {args.out}")
    return 0


def run(
    config: PrefixConfig,
    workdir: Path | None,
    quick: bool,
    say: Callable[[str], None] = print,
    contention: Contention | None = None,
) -> dict[str, Any]:
    """Measure with the machine's facts and the runtime measured (run_all calls this too)."""
    started = time.monotonic()
    with ExitStack() as stack:
        if contention is None:
            contention = stack.enter_context(Contention())
        contention.label = "prefix"
        mark = len(contention.samples)
        found = measure(config, workdir, contention, say=say)
        found["machine"] = machine_facts() | {
            "other_runnable_processes": {"prefix": contention.since(mark)}
        }
    from bench.run_all import runtime_tree  # run_all imports this module

    found["runtime"] = runtime_tree()
    found["quick"] = quick
    found["seconds"] = round(time.monotonic() - started, 1)
    for key in PREFIX_KEYS:
        say(f"  {key}: {found.get(key)}")
    return found


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
