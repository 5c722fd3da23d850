"""Fetch cost: CPU per request of each HTTP client on the same 80 KB pages, one at a time.

What a fast origin measures is CPU, and most of a page's CPU is the HTTP client's. Each
client fetches the same URLs of the versus bench's fast origin (16 loopback hosts, 80 KB
pages, no latency; its own process) sequentially, in a fresh process of its own, so no
thread hand-off or contention is counted: only the client's own work per request. The
figure is the process's CPU time over the loop (the best of `--repeat`), per request.

- `baton fetch`: `worker.fetch.Fetcher.fetch`, the production path (address checks,
  deadline watchdog, retry policy, the body read under its size cap);
- `requests Session.get`: the plain loop's call;
- `requests adapter.send`: the transport adapter baton's fetch calls;
- `urllib3 PoolManager`: the pool under requests;
- `http.client`: the standard library, one kept-alive connection per host;
- `aiohttp`: its `ClientSession`, awaited one request at a time (from `.venv-bench`).

    python -m bench.fetch_cost [--quick] [--pages N] [--repeat R]

Writes bench/results/fetch_cost.json; `bench.run_all` runs it and BENCHMARKS.md shows it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results" / "fetch_cost.json"
BENCH_PYTHON = REPO_ROOT / ".venv-bench" / "bin" / "python"
WARM = 32
CLIENTS = (
    "baton fetch",
    "requests Session.get",
    "requests adapter.send",
    "urllib3 PoolManager",
    "http.client",
    "aiohttp",
)


def _cpu() -> float:
    """This process's CPU time, at nanosecond resolution (`os.times` ticks in 10 ms)."""
    return time.process_time()


def _loop(get: Callable[[str], bytes], urls: list[str], repeat: int) -> float:
    """The best CPU seconds per request over `repeat` passes (after a warm-up)."""
    for url in urls[:WARM]:
        get(url)
    best = float("inf")
    for _ in range(repeat):
        started = _cpu()
        for url in urls:
            if len(get(url)) < 1000:
                raise RuntimeError(f"{url}: short body")
        best = min(best, (_cpu() - started) / len(urls))
    return best


def _baton() -> Callable[[str], bytes]:
    from worker.fetch import Fetcher, FetchPolicy
    from worker.netguard import NetPolicy

    fetcher = Fetcher(FetchPolicy(), NetPolicy.from_cidrs(("127.0.0.0/8",)), pool_size=8)
    return lambda url: fetcher.fetch(url, time.monotonic() + 30).body


def _session() -> Callable[[str], bytes]:
    import requests

    session = requests.Session()
    session.trust_env = False
    return lambda url: session.get(url, timeout=(5, 15)).content


def _adapter() -> Callable[[str], bytes]:
    import requests
    from requests.adapters import HTTPAdapter

    adapter = HTTPAdapter(pool_connections=32, pool_maxsize=8)
    headers = requests.utils.default_headers()

    def get(url: str) -> bytes:
        request = requests.PreparedRequest()
        request.prepare(method="GET", url=url, headers=headers)
        return adapter.send(request, timeout=(5, 15)).content

    return get


def _urllib3() -> Callable[[str], bytes]:
    import urllib3

    pool = urllib3.PoolManager(num_pools=32, maxsize=8)
    return lambda url: pool.request("GET", url, timeout=urllib3.Timeout(5, 15)).data


def _http_client() -> Callable[[str], bytes]:
    import http.client
    from urllib.parse import urlsplit

    connections: dict[str, http.client.HTTPConnection] = {}

    def get(url: str) -> bytes:
        parts = urlsplit(url)
        connection = connections.get(parts.netloc)
        if connection is None:
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=15)
            connections[parts.netloc] = connection
        connection.request("GET", parts.path or "/")
        return connection.getresponse().read()

    return get


def _aiohttp(urls: list[str], repeat: int) -> float:
    import asyncio

    import aiohttp  # type: ignore[import-not-found]

    async def main() -> float:
        async with aiohttp.ClientSession() as session:

            async def get(url: str) -> bytes:
                async with session.get(url) as response:
                    body: bytes = await response.read()
                    return body

            for url in urls[:WARM]:
                await get(url)
            best = float("inf")
            for _ in range(repeat):
                started = _cpu()
                for url in urls:
                    if len(await get(url)) < 1000:
                        raise RuntimeError(f"{url}: short body")
                best = min(best, (_cpu() - started) / len(urls))
            return best

    return asyncio.run(main())


MAKERS: dict[str, Callable[[], Callable[[str], bytes]]] = {
    "baton fetch": _baton,
    "requests Session.get": _session,
    "requests adapter.send": _adapter,
    "urllib3 PoolManager": _urllib3,
    "http.client": _http_client,
}


def child(client: str, url_file: str, repeat: int) -> None:
    """In a fresh process: one client's CPU per request, printed as JSON."""
    sys.path.insert(0, str(REPO_ROOT))
    urls = Path(url_file).read_text().split()
    if client == "aiohttp":
        seconds = _aiohttp(urls, repeat)
    else:
        seconds = _loop(MAKERS[client](), urls, repeat)
    print(json.dumps({"client": client, "cpu_ms_per_request": round(seconds * 1000, 4)}))


def measure(pages: int, repeat: int, say: Any = print) -> dict[str, Any]:
    from bench.origins import Origin
    from bench.versus import VersusConfig

    origin_config = VersusConfig(pages=pages).origins()["fast"]
    rows: list[dict[str, Any]] = []
    with Origin(origin_config) as origin, tempfile.TemporaryDirectory() as tmp:
        url_file = Path(tmp) / "urls.txt"
        url_file.write_text("\n".join(origin.urls()) + "\n")
        for client in CLIENTS:
            python = str(BENCH_PYTHON) if client == "aiohttp" else sys.executable
            if client == "aiohttp" and not BENCH_PYTHON.exists():
                rows.append({"client": client, "skipped": "no .venv-bench (make bench-setup)"})
                continue
            origin.reset()
            done = subprocess.run(
                [python, "-m", "bench.fetch_cost", "--child", client, str(url_file), str(repeat)],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                rows.append({"client": client, "error": done.stderr.strip()[-300:]})
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            say(f"  {client:24} {rows[-1]['cpu_ms_per_request']:.3f} CPU ms per request")
    baton = next((r.get("cpu_ms_per_request") for r in rows if r["client"] == "baton fetch"), None)
    for row in rows:
        ms = row.get("cpu_ms_per_request")
        if ms and baton:
            row["vs_baton_fetch"] = round(ms / baton, 2)
    return {
        "pages": pages,
        "page_bytes": origin_config.page_bytes[0],
        "hosts": origin_config.hosts,
        "repeat": repeat,
        "clients": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fetch_cost", description=__doc__)
    parser.add_argument("--child", nargs=3, metavar=("CLIENT", "URLS", "REPEAT"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pages", type=int)
    parser.add_argument("--repeat", type=int)
    args = parser.parse_args(argv)
    if args.child:
        client, url_file, repeat = args.child
        child(client, url_file, int(repeat))
        return 0
    pages = args.pages or (200 if args.quick else 1000)
    repeat = args.repeat or (1 if args.quick else 3)
    found = measure(pages, repeat, say=lambda text: print(text, file=sys.stderr, flush=True))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(found, indent=2) + "\n")
    print(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
