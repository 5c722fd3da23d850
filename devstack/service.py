"""The start / stop / `with` protocol that the local stack's servers share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class Service(ABC):
    """`with service as s:` runs `start()`, then `stop()`; `s` is the service itself.

    Not what `start()` returns: EmbeddedS3 and LambdaRuntime return their endpoint URL.
    """

    @abstractmethod
    def start(self) -> object: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
