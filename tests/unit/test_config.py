"""Settings come from BATON_* variables, validated once at cold start."""

from __future__ import annotations

import pytest

from worker.config import Settings
from worker.exceptions import ConfigError


def test_config_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert (settings.tasks_prefix, settings.results_prefix, settings.batch_size) == (
        "tasks/",
        "runs/",
        25,
    )


def test_config_reads_typed_values_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "BATON_BATCH_SIZE": "50",
            "BATON_REQUEST_TIMEOUT_S": "2.5",
            "BATON_ADAPTIVE_MARGIN": "false",
            "BATON_ALLOW_NETS": "127.0.0.0/8, ::1/128",
        }
    )
    assert settings.batch_size == 50
    assert settings.request_timeout_s == 2.5
    assert settings.adaptive_margin is False
    assert settings.allow_nets == ("127.0.0.0/8", "::1/128")


def test_config_explicit_argument_beats_the_environment() -> None:
    assert Settings.from_env({"BATON_BATCH_SIZE": "50"}, batch_size=7).batch_size == 7


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BATON_BATCH_SIZE": "lots"}, "BATON_BATCH_SIZE='lots' is not a valid int"),
        ({"BATON_BATCH_SIZE": "0"}, "batch_size must be >= 1"),
        ({"BATON_ADAPTIVE_MARGIN": "maybe"}, "not a valid bool"),
        ({"BATON_PROCESSOR": "nocolon"}, "module:function"),
        ({"BATON_RESULTS_PREFIX": "tasks/out/"}, "must not overlap"),
        ({"BATON_TASKS_PREFIX": "schedules/in/"}, "must not overlap schedules/"),
        ({"BATON_RESULTS_PREFIX": "sched"}, "must not overlap schedules/"),
        ({"BATON_ALLOW_NETS": "localhost"}, "not a CIDR"),
    ],
)
def test_config_bad_values_fail_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
