"""Crawlee for Python's ParselCrawler over the URL list, at its defaults or a fixed level.

    python -m bench.peers.crawlee_parsel --urls urls.txt --concurrency default|64

`default` leaves ConcurrencySettings alone (Crawlee's AutoscaledPool: desired 10,
min 1, max 100); a number pins min = desired = max. Everything else is Crawlee's
default: its HTTP client (impit), its session pool, its request queue and dataset
on the file-system storage (CRAWLEE_STORAGE_DIR, set by the bench to a scratch
directory), three retries, robots.txt not read. Rows go to the dataset with
`push_data`, as a Crawlee crawler's results do.
"""

from __future__ import annotations

import asyncio
import os

from crawlee import ConcurrencySettings
from crawlee.crawlers import ParselCrawler, ParselCrawlingContext

from bench.peers.common import Clock, Summary, absolute_links, arguments, read_urls, squash, version


async def crawl(urls: list[str], concurrency: str, summary: Summary) -> None:
    settings = None
    if concurrency != "default":
        level = int(concurrency)
        settings = ConcurrencySettings(
            min_concurrency=level, desired_concurrency=level, max_concurrency=level
        )
    crawler = ParselCrawler(concurrency_settings=settings) if settings else ParselCrawler()

    @crawler.router.default_handler
    async def page(context: ParselCrawlingContext) -> None:
        url = context.request.loaded_url or context.request.url
        selector = context.selector
        row = {
            "url": url,
            "title": squash(selector.css("title::text").get()),
            "description": squash(selector.css('meta[name="description"]::attr(content)').get()),
            "h1": squash(" ".join(selector.css("h1 ::text").getall())),
            "links": absolute_links(url, selector.css("a::attr(href)").getall()),
        }
        await context.push_data(row)
        summary.count(row)

    clock = Clock()
    clock.start()
    statistics = await crawler.run(urls)
    clock.stop(summary)
    failed = int(statistics.requests_failed)
    summary.pages += failed
    summary.failed += failed


def main() -> None:
    args = arguments("python -m bench.peers.crawlee_parsel", __doc__)
    if args.workdir is not None:
        os.environ.setdefault("CRAWLEE_STORAGE_DIR", str(args.workdir / "crawlee-storage"))
    summary = Summary("Crawlee (ParselCrawler)", args.concurrency)
    summary.versions = {name: version(name) for name in ("crawlee", "parsel", "impit")}
    asyncio.run(crawl(read_urls(args.urls), args.concurrency, summary))
    summary.emit()


if __name__ == "__main__":
    main()
