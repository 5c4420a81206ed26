"""The local backend: a crawl's state on this machine alone, behind ``CrawlBackend``.

The frontier is in the engine's memory and spills to disk past ``frontier_memory``; the limiter
is a Semaphore per slot, inherited by the fetchers; the seen-URL store is a Manager process,
started again and refilled from the journal if it dies; the journal is the job directory, or a
``NullJournal`` without one. robots.txt answers are kept in the journal, and requests of a host
wait in the engine for its answer (nothing else can take them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from multiprocessing.context import BaseContext

from crawlkit.backends.base import Journal, SeenStore
from crawlkit.backends.local.frontier import LocalFrontier
from crawlkit.backends.local.limiter import LocalLimiter
from crawlkit.backends.local.seen import FingerprintSet, ManagedSeen
from crawlkit.log import LogConfig
from crawlkit.settings import Settings
from crawlkit.sites import SiteRules
from crawlkit.stats import Stats

log = logging.getLogger("crawlkit.engine")


class LocalBackend:
    """One machine's crawl state; lives in the engine's process, its Semaphores in every fetcher.

    Until ``start``, the seen store is a FingerprintSet in this process (what unit tests use:
    no process is started); ``start`` serves a new one from a Manager process.
    """

    robots_checked_on_take = False
    needs_seeds = True

    def __init__(self, settings: Settings, stats: Stats, journal: Journal, ctx: BaseContext, tickets: int) -> None:
        """``tickets``: how many requests may be in flight at once (the limiter marks send turns by ticket)."""
        self.frontier = LocalFrontier(settings.frontier_memory, depth_first=settings.order == "depth-first")
        self.limiter = LocalLimiter(ctx, slots=settings.concurrency, per_host=settings.per_host, delay=settings.delay,
                                    tickets=tickets, rules=SiteRules(settings.hosts), per_ip=settings.per_ip)
        self.journal = journal
        self.seen: SeenStore = FingerprintSet()
        self.frontier_limit = settings.frontier_memory
        self.robots_rechecks = settings.robots_rechecks
        self._stats = stats
        self._served: ManagedSeen | None = None

    def start(self, ctx: BaseContext, log_config: LogConfig, died: Callable[[str], None]) -> None:
        self._served = ManagedSeen(ctx, log_config, self.journal, self._stats.incr, died)
        self.seen = self._served

    def robots_answer(self, host: str) -> tuple[int, bytes] | None:
        return None  # every answer this crawl has is in this process already

    def save_robots(self, host: str, status: int, body: bytes) -> None:
        self.journal.save_robots(host, status, body)

    def report(self, counts: dict[str, int]) -> None:
        return None  # the engine's stats are the crawl's totals

    def totals(self) -> tuple[str, dict[str, int]] | None:
        return None

    def crawl_count(self, key: str) -> int:
        return self._stats.counts[key]

    def tick(self, now: float) -> None:
        return None  # nothing expires: the engine sees its processes die

    def close(self) -> None:
        if self._served is not None:
            self._served.close()
        self.frontier.close()
        self.limiter.close()
