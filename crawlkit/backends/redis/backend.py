"""The Redis backend: a crawl shared by many nodes, behind ``CrawlBackend``.

Adapts ``RedisCrawl`` (the queues, seen store, limiter, robots.txt answers and stats in Redis,
see the package docstring) to the interface the engine is typed against. A shared crawl has no
journal (Redis keeps its state: the same command rejoins it), keeps its frontier out of the
node's memory, asks no robots.txt again (the first answer, kept in Redis, is the one for all
nodes), queues requests at once and checks robots.txt when a node takes one, and beats a
heartbeat so that the other nodes take back this node's leases if it dies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from multiprocessing.context import BaseContext

from crawlkit.backends.base import Entry
from crawlkit.backends.local.jobdir import NullJournal
from crawlkit.backends.redis import RedisFrontier, RedisSeen, connect
from crawlkit.http import Request
from crawlkit.log import LogConfig
from crawlkit.settings import Settings
from crawlkit.sites import SiteRules
from crawlkit.stats import Stats

log = logging.getLogger("crawlkit.redis")

# Seconds a write held back for this node's next call may wait at most (a busy node sends it
# sooner, with that call): a slot freed here is then free for every node within this time.
FLUSH_EVERY = 0.05
COUNTS_EVERY = 0.2  # seconds between reads of the other nodes' counts of a host's pages (its own max_pages)


class SharedFrontier:
    """``RedisFrontier`` as a ``Frontier``: entries' jobs are dropped (Redis makes the leases; there is no journal)."""

    def __init__(self, frontier: RedisFrontier) -> None:
        self._frontier = frontier

    def push(self, entries: Iterable[Entry], not_before: float = 0.0) -> None:
        # Admission's new requests come without not_before: they are marked seen as they are
        # queued (see SharedSeen). Retries come with it, and were marked when first queued.
        self._frontier.push((request for _, request in entries), not_before, mark_seen=not not_before)

    def next_host(self, now: float) -> str | None:
        return self._frontier.next_host(now)

    def take(self, host: str) -> tuple[int, Request] | None:
        return self._frontier.take(host)

    def done(self, leases: list[int]) -> None:
        self._frontier.done(leases)

    def reclaim(self, lease: int, request: Request) -> None:
        self._frontier.reclaim(lease, request)

    def idle(self) -> bool:
        return self._frontier.idle()

    def next_time(self) -> float | None:
        return self._frontier.next_time()

    def park(self, host: str, until: float | None) -> None:
        self._frontier.park(host, until)

    def unpark(self, host: str) -> None:
        self._frontier.unpark(host)

    def __len__(self) -> int:
        return len(self._frontier)

    def close(self) -> None:
        self._frontier.close()


class SharedSeen:
    """``RedisSeen`` as admission's ``SeenStore``: ``add_many`` says which fingerprints are new but
    marks none; ``SharedFrontier.push`` marks each as it queues it, in one script."""

    def __init__(self, seen: RedisSeen) -> None:
        self._seen = seen

    def add_many(self, fingerprints: list[int]) -> list[int]:
        return self._seen.unseen(fingerprints)

    def claim(self, fingerprint: int) -> bool:
        return bool(self._seen.add_many([fingerprint]))  # marked at once: no request is queued for it

    def count(self) -> int:
        return self._seen.count()


class RedisBackend:
    """This node's view of a shared crawl; lives in the engine's process, its permits in every fetcher."""

    robots_checked_on_take = True  # queued at once, so that no node's death loses them
    needs_seeds = False  # a node may join a crawl the others (or ``crawlkit seed``) have seeded
    frontier_limit = 0  # the queues are in Redis, not in this node's memory
    robots_rechecks = 0  # every node would recheck on its own; the answer must be one for all nodes

    def __init__(self, settings: Settings, stats: Stats, crawl_name: str) -> None:
        """Connect to the crawl named ``crawl_id`` (or ``crawl_name``); ConfigError if Redis cannot be used."""
        self._url = settings.frontier
        self._crawl = connect(settings.frontier, settings.crawl_id or crawl_name, settings.lease_time,
                              count=stats.incr)
        self._crawl.frontier.depth_first = settings.order == "depth-first"
        self.frontier = SharedFrontier(self._crawl.frontier)
        self.seen = SharedSeen(self._crawl.seen)
        self.limiter = self._crawl.limiter(settings.per_host, settings.delay, SiteRules(settings.hosts))
        self.journal = NullJournal()
        self._stats = stats
        self._reported: dict[str, int] = {}  # the counts already added to the crawl's totals
        self._beat_every = settings.lease_time / 4
        self._next_beat = 0.0
        self._next_flush = 0.0
        self._others: dict[str, int] = {}  # counter asked by crawl_count -> the other nodes' share, as last read
        self._next_counts = 0.0

    def start(self, ctx: BaseContext, log_config: LogConfig, died: Callable[[str], None]) -> None:
        self._crawl.heartbeat()  # before taking any lease: only a known node's leases are reclaimed
        self._next_beat = time.monotonic() + self._beat_every
        log.info("node %s joined crawl %r at %s", self._crawl.node, self._crawl.crawl_id, self._url)

    def tick(self, now: float) -> None:
        """Every ``FLUSH_EVERY``: the writes this node holds back (finished leases, freed slots,
        stats), so that other nodes see a freed slot soon even when this node has nothing to ask
        Redis. Every ``lease_time / 4``: the heartbeat, which renews this node's leases and slots
        and takes back those of nodes whose heartbeat stopped."""
        if now >= self._next_flush:
            self._next_flush = now + FLUSH_EVERY
            self._crawl.flush()
        if self._others and now >= self._next_counts:
            self._next_counts = now + COUNTS_EVERY
            keys = list(self._others)
            for key, total in zip(keys, self._crawl.counts(keys), strict=True):
                self._others[key] = max(0, total - self._reported.get(key, 0))
        if now < self._next_beat:
            return
        self._next_beat = now + self._beat_every
        reclaimed = self._crawl.heartbeat()
        if reclaimed:
            log.warning("took back %d requests of nodes whose lease expired", reclaimed)
            self._stats.incr("requeued_from_dead_nodes", reclaimed)

    def robots_answer(self, host: str) -> tuple[int, bytes] | None:
        return self._crawl.robots(host)

    def save_robots(self, host: str, status: int, body: bytes) -> None:
        self._crawl.save_robots(host, status, body)

    def report(self, counts: dict[str, int]) -> None:
        """Add what this node counted since last time to the crawl's totals (one round trip)."""
        last = self._reported
        deltas = {key: n - last.get(key, 0) for key, n in counts.items() if n != last.get(key, 0)}
        if deltas:
            self._crawl.add_stats(deltas)
            self._reported = dict(counts)

    def totals(self) -> tuple[str, dict[str, int]] | None:
        return self._crawl.crawl_id, self._crawl.totals()

    def crawl_count(self, key: str) -> int:
        """This node's count and the other nodes', read every ``COUNTS_EVERY`` once asked for: a
        host's own max_pages may be passed by the pages other nodes have in flight or finished
        since the last read."""
        others = self._others.get(key)
        if others is None:
            others = self._others[key] = 0
        return self._stats.counts[key] + others

    def close(self) -> None:
        self.frontier.close()  # gives back what this node still holds
