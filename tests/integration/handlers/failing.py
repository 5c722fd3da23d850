"""Always raises, like a handler with a bug."""

from __future__ import annotations

from typing import Any


def handler(event: Any, context: Any) -> None:
    raise ValueError(f"boom: {event.get('n')}")
