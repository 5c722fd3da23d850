"""Drive baton in-process against moto: a container, a fake clock, recorded hand-offs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tests.fakes import (
    FakeClock,
    FakeContext,
    RecordingInvoker,
    RecordingNotifier,
    ticking_processor,
)
from worker.config import Settings
from worker.container import Container
from worker.dispatch import dispatch
from worker.store import RunStore


@dataclass
class Harness:
    s3: Any
    bucket: str
    settings: Settings
    clock: FakeClock = field(default_factory=FakeClock)
    invoker: RecordingInvoker = field(default_factory=RecordingInvoker)
    notifier: RecordingNotifier = field(default_factory=RecordingNotifier)
    timeout_ms: float = 10_000
    ms_per_task: float = 100

    def __post_init__(self) -> None:
        self.container = Container.create(
            self.settings,
            s3=self.s3,
            lambda_client=object(),
            invoker=self.invoker,
            clock=self.clock,
            notifier=self.notifier,
        )
        self.container.processor = ticking_processor(self.clock, self.ms_per_task)
        self.store = RunStore.over(self.s3, self.bucket, self.settings.results_prefix)

    def context(self, timeout_ms: float | None = None) -> FakeContext:
        return FakeContext(self.clock, timeout_ms or self.timeout_ms)

    def invoke(self, event: Any, timeout_ms: float | None = None) -> dict[str, Any]:
        return dispatch(self.container, event, self.context(timeout_ms))

    def upload_event(self, key: str, etag: str, sequencer: str = "0001") -> dict[str, Any]:
        return {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {
                        "bucket": {"name": self.bucket},
                        "object": {"key": key, "eTag": etag.strip('"'), "sequencer": sequencer},
                    },
                }
            ]
        }

    def begin(self, event: Any, timeout_ms: float | None = None) -> dict[str, Any]:
        """Start a run, then deliver its leg 0; the leg's answer."""
        started = self.invoke(event)
        assert started["ok"], started
        return self.invoke(self.invoker.pop(), timeout_ms)

    def drive(self, first: Any, max_legs: int = 1000) -> list[dict[str, Any]]:
        """Invoke, then keep delivering every hand-off until the chain stops; the legs' answers
        (a start's own answer is left out)."""
        answers = [self.invoke(first)]
        while self.invoker.calls and len(answers) < max_legs:
            answers.append(self.invoke(self.invoker.pop()))
        return [a for a in answers if not a.get("ok") or a["results"][0]["action"] == "leg"]

    def result_indices(self, run_id: str) -> list[int]:
        return [row["index"] for row in self.store.rows(run_id)]

    def summary(self, run_id: str) -> dict[str, Any]:
        summary = self.store.load_summary(run_id)
        assert summary is not None, f"run {run_id} has no summary"
        return summary

    def checkpoint(self, run_id: str, chain: str = "0000") -> dict[str, Any]:
        return asdict(self.store.load_checkpoint(run_id, chain).checkpoint)


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "batch_size": 5,
        "concurrency": 2,
        "margin_ms": 1_000,
        "adaptive_margin": False,
        "check_recursion": False,
        "lease_slack_ms": 0,
    }
    base.update(overrides)
    return Settings(**base)
