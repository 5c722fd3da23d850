"""Task lists: both formats, and bad entries that fail one task, not the run."""

from __future__ import annotations

import json

import pytest

from worker.exceptions import TaskListError
from worker.tasks import MAX_TASK_BYTES, Task, parse_task_list


def test_tasks_json_array_of_strings_and_objects() -> None:
    body = json.dumps(["https://a.example/", {"url": "https://b.example/", "id": 7, "depth": 2}])
    assert parse_task_list(body.encode()) == [
        Task(0, "https://a.example/"),
        Task(1, "https://b.example/", "7", {"depth": 2}),
    ]


def test_tasks_jsonl_skips_blank_lines_and_keeps_indices_dense() -> None:
    body = b'"https://a.example/"\n\n{"url": "https://b.example/"}\n'
    assert [t.index for t in parse_task_list(body)] == [0, 1]


def test_tasks_jsonl_with_a_byte_order_mark() -> None:
    assert parse_task_list(b'\xef\xbb\xbf"https://a.example/"\n')[0].url == "https://a.example/"


def test_tasks_malformed_jsonl_line_fails_only_that_task() -> None:
    tasks = parse_task_list(b'"https://a.example/"\n{not json\n"https://c.example/"\n')
    assert [t.error is None for t in tasks] == [True, False, True]
    assert "line 2 is not valid JSON" in str(tasks[1].error)


def test_tasks_wrong_types_fail_only_that_task() -> None:
    tasks = parse_task_list(
        json.dumps([1, None, {"id": 3}, {"url": 5}, "", {"url": "x", "id": [1]}]).encode()
    )
    errors = [t.error for t in tasks]
    assert all(errors)
    assert "got int" in str(errors[0])
    assert "got null" in str(errors[1])
    assert "needs a string 'url'" in str(errors[2])


def test_tasks_enormous_line_fails_only_that_task() -> None:
    huge = json.dumps("https://a.example/" + "x" * MAX_TASK_BYTES).encode()
    tasks = parse_task_list(b'"https://ok.example/"\n' + huge + b"\n")
    assert tasks[0].error is None
    assert "bytes (max" in str(tasks[1].error)


def test_tasks_duplicate_ids_fail_the_later_task() -> None:
    body = json.dumps([{"url": "https://a/", "id": "x"}, {"url": "https://b/", "id": "x"}])
    tasks = parse_task_list(body.encode())
    assert tasks[0].error is None
    assert tasks[1].error == "duplicate id 'x', first used by task 0"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"[]", "no tasks"),
        (b"[1, 2", "not valid JSON"),
        (b'{"url": "x"', "neither a JSON array nor JSONL"),
    ],
)
def test_tasks_unreadable_lists_fail_the_run_with_a_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(TaskListError, match=message):
        parse_task_list(body)


def test_tasks_a_pretty_printed_json_object_fails_the_run() -> None:
    body = json.dumps({"urls": ["https://a.example/"]}, indent=2).encode()
    with pytest.raises(TaskListError, match="is a JSON object with keys"):
        parse_task_list(body)


def test_tasks_a_one_line_json_object_fails_the_run() -> None:
    with pytest.raises(TaskListError, match="is a JSON object"):
        parse_task_list(b'{"urls": ["https://a.example/"]}')
