"""Passing the baton: the asynchronous self-invoke, with the one hand-off retry policy."""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from worker.exceptions import TransientError

log = logging.getLogger(__name__)

DEFAULT_WITHIN_S = 10.0
"""How long a hand-off may keep retrying when the caller names no limit."""


class HandoffError(TransientError):
    """The next leg could not be invoked; the checkpoint still lets the sweep resume it."""


class Invoker(Protocol):
    def invoke_async(
        self, function: str, payload: dict[str, Any], *, within_s: float | None = None
    ) -> None: ...


class LambdaInvoker:
    """`lambda.invoke(InvocationType="Event")`, retried on throttling and 5xx.

    This is the one retry policy of a hand-off: the client must not retry
    underneath it (`worker.container.INVOKE_CONFIG`), and it gives up within
    `within_s`, the time the leg has left, so a throttled invoke can never
    carry a leg past its deadline. What it gives up on, the sweep resends.
    """

    def __init__(self, client: Any, attempts: int = 4, max_wait_s: float = 2.0) -> None:
        self.client = client
        self.attempts = attempts
        self.max_wait_s = max_wait_s

    def invoke_async(
        self, function: str, payload: dict[str, Any], *, within_s: float | None = None
    ) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts)
            | stop_after_delay(max(0.0, DEFAULT_WITHIN_S if within_s is None else within_s)),
            wait=wait_exponential_jitter(multiplier=0.1, max=self.max_wait_s, jitter=0.1),
            retry=retry_if_exception_type(HandoffError),
            reraise=True,
        )
        retrying(self._invoke_once, function, json.dumps(payload).encode())

    def _invoke_once(self, function: str, body: bytes) -> None:
        try:
            response = self.client.invoke(
                FunctionName=function, InvocationType="Event", Payload=body
            )
        except (ClientError, BotoCoreError) as exc:
            raise HandoffError(f"invoke {function} failed: {exc}") from exc
        status = response.get("StatusCode")
        if status != 202:
            raise HandoffError(f"invoke {function} answered {status}, expected 202")


def recursion_allowed(client: Any, function: str) -> bool | None:
    """Whether Lambda lets this function call itself past ~16 hops (None: unknown)."""
    try:
        config = client.get_function_recursion_config(FunctionName=function)
    except (ClientError, BotoCoreError) as exc:
        log.info("could not read the recursion config of %s: %s", function, exc)
        return None
    allowed: bool = config.get("RecursiveLoop") == "Allow"
    if not allowed:
        log.warning(
            "function %s has RecursiveLoop=%s: Lambda will stop this chain after about 16 "
            "hops. Set RecursiveLoop: Allow (the SAM template does) or "
            "`aws lambda put-function-recursion-config --recursive-loop Allow`.",
            function,
            config.get("RecursiveLoop"),
        )
    return allowed
