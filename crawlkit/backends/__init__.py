"""Where a crawl keeps its state: ``local`` (this machine) or ``redis`` (shared by several nodes).

``open_backend`` is the one place that chooses, from the ``frontier`` setting, and
``joins_without_seeds`` the one place that asks it before then; everything else is typed
against ``crawlkit.backends.base.CrawlBackend``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crawlkit.errors import ConfigError

if TYPE_CHECKING:
    from crawlkit.backends.base import CrawlBackend
    from crawlkit.settings import Settings
    from crawlkit.stats import Stats


def joins_without_seeds(settings: Settings) -> bool:
    """Whether a crawl with ``settings`` may start with no seeds of its own: a node that joins a
    shared crawl, which the other nodes (or ``crawlkit seed``) have seeded. Known before the
    backend is opened, so the CLI can check a command before anything starts."""
    return bool(settings.frontier)


def open_backend(settings: Settings, stats: Stats, crawl_name: str, tickets: int) -> CrawlBackend:
    """The backend ``settings`` ask for, opened (a job directory read and checked, Redis reached).

    ``crawl_name`` names a shared crawl without a ``crawl_id``; ``tickets`` is how many requests
    may be in flight at once. ConfigError when the settings cannot work together.

    The backends are imported here, in the engine's process only: the fetcher, parser and
    seen-store processes import this package (for ``base`` and the local pieces) at their start.
    """
    from crawlkit.recrawl import RecrawlPolicy

    recrawl = RecrawlPolicy.of(settings)  # a shared crawl, or none without a job directory, is refused here
    if settings.frontier:
        if settings.jobdir:
            raise ConfigError(
                f"jobdir {settings.jobdir!r} and frontier {settings.frontier!r} cannot be combined: Redis already "
                "keeps the shared crawl's state (run the same command again to rejoin it); drop --jobdir"
            )
        if settings.per_ip:
            raise ConfigError(
                f"per_ip and frontier {settings.frontier!r} cannot be combined: politeness by IP is kept by one "
                "machine's limiter; drop per_ip (per_host and the hosts setting hold in a shared crawl)"
            )
        from crawlkit.backends.redis.backend import RedisBackend  # the redis client is an optional extra

        return RedisBackend(settings, stats, crawl_name)
    from crawlkit.backends.local.backend import LocalBackend
    from crawlkit.backends.local.jobdir import JobDir, NullJournal
    from crawlkit.process import context

    journal = JobDir(settings.jobdir, count=stats.incr, recrawl=recrawl) if settings.jobdir else NullJournal()
    return LocalBackend(settings, stats, journal, context(), tickets)
