"""The origins the peer comparison crawls: the sample site on many loopback hosts.

DESIGN.md, "Benchmark fairness": latency benchmarks use a many-host origin, so a
crawler's per-host politeness does not decide the result. An `Origin` serves
`devstack.site` pages from `hosts` servers, one per address 127.0.<net>.1, .2, ...
(the whole of 127.0.0.0/8 is loopback), page i from host i % hosts, so the same URL
list spreads evenly over the hosts. Links on a page are relative: they stay on its host.

The servers run in a process of their own (`python -m bench.origins`), so serving
pages does not share a GIL with the crawler being measured, nor with the embedded
stack that baton runs on. The parent talks to it over stdin/stdout: `reset` (forget
the hit counts, so the next crawler sees the same delays), `stats`, and end of input.

    with Origin(OriginConfig("latency", pages=2000, net=1)) as origin:
        urls = origin.urls()
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from devstack.site import LatencyProfile, Site, SiteConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class UniformLatency(LatencyProfile):
    """A delay drawn evenly from [low_s, high_s], seeded by (seed, path, hit) as the site's."""

    low_s: float = 0.1
    high_s: float = 0.3

    def delay(self, seed: int, path: str, hit: int) -> float:
        if self.high_s <= 0:
            return 0.0
        return random.Random(f"{seed}:{path}:{hit}").uniform(self.low_s, self.high_s)


@dataclass(frozen=True)
class OriginConfig:
    name: str
    pages: int
    net: int
    """Hosts are 127.0.<net>.1 .. 127.0.<net>.<hosts>."""
    hosts: int = 16
    page_bytes: tuple[int, int] = (80_000, 80_000)
    latency_ms: tuple[float, float] = (100.0, 300.0)
    """Each page's delay, drawn evenly from this range; (0, 0) for none."""
    max_in_flight: int = 0
    """Per host: answer 429 to a request that arrives while this many are being served."""
    retry_after_s: int = 1
    seed: int = 15

    def site(self) -> SiteConfig:
        low, high = self.latency_ms
        return SiteConfig(
            pages=self.pages,
            seed=self.seed,
            page_bytes=self.page_bytes,
            latency=UniformLatency(low_s=low / 1000, high_s=high / 1000),
            max_in_flight=self.max_in_flight,
            retry_after_s=self.retry_after_s,
        )

    def describe(self) -> str:
        low, high = self.latency_ms
        kb = "-".join(dict.fromkeys(f"{b // 1000}" for b in self.page_bytes))
        delay = f"{low:g}-{high:g} ms latency" if high > 0 else "no latency"
        hosts = f"{self.hosts} hosts" if self.hosts > 1 else "1 host"
        throttle = f", 429 above {self.max_in_flight} in flight" if self.max_in_flight else ""
        return f"{kb} KB pages, {delay}, {hosts}{throttle}"


class Origin:
    """The origin's server process; a context manager."""

    def __init__(self, config: OriginConfig) -> None:
        self.config = config
        self._process: subprocess.Popen[str] | None = None
        self._bases: list[str] = []

    def __enter__(self) -> Origin:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.origins", json.dumps(asdict(self.config))],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self._read()
        self._bases = list(ready["bases"])
        return self

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()

    def urls(self) -> list[str]:
        hosts = len(self._bases)
        return [f"{self._bases[i % hosts]}/page/{i}" for i in range(self.config.pages)]

    def reset(self) -> None:
        self._ask("reset")

    def stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._ask("stats").items()}

    def _ask(self, command: str) -> dict[str, Any]:
        assert self._process is not None
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self._process is not None
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"origin {self.config.name} exited ({self._process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer


def serve(config: OriginConfig, commands: IO[str], answers: IO[str]) -> None:
    """Serve every host, render every page before the first request, then obey commands."""
    sites = [
        Site(config.site(), host=f"127.0.{config.net}.{n + 1}").start() for n in range(config.hosts)
    ]
    try:
        for index in range(config.pages):
            sites[index % config.hosts].page(index)
        _answer(answers, {"bases": [site.base_url for site in sites]})
        for line in commands:
            command = line.strip()
            if command == "reset":
                for site in sites:
                    site.reset_hits()
                _answer(answers, {})
            elif command == "stats":
                _answer(
                    answers,
                    {
                        "requests": sum(sum(site.hits.values()) for site in sites),
                        "throttled": sum(site.throttled for site in sites),
                    },
                )
            else:
                _answer(answers, {"error": f"unknown command {command!r}"})
    finally:
        for site in sites:
            site.stop()


def _answer(out: IO[str], value: dict[str, Any]) -> None:
    out.write(json.dumps(value) + "\n")
    out.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.origins", description=__doc__)
    parser.add_argument("config", help="an OriginConfig as JSON")
    args = parser.parse_args(argv)
    fields = json.loads(args.config)
    for name in ("page_bytes", "latency_ms"):
        fields[name] = tuple(fields[name])
    serve(OriginConfig(**fields), sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
