"""The checkpoint and hand-off state machine under hypothesis.

Rules deliver leg payloads (in one container, or in a second one while the
first is mid-batch), duplicate and drop them, kill the leg that is working (it
never releases the run; Lambda retries its event), let time pass so leases run
out, tick the sweep and cancel the run. Invariants, after every step: a task is
only ever worked by the owner of the checkpoint, on a live lease; the position
never moves back; no index is ever in the results twice and none below the
checkpoint is missing. At the end, with only deliveries and sweeps left, the run
terminates, and a finished run holds every index exactly once.

S3 is a small in-memory fake with S3's conditional semantics (ETags are content
MD5s, as S3's are), and the wall clock is a fake one, so an example runs in
milliseconds.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import ClientError
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cache import clear_caches
from tests.fakes import Killed, RecordingInvoker
from worker.checkpoint import TERMINAL, Checkpoint
from worker.config import Settings
from worker.container import Container
from worker.dispatch import dispatch
from worker.processor import TaskContext
from worker.store import RunStore
from worker.tasks import Task

BUCKET = "chaos-properties"
KEY = "tasks/list.jsonl"
TASKS = 24
TIMEOUT_MS = 1_000
TASK_MS = 100
SETTINGS = Settings(
    bucket=BUCKET,
    batch_size=3,
    concurrency=1,
    margin_ms=300,
    adaptive_margin=False,
    lease_slack_ms=50,
    stall_after_ms=500,
    max_task_attempts=2,
    check_recursion=False,
    metrics=False,
)
_examples = itertools.count()
DIE_BEFORE, DIE_AFTER, LOSE_ANSWER = "die before", "die after", "lose answer"
"""S3 write faults: the process dies before or after the write lands, or the write lands
and its answer is lost (the client retries it)."""


# --------------------------------------------------------------------------------------
# Fakes: S3 with conditional requests, a wall clock, a Lambda context
# --------------------------------------------------------------------------------------


def _error(code: str, status: int, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, amount: int | None = None) -> bytes:
        data, self._data = self._data, b""
        return data

    def iter_chunks(self, size: int = 1024) -> Iterator[bytes]:
        data = self.read()
        for at in range(0, len(data), size):
            yield data[at : at + size]

    def close(self) -> None:
        pass


class FakeS3:
    """The S3 calls baton makes, with If-Match / If-None-Match as S3 answers them."""

    def __init__(self, fault: Callable[[str], str | None] = lambda key: None) -> None:
        self.objects: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.fault = fault
        """Asked before each write: None, or how the writer dies or loses the answer."""

    @staticmethod
    def etag(data: bytes) -> str:
        return f'"{hashlib.md5(data).hexdigest()}"'

    def put_object(self, **kw: Any) -> dict[str, Any]:
        return self._write(kw["Key"], lambda: self._put(**kw))

    def delete_object(self, **kw: Any) -> dict[str, Any]:
        return self._write(kw["Key"], lambda: self._delete(kw["Key"]))

    def _write(self, key: str, write: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        fault = self.fault(key)
        if fault == DIE_BEFORE:
            raise Killed(f"killed before writing {key}")
        answer = write()
        if fault == DIE_AFTER:
            raise Killed(f"killed after writing {key}")
        if fault == LOSE_ANSWER:
            return write()  # botocore's retry of a request whose answer was lost
        return answer

    def _delete(self, key: str) -> dict[str, Any]:
        with self.lock:
            self.objects.pop(key, None)
        return {}

    def _put(self, **kw: Any) -> dict[str, Any]:
        body = kw["Body"]
        data = body if isinstance(body, bytes) else str(body).encode()
        with self.lock:
            held = self.objects.get(kw["Key"])
            if kw.get("IfNoneMatch") == "*" and held is not None:
                raise _error("PreconditionFailed", 412, "PutObject")
            if "IfMatch" in kw and (held is None or self.etag(held) != kw["IfMatch"]):
                raise _error("PreconditionFailed", 412, "PutObject")
            self.objects[kw["Key"]] = data
        return {"ETag": self.etag(data)}

    def get_object(self, **kw: Any) -> dict[str, Any]:
        with self.lock:
            data = self.objects.get(kw["Key"])
        if data is None:
            raise _error("NoSuchKey", 404, "GetObject")
        if "IfMatch" in kw and self.etag(data) != kw["IfMatch"]:
            raise _error("PreconditionFailed", 412, "GetObject")
        if "IfNoneMatch" in kw and self.etag(data) == kw["IfNoneMatch"]:
            raise _error("304", 304, "GetObject")
        if "Range" in kw:
            first, _, last = str(kw["Range"]).removeprefix("bytes=").partition("-")
            data = data[int(first) : int(last) + 1]
        return {"Body": _Body(data), "ETag": self.etag(data), "ContentLength": len(data)}

    def head_object(self, **kw: Any) -> dict[str, Any]:
        with self.lock:
            data = self.objects.get(kw["Key"])
        if data is None:
            raise _error("404", 404, "HeadObject")
        return {"ETag": self.etag(data), "ContentLength": len(data)}

    def list_objects_v2(self, **kw: Any) -> dict[str, Any]:
        prefix = kw.get("Prefix", "")
        after = kw.get("StartAfter", "")
        with self.lock:
            keys = sorted(k for k in self.objects if k.startswith(prefix) and k > after)
        if "Delimiter" in kw:
            common = sorted({prefix + k[len(prefix) :].split("/", 1)[0] + "/" for k in keys})
            return {"CommonPrefixes": [{"Prefix": p} for p in common]}
        return {"Contents": [{"Key": k} for k in keys]}


@dataclass
class Clock:
    now: int = 1_800_000_000_000

    def now_ms(self) -> int:
        return self.now

    def monotonic(self) -> float:
        return self.now / 1000

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@dataclass
class Context:
    clock: Clock
    aws_request_id: str
    deadline_ms: int
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:baton"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - self.clock.now)


@dataclass
class Invocation:
    """What the processor knows of the leg it is working for."""

    context: Context
    kill_at: int | None = None
    """Die during this task of the leg (a crash or Lambda's kill)."""
    nest_at: int | None = None
    """During this task, deliver another event in the second container."""
    write_fault: tuple[int, str] | None = None
    """At this S3 write of the invocation, this fault."""
    tasks: int = 0
    writes: int = 0


@dataclass
class Pending:
    payload: dict[str, Any]
    retries: int = 0


# --------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------


class ChainMachine(RuleBasedStateMachine):
    SETTINGS = SETTINGS

    def __init__(self) -> None:
        super().__init__()
        clear_caches()
        self.example = next(_examples)
        self.clock = Clock()
        self.s3 = FakeS3(self.write_fault)
        self.store = RunStore.over(self.s3, BUCKET, self.SETTINGS.results_prefix)
        self.invoker = RecordingInvoker()
        self.notifier = CheckingNotifier(self)
        self.containers = [
            Container.create(
                self.SETTINGS,
                s3=self.s3,
                lambda_client=object(),
                invoker=self.invoker,
                clock=self.clock,
                notifier=self.notifier,
            )
            for _ in range(2)
        ]
        for container in self.containers:
            container.processor = self.process
        self.requests = itertools.count()
        self.working: list[Invocation] = []
        self.violations: list[str] = []
        self.highest: dict[str, int] = {}
        self.status: dict[str, str] = {}
        self.cancelled = False
        body = "".join(json.dumps(f"https://example.com/{i}") + "\n" for i in range(TASKS))
        etag = self.s3.put_object(Bucket=BUCKET, Key=KEY, Body=body.encode())["ETag"]
        self.upload = self.upload_event(etag)
        self.pending = [Pending(self.upload)]

    def teardown(self) -> None:
        try:
            self.drive_to_the_end()
        finally:
            for container in self.containers:
                container.close()

    def upload_event(self, etag: str) -> dict[str, Any]:
        obj = {"key": KEY, "eTag": etag.strip('"'), "sequencer": f"{self.example:016X}"}
        record = {"bucket": {"name": BUCKET}, "object": obj}
        return {
            "Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": record}]
        }

    # the processor: every task checks that its leg owns the chain whose range holds it
    # (an assert here would only become the task's error row, so violations are kept)
    def process(self, task: Task, ctx: TaskContext) -> dict[str, Any]:
        invocation = self.working[-1]
        request = invocation.context.aws_request_id
        holders = [cp for cp in self.chains() if cp.start <= task.index < cp.range_end]
        if len(holders) != 1:
            ranges = [(cp.chain, cp.start, cp.range_end) for cp in self.chains()]
            self.violations.append(f"task {task.index} is in {len(holders)} ranges: {ranges}")
        else:
            [cp] = holders
            if cp.owner is None or not cp.owner.startswith(request + "/"):
                self.violations.append(
                    f"task {task.index} worked by {request} while {cp.owner} owns {cp.chain}"
                )
            elif self.clock.now >= cp.lease_until_ms:
                self.violations.append(f"task {task.index} worked by {request} on an expired lease")
        invocation.tasks += 1
        if invocation.nest_at == invocation.tasks and self.pending:
            self.deliver_in(1, self.pending.pop(0))
        self.clock.now += TASK_MS
        if (
            invocation.kill_at == invocation.tasks
            or self.clock.now >= invocation.context.deadline_ms
        ):
            raise Killed(f"{request} killed at task {task.index}")
        return {"echo": task.url}

    def write_fault(self, key: str) -> str | None:
        if not self.working or self.working[-1].write_fault is None:
            return None
        invocation = self.working[-1]
        invocation.writes += 1
        at, fault = invocation.write_fault
        return fault if invocation.writes == at else None

    def deliver_in(
        self,
        container: int,
        item: Pending,
        kill_at: int | None = None,
        nest_at: int | None = None,
        write_fault: tuple[int, str] | None = None,
    ) -> None:
        request = f"req-{next(self.requests)}"
        context = Context(self.clock, request, self.clock.now + TIMEOUT_MS)
        self.working.append(Invocation(context, kill_at, nest_at, write_fault))
        try:
            answer = dispatch(self.containers[container], item.payload, context)
            for outcome in answer.get("results", []):
                event(f"leg exit: {outcome.get('exit', outcome.get('action'))}")
        except Killed:
            event("leg killed")
            if item.retries < 2:  # Lambda's async retries of a failed invocation
                self.pending.append(Pending(item.payload, item.retries + 1))
        finally:
            self.working.pop()
        self.pending.extend(Pending(payload) for _, payload in self.invoker.calls)
        self.invoker.calls.clear()

    # rules
    @precondition(lambda self: self.pending)
    @rule(
        data=st.data(),
        kill_at=st.none() | st.integers(1, 9),
        nest_at=st.none() | st.integers(1, 3),
        write_fault=st.none()
        | st.tuples(st.integers(1, 8), st.sampled_from([DIE_BEFORE, DIE_AFTER, LOSE_ANSWER])),
    )
    def deliver(
        self,
        data: st.DataObject,
        kill_at: int | None,
        nest_at: int | None,
        write_fault: tuple[int, str] | None,
    ) -> None:
        item = self.pending.pop(data.draw(st.integers(0, len(self.pending) - 1)))
        self.deliver_in(0, item, kill_at, nest_at, write_fault)

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        item = self.pending[data.draw(st.integers(0, len(self.pending) - 1))]
        self.pending.append(Pending(item.payload))

    @precondition(lambda self: any("v" in item.payload for item in self.pending))
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        legs = [i for i, item in enumerate(self.pending) if "v" in item.payload]
        self.pending.pop(data.draw(st.sampled_from(legs)))

    @rule(ms=st.integers(1, 3 * TIMEOUT_MS))
    def advance(self, ms: int) -> None:
        self.clock.now += ms

    @rule()
    def sweep(self) -> None:
        self.deliver_in(1, Pending({"action": "sweep"}))

    @precondition(lambda self: not self.cancelled and self.run_id() is not None)
    @rule(die=st.integers(0, 9))
    def cancel(self, die: int) -> None:
        """Now and then: a cancelled run stops exploring."""
        run_id = self.run_id()
        if die != 7 or run_id is None:
            return
        self.store.request_cancel(run_id)
        self.cancelled = True

    # invariants
    @invariant()
    def only_the_owner_works_and_only_on_a_live_lease(self) -> None:
        assert not self.violations, self.violations

    @invariant()
    def position_only_moves_forward_and_an_end_is_final(self) -> None:
        for cp in self.chains():
            highest = self.highest.get(cp.chain, cp.start)
            assert cp.position >= highest, f"{cp.chain} moved back: {highest} -> {cp.position}"
            self.highest[cp.chain] = cp.position
            ended = self.status.get(cp.chain)
            if ended in TERMINAL:
                assert cp.status == ended, f"{cp.chain} ended {ended}, then became {cp.status}"
            self.status[cp.chain] = cp.status

    @invariant()
    def results_hold_each_index_at_most_once_and_nothing_below_a_checkpoint_is_missing(
        self,
    ) -> None:
        run_id = self.run_id()
        if run_id is None:
            return
        indices = self.result_indices(run_id)
        assert len(indices) == len(set(indices)), f"an index is in the results twice: {indices}"
        for cp in self.chains():
            missing = set(range(cp.start, cp.position)) - set(indices) - set(cp.holes)
            assert not missing, f"below {cp.chain}'s position {cp.position}: {sorted(missing)}"

    # the end
    def drive_to_the_end(self) -> None:
        """Only deliveries and sweeps now (Lambda and the schedule): the run must end."""
        if self.run_id() is None and not self.pending:
            self.pending.append(Pending(self.upload))  # redriven from the dead-letter queue
        for _ in range(300):
            run_id = self.run_id()
            if run_id is not None and self.store.load_summary(run_id) and self.notifier.sent:
                break  # a notice a dead leg did not send goes out with a later sweep
            if self.pending:
                self.deliver_in(0, self.pending.pop(0))
            else:
                settle = TIMEOUT_MS + self.SETTINGS.lease_slack_ms + self.SETTINGS.stall_after_ms
                self.clock.now += settle
                self.sweep()
            self.position_only_moves_forward_and_an_end_is_final()
        self.only_the_owner_works_and_only_on_a_live_lease()
        run_id = self.run_id()
        assert run_id is not None, "the upload never started a run"
        chains = self.chains()
        event(f"run of {len(chains)} ranges ended after {sum(cp.leg + 1 for cp in chains)} legs")
        assert all(cp.status in TERMINAL for cp in chains), f"the run never ended: {chains}"
        indices = self.result_indices(run_id)
        worked = {i for cp in chains for i in range(cp.start, cp.position)}
        assert sorted(indices) == sorted(worked), "results are not exactly once"
        if any(cp.status != "done" for cp in chains):
            assert self.cancelled, chains
            assert {cp.status for cp in chains} <= {"done", "cancelled"}, chains
        else:
            assert sorted(indices) == list(range(TASKS))
        summary = self.store.load_summary(run_id)
        assert summary is not None, "every range ended, and no summary"
        assert summary["ok"] + summary["failed"] == len(indices)
        assert self.notifier.sent, "the run ended and no notice was sent"
        assert not self.notifier.early, self.notifier.early

    # helpers
    def run_id(self) -> str | None:
        runs = [k for k in self.s3.objects if k.endswith("/run.json")]
        return runs[0].split("/")[1] if runs else None

    def chains(self) -> list[Checkpoint]:
        run_id = self.run_id()
        return [] if run_id is None else self.store.load_chains(run_id)

    def result_indices(self, run_id: str) -> list[int]:
        return [row["index"] for row in self.store.rows(run_id)]


class CheckingNotifier:
    """Takes completion notices, and notes any sent before every range of the run ended."""

    def __init__(self, machine: ChainMachine) -> None:
        self.machine = machine
        self.sent: list[dict[str, Any]] = []
        self.early: list[str] = []

    def send(self, detail: dict[str, Any]) -> list[str]:
        unfinished = [cp.chain for cp in self.machine.chains() if not cp.finished]
        if unfinished:
            self.early.append(f"notice for {detail.get('run_id')} while {unfinished} run")
        self.sent.append(detail)
        return ["recorded"]

    # helpers
    def run_id(self) -> str | None:
        runs = [k for k in self.s3.objects if k.endswith("/checkpoint.json")]
        return runs[0].split("/")[1] if runs else None

    def checkpoint(self) -> Checkpoint | None:
        run_id = self.run_id()
        if run_id is None:
            return None
        return self.store.load_checkpoint(run_id).checkpoint

    def result_indices(self, run_id: str) -> list[int]:
        return [row["index"] for row in self.store.rows(run_id)]


class FanOutMachine(ChainMachine):
    """The same rules over a run of three chains: splits, steals and completion among
    the crashes, duplicates and lost answers."""

    SETTINGS = replace(SETTINGS, chains=3)


MACHINE_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
ChainMachine.TestCase.settings = MACHINE_SETTINGS
FanOutMachine.TestCase.settings = MACHINE_SETTINGS
test_chaos_properties_chain_state_machine = ChainMachine.TestCase
test_chaos_properties_fan_out_state_machine = FanOutMachine.TestCase
