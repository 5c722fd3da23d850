"""AWS Lambda entry point: settings and clients once per container, then dispatch."""

from __future__ import annotations

import logging
import os
from typing import Any

from worker.config import Settings
from worker.container import Container
from worker.dispatch import dispatch
from worker.leg import LambdaContext

logging.getLogger().setLevel(os.environ.get("BATON_LOG_LEVEL", "INFO"))

_container: Container | None = None


def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    global _container  # noqa: PLW0603 - the deliberate container state: clients, pool, cache
    if _container is None:
        _container = Container.create(Settings.from_env())
    return dispatch(_container, event, context)
