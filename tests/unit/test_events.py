"""Event recognition: real payloads in tests/events/, strict validation of the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from worker.events import (
    IgnoredEvent,
    LegEvent,
    StartRequest,
    SweepEvent,
    derive_run_id,
    parse_event,
)
from worker.exceptions import BadEventError

EVENTS = Path(__file__).parent.parent / "events"


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def parse(event: Any) -> list[Any]:
    return parse_event(event, "tasks/", "runs/")


def test_events_s3_put_decodes_the_url_encoded_key() -> None:
    (start,) = parse(load("s3_put.json"))
    assert start == StartRequest(
        bucket="baton-example",
        key="tasks/spring crawl, part 1.json",
        etag='"d41d8cd98f00b204e9800998ecf8427e"',
        nonce="0A1B2C3D4E5F678901",
        source="s3",
    )


def test_events_s3_keys_under_the_results_prefix_are_ignored() -> None:
    event = load("s3_put.json")
    event["Records"][0]["s3"]["object"]["key"] = "runs/abc/results/0000000000-0000000009.jsonl"
    (ignored,) = parse(event)
    assert isinstance(ignored, IgnoredEvent)
    assert "results prefix" in ignored.reason


def test_events_s3_keys_outside_the_tasks_prefix_are_ignored() -> None:
    event = load("s3_put.json")
    event["Records"][0]["s3"]["object"]["key"] = "elsewhere/list.json"
    assert isinstance(parse(event)[0], IgnoredEvent)


def test_events_s3_non_create_records_are_ignored() -> None:
    event = load("s3_put.json")
    event["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    assert isinstance(parse(event)[0], IgnoredEvent)


def test_events_s3_several_records_each_start_a_run() -> None:
    event = load("s3_put.json")
    second = json.loads(json.dumps(event["Records"][0]))
    second["s3"]["object"]["key"] = "tasks/b.jsonl"
    event["Records"].append(second)
    assert [r.key for r in parse(event)] == ["tasks/spring crawl, part 1.json", "tasks/b.jsonl"]


def test_events_manual_payload_is_a_start_request() -> None:
    assert parse(load("manual.json")) == [
        StartRequest(bucket="baton-example", key="tasks/sites.jsonl", position=1200)
    ]


def test_events_leg_payload_round_trips() -> None:
    (leg,) = parse(load("leg_v2.json"))
    assert isinstance(leg, LegEvent)
    assert leg.payload() == load("leg_v2.json")


def test_events_a_v1_leg_payload_in_flight_across_a_deploy_is_chain_0000() -> None:
    (leg,) = parse(load("leg.json"))
    assert isinstance(leg, LegEvent)
    assert leg.chain == "0000"
    assert leg.payload() == {**load("leg.json"), "v": 2, "chain": "0000"}


def test_events_manual_payload_names_its_chains_and_may_leave_out_the_position() -> None:
    (start,) = parse({"bucket": "b", "key": "tasks/x.json", "chains": 16})
    assert isinstance(start, StartRequest)
    assert (start.chains, start.position) == (16, None)


def test_events_sweep_tick() -> None:
    assert parse(load("sweep.json")) == [SweepEvent()]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "must be a JSON object"),
        ({}, "unrecognised event"),
        ({"hello": 1}, "unrecognised event"),
        ({"bucket": "b", "position": 0}, "exactly one source"),
        ({"bucket": "b", "key": "tasks/x.json", "chains": 0}, "'chains' must be a whole number"),
        ({"bucket": "b", "key": "tasks/x.json", "chains": "4"}, "'chains' must be a non-negative"),
        ({"bucket": "b", "key": "tasks/x.json", "position": -1}, "non-negative integer"),
        ({"bucket": "b", "key": "tasks/x.json", "position": "3"}, "non-negative integer"),
        ({"bucket": "b", "key": "tasks/x.json", "position": True}, "non-negative integer"),
        ({"bucket": "b", "key": "tasks/x.json", "position": 10**12}, "larger than"),
        ({"bucket": "b", "key": "tasks/x.json", "position": 0, "extra": 1}, "unknown fields"),
        ({"bucket": "", "key": "tasks/x.json", "position": 0}, "non-empty string"),
        ({"bucket": "b", "key": "k", "position": 0, "run_id": "../../etc"}, "malformed run_id"),
        ({"v": 3, "leg": 1}, "version 3 is not supported"),
        ({**load("leg.json"), "tasks": ["x"]}, "unknown fields"),
        ({**load("leg.json"), "run_id": "Bad Id!"}, "malformed run_id"),
        ({**load("leg.json"), "leg": -1}, "non-negative integer"),
        ({"action": "sweep", "bucket": "x"}, "unknown fields"),
        ({"Records": []}, "no Records"),
        ({"Records": [{"s3": {}}]}, "malformed"),
    ],
)
def test_events_bad_payloads_get_a_clear_error(event: Any, message: str) -> None:
    with pytest.raises(BadEventError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(event)


def test_events_run_id_is_stable_for_one_upload_and_new_for_the_next() -> None:
    first = derive_run_id("b", "tasks/My List.json", '"e1"', "seq1")
    assert first == derive_run_id("b", "tasks/My List.json", '"e1"', "seq1")
    assert first.startswith("my-list-")
    assert first != derive_run_id("b", "tasks/My List.json", '"e1"', "seq2")


def test_events_manual_payload_under_the_results_prefix_is_refused() -> None:
    with pytest.raises(BadEventError, match="under the results prefix runs/"):
        parse({"bucket": "b", "key": "runs/x/results/0000000000-0000000009.jsonl", "position": 0})


def test_events_run_id_transliterates_accented_letters() -> None:
    assert derive_run_id("b", "tasks/été à Zürich.json", '"e"').startswith("ete-a-zurich-")
