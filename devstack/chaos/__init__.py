"""Chaos on the embedded stack: prove a run cannot lose, duplicate, fork or loop.

    python -m devstack.chaos --seed 7 --runs 6 --tasks 300     # what `make chaos` runs

| module | its one job |
| --- | --- |
| `faults` | the table of fault kinds, from which everything per kind derives |
| `processor` | the chaotic per-task processor inside the containers (`PROCESSOR`) |
| `config` | `ChaosConfig`: the load, the rates, and the function they shape |
| `harness` | `ChaosStack` (drive the embedded stack, count faults) and `ChaosS3Faults` |
| `oracle` | `Oracle` and `RunCheck`: judge a run from S3 and the logs alone |
| `report` | `ChaosReport` and the summary line |
| `soak` | `run_chaos` and the command line |
"""

from devstack.chaos.config import ChaosConfig
from devstack.chaos.faults import AFTER_WRITE, FAULTS, FaultKind
from devstack.chaos.harness import ChaosS3Faults, ChaosStack
from devstack.chaos.oracle import Oracle, RunCheck, Source
from devstack.chaos.processor import CRASH_ONCE, HANG_ONCE, KILLER, process
from devstack.chaos.report import ChaosReport
from devstack.chaos.soak import main, run_chaos

__all__ = [
    "AFTER_WRITE",
    "CRASH_ONCE",
    "FAULTS",
    "HANG_ONCE",
    "KILLER",
    "ChaosConfig",
    "ChaosReport",
    "ChaosS3Faults",
    "ChaosStack",
    "FaultKind",
    "Oracle",
    "RunCheck",
    "Source",
    "main",
    "process",
    "run_chaos",
]
