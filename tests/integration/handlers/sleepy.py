"""Logs, then sleeps for `event["sleep_s"]` seconds: long enough to overrun its timeout."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

log = logging.getLogger(__name__)


def handler(event: Any, context: Any) -> dict[str, int]:
    log.info("sleeping %.2f s in pid %d", event["sleep_s"], os.getpid())
    time.sleep(event["sleep_s"])
    return {"pid": os.getpid()}
