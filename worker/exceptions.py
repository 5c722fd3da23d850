"""baton's errors, split by what a caller does about them.

BatonError
├── ConfigError          bad settings: fix the deployment, nothing to retry
├── BadEventError        an event the handler cannot act on: reported, starts nothing
├── TaskListError        a task list that cannot be read as tasks: the run fails
├── InputChangedError    the pinned task list changed: the run is superseded
│   └── ObjectChangedError   a listed object changed or went: that task's row says so
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


class ObjectChangedError(InputChangedError):
    """An object of a prefix run is no longer the version its listing pinned (or is gone).

    Raised by the object reader inside a task, so it fails that task, not the run.
    """


class ConflictError(BatonError):
    pass


class RunNotFoundError(BatonError):
    pass


class TransientError(BatonError):
    pass


class OutOfTimeError(BatonError):
    """Raised by a processor (or the fetcher) when the leg's time ran out for this task.

    `tried` says whether the task got to do any work. A task that was never tried
    is always deferred to the next leg; one that ran out of time for a retry is
    deferred too, unless it already had a whole fresh leg's budget.
    """

    def __init__(self, message: str, *, tried: bool) -> None:
        super().__init__(message)
        self.tried = tried
