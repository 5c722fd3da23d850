"""baton's errors, split by what a caller does about them.

BatonError
├── ConfigError          bad settings: fix the deployment, nothing to retry
├── BadEventError        an event the handler cannot act on: reported, starts nothing
├── TaskListError        a task list that cannot be read as tasks: the run fails
├── InputChangedError    the pinned task list changed: the run is superseded
├── ConflictError        a compare-and-swap lost: another leg owns the run
├── RunNotFoundError     no run under that id
└── TransientError       worth retrying (S3 5xx/SlowDown, throttled invokes)
"""

from __future__ import annotations


class BatonError(Exception):
    """Base class for every error baton raises on purpose."""


class ConfigError(BatonError):
    pass


class BadEventError(BatonError):
    pass


class TaskListError(BatonError):
    pass


class InputChangedError(BatonError):
    pass


class ConflictError(BatonError):
    pass


class RunNotFoundError(BatonError):
    pass


class TransientError(BatonError):
    pass
