"""Crawl worlds: a seeded link graph crawled by the real runtime, and the oracle's view of it.

About one world in seven (`CRAWL_SHARE`, drawn from its own stream, so a list world
stays exactly what it was) starts a crawl instead of a list: the manual payload
`{"bucket", "crawl": {"seeds", "robots": false, "scope": "hosts", "hosts",
"max_depth", "max_pages"?, "per_host_delay_ms"?}, "chains": C}` with C = 1..8,
under the world's usual faults (the list-only ones, a replaced list and a deploy
from 0.1, are off), plus the crawl's own fault points (`faults.FAULTS`, layer
`crawl`): a leg killed right after its segment's seen-set PUT (before the CAS that
counts it), after an inbox PUT, after the CAS that counted links it mailed (before
it wakes their owners), after a done marker (before the ended chain reads its
inbox again), and after deleting one of the inbox objects a commit took in.

The graph: 2-5 sites of 2-8 pages (some sites with a `www.` host beside the bare
one, so one registrable domain spans two hosts and one chain), each page linking
to up to six pages anywhere (cycles and self-links), each link in one of many
spellings of its page (case, default port, fragment, dot segments, escaped
unreserved characters, a trailing dot, the query's order), plus links out of
scope (another site, mailto:, javascript:, credentials). A crawl of one chain has
a small `max_depth`, so pages lie beyond it; one of several chains a large one, so
every reachable page is in (README: a partitioned crawl may assign deeper depths).

The processor is the world's `SimProcessor` (latency, errors, throttling, running
out of time, killer pages), and a row that came back 200 carries its page's links.
So what a crawl must find is a closure the oracle computes from the results: from
the seeds, following the links of each page whose row is ok, to `max_depth`.
"""

from __future__ import annotations

import json
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tests.sim import oracle
from tests.sim.faults import FAULTS, FaultPlan
from tests.sim.processor import SimProcessor, draw_plan
from worker.checkpoint import Checkpoint, RunStatus
from worker.crawl.frontier import decode_segment
from worker.crawl.spec import parse_crawl_spec
from worker.crawl.steps import STRIDE
from worker.events import crawl_key, derive_run_id
from worker.processor import TaskContext
from worker.store import CHAINS_DIR, CHECKPOINT_FILE, DONE_DIR, RunStore
from worker.tasks import Task

if TYPE_CHECKING:
    from tests.sim.lam import Invocation
    from tests.sim.s3 import MemoryS3
    from tests.sim.world import Params, World

CRAWL_SHARE = 0.15
"""The share of seeds whose world is a crawl."""
CRAWL_FAULTS = tuple(kind.name for kind in FAULTS if kind.layer == "crawl")
LIST_ONLY_FAULTS = ("replace_list", "deploy")
"""World faults that make no sense for a manual crawl (no list to replace; 0.1 had no crawl)."""
DEEP = 100
"""max_depth of a crawl over several chains: deeper than any path in a graph."""
FRONTIER_DIR = "frontier/"
SEEN_DIR = "seen/"
INBOX_DIR = "inbox/"
CATEGORIES = ("stray", "log", "depth", "max_pages")
"""The crawl oracle's own categories (besides lost, duplicated, unfinished, counts)."""


def is_crawl_world(seed: int) -> bool:
    return random.Random(f"baton-sim:{seed}:kind").random() < CRAWL_SHARE


# --------------------------------------------------------------------------------------
# the graph
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    href: str
    """As the page spells it."""
    target: str | None
    """The page it names (canonical), or None: out of scope, or never a page."""


@dataclass(frozen=True)
class Graph:
    pages: dict[str, tuple[Link, ...]]
    """Every in-scope page (canonical URL) and its links, in the page's order."""
    seeds: tuple[Link, ...]
    hosts: tuple[str, ...]

    def targets(self, url: str) -> list[str]:
        return [link.target for link in self.pages.get(url, ()) if link.target is not None]


def _spelling(rng: random.Random, host: str, path: str, query: str) -> str:
    """One of the many spellings of http://{host}{path}{query} (query: "" or "?a=..&b=..")."""
    roll = rng.randrange(10)
    if roll == 1:
        return f"HTTP://{host.upper()}{path}{query}"
    if roll == 2:
        return f"http://{host}:80{path}{query}"
    if roll == 3:
        return f"http://{host}{path}{query}#part{rng.randrange(3)}"
    if roll == 4 and path != "/":
        return f"http://{host}/x/..{path}{query}"
    if roll == 5:
        return f"http://{host}/.{path}{query}"
    if roll == 6 and path.startswith("/p"):
        return f"http://{host}/%70{path[2:]}{query}"  # %70 is "p", unreserved
    if roll == 7:
        return f"http://{host}.{path}{query}"
    if roll == 8 and query:
        params = query[1:].split("&")
        return f"http://{host}{path}?{'&'.join(reversed(params))}"
    return f"http://{host}{path}{query}"


def draw_graph(rng: random.Random) -> Graph:
    sites = rng.randint(2, 5)
    hosts: list[str] = []
    where: list[tuple[str, str, str]] = []  # (host, path, query) of each page
    for number in range(sites):
        site = f"s{number}.test"
        names = [site, f"www.{site}"] if rng.random() < 0.3 else [site]
        hosts += names
        for page in range(rng.randint(2, 8)):
            host = rng.choice(names)
            if page == 0:
                where.append((host, "/", ""))
            elif rng.random() < 0.2:
                where.append((host, f"/q{page}", f"?a={page}&b=x"))
            else:
                where.append((host, f"/p{page}", ""))
    canonical = [f"http://{h}{p}{q}" for h, p, q in where]
    outside = [
        "http://elsewhere.test/",
        "ftp://s0.test/file",
        "mailto:someone@s0.test",
        "javascript:void(0)",
        "http://user:secret@s0.test/",
    ]
    pages: dict[str, tuple[Link, ...]] = {}
    order = list(range(len(where)))
    for number, url in enumerate(canonical):
        links: list[Link] = []
        # a path through the graph, so some pages lie deep
        if number + 1 < len(where) and rng.random() < 0.5:
            links.append(Link(_spelling(rng, *where[number + 1]), canonical[number + 1]))
        for _ in range(rng.randint(0, 5)):
            target = rng.choice(order)
            links.append(Link(_spelling(rng, *where[target]), canonical[target]))
        if rng.random() < 0.3:
            links.append(Link(rng.choice(outside), None))
        rng.shuffle(links)
        pages[url] = tuple(links)
    picks = rng.sample(order, k=min(len(order), rng.choice((1, 1, 2, 3))))
    seeds = tuple(Link(_spelling(rng, *where[i]), canonical[i]) for i in picks)
    return Graph(pages, seeds, tuple(hosts))


# --------------------------------------------------------------------------------------
# the world's crawl
# --------------------------------------------------------------------------------------


@dataclass
class CrawlWorld:
    graph: Graph
    spec: dict[str, Any]
    chains: int
    params: Params
    run_id: str
    mailed: set[int] = field(default_factory=set)
    """Invocations that wrote inbox objects not yet counted by a checkpoint CAS of theirs."""

    @classmethod
    def draw(cls, seed: int, params: Params) -> CrawlWorld | None:
        """The crawl of a crawl world (None for a list world), and its world's parameters."""
        if not is_crawl_world(seed):
            return None
        graph, chains, spec = _draw_crawl(seed)
        parsed = parse_crawl_spec(spec, "the sim's crawl")
        run_id = derive_run_id(params.settings.bucket, crawl_key(parsed), parsed.digest(), "")
        settings = replace(params.settings, chains=1, max_chains=max(8, chains))
        params = replace(
            params, tasks=len(graph.pages), chains=chains, chains_by="payload", settings=settings
        )
        return cls(graph, spec, chains, params, run_id)

    @staticmethod
    def plan_faults(faults: FaultPlan, crawl: bool) -> None:
        """A list world never asks for the crawl's faults; a crawl world has no list to
        replace nor a 0.1 past."""
        faults.off(*(LIST_ONLY_FAULTS if crawl else CRAWL_FAULTS))

    def payload(self) -> dict[str, Any]:
        return {"bucket": self.params.settings.bucket, "crawl": self.spec, "chains": self.chains}

    def start(self, world: World) -> None:
        """The user's manual start (instead of an upload): every page's attempts drawn first."""
        from tests.sim.world import Upload

        for url in self.graph.pages:
            world.plans[url] = draw_plan(world.workload_rng, world.faults.rates)
        key = crawl_key(parse_crawl_spec(self.spec, "the sim's crawl"))
        upload = Upload(key, "", "", self.run_id, 1, len(self.graph.pages), manual=True)
        world.uploads.append(upload)
        world.trace.add("world", f"crawl {json.dumps(self.payload())}: run {self.run_id}")
        world.lam.send(self.payload(), source="manual", by="user")

    def processor(self, inner: SimProcessor) -> CrawlProcessor:
        return CrawlProcessor(inner, self.graph)

    def describe(self) -> str:
        links = sum(len(v) for v in self.graph.pages.values())
        spec = self.spec
        pages = f", max_pages {spec['max_pages']}" if "max_pages" in spec else ""
        delay = f", delay {spec['per_host_delay_ms']} ms" if "per_host_delay_ms" in spec else ""
        return (
            f"crawl of {len(self.graph.pages)} pages ({links} links) on "
            f"{len(self.graph.hosts)} hosts from {len(spec['seeds'])} seeds over "
            f"{self.chains} chains, max_depth {spec['max_depth']}{pages}{delay}"
        )

    def fault_after(
        self, faults: FaultPlan, op: str, key: str, invocation: Invocation
    ) -> str | None:
        """After a write of `invocation` landed: the crawl fault point it is, if the fault
        strikes there now (the invocation is then killed)."""
        prefix = self.params.settings.results_prefix
        if not key.startswith(prefix):
            return None
        tail = key[len(prefix) :].partition("/")[2]  # under runs/{id}/: any run of the crawl
        point: str | None = None
        if op == "PutObject" and tail.startswith(SEEN_DIR):
            point = "crawl_kill_after_frontier"
        elif op == "PutObject" and tail.startswith(INBOX_DIR):
            self.mailed.add(invocation.number)
            point = "crawl_kill_after_inbox"
        elif op == "DeleteObject" and tail.startswith(INBOX_DIR):
            point = "crawl_kill_mid_merge"
        elif op == "PutObject" and tail.startswith(DONE_DIR) and self.chains > 1:
            point = "crawl_kill_after_end"
        elif op == "PutObject" and tail == f"{CHAINS_DIR}{_own(invocation)}/{CHECKPOINT_FILE}":
            point = "crawl_kill_before_wake" if invocation.number in self.mailed else None
            self.mailed.discard(invocation.number)
        if point is not None and faults.hit(point):
            return point
        return None


def _draw_crawl(seed: int) -> tuple[Graph, int, dict[str, Any]]:
    """A crawl world's graph, chains and spec (from its own stream)."""
    rng = random.Random(f"baton-sim:{seed}:crawl")
    graph = draw_graph(rng)
    chains = 1 if rng.random() < 0.45 else rng.randint(2, 8)
    spec: dict[str, Any] = {
        "seeds": [link.href for link in graph.seeds],
        "robots": False,
        "scope": "hosts",
        "hosts": list(graph.hosts),
        "max_depth": rng.randint(0, 4) if chains == 1 else DEEP,
    }
    if rng.random() < 0.2:
        spec["max_pages"] = rng.randint(2, max(2, len(graph.pages) - 1))
    if rng.random() < 0.3:
        spec["per_host_delay_ms"] = rng.choice((100, 500, 1_500))
    return graph, chains, spec


def crawl_seeds(count: int, *, chains: int = 1) -> list[int]:
    """The first `count` seeds whose world is a crawl over at least `chains` chains."""
    found: list[int] = []
    seed = 0
    while len(found) < count:
        seed += 1
        if is_crawl_world(seed) and _draw_crawl(seed)[1] >= chains:
            found.append(seed)
    return found


def _own(invocation: Invocation) -> str:
    return str(invocation.event.payload.get("chain", ""))


class CrawlProcessor:
    """The world's processor, with each page's links in a row that came back 200."""

    def __init__(self, inner: SimProcessor, graph: Graph) -> None:
        self.inner = inner
        self.graph = graph

    def __call__(self, task: Task, ctx: TaskContext) -> dict[str, Any]:
        if task.url not in self.graph.pages:
            return {"status": 404, "error": f"not a page of the graph: {task.url}"}
        row = self.inner(task, ctx)
        if row.get("status") == 200 and not row.get("error"):
            row["links"] = [link.href for link in self.graph.pages[str(task.url)]]
        return row


# --------------------------------------------------------------------------------------
# the oracle's part
# --------------------------------------------------------------------------------------


def unended(s3: MemoryS3, bucket: str, prefix: str, run_id: str, statuses: list[str]) -> str | None:
    """Why a crawl whose chains have all ended has not (None: it has): with every chain
    done, links still waiting in an inbox."""
    if any(status != "done" for status in statuses):
        return None
    waiting = s3.keys(bucket, f"{prefix}{run_id}/{INBOX_DIR}")
    if waiting:
        return f"links wait in {waiting[0].split('/' + INBOX_DIR, 1)[1]}"
    return None


def reopened(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """A crawl chain that ended done, woken (by a sender or the sweep) for links sent to it."""
    return (
        old.get("status") == "done"
        and new.get("status") == "running"
        and new.get("frontier") is not None
    )


def closure(graph: Graph, max_depth: int, expand: Callable[[str], bool]) -> dict[str, int]:
    """Pages reachable from the seeds, with their distance: breadth first, following the links
    of each page `expand` allows, from pages shallower than max_depth."""
    depth: dict[str, int] = {}
    queue: deque[str] = deque()
    for seed in graph.seeds:
        if seed.target is not None and seed.target not in depth:
            depth[seed.target] = 0
            queue.append(seed.target)
    while queue:
        url = queue.popleft()
        if depth[url] >= max_depth or not expand(url):
            continue
        for target in graph.targets(url):
            if target not in depth:
                depth[target] = depth[url] + 1
                queue.append(target)
    return depth


def chain_log(s3: MemoryS3, bucket: str, prefix: str, cp: Checkpoint) -> list[str] | str:
    """The URLs of a chain's log below its checkpoint's end, read from its segments; or why it
    cannot be read (a gap, a segment that does not match its seen-set)."""
    folder = f"{prefix}{cp.run_id}/{FRONTIER_DIR}{cp.chain}/"
    urls: list[str] = []
    at = cp.start
    for key in s3.keys(bucket, folder):
        first = int(key[len(folder) :].removesuffix(".jsonl"))
        if first >= cp.range_end:
            break  # written by a leg that died before its CAS: not the log (yet)
        if first != at:
            return f"chain {cp.chain}: a segment at {first} where the log is at {at}"
        body = s3.body(bucket, key)
        seen = s3.body(
            bucket, key.replace(f"/{FRONTIER_DIR}", f"/{SEEN_DIR}").replace(".jsonl", ".bin")
        )
        entries = decode_segment(body or b"")
        if seen is None or len(seen) != 8 * len(entries):
            return f"chain {cp.chain}: segment {first} and its seen-set differ"
        urls += [entry.url for entry in entries]
        at += len(entries)
    if at != cp.range_end:
        return f"chain {cp.chain}: the log ends at {at}, the checkpoint at {cp.range_end}"
    return urls


def check_run(world: World, store: RunStore, run_id: str) -> list[oracle.Violation]:
    """A crawl run, from S3: every row's index once and in its chain's log (the row's URL the
    log's); every URL once; the URLs the crawl had to find all there and none it could not
    have found; counts, max_pages, inboxes empty at the end of a done crawl."""
    crawl = world.crawl
    assert crawl is not None
    s3, bucket, prefix = world.s3, world.bucket, world.settings.results_prefix
    chains = oracle.chain_checkpoints(store, run_id)
    if not chains:
        return [oracle.Violation("unfinished", f"{run_id} has run.json but no checkpoint")]
    out: list[oracle.Violation] = []
    for chain, cp in sorted(chains.items()):
        if not cp.finished:
            out.append(oracle.Violation("unfinished", f"{run_id} chain {chain} is {cp.status}"))
    rows = list(store.rows(run_id))
    by_index = Counter(row["index"] for row in rows)
    twice = sorted(i for i, n in by_index.items() if n > 1)
    if twice:
        out.append(
            oracle.Violation("duplicated", f"{run_id}: indices in the results twice: {twice[:20]}")
        )

    logs: dict[str, list[str]] = {}
    for chain, cp in chains.items():
        found = chain_log(s3, bucket, prefix, cp)
        if isinstance(found, str):
            out.append(oracle.Violation("log", f"{run_id}: {found}"))
        else:
            logs[chain] = found
    expected: set[int] = set()
    for cp in chains.values():
        if cp.status is RunStatus.DONE:
            expected |= set(range(cp.start, cp.range_end))
        else:
            expected |= set(range(cp.start, cp.position)) - set(cp.holes)
    missing = sorted(expected - by_index.keys())
    if missing:
        out.append(
            oracle.Violation(
                "lost", f"{run_id}: log indices missing from the results: {missing[:20]}"
            )
        )
    for row in rows:
        index, chain = row["index"], f"{row['index'] // STRIDE:04d}"
        log = logs.get(chain)
        if chain not in chains:
            out.append(oracle.Violation("stray", f"{run_id}: row {index} is in no chain's log"))
        elif log is not None and not chains[chain].start <= index < chains[chain].start + len(log):
            out.append(
                oracle.Violation("stray", f"{run_id}: row {index} is past chain {chain}'s log")
            )
        elif log is not None and log[index - chains[chain].start] != row.get("url"):
            out.append(
                oracle.Violation(
                    "stray",
                    f"{run_id}: row {index} is {row.get('url')}, the log says "
                    f"{log[index - chains[chain].start]}",
                )
            )

    spec = crawl.spec
    max_depth = int(spec["max_depth"])
    urls = Counter(str(row.get("url")) for row in rows)
    again = sorted(u for u, n in urls.items() if n > 1)
    if again:
        out.append(oracle.Violation("duplicated", f"{run_id}: pages crawled twice: {again[:5]}"))
    by_url = {str(row.get("url")): row for row in rows}
    could = closure(crawl.graph, max_depth, lambda url: True)
    strays = sorted(urls.keys() - could.keys())
    if strays:
        out.append(
            oracle.Violation(
                "stray", f"{run_id}: pages the crawl could not have found: {strays[:5]}"
            )
        )
    # What the crawl had to find, by the depths it gave its pages: the seeds, and every link
    # of each page it crawled ok above max_depth. (Whether those depths are the distances is
    # the depth check's, below: for one chain they must be.)
    must = {seed.target for seed in crawl.graph.seeds if seed.target is not None}
    for url, row in by_url.items():
        if not row.get("error") and int(row.get("depth") or 0) < max_depth:
            must.update(crawl.graph.targets(url))
    pages = sum(len(log) for log in logs.values())
    budget = spec.get("max_pages")
    done = all(cp.status is RunStatus.DONE for cp in chains.values())
    if budget is not None and pages > budget * len(chains):
        out.append(oracle.Violation("max_pages", f"{run_id}: {pages} pages, max_pages {budget}"))
    if budget is not None and len(chains) == 1 and pages > budget:
        out.append(oracle.Violation("max_pages", f"{run_id}: {pages} pages, max_pages {budget}"))
    if done and (budget is None or pages < budget):
        lost = sorted(must - urls.keys())
        if lost:
            out.append(oracle.Violation("lost", f"{run_id}: pages never crawled: {lost[:5]}"))
        if len(chains) == 1:
            ok = {url for url, row in by_url.items() if not row.get("error")}
            distance = closure(crawl.graph, max_depth, ok.__contains__)
            deeper = sorted(
                f"{u} at {row.get('depth')} (distance {distance[u]})"
                for u, row in by_url.items()
                if u in distance and row.get("depth") != distance[u]
            )
            unreached = sorted(distance.keys() - urls.keys())
            if deeper:
                missed = f"; so never crawled: {unreached[:3]}" if unreached else ""
                out.append(
                    oracle.Violation(
                        "depth", f"{run_id}: depth is not distance: {deeper[:3]}{missed}"
                    )
                )
    if done:
        waiting = s3.keys(bucket, f"{prefix}{run_id}/{INBOX_DIR}")
        if waiting:
            out.append(
                oracle.Violation("unfinished", f"{run_id} is done with links in {waiting[:3]}")
            )
    out += oracle._ranges(store, run_id)
    out += _counts(store, run_id, rows, expected, chains)
    return out


def _counts(
    store: RunStore,
    run_id: str,
    rows: list[dict[str, Any]],
    expected: set[int],
    chains: dict[str, Checkpoint],
) -> list[oracle.Violation]:
    counted = {row["index"]: row for row in rows if row["index"] in expected}
    failed = sum(1 for row in counted.values() if row.get("error"))
    ok = len(counted) - failed
    cp_ok = sum(cp.ok for cp in chains.values())
    cp_failed = sum(cp.failed for cp in chains.values())
    out = []
    if (cp_ok, cp_failed) != (ok, failed):
        out.append(
            oracle.Violation(
                "counts",
                f"{run_id}: the checkpoints count ok={cp_ok} failed={cp_failed}, "
                f"the results ok={ok} failed={failed}",
            )
        )
    summary = store.load_summary(run_id)
    if summary is None:
        if all(cp.finished for cp in chains.values()):
            out.append(oracle.Violation("unfinished", f"{run_id} finished without a summary.json"))
        return out
    statuses = {str(cp.status) for cp in chains.values()}
    pages = sum(cp.total for cp in chains.values())
    said = (summary["status"], summary["ok"], summary["failed"], summary["total"])
    if summary["status"] not in statuses or said[1:] != (ok, failed, pages):
        out.append(
            oracle.Violation(
                "counts",
                f"{run_id}: the summary says {said}; the run is {sorted(statuses)} "
                f"ok={ok} failed={failed} pages={pages}",
            )
        )
    return out
