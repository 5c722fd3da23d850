"""Counts its invocations in module state, which survives only in a warm container."""

from __future__ import annotations

import os
from typing import Any

_invocations = 0


def handler(event: Any, context: Any) -> dict[str, int]:
    global _invocations
    _invocations += 1
    return {"count": _invocations, "pid": os.getpid()}
