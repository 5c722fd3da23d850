"""Hostile input over the real path: uploads through S3 events, payloads through the Invoke API.

The parsers have unit tests (test_events.py, test_tasks.py); these check the path
around them: the answer comes back through Lambda, bad input is answered and not
raised (so Lambda never retries it), and nothing is started or written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.chaos import ChaosConfig, ChaosStack
from devstack.lambda_runtime import FunctionStats, log_record
from tests.chaos.conftest import StartChaos
from worker.tasks import MAX_TASK_BYTES

pytestmark = pytest.mark.chaos

GOOD = "https://chaos.invalid/entries/ok"


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosStack]:
    with ChaosStack(ChaosConfig.quiet(), tmp_path_factory.mktemp("bad-input")) as running:
        yield running


@pytest.fixture(scope="module")
def listed(chaos: ChaosStack) -> str:
    """A five-task list that manual payloads can point at."""
    tasks = [f"https://chaos.invalid/listed/{i}" for i in range(5)]
    chaos.s3.put_object(Bucket=chaos.bucket, Key="lists/five.json", Body=json.dumps(tasks))
    return "lists/five.json"


def stats(chaos: ChaosStack) -> FunctionStats:
    return chaos.stack.runtime.stats(chaos.stack.function.name)


def rejections(chaos: ChaosStack) -> list[str]:
    lines = chaos.log_path.read_text().splitlines() if chaos.log_path.exists() else []
    found = []
    for raw in lines:
        _, line = log_record(raw)
        message = str(line.get("message", "")) if line is not None else ""
        if message.startswith("rejected event: "):
            found.append(message.removeprefix("rejected event: "))
    return found


def invoke(chaos: ChaosStack, payload: Any, kind: str = "RequestResponse") -> Any:
    client = chaos.stack.lambda_client()
    try:
        response = client.invoke(
            FunctionName=chaos.stack.function.name,
            InvocationType=kind,
            Payload=json.dumps(payload).encode(),
        )
        assert "FunctionError" not in response
        body = response["Payload"].read()
    finally:
        client.close()
    return json.loads(body) if body else None


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("empty.jsonl", b"", "task list is empty"),
        ("blank.jsonl", b"  \n\n", "task list is empty"),
        ("none.json", b"[]", "task list has no tasks"),
        ("truncated.json", b'["https://a.example/", "https://b.exa', "not valid JSON"),
        ("object.json", b'{"urls": ["https://a.example/"]}', "is a JSON object with keys"),
        ("garbage.jsonl", b"not json\n{also not\n", "neither a JSON array nor JSONL"),
        ("binary.jsonl", bytes(range(256)) * 64, "neither a JSON array nor JSONL"),
        ("deep.json", b"[" * 100_000, "nests arrays or objects too deeply"),
    ],
)
def test_bad_input_unreadable_upload_fails_its_run_with_the_reason_and_runs_nothing(
    chaos: ChaosStack, name: str, body: bytes, message: str
) -> None:
    before = stats(chaos)
    seen = len(rejections(chaos))

    etag = chaos.uploader.put_object(Bucket=chaos.bucket, Key=f"tasks/{name}", Body=body)["ETag"]
    assert chaos.stack.runtime.wait_idle(30)

    after = stats(chaos)
    assert (after.errors, after.retries) == (before.errors, before.retries)
    [reason] = rejections(chaos)[seen:]
    assert message in reason
    [run_id] = chaos.store.runs_for_source(f"tasks/{name}", etag)
    cp = chaos.store.load_checkpoint(run_id).checkpoint
    assert (cp.status, cp.total) == ("failed", 0)
    assert message in str(cp.reason)
    assert list(chaos.store.result_keys(run_id)) == []
    assert run_id not in set(chaos.store.active_runs())
    summary = chaos.store.load_summary(run_id)
    assert summary is not None
    assert summary["status"] == "failed"


def test_bad_input_bad_entries_fail_only_their_task(chaos: ChaosStack) -> None:
    lines = [
        json.dumps(GOOD),
        "{not json",
        "42",
        "null",
        json.dumps({"id": "no-url"}),
        json.dumps({"url": 5}),
        json.dumps(""),
        json.dumps(GOOD + "/" + "x" * (MAX_TASK_BYTES * 3)),
        json.dumps({"url": GOOD, "id": "same"}),
        json.dumps({"url": GOOD, "id": "same"}),
        json.dumps({"url": GOOD + "/" + "y" * 9000}),
        json.dumps({"url": GOOD, "id": [1]}),
        json.dumps({"url": GOOD, "unknown": {"nested": True}}),
    ]
    source = chaos.upload_body("entries", ("\n".join(lines) + "\n").encode(), len(lines))
    chaos.wait([source], 60)

    check = chaos.check(source)
    assert check.finished
    assert check.problems == []
    errors = {row["index"]: row["error"] for row in chaos.rows(str(check.run_id))}
    assert [i for i, error in sorted(errors.items()) if error is None] == [0, 8, 12]
    assert "line 2 is not valid JSON" in errors[1]
    assert "got int" in errors[2]
    assert "got null" in errors[3]
    assert "needs a string 'url'" in errors[4]
    assert "needs a string 'url'" in errors[5]
    assert errors[6] == "task URL is empty"
    assert f"(max {MAX_TASK_BYTES})" in errors[7]
    assert errors[9] == "duplicate id 'same', first used by task 8"
    assert "longer than 8192" in errors[10]
    assert "'id' must be a string or an integer" in errors[11]
    summary = chaos.store.load_summary(str(check.run_id))
    assert summary is not None
    assert (summary["ok"], summary["failed"]) == (3, 10)


Payload = Callable[[str, str], Any]


@pytest.mark.parametrize(
    ("payload", "error_type", "message"),
    [
        (lambda b, k: [b, k], "BadEventError", "event must be a JSON object, got list"),
        (lambda b, k: "go", "BadEventError", "event must be a JSON object, got str"),
        (lambda b, k: {"bucket": b, "key": k, "position": -1}, "BadEventError", "non-negative"),
        (lambda b, k: {"bucket": b, "key": k, "position": 10**10}, "BadEventError", "larger than"),
        (lambda b, k: {"bucket": b, "key": k, "position": 6}, "BadEventError", "past the end"),
        (
            lambda b, k: {"bucket": b, "key": k, "position": 0, "tasks": ["x"]},
            "BadEventError",
            "unknown fields ['tasks']",
        ),
        (
            lambda b, k: {"bucket": b, "key": k, "position": 0, "run_id": "../x"},
            "BadEventError",
            "malformed run_id",
        ),
        (
            lambda b, k: {"bucket": b, "key": k, "position": 0, "run_id": "five-0123456789ab"},
            "RunNotFoundError",
            "no run 'five-0123456789ab'",
        ),
        (
            lambda b, k: {"bucket": b, "key": "runs/any/results/0-1.jsonl", "position": 0},
            "BadEventError",
            "under the results prefix runs/",
        ),
        (
            lambda b, k: {"bucket": b, "key": "lists/missing.json", "position": 0},
            "TaskListError",
            "does not exist",
        ),
        (
            lambda b, k: {"v": 3, "run_id": "five-0123456789ab", "leg": 1},
            "BadEventError",
            "version 3 is not supported",
        ),
        (
            lambda b, k: {
                "v": 1,
                "run_id": "five-0123456789ab",
                "bucket": b,
                "key": k,
                "etag": '"e"',
                "position": 0,
                "leg": 1,
            },
            "RunNotFoundError",
            "no run 'five-0123456789ab'",
        ),
    ],
)
def test_bad_input_invoke_payload_is_answered_and_starts_nothing(
    chaos: ChaosStack, listed: str, payload: Payload, error_type: str, message: str
) -> None:
    runs = set(chaos.store.run_ids())

    answer = invoke(chaos, payload(chaos.bucket, listed))

    assert answer["ok"] is False
    assert answer["error_type"] == error_type
    assert message in answer["error"]
    assert set(chaos.store.run_ids()) == runs


def test_bad_input_async_bad_payload_is_not_retried(chaos: ChaosStack, listed: str) -> None:
    before = stats(chaos)

    invoke(chaos, {"bucket": chaos.bucket, "key": listed, "position": -1}, kind="Event")
    assert chaos.stack.runtime.wait_idle(30)

    after = stats(chaos)
    assert (after.errors, after.retries, after.failed_events) == (
        before.errors,
        before.retries,
        before.failed_events,
    )


@pytest.mark.parametrize(
    ("change", "exit"),
    [({"etag": '"0123"'}, "stale"), ({"leg": 7, "position": 1}, "already_finished")],
)
def test_bad_input_leg_payload_that_does_not_match_the_run_changes_nothing(
    chaos: ChaosStack, change: dict[str, Any], exit: str
) -> None:
    source = chaos.upload(f"finished-{exit}", chaos.tasks("finished", 8))
    run_id = chaos.run_id(source)
    assert run_id is not None
    chaos.wait_status(run_id)
    assert chaos.stack.runtime.wait_idle(30)
    state = chaos.store.load_checkpoint(run_id).etag, sorted(chaos.store.result_keys(run_id))
    record = chaos.store.load_run(run_id)
    payload = {
        "v": 1,
        "run_id": run_id,
        "bucket": chaos.bucket,
        "key": record.key,
        "etag": record.etag,
        "position": 8,
        "leg": 0,
        **change,
    }

    answer = invoke(chaos, payload)

    assert answer["ok"] is True
    assert answer["results"][0]["exit"] == exit
    assert answer["results"][0]["processed"] == 0
    after = chaos.store.load_checkpoint(run_id).etag, sorted(chaos.store.result_keys(run_id))
    assert after == state


def test_bad_input_list_with_a_line_of_megabytes_still_runs_the_rest(chaos: ChaosStack) -> None:
    huge = json.dumps({"url": GOOD, "blob": "z" * (4 * 1024 * 1024)})
    body = "\n".join([json.dumps(GOOD), huge, json.dumps(GOOD + "/2")]).encode()
    source = chaos.upload_body("huge", body, 3)
    chaos.wait([source], 60)

    check = chaos.check(source)
    assert check.finished
    errors = {row["index"]: row["error"] for row in chaos.rows(str(check.run_id))}
    assert errors[0] is None
    assert errors[2] is None
    assert "bytes (max" in errors[1]


def test_bad_input_a_deeply_nested_line_fails_only_its_task(chaos: ChaosStack) -> None:
    deep = '{"url": "' + GOOD + '", "o": ' + "[" * 20_000 + "]" * 20_000 + "}"
    body = "\n".join([json.dumps(GOOD), deep, json.dumps(GOOD + "/2")]).encode()
    source = chaos.upload_body("deep-line", body, 3)
    chaos.wait([source], 60)

    check = chaos.check(source)
    assert check.finished
    assert check.problems == []
    errors = {row["index"]: row["error"] for row in chaos.rows(str(check.run_id))}
    assert (errors[0], errors[2]) == (None, None)
    assert "line 2 is not valid JSON: it nests arrays or objects too deeply" in errors[1]


def test_bad_input_a_deeply_nested_line_of_an_indexed_list_fails_only_its_task(
    start_chaos: StartChaos,
) -> None:
    indexed = start_chaos(ChaosConfig.quiet(environment={"BATON_INDEX_THRESHOLD_BYTES": "64"}))
    lines = [json.dumps(f"{GOOD}/{i}") for i in range(6)]
    lines[3] = '{"id": "deep", "url": "' + GOOD + '", "o": ' + "[" * 20_000 + "}"
    source = indexed.upload_body("deep-indexed", ("\n".join(lines) + "\n").encode(), 6)
    indexed.wait([source], 60)

    check = indexed.check(source)
    assert check.finished
    assert check.problems == []
    errors = {row["index"]: row["error"] for row in indexed.rows(str(check.run_id))}
    assert [i for i, error in sorted(errors.items()) if error is not None] == [3]
    assert "nests arrays or objects too deeply" in errors[3]
