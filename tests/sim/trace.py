"""What happened in a world, in order: deliveries, S3 calls and their faults, kills, claims, exits.

Entries are (virtual ms, who, what); who is an invocation (`i7`), `aws` (the Lambda
service), `world` (the seed's own moves: uploads, cancels, calm), or `oracle`.
The same seed gives the same entries, byte for byte: `digest` is how tests compare.
"""

from __future__ import annotations

import hashlib

from tests.sim.scheduler import Scheduler


class Trace:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.entries: list[tuple[int, str, str]] = []

    def add(self, who: str, what: str) -> None:
        self.entries.append((self.scheduler.now, who, what))

    def lines(self) -> list[str]:
        start = self.scheduler.start_ms
        return [f"{(at - start) / 1000:10.3f}s {who:>8}  {what}" for at, who, what in self.entries]

    def text(self, last: int | None = None) -> str:
        lines = self.lines()
        if last is not None and len(lines) > last:
            skipped = len(lines) - last
            lines = [
                f"... {skipped} earlier entries (make sim SEED=n prints them all)",
                *lines[-last:],
            ]
        return "\n".join(lines)

    def digest(self) -> str:
        hasher = hashlib.sha256()
        for at, who, what in self.entries:
            hasher.update(f"{at}|{who}|{what}\n".encode())
        return hasher.hexdigest()
