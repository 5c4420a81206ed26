"""Seeing the crawl while it runs: a live view on a terminal, progress lines elsewhere, the stats file.

Everything here runs in the engine process, on the engine's loop: the engine calls
``Monitor.tick`` every ``TICK`` seconds (never per page), and a tick samples the time series,
redraws the live view, and, every ``progress_interval`` seconds, logs a progress line and
rewrites the ``--stats`` file. Per page, the engine only adds a PageDone's counters to Stats.

On a terminal (stderr is a TTY, not ``--quiet``) the view is a rich ``Live`` region redrawn at
each tick (``liveview.py``, which alone imports rich). Log lines must not tear it, so while it
runs every process sends its console records to the engine (``LogConfig.forward``), which
prints them above the view; progress lines go only to the log file then, since the view shows
the same figures. Elsewhere (CI, a file, a pipe)
the console gets plain progress lines instead. ``--quiet`` keeps only warnings, errors and the
closing summary.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawlkit.log import PROGRESS, LogConfig, setup_logging
from crawlkit.paths import check_writable
from crawlkit.process import context
from crawlkit.stats import Stats

if TYPE_CHECKING:
    from crawlkit.core.liveview import LiveView

log = logging.getLogger("crawlkit.progress")

TICK = 0.25  # seconds between ticks: live view redraws and time-series samples


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` at once: readers see the old file or the new one, never half.

    Writes a temporary file in the same directory, then renames it over ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Monitor:
    """What the user sees of a running crawl; a context manager around the engine's run.

    Entering sets up this process's logging (and the live view on a terminal); leaving stops
    the view. ``finish`` writes the final stats file and report. Not thread-safe: the engine
    loop alone calls ``tick``.
    """

    def __init__(self, settings: Any, title: str = "crawlkit", terminal: bool = False, seeds: str = "") -> None:
        check_writable("stats_file", settings.stats_file)
        check_writable("report", settings.report)
        check_writable("log_file", settings.log_file)
        self.settings = settings
        self.title = title
        self.seeds = seeds  # where the crawl started, in words, for the report
        self.interval = settings.progress_interval
        self.view: LiveView | None = None
        if terminal and not settings.quiet:
            from crawlkit.core.liveview import LiveView  # rich (~20 ms of CPU): only for a terminal

            self.view = LiveView(title, *context().Pipe(duplex=False))
        self.log = LogConfig.from_settings(settings, self.view.forward if self.view else None)
        self.next_progress = time.monotonic() + self.interval
        self.last_pages: tuple[float, int] | None = None  # (time, pages) of the last progress line

    def __enter__(self) -> Monitor:
        if self.view is not None:
            self.view.start(self.log)
        else:
            setup_logging(self.log)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.view is not None:
            self.view.stop()

    def tick(self, now: float, stats: Stats, queued: int, in_flight: Sequence[str]) -> None:
        """Called by the engine loop about every TICK seconds; ``in_flight`` holds one host per request."""
        stats.sample(now, queued, len(in_flight))
        if self.view is not None:
            self.view.update(now, stats, in_flight)
        if self.interval and now >= self.next_progress:
            self.next_progress = now + self.interval
            self._progress(now, stats)
            if self.settings.stats_file:
                self._write_stats(stats)

    def _progress(self, now: float, stats: Stats) -> None:
        c = stats.counts
        then, pages = self.last_pages or (stats.started, stats.earlier_pages)
        self.last_pages = (now, c["pages"])
        log.info(
            "%d pages (%.1f/s now, %.1f/s overall), %d items, %d queued, %d in flight, %d errors",
            c["pages"], (c["pages"] - pages) / max(now - then, 1e-9), stats.pages_per_s, c["items"],
            stats.queued, stats.in_flight, stats.error_count(), extra=PROGRESS,
        )

    def _write_stats(self, stats: Stats) -> dict[str, Any]:
        data = stats.full_dict()
        try:
            write_atomic(self.settings.stats_file, json.dumps(data, indent=1))
        except OSError as exc:  # a full disk must not stop the crawl
            log.error("could not write the stats file %s: %s", self.settings.stats_file, exc)
        return data

    def finish(self, stats: Stats) -> None:
        """Write the final stats file and the report (after the crawl; errors are logged, not raised)."""
        if not (self.settings.stats_file or self.settings.report):
            return
        data = self._write_stats(stats) if self.settings.stats_file else stats.full_dict()
        if self.settings.report:
            from crawlkit.settings import explain
            from crawlkit.tools.report import render_report

            # What produced the crawl: the report outlives the command line that made it.
            run = [("spider", self.settings.spider or "crawlkit (built-in)", self.settings.origin("spider")),
                   ("seeds", self.seeds or "the spider's start requests", "")]
            run += [(key, value, origin) for key, value, origin in explain(self.settings)
                    if origin != "default" and key != "spider"]
            try:
                write_atomic(self.settings.report, render_report(data, self.title, run))
            except OSError as exc:
                log.error("could not write the report %s: %s", self.settings.report, exc)


def wants_live_view(output: str | None) -> bool:
    """Whether stderr is a terminal a live view can redraw (and stdout does not share it with items).

    Asks the file itself, not rich: ``FORCE_COLOR``, often set in CI, makes rich treat a pipe
    as a terminal, which is right for colours but not for a view redrawn in place.
    """
    if not sys.stderr.isatty() or os.environ.get("TERM") in ("dumb", "unknown"):
        return False
    return not (output == "-" and sys.stdout.isatty())
