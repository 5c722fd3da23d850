"""AWS Lambda entry point: settings and clients once per container, then dispatch."""

from __future__ import annotations

from typing import Any

from worker.config import Settings
from worker.container import Container
from worker.dispatch import dispatch
from worker.leg import LambdaContext
from worker.telemetry import configure_logging

_container: Container | None = None


def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    global _container  # noqa: PLW0603 - the deliberate container state: clients, pool, cache
    if _container is None:
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.log_format == "json")
        _container = Container.create(settings)
    return dispatch(_container, event, context)
