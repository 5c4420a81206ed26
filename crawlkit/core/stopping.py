"""Stop conditions: when a crawl ends before its frontier is empty, and why.

``max_items``, ``max_errors``, ``max_time``, ``max_time_without_items`` and the memory cap
(``memory_warning_mb``, ``memory_limit_mb``) each end the crawl the way ``max_pages`` does:
nothing more is dispatched, the requests in flight finish (up to ``shutdown_timeout``), the
outputs and the job directory are complete, and the reason is the crawl's (``"finished
(max_items reached)"``) in the summary, the stats file, the report and the spider's
``closed(reason)``. What is still queued stays pending in a job directory, so a run with a
raised limit continues from there.

Runs in the engine process, on its loop, never per page: the counters (items, errors) are
compared after each batch of PageDones the loop reads, the clocks every ``CHECK_EVERY``
seconds, and the memory of the process tree every ``memory_check_interval`` seconds (a walk of
/proc, a few milliseconds). With every condition off, the engine holds no ``StopConditions``
and pays nothing.
"""

from __future__ import annotations

import logging
import os

from crawlkit.settings import Settings
from crawlkit.stats import Stats

log = logging.getLogger("crawlkit.engine")

MB = 1 << 20


def tree_memory(root: int) -> int:
    """Bytes of memory used by process ``root`` and all its descendants: the sum of their PSS.

    PSS (proportional set size) divides a page shared by several processes among them, so the
    sum is the tree's real footprint: crawlkit's children are forked from one server and share
    its code, which a sum of RSS would count once per process. Where the kernel gives no PSS
    (``/proc/PID/smaps_rollup``, Linux 4.14 and later), RSS is summed instead.
    """
    import psutil  # here: a crawl with no memory cap (most) never imports it, ~8 ms of CPU

    try:
        top = psutil.Process(root)
        tree = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in tree:
        try:
            total += _pss(proc.pid)
        except OSError:
            try:
                total += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue  # a child that exited meanwhile uses nothing any more
    return total


def _pss(pid: int) -> int:
    """The PSS of one process, in bytes, from its ``smaps_rollup``; OSError where there is none."""
    with open(f"/proc/{pid}/smaps_rollup", "rb") as file:
        for line in file:
            if line.startswith(b"Pss:"):
                return int(line.split()[1]) * 1024  # kB
    raise OSError(f"no Pss line in /proc/{pid}/smaps_rollup")


class StopConditions:
    """The stop conditions set for one crawl; engine process. ``of`` gives None when none is set.

    ``max_items`` and ``max_errors`` count the whole crawl, the earlier runs of a resumed
    ``--jobdir`` crawl included (as ``max_pages`` does: its counters are resumed); ``max_time``
    and ``max_time_without_items`` count this run's seconds, from when its processes are up.
    """

    def __init__(self, settings: Settings, stats: Stats, started: float, root: int) -> None:
        self.stats = stats
        self.max_items: int = settings.max_items
        self.max_errors: int = settings.max_errors
        self.ends_at = started + settings.max_time if settings.max_time else 0.0
        self.without_items: float = settings.max_time_without_items
        self.items_seen = stats.counts["items"]
        self.last_item = started
        self.memory_warning = settings.memory_warning_mb * MB
        self.memory_limit = settings.memory_limit_mb * MB
        self.memory_every: float = settings.memory_check_interval
        self.next_memory = started
        self.root = root

    @classmethod
    def of(cls, settings: Settings, stats: Stats, started: float) -> StopConditions | None:
        """The crawl's stop conditions, or None when every one is off (0)."""
        if not (settings.max_items or settings.max_errors or settings.max_time or settings.max_time_without_items
                or settings.memory_warning_mb or settings.memory_limit_mb):
            return None
        return cls(settings, stats, started, os.getpid())

    def counted(self) -> str | None:
        """After PageDones were counted: the reason to stop if ``max_items`` or ``max_errors`` is reached."""
        if self.max_items and self.stats.counts["items"] >= self.max_items:
            return "finished (max_items reached)"
        if self.max_errors and self.stats.error_count() >= self.max_errors:
            return "finished (max_errors reached)"
        return None

    def timed(self, now: float) -> str | None:
        """Every few tenths of a second: the reason to stop if a clock ran out or memory is over its limit."""
        if self.ends_at and now >= self.ends_at:
            return "finished (max_time reached)"
        if self.without_items:
            items = self.stats.counts["items"]
            if items != self.items_seen:
                self.items_seen, self.last_item = items, now
            elif now - self.last_item >= self.without_items:
                return "finished (max_time_without_items reached)"
        if (self.memory_warning or self.memory_limit) and now >= self.next_memory:
            self.next_memory = now + self.memory_every
            return self._memory()
        return None

    def _memory(self) -> str | None:
        used = tree_memory(self.root)
        if self.memory_limit and used >= self.memory_limit:
            log.error("the crawl's processes use %d MB, memory_limit_mb is %d: stopping",
                      used // MB, self.memory_limit // MB)
            return "stopped (memory_limit_mb reached)"
        if self.memory_warning and used >= self.memory_warning:
            log.warning("the crawl's processes use %d MB, over memory_warning_mb (%d); memory_limit_mb %s",
                        used // MB, self.memory_warning // MB,
                        f"stops the crawl at {self.memory_limit // MB} MB" if self.memory_limit else "is not set")
            self.stats.incr("memory_warnings")
            self.memory_warning = 0  # warned once
        return None
