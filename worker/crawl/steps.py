"""What a leg does differently for a crawl run: seed the log, grow it from each commit's
rows, keep each host's politeness across legs.

The leg calls in at three points: when it loads its tasks (`load`, which also seeds an
empty log), before each checkpoint CAS (`grow`: the commit's links, normalised and
filtered, written as one segment first, so the CAS that moves past the batch also
counts what it found), and after that CAS (`committed`). Everything here is a function
of the checkpoint it is given and what S3 holds, so a redone batch finds the same
links in the same log.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, NamedTuple

from worker.checkpoint import Checkpoint
from worker.clock import Clock
from worker.crawl.chainlog import ChainLog, FrontierTasks, OthersCount, new_segment
from worker.crawl.frontier import Entry, decode_segment, encode_segment, interleave_by_host
from worker.crawl.robots import RobotsRules, fetch_robots, rules_from_response
from worker.crawl.seen import url_hash
from worker.crawl.sitemap import parse_sitemap
from worker.crawl.spec import CrawlSpec, parse_crawl_spec
from worker.crawl.urls import ScopeFilter, host_of, normalise, origin_of, partition
from worker.fetch import Fetcher, FetchError
from worker.hosts import Hosts
from worker.landed import landed
from worker.netguard import UnresolvedHostError
from worker.store import RunStore
from worker.tasks import Task

log = logging.getLogger(__name__)

ROBOTS_TIMEOUT_S = 5.0
MAX_DELAY_S = 60.0
"""A Crawl-delay above this is taken as this (some sites ask for hours)."""
TOP_HOSTS = 100
"""Hosts counted by name in the summary; the rest are `(other)`."""
MAX_SITEMAPS = 20
"""Sitemaps read per seed origin (an index's children included)."""
STRIDE = 10_000_000
"""Chain n's log starts at index n * STRIDE (a chain's log holds at most this many)."""
MAX_CRAWL_CHAINS = 1000
"""Result keys hold ten digits: 1,000 chains of STRIDE indices."""
KEPT_RUNS = 4
HELD_MOST = 16
"""Objects whose rows' links may wait for a hole (`grow`): past this, they are taken, so a
hole held open long (a host's Crawl-delay) bounds the checkpoint and the wait."""
MAIL_EVERY_S = 1.0
"""With several chains, how often a leg looks in its inbox."""
CRAWL_COMMIT_EVERY_S = 2.0
"""With several chains, how often a leg commits: links for other chains leave with it."""
CRAWL_LINGER_S = 3.0
"""With several chains, how long a leg out of pages watches its inbox before it ends."""
CRAWL_LINGER_STEP_S = 0.25
COUNT_EVERY_S = 10.0
"""With several chains, how often a leg counts the others' pages (for `max_pages`) when
the run nears its cap; far from it, as seldom as COUNT_MOST_S."""
COUNT_MOST_S = 60.0


@dataclass
class CrawlMemory:
    """Container-scoped: each chain's log and seen-set, and robots rules per origin, so a
    warm leg reads only what the previous legs added. Keyed by the run's incarnation
    (its id and when its run.json was made): a run whose objects were deleted (say, by
    a lifecycle rule) and started again under the same id is a new run here too."""

    logs: dict[tuple[str, str], ChainLog] = field(default_factory=dict)
    robots: dict[tuple[str, str], RobotsRules] = field(default_factory=dict)

    def chain_log(self, incarnation: str, run_id: str, chain: str, base: int) -> ChainLog:
        key = (incarnation, chain)
        found = self.logs.pop(key, None) or ChainLog(run_id, chain, base)
        self.logs[key] = found  # most recent last
        while len(self.logs) > KEPT_RUNS:
            self.logs.pop(next(iter(self.logs)))
        return found

    def forget(self, incarnation: str, chain: str) -> None:
        """After a write whose fate is unknown: the next leg rebuilds from S3."""
        self.logs.pop((incarnation, chain), None)


class Held(NamedTuple):
    """A results or holes object committed past a hole: its rows' links wait for it."""

    key: str
    first: int
    last: int


@dataclass(frozen=True)
class Growth:
    """What a commit adds to the log (maybe nothing) and the chain's crawl state after it."""

    first: int
    entries: list[Entry]
    body: bytes
    frontier: dict[str, Any]
    sent_to: tuple[str, ...] = ()
    """Chains whose inbox got links from this commit: woken after the CAS if they ended."""
    merged: tuple[str, ...] = ()
    """Inbox objects this segment took in: deleted after the CAS (taking one twice adds
    nothing, every URL in it being in the seen-set by then)."""

    @property
    def end(self) -> int:
        return self.first + len(self.entries)


class CrawlSteps:
    def __init__(
        self,
        spec: dict[str, Any],
        *,
        chains: int = 1,
        store: RunStore,
        memory: CrawlMemory,
        fetcher: Fetcher,
        hosts: Hosts,
        io: Executor,
        clock: Clock,
        incarnation: str,
    ) -> None:
        self.spec: CrawlSpec = parse_crawl_spec(spec, "the run's crawl spec")
        self.incarnation = incarnation
        """Which run this is to the container's memory (`CrawlMemory`)."""
        self.store = store
        self.memory = memory
        self.fetcher = fetcher
        self.hosts = hosts
        self.io = io
        self.clock = clock
        self.scope = ScopeFilter(self.spec)
        self.chains = chains
        self.log: ChainLog | None = None
        self.headers = {"User-Agent": self.spec.user_agent}
        self.delays: dict[str, float] = {}
        """Hosts whose robots.txt asks a Crawl-delay: carried in the checkpoint, so every
        leg paces them from its first request (a leg learns them only as it commits)."""
        self._fetched: set[str] = set()
        """Origins whose robots.txt this leg fetched itself."""
        self._mail_checked = 0.0

    # the leg's three calls
    def load(self, cp: Checkpoint) -> FrontierTasks:
        """The chain's log up to the checkpoint, as the leg's task list; the leg's hosts
        set to the crawl's politeness and the previous leg's pauses."""
        self.hosts.use(self.spec.per_host_concurrency, self.spec.per_host_delay_ms / 1000)
        now = self.clock.monotonic()
        state = cp.frontier or {}
        for host, seconds in state.get("delays", {}).items():
            self.delays[host] = float(seconds)
            self.hosts.set_delay(host, float(seconds))
        for host, seconds in state.get("pauses", {}).items():
            self.hosts.pause(host, float(seconds), now)
        self.log = self.memory.chain_log(self.incarnation, cp.run_id, cp.chain, cp.start)
        try:
            self.log.sync(self.store, cp.range_end, self.io)
        except Exception:
            self.memory.forget(self.incarnation, cp.chain)
            raise
        return FrontierTasks(self.log, self.store, self._task)

    def seeds(self, cp: Checkpoint) -> Growth:
        """The log's first segment: the seeds (and what their sitemaps list), through the
        same filters as any link."""
        found: list[tuple[str, int, str | None]] = [(seed, 0, None) for seed in self.spec.seeds]
        if self.spec.sitemaps:
            found += [(url, 0, where) for url, where in self._sitemap_urls(cp.run_id)]
        return self._grow(cp, found, rows=(), send=False)  # each chain seeds its own hosts

    def grow(
        self,
        cp: Checkpoint,
        rows: Sequence[dict[str, Any]],
        *,
        end: int | None = None,
        holes: Sequence[int] = (),
        stored: Sequence[Held] = (),
        mail: Sequence[str] = (),
    ) -> Growth:
        """The links in a commit's rows that are new to the log, written as its next
        segment (nothing written when there are none); links to other chains' hosts go to
        their inboxes. With several chains, the links other chains sent are taken in too:
        the inbox objects `mail` names (the chain has nothing else left and just listed
        them), else the whole inbox every MAIL_EVERY_S.

        `end` and `holes` are the commit's new position and the holes it leaves. A row
        past a hole and deeper than it waits for it: the hole's page may link to what the
        row links to, one level shallower, and taken first the row's link gave that page
        the deeper depth (at `max_depth`, never followed). Waiting rows stay in their
        objects (`stored`, kept in the checkpoint as `held`) until the rows below them are
        all in, at most HELD_MOST objects (then every held row is taken)."""
        assert self.log is not None
        below = min([cp.position, *cp.holes])
        self.log.release_below(below)
        upto = min([*holes, below if end is None else end])
        level = min((self.log.entry(self.store, h).depth for h in holes), default=-1)
        held = [Held(*h) for h in (cp.frontier or {}).get("held", ())]
        waiting = [h for h in (*held, *stored) if h.last >= upto]
        if len(waiting) > HELD_MOST:
            log.info(
                "crawl %s chain %s: %s objects held past hole %s, taking their links",
                cp.run_id,
                cp.chain,
                len(waiting),
                upto,
            )
            upto, level, waiting = max(h.last + 1 for h in waiting), -1, []

        def due(row: dict[str, Any]) -> bool:
            index = int(row["index"])
            return below <= index and (index < upto or int(row.get("depth") or 0) <= level)

        ready = [row for row in rows if due(row)]
        if upto > below:
            ready += [row for row in self._held_rows(held, upto) if due(row)]
        waiting = [
            h
            for h in waiting
            if h in held or any(not due(r) for r in rows if h.first <= int(r["index"]) <= h.last)
        ]
        found: list[tuple[str, int, str | None]] = []
        limit = self.spec.max_depth
        for row in sorted(ready, key=lambda r: int(r["index"])):
            depth = int(row.get("depth") or 0)
            if depth >= limit:
                continue
            page = str(row.get("url"))
            found += [(link, depth + 1, page) for link in row.get("links") or ()]
        merged: list[str] = []
        now = self.clock.monotonic()
        if self.chains > 1 and (mail or now - self._mail_checked >= MAIL_EVERY_S):
            self._mail_checked = now
            merged = list(mail) or self.mail(cp)
            found += self._read_mail(merged)
        return self._grow(cp, found, rows, merged=tuple(merged), held=waiting)

    def _held_rows(self, held: Sequence[Held], upto: int) -> list[dict[str, Any]]:
        """Rows of the held objects that may be due: those with rows below `upto`."""
        read = self.io.map(self.store.read_rows, [h.key for h in held if h.first < upto])
        return [row for rows in read for row in rows]

    def committed(self, growth: Growth) -> None:
        """After the CAS that counted `growth`: the container's copy of the log grows, and
        the inbox objects it took in are deleted (taking one again would add nothing)."""
        assert self.log is not None
        if growth.entries:
            self.log.appended(growth.first, growth.entries, growth.body)
        self.store.delete_many(growth.merged)

    def annotate(self, row: dict[str, Any]) -> None:
        """A crawl row also says how deep its page is and where it was found."""
        if "depth" in row or self.log is None:
            return
        entry = self.log.entry(self.store, int(row["index"]))
        row["depth"] = entry.depth
        row["found_on"] = entry.found_on

    # growing the log
    def _grow(
        self,
        cp: Checkpoint,
        found: Iterable[tuple[str, int, str | None]],
        rows: Sequence[dict[str, Any]],
        *,
        send: bool = True,
        merged: tuple[str, ...] = (),
        held: Sequence[Held] = (),
    ) -> Growth:
        assert self.log is not None
        own = int(cp.chain)
        fresh: dict[int, Entry] = {}
        outgoing: dict[int, dict[int, Entry]] = {}
        # Shallowest first, so a link found twice keeps its shallower depth (mail from other
        # chains comes after the rows, at whatever depth its sender found).
        for raw, depth, page in sorted(found, key=lambda link: link[1]):
            url = normalise(raw, query=self.spec.query)
            if url is None or not self.scope.allows(url):
                continue
            hashed = url_hash(url)
            part = partition(url, self.chains) if self.chains > 1 else own
            if part != own:
                if send:
                    outgoing.setdefault(part, {}).setdefault(hashed, Entry(url, depth, page))
                continue
            if hashed in self.log.seen or hashed in fresh:
                continue
            fresh[hashed] = Entry(url, depth, page)
        entries = self._robots_allow(cp.run_id, breadth_first(fresh.values()))
        if entries:
            entries = entries[: max(0, self._room(cp))]
        number = cp.ok + cp.failed  # grows with every commit of rows: the mail's key
        writes: list[Future[None]] = []
        body = b""
        try:
            for part, mail in outgoing.items():
                sent = encode_segment(list(mail.values()))
                to, attempt = f"{part:04d}", cp.owner or ""
                put = partial(self.store.put_inbox, attempt=attempt)
                writes.append(self.io.submit(put, cp.run_id, to, cp.chain, number, sent))
            if entries:
                body, seen = new_segment(entries)
                put_segment = self.store.put_frontier
                writes.append(
                    self.io.submit(put_segment, cp.run_id, cp.chain, cp.range_end, body, seen)
                )
        except BaseException:
            wait(writes)  # none may land after the redone batch's write of its key
            raise
        landed(writes)
        return Growth(
            cp.range_end,
            entries,
            body,
            self._state(cp, entries, rows) | {"held": [list(h) for h in held]},
            sent_to=tuple(f"{part:04d}" for part in sorted(outgoing)),
            merged=merged,
        )

    def _room(self, cp: Checkpoint) -> int:
        """Pages this chain may still add. With several chains the others' pages are
        counted from time to time (COUNT_EVERY_S), so together they may pass `max_pages`
        by what they add in between (a bound, not an exact cap, across chains)."""
        assert self.log is not None
        mine = cp.range_end - cp.start
        if self.chains == 1:
            return self.spec.max_pages - mine
        now = self.clock.monotonic()
        last = self.log.others
        if last is None or now >= last.again_at:
            names = [c for c in self.store.chain_ids(cp.run_id) if c != cp.chain]
            found = self.io.map(lambda c: self.store.load_checkpoint(cp.run_id, c), names)
            pages = sum(v.checkpoint.total for v in found)
            counted = OthersCount(now, pages, mine, now)
            after_s = count_wait(last, counted, self.spec.max_pages)
            last = self.log.others = replace(counted, again_at=now + after_s)
        return self.spec.max_pages - mine - last.pages

    def owns(self, url: str, chain: str) -> bool:
        """Whether `chain` is the one whose log holds `url`'s host."""
        if self.chains == 1:
            return True
        found = normalise(url, query=self.spec.query)
        return found is not None and partition(found, self.chains) == int(chain)

    def mail(self, cp: Checkpoint) -> list[str]:
        """The inbox objects other chains sent this one."""
        return self.store.inbox_keys(cp.run_id, cp.chain)

    def _read_mail(self, keys: Sequence[str]) -> list[tuple[str, int, str | None]]:
        bodies = list(self.io.map(self.store.read_bytes, keys))
        found: list[tuple[str, int, str | None]] = []
        for key, body in zip(keys, bodies, strict=True):
            found += [(e.url, e.depth, e.found_on) for e in decode_segment(body, key)]
        return found

    def _robots_allow(self, run_id: str, entries: list[Entry]) -> list[Entry]:
        if not self.spec.robots or not entries:
            return entries
        origins = {origin_of(e.url) for e in entries}
        rules = self.rules(run_id, origins)
        agent = self.spec.user_agent
        kept = [e for e in entries if rules[origin_of(e.url)].allowed(e.url, agent)]
        if len(kept) < len(entries):
            log.info("run %s: robots.txt disallows %s links", run_id, len(entries) - len(kept))
        return kept

    def rules(self, run_id: str, origins: Iterable[str]) -> dict[str, RobotsRules]:
        """robots.txt of each origin, fetched once per run: this container's copy, else
        the run's (S3), else fetched now and kept with the run for every other leg."""
        wanted = {o: self.memory.robots.get((self.incarnation, o)) for o in origins}
        missing = [o for o, rules in wanted.items() if rules is None]
        for origin, rules in zip(
            missing, self.io.map(lambda o: self._rules(run_id, o), missing), strict=True
        ):
            wanted[origin] = rules
        out: dict[str, RobotsRules] = {}
        for origin, found in wanted.items():
            assert found is not None
            out[origin] = found
            self.memory.robots[(self.incarnation, origin)] = found
            delay = found.crawl_delay_s(self.spec.user_agent)
            if delay:
                host, seconds = host_of(origin), min(MAX_DELAY_S, delay)
                self.delays[host] = seconds
                self.hosts.set_delay(host, seconds)
                if origin in self._fetched:  # its robots.txt was a request to it too
                    self.hosts.pause(host, seconds, self.clock.monotonic())
        return out

    def _rules(self, run_id: str, origin: str) -> RobotsRules:
        kept = self.store.load_robots(run_id, origin)
        if kept is not None:
            return RobotsRules.from_dict(kept)
        at = self.clock.now_ms()
        self._fetched.add(origin)
        try:  # the fetcher's session: its connection pools hold the address guard
            rules = fetch_robots(
                self.fetcher.session, origin, self.spec.user_agent, ROBOTS_TIMEOUT_S, at
            )
        except UnresolvedHostError:
            rules = rules_from_response(origin, None, b"", at)  # a network error: RFC 9309
        if not self.store.create_robots(run_id, origin, rules.to_dict()):
            kept = self.store.load_robots(run_id, origin)  # another leg fetched it first
            if kept is not None:
                return RobotsRules.from_dict(kept)
        return rules

    def _sitemap_urls(self, run_id: str) -> list[tuple[str, str]]:
        """URLs the seed origins' sitemaps list: /sitemap.xml and robots.txt's Sitemap lines,
        an index's children followed, at most MAX_SITEMAPS per origin."""
        out: list[tuple[str, str]] = []
        origins = sorted({origin_of(seed) for seed in self.spec.seeds})
        rules = self.rules(run_id, origins) if self.spec.robots else {}
        for origin in origins:
            queue = [f"{origin}/sitemap.xml"]
            if origin in rules:
                queue += rules[origin].sitemaps()
            read = 0
            while queue and read < MAX_SITEMAPS:
                where = queue.pop(0)
                read += 1
                try:
                    page = self.fetcher.fetch(
                        where, time.monotonic() + ROBOTS_TIMEOUT_S, self.headers
                    )
                except FetchError:
                    continue
                if page.status != 200:
                    continue
                found = parse_sitemap(page.body)
                out += [(url, where) for url in found.urls]
                queue += found.sitemaps
        return out

    def _state(
        self, cp: Checkpoint, entries: Sequence[Entry], rows: Sequence[dict[str, Any]]
    ) -> dict[str, Any]:
        state = dict(cp.frontier or {})
        depths = Counter(state.get("depths", {}))
        statuses = Counter(state.get("statuses", {}))
        hosts = Counter(state.get("hosts", {}))
        for row in rows:
            depths[str(row.get("depth", 0))] += 1
            statuses[str(row.get("status") or "error")] += 1
            host = host_of(str(row.get("url")))
            hosts[host if host in hosts or len(hosts) < TOP_HOSTS else "(other)"] += 1
        deepest = max((e.depth for e in entries), default=0)
        return state | {
            "seeded": True,
            "depth": max(int(state.get("depth", 0)), deepest),
            "pauses": self.hosts.pauses(self.clock.monotonic()),
            "delays": dict(self.delays),
            "depths": dict(depths),
            "statuses": dict(statuses),
            "hosts": dict(hosts),
        }

    def _task(self, index: int, entry: Entry) -> Task:
        return Task(index, entry.url, options={"headers": self.headers, "same_host": True})


def breadth_first(entries: Iterable[Entry]) -> list[Entry]:
    """Shallower pages first, and within a depth the hosts taken in turn: the log stays in
    breadth-first order (a page's depth is its shortest distance from a seed), and one
    host's pages are spread out so its politeness never stalls the others."""
    by_depth: dict[int, list[Entry]] = {}
    for entry in entries:
        by_depth.setdefault(entry.depth, []).append(entry)
    return [e for depth in sorted(by_depth) for e in interleave_by_host(by_depth[depth])]


def crawl_checkpoint(cp: Checkpoint, growth: Growth) -> Checkpoint:
    """`cp` with the log grown: its range now ends where the log does."""
    return replace(cp, end=growth.end, total=growth.end - cp.start, frontier=growth.frontier)


def count_wait(last: OthersCount | None, now: OthersCount, cap: int) -> float:
    """How long until a crawl chain counts the others' pages again: COUNT_EVERY_S near
    `max_pages` (half of it used, or the room gone in twice that at the run's pace since
    the last count), up to COUNT_MOST_S far from it."""
    room = cap - now.pages - now.mine
    if last is None or room < cap / 2 or now.at <= last.at:
        return COUNT_EVERY_S
    rate = (now.pages + now.mine - last.pages - last.mine) / (now.at - last.at)
    if rate <= 0:
        return COUNT_MOST_S
    return min(COUNT_MOST_S, max(COUNT_EVERY_S, room / (2 * rate)))
