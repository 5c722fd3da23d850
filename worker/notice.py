"""The completion notice: an EventBridge event, and optionally a signed webhook.

Delivery is at least once, with the run id as the idempotency key (the event's
`detail.run_id`, the webhook's `X-Baton-Run-Id`): a notice is recorded as sent
in `notice.json` only after every target took it, and the sweep sends again
what was not recorded. The notice names keys, never presigned URLs (bearer
credentials), unless `BATON_PRESIGN_S` opts in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any, Protocol

import requests
from botocore.exceptions import BotoCoreError, ClientError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from worker.exceptions import TransientError

log = logging.getLogger(__name__)

SOURCE = "baton"
DETAIL_TYPE = "Baton Run Finished"
SIGNATURE_HEADER = "X-Baton-Signature"
WEBHOOK_TIMEOUT_S = 10.0


class NoticeError(TransientError):
    """A target did not take the notice; the sweep sends it again."""


class Notifier(Protocol):
    def send(self, detail: dict[str, Any]) -> list[str]:
        """Deliver `detail` to every target; the targets reached. Raises NoticeError."""
        ...


class AwsNotifier:
    """EventBridge `PutEvents` on `bus` (when enabled), then the webhook (when set)."""

    def __init__(
        self,
        events: Any | None,
        bus: str,
        webhook_url: str = "",
        webhook_secret: str = "",
        attempts: int = 3,
    ) -> None:
        self.events = events
        self.bus = bus
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.attempts = attempts

    def send(self, detail: dict[str, Any]) -> list[str]:
        sent = []
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.2),
            retry=retry_if_exception_type(NoticeError),
            reraise=True,
        )
        if self.events is not None:
            retrying(self._put_event, detail)
            sent.append(f"eventbridge:{self.bus}")
        if self.webhook_url:
            retrying(self._post, detail)
            sent.append(f"webhook:{self.webhook_url}")
        return sent

    def _put_event(self, detail: dict[str, Any]) -> None:
        entry = {
            "Source": SOURCE,
            "DetailType": DETAIL_TYPE,
            "Detail": json.dumps(detail),
            "EventBusName": self.bus,
        }
        assert self.events is not None
        try:
            answer = self.events.put_events(Entries=[entry])
        except (ClientError, BotoCoreError) as exc:
            raise NoticeError(f"EventBridge PutEvents on {self.bus} failed: {exc}") from exc
        if answer.get("FailedEntryCount"):
            failure = answer["Entries"][0]
            raise NoticeError(f"EventBridge refused the notice: {failure.get('ErrorMessage')}")

    def _post(self, detail: dict[str, Any]) -> None:
        body = json.dumps(detail, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Baton-Run-Id": str(detail["run_id"]),
            SIGNATURE_HEADER: signature(self.webhook_secret, body),
        }
        try:
            response = requests.post(
                self.webhook_url, data=body, headers=headers, timeout=WEBHOOK_TIMEOUT_S
            )
        except requests.RequestException as exc:
            raise NoticeError(f"webhook {self.webhook_url} failed: {exc}") from exc
        if response.status_code >= 300:
            raise NoticeError(f"webhook {self.webhook_url} answered {response.status_code}")


def signature(secret: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of the exact body, as GitHub and Stripe sign theirs."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"
