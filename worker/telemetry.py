"""Structured logs and CloudWatch metrics (embedded metric format) for legs and batches.

Logs are JSON lines carrying the run's fields, so CloudWatch Logs Insights can
follow a run across legs. Metrics ride in the same stream as EMF documents:
no PutMetricData call, no extra latency in the leg.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

NAMESPACE = "baton"
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; `extra={...}` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "aws_request_id", None)
        if request_id:
            data["request_id"] = request_id
        data.update(
            (k, v)
            for k, v in record.__dict__.items()
            if k not in _RESERVED and k != "aws_request_id"
        )
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(level: str = "INFO", json_format: bool = True) -> None:
    """Use the Lambda runtime's handler if there is one; add a stderr handler if not."""
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    if json_format:
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def emit_metrics(
    metrics: Mapping[str, tuple[float, str]],
    dimensions: Mapping[str, str],
    properties: Mapping[str, Any] | None = None,
    out: TextIO | None = None,
) -> None:
    """Print one EMF document; CloudWatch turns its values into metrics."""
    document: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [
                        {"Name": name, "Unit": unit} for name, (_, unit) in metrics.items()
                    ],
                }
            ],
        },
        **dimensions,
        **{name: value for name, (value, _) in metrics.items()},
        **(properties or {}),
    }
    stream = out or sys.stdout
    stream.write(json.dumps(document, default=str) + "\n")
    stream.flush()
