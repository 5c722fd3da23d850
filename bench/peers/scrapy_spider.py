"""Scrapy over the URL list, at its defaults or with CONCURRENT_REQUESTS set.

    python -m bench.peers.scrapy_spider --urls urls.txt --concurrency default|64 --out rows.jsonl

`default` keeps Scrapy's settings (CONCURRENT_REQUESTS 16, CONCURRENT_REQUESTS_PER_DOMAIN
8, no AutoThrottle, ROBOTSTXT_OBEY off, retries 2); a number sets CONCURRENT_REQUESTS and
keeps the per-domain limit (16 hosts x 8 is above 64, so it does not bind). One setting
is not Scrapy's default: LOG_LEVEL INFO, since at DEBUG it logs every response and every
item. Items go to a JSON-lines feed, as a Scrapy crawler's results do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response

from bench.peers.common import Clock, Summary, absolute_links, arguments, read_urls, squash, version


class Pages(scrapy.Spider):  # type: ignore[misc]
    name = "pages"

    def __init__(self, summary: Summary, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.summary = summary

    def parse(self, response: Response, **kwargs: Any) -> Iterator[dict[str, Any]]:
        row = {
            "url": response.url,
            "title": squash(response.css("title::text").get()),
            "description": squash(response.css('meta[name="description"]::attr(content)').get()),
            "h1": squash(" ".join(response.css("h1 ::text").getall())),
            "links": absolute_links(response.url, response.css("a::attr(href)").getall()),
        }
        self.summary.count(row)
        yield row


def main() -> None:
    args = arguments("python -m bench.peers.scrapy_spider", __doc__)
    urls = read_urls(args.urls)
    summary = Summary("Scrapy", args.concurrency)
    summary.versions = {name: version(name) for name in ("scrapy", "parsel", "twisted")}
    settings: dict[str, Any] = {"LOG_LEVEL": "INFO"}
    if args.concurrency != "default":
        settings["CONCURRENT_REQUESTS"] = int(args.concurrency)
    if args.out is not None:
        settings["FEEDS"] = {str(args.out): {"format": "jsonlines", "overwrite": True}}
    process = CrawlerProcess(settings=settings)
    clock = Clock()
    clock.start()
    process.crawl(Pages, summary=summary, start_urls=urls)
    process.start()
    clock.stop(summary)
    missing = len(urls) - summary.pages
    summary.pages += missing
    summary.failed += missing
    summary.emit()


if __name__ == "__main__":
    main()
