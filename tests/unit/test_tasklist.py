"""Task lists too large to hold: a sparse index, windows by ranged GET, the index persisted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cache import ObjectCache
from tests.conftest import put_tasks
from worker.config import Settings
from worker.exceptions import ConfigError, InputChangedError, TaskListError
from worker.s3 import ObjectStore
from worker.tasks import (
    MAX_TASK_BYTES,
    IndexedTaskList,
    JsonlIndex,
    decode_index,
    encode_index,
    index_jsonl,
    index_key,
    load_task_list,
    parse_task_list,
)

INDEXED = Settings(index_threshold_bytes=0)
KEY = "tasks/big.jsonl"
URLS = [f"https://example.com/{i}" for i in range(200)]

BODIES = {
    "plain": b'"https://a/"\n{"url": "https://b/", "id": 1}\n"https://c/"\n',
    "blank lines": b'\n\n"https://a/"\n\n  \t\n{"url": "https://b/"}\n\n\n"https://c/"\n\n',
    "no final newline": b'"https://a/"\n"https://b/"',
    "crlf": b'"https://a/"\r\n\r\n{not json\r\n"https://c/"\r\n',
    "lone cr": b'"https://a/"\r"https://b/"\r\r{bad\r',
    "bom": b'\xef\xbb\xbf"https://a/"\n{oops\n',
    "bad entries": b'1\nnull\n{"id": 3}\n{"url": 5}\n""\n{"url": "x", "id": [1]}\n"https://ok/"\n',
    "duplicate ids": b"".join(
        json.dumps({"url": f"https://e/{i}", "id": f"k{i % 7}"}).encode() + b"\n" for i in range(40)
    ),
    "oversized line": b'"https://ok/"\n'
    + json.dumps("https://a/" + "x" * 2 * MAX_TASK_BYTES).encode()
    + b'\n   \n"https://last/"',
    "oversized blank line": b'"https://a/"\n' + b" " * 2 * MAX_TASK_BYTES + b'\n"https://b/"\n',
}
SHORT_LINES = b'"a"\r\n"abcdefghij"\r\n  \t   \t  \r\n{"url":"b"}\r"c"\r\r\n[1,\n"abcdefghij"\r"d"'
"""Lines around a MAX_TASK_BYTES of 8, so that a long line spans many short chunks."""


def chunked(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def read_window(index: JsonlIndex, body: bytes, start: int, stop: int, chunk: int) -> list[Any]:
    first, last = index.byte_range(start, stop)
    return index.window(chunked(body[first : last + 1], chunk), start, stop)


def put_jsonl(s3: Any, bucket: str, urls: list[Any] = URLS, key: str = KEY) -> str:
    return put_tasks(s3, bucket, key, urls, jsonl=True)


def record_gets(s3: Any) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda params, **_: calls.append(params))
    return calls


@pytest.mark.parametrize("name", sorted(BODIES))
@pytest.mark.parametrize("stride", [1, 3, 64])
@pytest.mark.parametrize("chunk", [1, 2, 7])
def test_tasklist_indexed_and_whole_agree_on_every_task(name: str, stride: int, chunk: int) -> None:
    body = BODIES[name]
    if len(body) > MAX_TASK_BYTES:
        chunk *= 1021  # still cuts the long line many times, in far fewer pieces
    index = index_jsonl(chunked(body, chunk), len(body), stride)
    whole = parse_task_list(body)
    assert read_window(index, body, 0, len(whole), chunk) == whole
    for start in range(len(whole)):
        for stop in range(start + 1, min(len(whole), start + 2 * stride + 2) + 1):
            assert read_window(index, body, start, stop, chunk) == whole[start:stop]


def test_tasklist_long_lines_cut_anywhere_read_like_the_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("worker.tasks.MAX_TASK_BYTES", 8)
    whole = parse_task_list(SHORT_LINES)
    for chunk in range(1, len(SHORT_LINES) + 1):
        index = index_jsonl(chunked(SHORT_LINES, chunk), len(SHORT_LINES), 1)
        for start in range(len(whole)):
            assert read_window(index, SHORT_LINES, start, len(whole), chunk) == whole[start:]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"  \n\t\n", "empty"),
        (b"{bad\n{worse\n", "neither a JSON array nor JSONL: line 1"),
        (b'\n{"urls": 1}\n\n', "is a JSON object with keys"),
    ],
)
def test_tasklist_indexed_and_whole_fail_a_list_alike(body: bytes, message: str) -> None:
    with pytest.raises(TaskListError, match=message):
        parse_task_list(body)
    with pytest.raises(TaskListError, match=message):
        index_jsonl(chunked(body, 1), len(body), 64)


def test_tasklist_error_names_the_line_in_the_file_behind_leading_blank_lines() -> None:
    tasks = parse_task_list(b'\n\n"https://a/"\n{bad\n')
    assert str(tasks[1].error).startswith("line 4 is not valid JSON")


def test_tasklist_crlf_cut_between_chunks_is_one_line_break() -> None:
    body = b'"https://a/"\r\n{bad\r\n'
    index = index_jsonl([body[:13], body[13:]], len(body), 1)
    assert index.offsets.tolist() == [0, 14]
    assert str(read_window(index, body, 0, 2, 13)[1].error).startswith("line 2 ")


def test_tasklist_index_keeps_one_offset_per_stride() -> None:
    body = b"".join(b'"https://e/%d"\n' % i for i in range(1000))
    index = index_jsonl([body], len(body), 64)
    assert (index.count, len(index.offsets), len(index.blank_points)) == (1000, 16, 0)


@pytest.mark.parametrize("before", [b"", b"\xef\xbb\xbf", b"\n\t "])
def test_tasklist_large_json_array_is_refused_with_a_hint_to_use_jsonl(before: bytes) -> None:
    body = before + json.dumps(URLS).encode()
    with pytest.raises(TaskListError, match=r"JSON array too large.*jq -c"):
        index_jsonl(chunked(body, 100), len(body), 64)


def test_tasklist_pretty_printed_object_fails_the_indexed_list() -> None:
    body = json.dumps({"url": "https://a/", "tags": ["https://b/"]}, indent=2).encode()
    with pytest.raises(TaskListError, match="spread over several lines"):
        index_jsonl([body], len(body), 64)


def test_tasklist_index_round_trips_through_its_binary_format() -> None:
    body = BODIES["duplicate ids"] + b"\n\n" + BODIES["blank lines"]
    index = index_jsonl([body], len(body), 3)
    assert decode_index(encode_index('"etag"', index)) == ('"etag"', index)


@pytest.mark.parametrize("damage", ["flip", "truncate", "version"])
def test_tasklist_damaged_index_bytes_are_refused(damage: str) -> None:
    body = BODIES["plain"]
    data = bytearray(encode_index('"e"', index_jsonl([body], len(body), 1)))
    if damage == "flip":
        data[-9] ^= 1
    elif damage == "truncate":
        del data[-12:]
    else:
        data[8] = 9
    with pytest.raises(ValueError, match=r"checksum|too short|version|length"):
        decode_index(bytes(data))


def test_tasklist_small_list_is_read_whole(s3: Any, bucket: str) -> None:
    etag = put_jsonl(s3, bucket)
    tasks, hit = load_task_list(
        ObjectCache(), ObjectStore(s3), bucket, KEY, etag, settings=Settings()
    )
    assert (type(tasks), len(tasks), hit) == (list, 200, False)


def test_tasklist_large_list_is_indexed_and_slices_like_the_whole(s3: Any, bucket: str) -> None:
    etag = put_jsonl(s3, bucket)
    tasks, _ = load_task_list(ObjectCache(), ObjectStore(s3), bucket, KEY, etag, settings=INDEXED)
    whole = parse_task_list(s3.get_object(Bucket=bucket, Key=KEY)["Body"].read())
    assert isinstance(tasks, IndexedTaskList)
    assert len(tasks) == len(whole)
    for start, stop in [(0, 1), (63, 65), (64, 128), (60, 200), (190, 500), (5, 5), (-3, None)]:
        assert tasks[start:stop] == whole[start:stop]
    assert (tasks[0], tasks[127], tasks[-1]) == (whole[0], whole[127], whole[-1])


def test_tasklist_index_out_of_range_is_an_index_error(s3: Any, bucket: str) -> None:
    tasks, _ = load_task_list(
        ObjectCache(), ObjectStore(s3), bucket, KEY, put_jsonl(s3, bucket), settings=INDEXED
    )
    with pytest.raises(IndexError, match="out of range"):
        tasks[200]


def test_tasklist_window_is_one_pinned_ranged_get(s3: Any, bucket: str) -> None:
    etag = put_jsonl(s3, bucket)
    tasks, _ = load_task_list(ObjectCache(), ObjectStore(s3), bucket, KEY, etag, settings=INDEXED)
    calls = record_gets(s3)
    tasks[70:90]
    (call,) = calls
    assert call["headers"]["If-Match"] == etag
    assert call["headers"]["Range"].startswith("bytes=")


def test_tasklist_window_after_the_list_changed_is_input_changed_error(
    s3: Any, bucket: str
) -> None:
    etag = put_jsonl(s3, bucket)
    tasks, _ = load_task_list(ObjectCache(), ObjectStore(s3), bucket, KEY, etag, settings=INDEXED)
    put_jsonl(s3, bucket, URLS[::-1])
    with pytest.raises(InputChangedError, match="no longer the pinned version"):
        tasks[10:20]


def test_tasklist_warm_load_revalidates_with_a_304_hit(s3: Any, bucket: str) -> None:
    etag = put_jsonl(s3, bucket)
    cache = ObjectCache()
    load_task_list(cache, ObjectStore(s3), bucket, KEY, etag, settings=INDEXED)
    calls = record_gets(s3)
    tasks, hit = load_task_list(cache, ObjectStore(s3), bucket, KEY, etag, settings=INDEXED)
    assert hit is True
    assert [c["headers"].get("If-None-Match") for c in calls] == [etag]
    assert len(tasks) == 200


def test_tasklist_warm_load_of_a_changed_list_is_input_changed_error(s3: Any, bucket: str) -> None:
    etag = put_jsonl(s3, bucket)
    cache = ObjectCache()
    load_task_list(cache, ObjectStore(s3), bucket, KEY, etag, settings=INDEXED)
    put_jsonl(s3, bucket, URLS[:10])
    with pytest.raises(InputChangedError, match="changed"):
        load_task_list(cache, ObjectStore(s3), bucket, KEY, etag, settings=INDEXED)


def test_tasklist_persisted_index_is_reused_by_a_fresh_cache(s3: Any, bucket: str) -> None:
    etag = put_jsonl(s3, bucket)
    load_task_list(ObjectCache(), ObjectStore(s3), bucket, KEY, etag, settings=INDEXED)
    stored = s3.get_object(Bucket=bucket, Key=index_key("runs/", bucket, KEY, etag))
    calls = record_gets(s3)
    fresh = ObjectCache()
    tasks, hit = load_task_list(fresh, ObjectStore(s3), bucket, KEY, etag, settings=INDEXED)
    assert hit is False
    assert [c["url_path"].endswith(".idx") for c in calls] == [False, True]
    assert fresh.stats.bytes_downloaded == stored["ContentLength"] < s3_size(s3, bucket)
    assert tasks[150:152] == parse_task_list(s3_body(s3, bucket))[150:152]


def test_tasklist_index_is_persisted_once_by_whoever_builds_it(s3: Any, bucket: str) -> None:
    etag = put_jsonl(s3, bucket)
    puts: list[str] = []
    s3.meta.events.register("before-call.s3.PutObject", lambda params, **_: puts.append("put"))
    for _ in range(3):
        load_task_list(ObjectCache(), ObjectStore(s3), bucket, KEY, etag, settings=INDEXED)
    assert puts == ["put"]


@pytest.mark.parametrize("stored", [b"garbage", b"BATONIDX" + bytes(80)])
def test_tasklist_corrupt_persisted_index_is_ignored_and_rebuilt(
    s3: Any, bucket: str, stored: bytes
) -> None:
    etag = put_jsonl(s3, bucket)
    where = index_key("runs/", bucket, KEY, etag)
    s3.put_object(Bucket=bucket, Key=where, Body=stored)
    cache = ObjectCache()
    tasks, _ = load_task_list(cache, ObjectStore(s3), bucket, KEY, etag, settings=INDEXED)
    assert cache.stats.bytes_downloaded == s3_size(s3, bucket)
    assert decode_index(s3_body(s3, bucket, where))[0] == etag
    assert tasks[199].url == URLS[199]


def test_tasklist_persisted_index_of_another_version_is_ignored(s3: Any, bucket: str) -> None:
    etag = put_jsonl(s3, bucket)
    other = index_jsonl([b'"https://x/"\n'], 13, 64)
    s3.put_object(
        Bucket=bucket, Key=index_key("runs/", bucket, KEY, etag), Body=encode_index('"old"', other)
    )
    tasks, _ = load_task_list(ObjectCache(), ObjectStore(s3), bucket, KEY, etag, settings=INDEXED)
    assert len(tasks) == 200


def test_config_index_threshold_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="index_threshold_bytes must be >= 0"):
        Settings.from_env({"BATON_INDEX_THRESHOLD_BYTES": "-1"})


def s3_body(s3: Any, bucket: str, key: str = KEY) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def s3_size(s3: Any, bucket: str) -> int:
    return int(s3.head_object(Bucket=bucket, Key=KEY)["ContentLength"])
