"""The crawl bench's site in a process of its own, as the web is to a crawler.

The bench's process also runs the S3 emulator (moto, pure Python). Sharing one GIL with
it, the site answered late whenever the emulator was busy, and only baton's runs keep
the emulator busy (16 chains' commits, mail and checkpoints): their pages looked slower
than the peers' for a reason no real site or real S3 has. Here the site has its own
interpreter; the bench asks it what it saw through a pipe.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, Self

from devstack.crawlsite import CrawlSite, CrawlSiteConfig

START_TIMEOUT_S = 60.0


class SiteProcess:
    """`with SiteProcess(config) as site:` serves a `CrawlSite` from a child process; the
    methods the bench uses are forwarded to it."""

    def __init__(self, config: CrawlSiteConfig) -> None:
        self.config = config
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    def __enter__(self) -> Self:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        ours, theirs = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(theirs, self.config), name="baton-crawl-site", daemon=True
        )
        self._process.start()
        theirs.close()
        self._conn = ours
        try:
            if not ours.poll(START_TIMEOUT_S):
                raise RuntimeError(f"the crawl site did not start within {START_TIMEOUT_S:.0f} s")
            self._answer()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._process = None

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._conn is None:
            raise RuntimeError("the crawl site is not running")
        self._conn.send((name, args, kwargs))
        return self._answer()

    def _answer(self) -> Any:
        assert self._conn is not None
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"the crawl site process: {value}")
        return value

    def expected(self, **kwargs: Any) -> Any:
        return self._call("expected", **kwargs)

    def seed_urls(self) -> list[str]:
        return list(self._call("seed_urls"))

    def url(self, host: int, path: str) -> str:
        return str(self._call("url", host, path))

    def reset(self) -> None:
        self._call("reset")

    def served(self) -> Any:
        return self._call("served")

    def requests(self) -> Any:
        return self._call("requests")

    @property
    def max_concurrent(self) -> dict[int, int]:
        return dict(self._call("max_concurrent"))


def _serve(conn: Connection, config: CrawlSiteConfig) -> None:
    """The child: serve the site, answer the parent's calls until it sends None."""
    try:
        with CrawlSite(config) as site:
            conn.send((True, None))
            while (call := conn.recv()) is not None:
                name, args, kwargs = call
                try:
                    found = getattr(site, name)
                    conn.send((True, found(*args, **kwargs) if callable(found) else found))
                except Exception as exc:  # the parent raises it with the call's context
                    conn.send((False, f"{name}: {type(exc).__name__}: {exc}"))
    except EOFError:
        return  # the parent is gone
    except Exception as exc:
        conn.send((False, f"start: {type(exc).__name__}: {exc}"))
