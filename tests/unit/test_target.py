"""Where the CLI sends its calls: one endpoint for LocalStack, per-service ones, or a kept stack."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from baton.target import Target
from devstack.statefile import StackState


def test_target_endpoint_url_alone_serves_both_services() -> None:
    target = Target.resolve("http://localhost:4566", "b", None, None)
    assert (target.s3_endpoint, target.lambda_endpoint) == ("http://localhost:4566",) * 2


def test_target_per_service_variables_are_left_to_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
    target = Target.resolve(None, "b", None, None)
    assert (target.s3_endpoint, target.lambda_endpoint, target.stack) == (None, None, None)
    assert target.s3().meta.endpoint_url == "http://127.0.0.1:1"


def test_target_a_stack_kept_running_here_is_found_without_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATON_BUCKET", raising=False)
    state = StackState(
        "http://127.0.0.1:7001", "http://127.0.0.1:7002", "kept", "fn", os.getpid(), "x"
    )
    state.save()
    target = Target.resolve(None, None, None, None)
    assert (target.s3_endpoint, target.lambda_endpoint) == (
        state.s3_endpoint_url,
        state.lambda_endpoint_url,
    )
    assert (target.bucket, target.function) == ("kept", "fn")


def test_target_a_stack_whose_process_is_gone_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    StackState(
        "http://127.0.0.1:7001", "http://127.0.0.1:7002", "kept", "fn", 2**22 + 7, "x"
    ).save()
    assert Target.resolve(None, "b", None, None).stack is None
