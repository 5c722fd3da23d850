"""aiohttp and selectolax: N coroutines pulling from one URL list, one connector (limit N).

    python -m bench.peers.aiohttp_loop --urls urls.txt --concurrency 64

Parsing runs on the event loop (about half a millisecond a page), as a simple
asyncio crawler does it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp

from bench.peers.common import Clock, Summary, arguments, read_urls, selectolax_row, version
from bench.peers.common import write_rows as write

DEFAULT_CONCURRENCY = 64


async def crawl(urls: list[str], concurrency: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    pending: Iterator[str] = iter(urls)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            for url in pending:
                try:
                    async with session.get(url) as response:
                        body = await response.read()
                        if response.status != 200:
                            rows.append({"url": url, "error": f"HTTP {response.status}"})
                            continue
                        rows.append(selectolax_row(str(response.url), body))
                except (aiohttp.ClientError, TimeoutError) as exc:
                    rows.append({"url": url, "error": type(exc).__name__})

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return rows


def main() -> None:
    args = arguments("python -m bench.peers.aiohttp_loop", __doc__)
    concurrency = DEFAULT_CONCURRENCY if args.concurrency == "default" else int(args.concurrency)
    urls = read_urls(args.urls)
    summary = Summary("aiohttp", str(concurrency))
    summary.versions = {name: version(name) for name in ("aiohttp", "selectolax")}
    clock = Clock()
    clock.start()
    rows = asyncio.run(crawl(urls, concurrency))
    write(args.out, rows)
    clock.stop(summary)
    for row in rows:
        summary.count(row)
    summary.emit()


if __name__ == "__main__":
    main()
