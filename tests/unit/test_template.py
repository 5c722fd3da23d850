"""The SAM template: cfn-lint clean, and the properties the design depends on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import cfn_yaml

from worker.names import TICK_RATE

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "template.yaml"
BUCKET_NAME = "${BucketNamePrefix}-${AWS::AccountId}-${AWS::Region}"
FUNCTION_ARN = (
    "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${FunctionName}"
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    return loaded


@pytest.fixture(scope="module")
def function(template: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = template["Resources"]["WorkerFunction"]
    assert resource["Type"] == "AWS::Serverless::Function"
    properties: dict[str, Any] = resource["Properties"]
    return properties


def statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of the role, a conditional one (`!If [cond, statement, NoValue]`) as
    the statement it grants when its condition holds."""
    role = template["Resources"]["FunctionRole"]["Properties"]
    found = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    return [s["Fn::If"][1] if "Fn::If" in s else s for s in found]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def refs_in(value: Any) -> set[str]:
    """Logical ids named by Ref or GetAtt anywhere inside `value`."""
    if isinstance(value, dict):
        found = {value["Ref"]} if "Ref" in value else set()
        if "Fn::GetAtt" in value:
            found.add(value["Fn::GetAtt"][0])
        return found.union(*(refs_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(refs_in(v) for v in value))
    return set()


def test_template_passes_cfn_lint() -> None:
    problems = [m for m in lint_file(TEMPLATE) if m.rule.id.startswith(("E", "W"))]
    assert problems == [], "\n".join(str(m) for m in problems)


def test_template_allows_the_recursive_loop(function: dict[str, Any]) -> None:
    assert function["RecursiveLoop"] == "Allow"


def test_template_runs_the_handler_on_python312(function: dict[str, Any]) -> None:
    assert function["Runtime"] == "python3.12"
    assert function["Handler"] == "handler.handler"
    assert function["CodeUri"] == "../build/lambda.zip"


def test_template_triggers_only_on_task_lists(function: dict[str, Any]) -> None:
    s3_events = [e["Properties"] for e in function["Events"].values() if e["Type"] == "S3"]
    filters = {
        tuple(sorted((r["Name"], r["Value"]) for r in e["Filter"]["S3Key"]["Rules"]))
        for e in s3_events
    }
    assert filters == {
        (("prefix", "tasks/"), ("suffix", ".json")),
        (("prefix", "tasks/"), ("suffix", ".jsonl")),
    }
    assert all(e["Bucket"] == {"Ref": "TaskBucket"} for e in s3_events)
    assert all(e["Events"] == "s3:ObjectCreated:*" for e in s3_events)


def test_template_schedules_the_sweep_every_minute(function: dict[str, Any]) -> None:
    (schedule,) = [e["Properties"] for e in function["Events"].values() if e["Type"] == "Schedule"]
    assert schedule["Schedule"] == "rate(1 minute)" == TICK_RATE
    assert json.loads(schedule["Input"]) == {"action": "sweep"}


def test_localstack_deploy_ticks_as_the_template_does() -> None:
    from infra import deploy_localstack

    assert deploy_localstack.SWEEP_SCHEDULE == TICK_RATE
    assert "rate(5" not in Path(deploy_localstack.__file__).read_text()


def test_template_keeps_results_outside_the_trigger_prefix(function: dict[str, Any]) -> None:
    variables = function["Environment"]["Variables"]
    assert variables["BATON_TASKS_PREFIX"] == "tasks/"
    assert variables["BATON_RESULTS_PREFIX"] == "runs/"
    assert variables["BATON_BUCKET"] == {"Fn::Sub": BUCKET_NAME}


def test_template_bucket_is_encrypted_and_private(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["TaskBucket"]["Properties"]
    assert bucket["BucketName"] == {"Fn::Sub": BUCKET_NAME}
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = bucket["PublicAccessBlockConfiguration"]
    assert dict(block) == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def test_template_iam_scopes_s3_to_the_bucket(template: dict[str, Any]) -> None:
    s3 = [s for s in statements(template) if any(a.startswith("s3:") for a in as_list(s["Action"]))]
    resources = {r["Fn::Sub"] for s in s3 for r in as_list(s["Resource"])}
    assert resources == {f"arn:${{AWS::Partition}}:s3:::{BUCKET_NAME}{tail}" for tail in ("", "/*")}
    actions = {a for s in s3 for a in as_list(s["Action"])}
    assert actions == {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
    }


def test_template_iam_scopes_lambda_to_the_function_itself(template: dict[str, Any]) -> None:
    calls = [s for s in statements(template) if any("lambda:" in a for a in as_list(s["Action"]))]
    actions = {a for s in calls for a in as_list(s["Action"])}
    assert actions == {"lambda:InvokeFunction", "lambda:GetFunctionRecursionConfig"}
    resources = {r["Fn::Sub"] for s in calls for r in as_list(s["Resource"])}
    assert resources == {FUNCTION_ARN, FUNCTION_ARN + ":*"}


def test_template_iam_has_no_wildcard_grants(template: dict[str, Any]) -> None:
    for statement in statements(template):
        assert statement["Effect"] == "Allow"
        assert not any("*" in a for a in as_list(statement["Action"]))
        assert "*" not in as_list(statement["Resource"])


def test_template_iam_names_bucket_and_function_without_a_cycle(template: dict[str, Any]) -> None:
    # The bucket's notification depends on the function, which depends on the role.
    role = template["Resources"]["FunctionRole"]
    assert refs_in(role) & {"TaskBucket", "WorkerFunction"} == set()


def test_template_sends_failed_events_to_the_dead_letter_queue(
    function: dict[str, Any], template: dict[str, Any]
) -> None:
    config = function["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 2
    assert 60 <= config["MaximumEventAgeInSeconds"] <= 21600
    on_failure = config["DestinationConfig"]["OnFailure"]
    assert on_failure == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
    assert template["Resources"]["DeadLetterQueue"]["Type"] == "AWS::SQS::Queue"


def test_template_sizes_are_parameters(function: dict[str, Any], template: dict[str, Any]) -> None:
    assert function["Timeout"] == {"Ref": "Timeout"}
    assert function["MemorySize"] == {"Ref": "MemorySize"}
    assert refs_in(function["ReservedConcurrentExecutions"]) >= {"ReservedConcurrency"}
    assert {"Timeout", "MemorySize", "ReservedConcurrency"} <= set(template["Parameters"])


def test_template_log_group_has_retention(
    function: dict[str, Any], template: dict[str, Any]
) -> None:
    log_group = template["Resources"]["FunctionLogGroup"]["Properties"]
    assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionLogGroup"}


def test_template_outputs_name_function_bucket_and_queue(template: dict[str, Any]) -> None:
    assert set(template["Outputs"]) == {
        "FunctionName",
        "FunctionArn",
        "BucketName",
        "DeadLetterQueueUrl",
    }


def test_template_may_put_the_notice_on_its_bus_only(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    (grant,) = [s for s in statements(template) if s.get("Sid") == "SendTheCompletionNotice"]
    assert grant["Action"] == "events:PutEvents"
    assert "event-bus/${EventBusName}" in grant["Resource"]["Fn::Sub"]
    variables = function["Environment"]["Variables"]
    assert variables["BATON_EVENT_BUS"] == {"Ref": "EventBusName"}
    assert variables["BATON_MAX_CHAINS"] == {"Ref": "MaxChains"}
    assert template["Parameters"]["WebhookSecret"]["NoEcho"] is True


def test_template_reads_the_signing_keys_only_when_a_secret_is_named(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    role = template["Resources"]["FunctionRole"]["Properties"]
    [conditional] = [
        s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"] if "Fn::If" in s
    ]
    condition, statement, otherwise = conditional["Fn::If"]
    assert condition == "HasSigningSecret"
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"] == {"Ref": "SigningSecretArn"}
    assert otherwise == {"Ref": "AWS::NoValue"}
    variables = function["Environment"]["Variables"]
    assert variables["BATON_SIGNING_SECRET_ID"] == {"Ref": "SigningSecretArn"}
