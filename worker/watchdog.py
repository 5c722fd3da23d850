"""A total time limit on a request: connect, headers and body, however slowly they drip.

requests' timeouts bound each socket operation, not the request, so a server that
sends a byte a second never trips them. One `Watchdog` thread serves every request:
a request runs inside `dog.limit(deadline)`, the connection it uses registers its
socket with that limit (`watch`, called by worker.netguard's connections), and when
the deadline passes the watchdog shuts the socket down, which ends a blocked read
at once. A socket is a few bytes in a heap, not a thread or a timer per request.

The limit is found through a thread-local because requests offers no way to hand
per-request data down to the connection; a connection is used by one thread at a
time, the thread that made the request.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator

_local = threading.local()


class Limit:
    """One request's deadline; `fired` says the watchdog cut it."""

    __slots__ = ("_dog", "deadline", "done", "fired")

    def __init__(self, dog: Watchdog, deadline: float) -> None:
        self._dog = dog
        self.deadline = deadline
        self.fired = False
        self.done = False

    def watch(self, sock: socket.socket) -> None:
        self._dog._arm(self, sock)


def current() -> Limit | None:
    limit: Limit | None = getattr(_local, "limit", None)
    return limit


def watch(sock: socket.socket) -> None:
    """Cut `sock` when the calling thread's current request runs out of time."""
    limit = current()
    if limit is not None:
        limit.watch(sock)


class Watchdog:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Limit, socket.socket]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def limit(self, deadline: float) -> Iterator[Limit]:
        """Run a request on this thread under `deadline` (a `time.monotonic()` time)."""
        limit = Limit(self, deadline)
        outer = current()
        _local.limit = limit
        try:
            yield limit
        finally:
            _local.limit = outer
            limit.done = True  # its heap entries are dropped lazily, without the lock

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _arm(self, limit: Limit, sock: socket.socket) -> None:
        with self._cond:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (limit.deadline, next(self._order), limit, sock))
            if self._heap[0][2] is limit:
                self._cond.notify()

    def _run(self) -> None:
        heap = self._heap
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while heap and (heap[0][2].done or heap[0][0] <= now):
                    _, _, limit, sock = heapq.heappop(heap)
                    if not limit.done:
                        limit.fired = True
                        _cut(sock)
                self._cond.wait(heap[0][0] - now if heap else None)


def _cut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSLSocket: its own shutdown() drops the
    # TLS object under the feet of the thread reading from it.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
