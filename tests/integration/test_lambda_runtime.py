"""The local Lambda runtime: warm containers, real deadlines, the Invoke API over HTTP."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.lambda_runtime import (
    FunctionConfig,
    LambdaApiError,
    LambdaFaults,
    LambdaRuntime,
)

pytestmark = pytest.mark.integration

HANDLERS = "tests.integration.handlers"
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def function(name: str, module: str, **settings: Any) -> FunctionConfig:
    return FunctionConfig(name=name, handler=f"{HANDLERS}.{module}.handler", **settings)


@pytest.fixture
def runtime() -> Iterator[LambdaRuntime]:
    with LambdaRuntime(s3_endpoint_url="http://127.0.0.1:9") as running:
        yield running


@pytest.fixture
def client(runtime: LambdaRuntime) -> Iterator[Any]:
    lambda_client = boto3.client("lambda", endpoint_url=runtime.endpoint_url, config=NO_RETRIES)
    yield lambda_client
    lambda_client.close()


def invoke(client: Any, name: str, payload: Any, **kwargs: Any) -> dict[str, Any]:
    response: dict[str, Any] = client.invoke(
        FunctionName=name, Payload=json.dumps(payload).encode(), **kwargs
    )
    response["body"] = json.loads(response["Payload"].read() or b"null")
    return response


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_lambda_runtime_invoke_returns_the_handler_result(
    runtime: LambdaRuntime, client: Any
) -> None:
    runtime.register(function("echo", "echo"))

    response = invoke(client, "echo", {"hello": "world"})

    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert response["body"]["event"] == {"hello": "world"}


def test_lambda_runtime_context_carries_lambda_attributes(
    runtime: LambdaRuntime, client: Any
) -> None:
    runtime.register(function("echo", "echo", memory_mb=256))

    response = invoke(client, "echo", {})

    body = response["body"]
    assert body["invoked_function_arn"] == "arn:aws:lambda:us-east-1:000000000000:function:echo"
    assert body["function_name"] == "echo"
    assert body["function_version"] == "$LATEST"
    assert body["memory_limit_in_mb"] == "256"
    assert body["log_group_name"] == "/aws/lambda/echo"
    assert "[$LATEST]" in body["log_stream_name"]
    assert body["aws_request_id"] == response["ResponseMetadata"]["RequestId"]


def test_lambda_runtime_remaining_time_counts_down_from_the_timeout(
    runtime: LambdaRuntime, client: Any
) -> None:
    runtime.register(function("echo", "echo", timeout_s=2.0))

    remaining = invoke(client, "echo", {})["body"]["remaining_ms"]

    assert 1_500 < remaining <= 2_000


def test_lambda_runtime_container_environment_points_at_the_local_stack(
    runtime: LambdaRuntime, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "production")
    runtime.register(function("echo", "echo", environment={"BATON_BUCKET": "b"}))

    body = invoke(client, "echo", {})["body"]

    environ = body["environ"]
    assert environ["AWS_ENDPOINT_URL_LAMBDA"] == runtime.endpoint_url
    assert environ["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9"
    assert environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert environ["BATON_BUCKET"] == "b"
    assert "AWS_PROFILE" not in environ
    assert Path(body["cwd"]) == Path(__file__).resolve().parents[2]


def test_lambda_runtime_warm_container_keeps_module_state(
    runtime: LambdaRuntime, client: Any
) -> None:
    runtime.register(function("counter", "counter"))

    bodies = [invoke(client, "counter", {})["body"] for _ in range(3)]

    assert [body["count"] for body in bodies] == [1, 2, 3]
    assert len({body["pid"] for body in bodies}) == 1
    stats = runtime.stats("counter")
    assert (stats.cold_starts, stats.warm_starts) == (1, 2)


def test_lambda_runtime_handler_exception_is_an_unhandled_function_error(
    runtime: LambdaRuntime, client: Any
) -> None:
    runtime.register(function("failing", "failing"))

    response = invoke(client, "failing", {"n": 7})

    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert response["body"]["errorType"] == "ValueError"
    assert response["body"]["errorMessage"] == "boom: 7"
    assert response["body"]["stackTrace"]


def test_lambda_runtime_handler_exception_keeps_the_container_warm(
    runtime: LambdaRuntime, client: Any
) -> None:
    runtime.register(function("failing", "failing"))

    invoke(client, "failing", {})
    invoke(client, "failing", {})

    stats = runtime.stats("failing")
    assert (stats.cold_starts, stats.warm_starts, stats.errors) == (1, 1, 2)


def test_lambda_runtime_timeout_kills_the_container(runtime: LambdaRuntime, client: Any) -> None:
    runtime.register(function("sleepy", "sleepy", timeout_s=1.0))
    pid = invoke(client, "sleepy", {"sleep_s": 0})["body"]["pid"]

    started = time.monotonic()
    response = invoke(client, "sleepy", {"sleep_s": 30})
    elapsed = time.monotonic() - started

    assert response["FunctionError"] == "Unhandled"
    assert response["body"]["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in response["body"]["errorMessage"]
    assert 0.9 < elapsed < 2.5
    assert not pid_alive(pid)
    stats = runtime.stats("sleepy")
    assert (stats.timeouts, stats.containers) == (1, 0)


def test_lambda_runtime_invocation_after_a_timeout_starts_cold(runtime: LambdaRuntime) -> None:
    runtime.register(function("sleepy", "sleepy", timeout_s=0.5))
    runtime.invoke("sleepy", {"sleep_s": 5})

    runtime.invoke("sleepy", {"sleep_s": 0})

    assert [record.cold for record in runtime.records("sleepy")] == [True, True]


def test_lambda_runtime_import_error_fails_the_invocation(runtime: LambdaRuntime) -> None:
    runtime.register(FunctionConfig(name="broken", handler=f"{HANDLERS}.missing.handler"))

    result = runtime.invoke("broken", {})

    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "Runtime.ImportModuleError"


def test_lambda_runtime_event_invoke_is_accepted_then_run(
    runtime: LambdaRuntime, client: Any
) -> None:
    runtime.register(function("counter", "counter"))

    response = client.invoke(FunctionName="counter", InvocationType="Event", Payload=b"{}")
    assert runtime.wait_idle(10)

    assert response["StatusCode"] == 202
    assert runtime.stats("counter").succeeded == 1


def test_lambda_runtime_dry_run_validates_without_running(
    runtime: LambdaRuntime, client: Any
) -> None:
    runtime.register(function("counter", "counter"))

    response = client.invoke(FunctionName="counter", InvocationType="DryRun")

    assert response["StatusCode"] == 204
    assert runtime.stats("counter").invocations == 0


def test_lambda_runtime_failed_event_is_retried_with_the_same_request_id(
    runtime: LambdaRuntime,
) -> None:
    runtime.register(function("failing", "failing", max_retries=2, retry_delay_s=0.05))

    request_id = runtime.invoke_async("failing", {"n": 1})
    assert runtime.wait_idle(10)

    records = runtime.records("failing")
    assert [record.attempt for record in records] == [0, 1, 2]
    assert {record.request_id for record in records} == {request_id}
    assert runtime.stats("failing").retries == 2


def test_lambda_runtime_event_is_dropped_and_recorded_after_its_retries(
    runtime: LambdaRuntime,
) -> None:
    runtime.register(function("failing", "failing", max_retries=1, retry_delay_s=0.05))

    request_id = runtime.invoke_async("failing", {"n": 2})
    assert runtime.wait_idle(10)

    [failed] = runtime.failed_events("failing")
    assert (failed.request_id, failed.attempts, failed.error_type) == (request_id, 2, "ValueError")
    assert json.loads(failed.payload) == {"n": 2}


def test_lambda_runtime_timed_out_event_is_retried(runtime: LambdaRuntime) -> None:
    runtime.register(function("sleepy", "sleepy", timeout_s=0.5, max_retries=1, retry_delay_s=0))

    runtime.invoke_async("sleepy", {"sleep_s": 5})
    assert runtime.wait_idle(10)

    assert [record.outcome for record in runtime.records("sleepy")] == ["timeout", "timeout"]


def test_lambda_runtime_events_run_within_max_concurrency(runtime: LambdaRuntime) -> None:
    runtime.register(function("sleepy", "sleepy", max_concurrency=2))

    for _ in range(6):
        runtime.invoke_async("sleepy", {"sleep_s": 0.2})
    assert runtime.wait_idle(10)

    stats = runtime.stats("sleepy")
    assert stats.succeeded == 6
    assert stats.cold_starts == 2
    assert len({record.container_id for record in runtime.records("sleepy")}) == 2


def test_lambda_runtime_sync_invoke_over_concurrency_is_throttled(
    runtime: LambdaRuntime, client: Any
) -> None:
    runtime.register(function("sleepy", "sleepy", max_concurrency=1))
    busy = threading.Thread(target=runtime.invoke, args=("sleepy", {"sleep_s": 0.5}))
    busy.start()
    while runtime.stats("sleepy").containers == 0:
        time.sleep(0.01)

    with pytest.raises(ClientError) as exc:
        invoke(client, "sleepy", {"sleep_s": 0})
    busy.join()

    assert exc.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_lambda_runtime_unknown_function_is_not_found(client: Any) -> None:
    with pytest.raises(ClientError) as exc:
        client.invoke(FunctionName="nobody", Payload=b"{}")

    assert exc.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_lambda_runtime_invalid_json_payload_is_rejected(
    runtime: LambdaRuntime, client: Any
) -> None:
    runtime.register(function("echo", "echo"))

    with pytest.raises(ClientError) as exc:
        client.invoke(FunctionName="echo", Payload=b"{not json")

    assert exc.value.response["Error"]["Code"] == "InvalidRequestContentException"


def test_lambda_runtime_oversized_event_is_rejected(runtime: LambdaRuntime) -> None:
    runtime.register(function("echo", "echo"))

    with pytest.raises(LambdaApiError) as exc:
        runtime.invoke_async("echo", {"tasks": "x" * 300_000})

    assert exc.value.code == "RequestTooLargeException"


def test_lambda_runtime_get_function_describes_the_configuration(
    runtime: LambdaRuntime, client: Any
) -> None:
    runtime.register(function("echo", "echo", timeout_s=3.0, memory_mb=512))

    configuration = client.get_function(FunctionName="echo")["Configuration"]

    assert configuration["FunctionArn"].endswith(":function:echo")
    assert (configuration["Timeout"], configuration["MemorySize"]) == (3, 512)
    assert configuration["Handler"] == f"{HANDLERS}.echo.handler"


def test_lambda_runtime_recursion_config_is_read_and_written(
    runtime: LambdaRuntime, client: Any
) -> None:
    runtime.register(function("echo", "echo", recursive_loop="Terminate"))
    arn = "arn:aws:lambda:us-east-1:000000000000:function:echo"

    before = client.get_function_recursion_config(FunctionName=arn)["RecursiveLoop"]
    client.put_function_recursion_config(FunctionName="echo", RecursiveLoop="Allow")
    after = client.get_function_recursion_config(FunctionName=arn)["RecursiveLoop"]

    assert (before, after) == ("Terminate", "Allow")


def test_lambda_runtime_handler_hands_off_through_the_invoke_api(runtime: LambdaRuntime) -> None:
    runtime.register(function("chain", "chain", recursive_loop="Allow"))

    runtime.invoke_async("chain", {"hops_left": 20})
    assert runtime.wait_idle(30)

    stats = runtime.stats("chain")
    assert (stats.succeeded, stats.async_accepted, stats.recursion_stopped) == (21, 21, 0)


def test_lambda_runtime_terminate_stops_a_chain_after_16_invocations(
    runtime: LambdaRuntime,
) -> None:
    runtime.register(function("chain", "chain", recursive_loop="Terminate"))

    runtime.invoke_async("chain", {"hops_left": 20})
    assert runtime.wait_idle(30)

    stats = runtime.stats("chain")
    assert (stats.succeeded, stats.recursion_stopped) == (16, 1)
    assert runtime.failed_events("chain")[0].error_type == "RecursiveInvocationException"


def test_lambda_runtime_container_output_is_forwarded_with_its_id(
    runtime: LambdaRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    runtime.register(function("sleepy", "sleepy"))
    caplog.set_level(logging.INFO, logger="devstack.lambda_runtime.container")

    runtime.invoke("sleepy", {"sleep_s": 0})

    lines = [record.getMessage() for record in caplog.records]
    assert any(line.startswith("[sleepy-1] START RequestId:") for line in lines)
    assert any(line.startswith("[sleepy-1] [INFO]") and "sleeping" in line for line in lines)
    assert any(line.startswith("[sleepy-1] REPORT RequestId:") for line in lines)


def test_lambda_runtime_container_output_can_go_to_a_file(tmp_path: Path) -> None:
    log_file = tmp_path / "containers.log"
    with LambdaRuntime(log_file=log_file) as runtime:
        runtime.register(function("sleepy", "sleepy"))
        runtime.invoke("sleepy", {"sleep_s": 0})

    text = log_file.read_text()
    assert "[sleepy-1] START RequestId:" in text
    assert "sleeping 0.00 s" in text


def test_lambda_runtime_stop_kills_warm_containers() -> None:
    with LambdaRuntime() as runtime:
        runtime.register(function("counter", "counter"))
        pid = runtime.invoke("counter", {}).json()["pid"]
        assert pid_alive(pid)

    assert not pid_alive(pid)


def test_lambda_runtime_throttle_fault_answers_429() -> None:
    with LambdaRuntime(faults=LambdaFaults(throttle_rate=1.0)) as runtime:
        runtime.register(function("counter", "counter"))
        client = boto3.client("lambda", endpoint_url=runtime.endpoint_url, config=NO_RETRIES)
        try:
            with pytest.raises(ClientError) as exc:
                client.invoke(FunctionName="counter", InvocationType="Event", Payload=b"{}")
        finally:
            client.close()
        stats = runtime.stats("counter")

    assert exc.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert (stats.fault_throttles, stats.invocations) == (1, 0)


def test_lambda_runtime_drop_fault_accepts_but_never_runs() -> None:
    with LambdaRuntime(faults=LambdaFaults(drop_rate=1.0)) as runtime:
        runtime.register(function("counter", "counter"))
        client = boto3.client("lambda", endpoint_url=runtime.endpoint_url, config=NO_RETRIES)
        try:
            response = client.invoke(FunctionName="counter", InvocationType="Event", Payload=b"{}")
        finally:
            client.close()
        assert runtime.wait_idle(5)
        stats = runtime.stats("counter")

    assert response["StatusCode"] == 202
    assert (stats.fault_drops, stats.invocations) == (1, 0)


def test_lambda_runtime_duplicate_fault_delivers_an_event_twice() -> None:
    with LambdaRuntime(faults=LambdaFaults(duplicate_rate=1.0)) as runtime:
        runtime.register(function("counter", "counter"))
        client = boto3.client("lambda", endpoint_url=runtime.endpoint_url, config=NO_RETRIES)
        try:
            client.invoke(FunctionName="counter", InvocationType="Event", Payload=b"{}")
        finally:
            client.close()
        assert runtime.wait_idle(5)
        records = runtime.records("counter")
        stats = runtime.stats("counter")

    assert len(records) == 2
    assert records[0].request_id == records[1].request_id
    assert stats.fault_duplicates == 1


def test_lambda_runtime_faults_replay_with_the_same_seed() -> None:
    def dropped(runtime: LambdaRuntime) -> list[bool]:
        runtime.register(function("counter", "counter"))
        client = boto3.client("lambda", endpoint_url=runtime.endpoint_url, config=NO_RETRIES)
        outcomes = []
        try:
            for _ in range(12):
                before = runtime.stats("counter").fault_drops
                client.invoke(FunctionName="counter", InvocationType="Event", Payload=b"{}")
                outcomes.append(runtime.stats("counter").fault_drops > before)
        finally:
            client.close()
        runtime.wait_idle(10)
        return outcomes

    with LambdaRuntime(faults=LambdaFaults(drop_rate=0.5, seed=3)) as runtime:
        from_the_start = dropped(runtime)
    with LambdaRuntime() as runtime:
        runtime.set_faults(LambdaFaults(drop_rate=0.5, seed=3))
        set_later = dropped(runtime)

    assert from_the_start == set_later
    assert 0 < sum(from_the_start) < 12


def test_lambda_runtime_report_counts_the_containers_own_memory(tmp_path: Path) -> None:
    ballast = b"x" * (400 * 2**20)  # the parent's peak RSS, which a child would inherit
    log_file = tmp_path / "containers.log"
    with LambdaRuntime(log_file=log_file) as runtime:
        runtime.register(function("sleepy", "sleepy", memory_mb=1024))
        runtime.invoke("sleepy", {"sleep_s": 0})
    del ballast
    report = next(line for line in log_file.read_text().splitlines() if "REPORT" in line)
    used_mb = int(report.split("Max Memory Used: ")[1].split()[0])
    assert 0 < used_mb < 300


def aws_cli(runtime: LambdaRuntime, *args: str) -> subprocess.CompletedProcess[str]:
    """The standard AWS CLI (awscli from PyPI), pointed at the runtime like at any endpoint."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    command = [
        str(Path(sys.executable).parent / "aws"),
        "--endpoint-url",
        runtime.endpoint_url,
        *args,
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_lambda_runtime_aws_cli_invokes_a_function(runtime: LambdaRuntime, tmp_path: Path) -> None:
    runtime.register(function("echo", "echo"))
    out = tmp_path / "out.json"
    done = aws_cli(
        runtime,
        "lambda",
        "invoke",
        "--function-name",
        "echo",
        "--payload",
        '{"hello": "cli"}',
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["StatusCode"] == 200
    assert json.loads(out.read_text())["event"] == {"hello": "cli"}


def test_lambda_runtime_aws_cli_event_invoke_is_accepted_and_run(
    runtime: LambdaRuntime, tmp_path: Path
) -> None:
    runtime.register(function("echo", "echo"))
    done = aws_cli(
        runtime,
        "lambda",
        "invoke",
        "--function-name",
        "echo",
        "--invocation-type",
        "Event",
        "--payload",
        '{"hello": "async"}',
        str(tmp_path / "out.json"),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["StatusCode"] == 202
    assert runtime.wait_idle(15)
    assert runtime.stats("echo").succeeded == 1
