"""Work stealing: a chain that finished its range takes half of another's unplanned tail.

A split is two writes. First a CAS on the victim's checkpoint: its range ends at
the split point, never below its plan (the owner may be working anything under
the plan) nor inside a dead leg's careful range (its strikes stay with it), and
the split is recorded in it. Then the stolen range's checkpoint,
created with `IfNoneMatch="*"`. A thief that dies between the two loses
nothing: whoever reads the victim next (its owner finishing, the sweep) sees the
recorded split and creates the missing range, which the sweep then resumes.

Thieves look at a few chains picked at random (not all of them: a thousand
chains finishing together would read a million checkpoints) and take from the
one with the most stealable work; the victim's owner sees a steal as a shorter
range, not as a lost CAS (`worker.checkpoint.redo_after_split`).
"""

from __future__ import annotations

import logging
import random

from worker.checkpoint import Checkpoint
from worker.clock import Clock
from worker.exceptions import ConflictError, RunNotFoundError
from worker.store import RunRecord, RunStore, Versioned

log = logging.getLogger(__name__)

MIN_STEAL = 2
"""Fewer stealable tasks than this are left to their owner."""
SAMPLE = 8
"""Chains a thief reads to pick its victim from."""
ATTEMPTS = 3


def steal(
    store: RunStore, record: RunRecord, thief: str, owner: str, clock: Clock
) -> Checkpoint | None:
    """Split the best victim found; the new range's checkpoint (unowned), or None."""
    done = store.done_chains(record.run_id)
    candidates = [c for c in store.chain_ids(record.run_id) if c not in done and c != thief]
    picks = random.Random(owner).sample(candidates, min(SAMPLE, len(candidates)))
    victims: list[Versioned] = []
    for chain in picks:
        try:
            current = store.load_checkpoint(record.run_id, chain)
        except RunNotFoundError:
            continue
        if not current.checkpoint.finished:
            victims.append(current)
    victims.sort(key=lambda v: v.checkpoint.stealable, reverse=True)
    for victim in victims[:2]:
        stolen = _split(store, victim, clock)
        if stolen is not None:
            return stolen
    return None


def _split(store: RunStore, victim: Versioned, clock: Clock) -> Checkpoint | None:
    for _ in range(ATTEMPTS):
        cp = victim.checkpoint
        if cp.finished or cp.stealable < MIN_STEAL:
            return None
        at = cp.steal_line + cp.stealable // 2
        chain = f"{cp.chain}.{len(cp.splits) + 1}"
        end = cp.range_end
        try:
            store.swap(victim, cp.split(chain, at))
        except ConflictError:
            victim = store.load_checkpoint(cp.run_id, cp.chain)
            continue
        child = _range(cp, chain, at, end, clock.now_ms())
        store.create_checkpoint(child)  # None: the victim's owner or the sweep made it first
        log.info(
            "run %s: chain %s gave %s-%s to chain %s",
            cp.run_id,
            cp.chain,
            at,
            end,
            chain,
            extra={"event": "split", "run_id": cp.run_id, "victim": cp.chain, "chain": chain},
        )
        return child
    return None


def ensure_split_ranges(store: RunStore, cp: Checkpoint, at_ms: int) -> list[Checkpoint]:
    """Create the ranges split off `cp` whose thief died first; they need a leg invoked."""
    created = []
    for split in cp.splits:
        if store.has_checkpoint(cp.run_id, split["chain"]):
            continue
        child = _range(cp, split["chain"], split["start"], split["end"], at_ms)
        if store.create_checkpoint(child) is not None:
            log.warning("run %s: created range %s, whose thief died", cp.run_id, child.chain)
            created.append(child)
    return created


def _range(victim: Checkpoint, chain: str, start: int, end: int, at_ms: int) -> Checkpoint:
    return Checkpoint(
        run_id=victim.run_id,
        total=victim.total,
        position=start,
        chain=chain,
        start=start,
        end=end,
        handed_off_ms=at_ms,
        heartbeat_ms=at_ms,
        level=victim.level,
        segment=victim.segment,
    )
