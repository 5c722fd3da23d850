"""python -m tests.sim: replay one seed with its whole trace, or soak a range of seeds.

python -m tests.sim --seed 7                 one world: trace, verdict (exit 1 if violated)
python -m tests.sim --runs 1000000           seeds 1..1000000 on every core
python -m tests.sim --seed 500 --runs 100    seeds 500..599
python -m tests.sim --faults                 the fault table
"""

from __future__ import annotations

import argparse
import os
import sys

from tests.sim.faults import describe
from tests.sim.soak import KNOWN_FINDINGS, Tally, soak
from tests.sim.world import simulate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, help="replay this seed (with --runs: the first seed)")
    parser.add_argument("--runs", type=int, help="soak this many seeds")
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk", type=int, default=200, help="seeds per task of the pool")
    parser.add_argument("--faults", action="store_true", help="print the fault table")
    args = parser.parse_args(argv)
    if args.faults:
        print(describe())
        return 0
    if args.runs is None:
        return replay(args.seed if args.seed is not None else 1)
    return run_soak(args.seed if args.seed is not None else 1, args.runs, args.procs, args.chunk)


def replay(seed: int) -> int:
    world = simulate(seed)
    print(world.trace.text())
    print()
    print(f"trace digest {world.trace.digest()[:16]} ({len(world.trace.entries)} entries)")
    if not world.violations:
        print(f"seed {seed}: every invariant held")
        return 0
    print(f"seed {seed}: {len(world.violations)} violations")
    for violation in world.violations:
        known = " (known finding)" if violation.category in KNOWN_FINDINGS else ""
        print(f"  {violation}{known}")
    return 1


def run_soak(first: int, runs: int, procs: int, chunk: int) -> int:
    shown = [0.0]

    def progress(tally: Tally) -> None:
        if tally.seconds - shown[0] < 10 and tally.runs < runs:
            return
        shown[0] = tally.seconds
        rate = tally.runs / tally.seconds if tally.seconds else 0.0
        failed = f", failing seeds {tally.failed_seeds[:5]}" if tally.failed_seeds else ""
        print(f"  {tally.runs}/{runs} runs, {rate:.0f} runs/s{failed}", flush=True)

    tally = soak(first, runs, procs=procs, chunk=chunk, progress=progress if runs > chunk else None)
    if tally.failures:
        print(tally.report())
        print()
    for category, count in sorted(tally.known.items()):
        seeds = ", ".join(map(str, sorted(tally.known_seeds[category])[:10]))
        why = KNOWN_FINDINGS[category]
        print(f"known finding {category} in {count} runs (seeds {seeds}, ...): {why}")
    print(f"faults: {', '.join(f'{k}={n}' for k, n in sorted(tally.faults.items()))}")
    if tally.excused_strikes:
        print(
            f"strikes excused: {tally.excused_strikes} (the owner lost a CAS answer and its "
            "read-back failed too, so it exited not knowing it held the run)"
        )
    seconds = f"{tally.seconds:.1f} s on {procs} processes"
    print(f"{tally.runs} runs, {tally.invocations} invocations in {seconds}")
    print(tally.line())
    if tally.failed_seeds:
        seeds = " ".join(map(str, tally.failed_seeds[:200]))
        more = " ..." if len(tally.failed_seeds) > 200 else ""
        print(
            f"{len(tally.failed_seeds)} failing seeds: {seeds}{more}; "
            "replay one with make sim SEED=n"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
