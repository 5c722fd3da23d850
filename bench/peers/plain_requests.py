"""A plain crawler: one pooled `requests` session, a thread pool, selectolax; nothing else.

    python -m bench.peers.plain_requests --urls urls.txt --concurrency 64

No retries, no politeness, no state: the floor of what fetching and extracting these
pages costs in Python with the libraries baton uses.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from bench.peers.common import Clock, Summary, arguments, read_urls, selectolax_row, version
from bench.peers.common import write_rows as write

DEFAULT_THREADS = 64


def main() -> None:
    args = arguments("python -m bench.peers.plain_requests", __doc__)
    threads = DEFAULT_THREADS if args.concurrency == "default" else int(args.concurrency)
    urls = read_urls(args.urls)
    summary = Summary("plain requests", str(threads))
    summary.versions = {name: version(name) for name in ("requests", "selectolax")}
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=threads, pool_maxsize=threads, max_retries=0)
    session.mount("http://", adapter)

    def work(url: str) -> dict[str, Any]:
        try:
            response = session.get(url, timeout=30)
            if response.status_code != 200:
                return {"url": url, "error": f"HTTP {response.status_code}"}
            return selectolax_row(response.url, response.content)
        except requests.RequestException as exc:
            return {"url": url, "error": type(exc).__name__}

    clock = Clock()
    clock.start()
    with ThreadPoolExecutor(threads) as pool:
        rows = list(pool.map(work, urls))
    write(args.out, rows)
    clock.stop(summary)
    for row in rows:
        summary.count(row)
    summary.emit()


if __name__ == "__main__":
    main()
