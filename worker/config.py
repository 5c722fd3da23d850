"""Settings: one frozen dataclass, read from the environment once per container."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from worker.exceptions import ConfigError
from worker.names import ENV_PREFIX, RESULTS_PREFIX, SCHEDULES_PREFIX, TASKS_PREFIX
from worker.prices import ARCHITECTURES, parse_overrides

DEFAULT_PROCESSOR = "worker.processor:process"
BUILTIN_PROCESSORS = {"presign": "worker.objects:presign", "sha256": "worker.objects:sha256"}
"""Processors of objects (prefix runs), by the names a spec or BATON_PROCESSOR may use."""
MAX_PRESIGN_S = 7 * 24 * 3600
"""S3 SigV4 presigned URLs live at most a week."""
DEFAULT_PRESIGN_EXPIRES_S = 3600
"""The `presign` processor's URLs, when neither the run nor BATON_PRESIGN_S says."""
MAX_LIST_PAGE = 1000
"""ListObjectsV2 answers at most 1,000 keys a page."""


@dataclass(frozen=True)
class Settings:
    """Every knob, with production defaults; see the README table."""

    bucket: str = ""
    """The bucket the sweep tick scans; runs started by events use the event's bucket."""
    tasks_prefix: str = TASKS_PREFIX
    results_prefix: str = RESULTS_PREFIX
    batch_size: int = 25
    """Tasks a leg plans before it has observed any (then plans follow the measured rate)."""
    concurrency: int = 0
    """Tasks in flight at once; 0 lets the leg find its own level (worker.autoscale)."""
    max_concurrency: int = 256
    """The most tasks in flight the autoscaler may reach."""
    per_host_concurrency: int = 8
    """The most tasks in flight to one host, in every mode (worker.hosts)."""
    margin_ms: int = 2_000
    """Floor of the safety margin: covers the checkpoint write and the hand-off."""
    adaptive_margin: bool = True
    """Also keep room for the slowest batch seen so far, so a leg never overruns."""
    chains: int = 1
    """Chains a run starts with unless its start names its own (payload `chains`, or the
    upload's `baton-chains` metadata)."""
    max_chains: int = 1_000
    """The most chains a run may have: match the function's reserved concurrency, or
    chains past it queue inside Lambda (their legs wait; none is lost)."""
    event_bus: str = "default"
    """EventBridge bus of the completion notice; empty: no EventBridge notice."""
    webhook_url: str = ""
    """An HTTPS endpoint the completion notice is POSTed to, signed with `webhook_secret`."""
    webhook_secret: str = ""
    presign_s: int = 0
    """Above 0, manifest.json gives each results object a presigned URL valid this long,
    and the notice a presigned URL of the manifest. They are bearer credentials, so off
    by default; a URL signed with the function role's credentials also ends with them."""
    list_page_size: int = MAX_LIST_PAGE
    """Keys per ListObjectsV2 page of a prefix run's listing (1 to 1,000)."""
    segment_pages: int = 10
    """Listing pages per segment: each segment of keys becomes one work chain's range."""
    signing_secret_id: str = ""
    """A Secrets Manager secret (`{"access_key_id", "secret_access_key"}`) of a dedicated IAM
    user whose keys sign the `presign` processor's URLs: they then live their full expiry
    (up to 7 days) instead of ending with the function role's session."""
    max_legs: int = 10_000
    max_task_attempts: int = 3
    """A task that kills its leg this many times is recorded as failed and skipped."""
    lease_slack_ms: int = 5_000
    stall_after_ms: int = 120_000
    """A handed-off leg nobody claimed for this long is presumed lost; the sweep resends it."""
    processor: str = DEFAULT_PROCESSOR
    request_timeout_s: float = 15.0
    fetch_attempts: int = 3
    max_page_bytes: int = 5_000_000
    max_redirects: int = 5
    allow_nets: tuple[str, ...] = field(default=())
    """CIDRs the fetcher may reach despite being private (for example 127.0.0.0/8 locally)."""
    user_agent: str = "baton/0.1"
    handoff_attempts: int = 4
    check_recursion: bool = True
    metrics: bool = True
    """Print CloudWatch EMF metrics at the end of each leg."""
    log_format: str = "json"
    """`json` for CloudWatch, `text` for reading in a terminal."""
    log_level: str = "INFO"
    architecture: str = ""
    """`x86_64` or `arm64`, for prices; empty: the machine the function runs on."""
    prices: str = ""
    """Overrides of worker.prices.DEFAULT_PRICES, `name=value,...` (dollars per unit)."""
    index_threshold_bytes: int = 32 * 1024 * 1024
    """Task lists up to this size are read whole; larger JSONL lists are indexed and read
    in windows (worker.tasks), and larger JSON arrays are refused."""

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "batch_size",
            "chains",
            "max_chains",
            "max_concurrency",
            "per_host_concurrency",
            "max_legs",
            "max_task_attempts",
            "fetch_attempts",
            "handoff_attempts",
            "max_page_bytes",
            "list_page_size",
            "segment_pages",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "concurrency",
            "margin_ms",
            "lease_slack_ms",
            "stall_after_ms",
            "max_redirects",
            "index_threshold_bytes",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.request_timeout_s <= 0:
            problems.append(f"request_timeout_s must be > 0, got {self.request_timeout_s}")
        if ":" not in self.processor and self.processor not in BUILTIN_PROCESSORS:
            problems.append(
                f"processor must look like 'module:function' or be one of "
                f"{sorted(BUILTIN_PROCESSORS)}, got {self.processor!r}"
            )
        if self.list_page_size > MAX_LIST_PAGE:
            problems.append(
                f"list_page_size must be at most {MAX_LIST_PAGE}, got {self.list_page_size}"
            )
        if self.results_prefix.startswith(self.tasks_prefix) or self.tasks_prefix.startswith(
            self.results_prefix
        ):
            problems.append("tasks_prefix and results_prefix must not overlap (loops)")
        for name in ("tasks_prefix", "results_prefix"):
            prefix = getattr(self, name)
            if prefix.startswith(SCHEDULES_PREFIX) or SCHEDULES_PREFIX.startswith(prefix):
                problems.append(
                    f"{name} {prefix!r} must not overlap {SCHEDULES_PREFIX} (where schedules "
                    "wait: the tick would move them early, or the trigger start them)"
                )
        if self.chains > self.max_chains:
            problems.append(
                f"chains ({self.chains}) must not exceed max_chains ({self.max_chains})"
            )
        if not 0 <= self.presign_s <= MAX_PRESIGN_S:
            problems.append(
                f"presign_s must be 0 to {MAX_PRESIGN_S} (7 days), got {self.presign_s}"
            )
        if self.webhook_url and not self.webhook_url.startswith(("https://", "http://")):
            problems.append(f"webhook_url must be an http(s) URL, got {self.webhook_url!r}")
        if self.webhook_url and not self.webhook_secret:
            problems.append("webhook_url needs a webhook_secret to sign the notice with")
        if self.architecture not in ("", *ARCHITECTURES):
            problems.append(
                f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}"
            )
        try:
            parse_overrides(self.prices)
        except ValueError as exc:
            problems.append(f"prices: {exc}")
        if self.log_format not in ("json", "text"):
            problems.append(f"log_format must be 'json' or 'text', got {self.log_format!r}")
        for cidr in self.allow_nets:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                problems.append(f"allow_nets entry {cidr!r} is not a CIDR")
        if problems:
            raise ConfigError("; ".join(problems))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read BATON_* variables; an explicit override beats the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, str(f.type), raw)
        values.update(overrides)
        return cls(**values)


def _parse(name: str, type_name: str, raw: str) -> Any:
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if type_name.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {type_name}") from exc
    return raw
