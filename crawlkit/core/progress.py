"""Seeing the crawl while it runs: a live view on a terminal, progress lines elsewhere, the stats file.

Everything here runs in the engine process, on the engine's loop: the engine calls
``Monitor.tick`` every ``TICK`` seconds (never per page), and a tick samples the time series,
redraws the live view, and, every ``progress_interval`` seconds, logs a progress line and
rewrites the ``--stats`` file. Per page, the engine only adds a PageDone's counters to Stats.

On a terminal (stderr is a TTY, not ``--quiet``) the view is a rich ``Live`` region redrawn at
each tick. Log lines must not tear it, so while it runs every process sends its console records
to the engine (``LogConfig.forward``), which prints them above the view; progress lines go only
to the log file then, since the view shows the same figures. Elsewhere (CI, a file, a pipe)
the console gets plain progress lines instead. ``--quiet`` keeps only warnings, errors and the
closing summary.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from crawlkit.log import PROGRESS, LogConfig, setup_logging
from crawlkit.paths import check_writable
from crawlkit.process import context
from crawlkit.stats import Stats

log = logging.getLogger("crawlkit.progress")

TICK = 0.25  # seconds between ticks: live view redraws and time-series samples
ACTIVE_FOR = 5.0  # seconds a host stays among the busiest after its last request in flight
BUSIEST = 8  # hosts shown in the live view
DRAIN_MAX = 500  # forwarded log lines printed per tick at most, so a storm cannot stall the loop
PIPE_BYTES = 1 << 20  # buffer of the children's log Pipe: a child blocks only when it is full


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


class _LiveHandler(logging.Handler):
    """Prints log records above the live view (through its console)."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(Text(self.format(record)), highlight=False)
        except Exception:
            self.handleError(record)


class LiveView:
    """The rich view on stderr: totals, rates, statuses and the busiest hosts; redrawn at each tick."""

    def __init__(self, title: str, lines: Any, forward: Any) -> None:
        self.title = title
        self.lines = lines  # read end of the Pipe of children's console lines, printed above the view
        self.forward = forward  # its write end, handed to every child through LogConfig
        if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux: room for a burst of lines while the engine is busy
            try:
                fcntl.fcntl(lines.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            except OSError:  # above /proc/sys/fs/pipe-max-size: keep the default
                pass
        self.console = Console(stderr=True)
        self.handler = _LiveHandler(self.console)
        self.live = Live(
            console=self.console, auto_refresh=False, transient=True, redirect_stdout=False, redirect_stderr=False
        )
        self.active: dict[str, float] = {}  # host -> last tick it had a request in flight
        self.rates: deque[tuple[float, int]] = deque()  # (time, pages) over the last few seconds

    def start(self, config: LogConfig) -> None:
        setup_logging(config, console=self.handler)
        self.live.start()

    def stop(self) -> None:
        self._drain(None)  # the children are gone: all they wrote is in the pipe
        self.live.stop()
        self.lines.close()
        self.forward.close()

    def _drain(self, limit: int | None = DRAIN_MAX) -> None:
        printed = 0
        while (limit is None or printed < limit) and self.lines.poll():
            self.console.print(Text(self.lines.recv_bytes().decode("utf-8", "replace")), highlight=False)
            printed += 1

    def update(self, now: float, stats: Stats, in_flight: Sequence[str]) -> None:
        self._drain()
        self.live.update(self.render(now, stats, in_flight), refresh=True)

    def render(self, now: float, stats: Stats, in_flight: Sequence[str]) -> Group:
        c = stats.counts
        self.rates.append((now, c["pages"]))
        while len(self.rates) > 2 and now - self.rates[0][0] > ACTIVE_FOR:
            self.rates.popleft()
        then, pages = self.rates[0]
        rate = (c["pages"] - pages) / (now - then) if now > then else 0.0
        elapsed = stats.elapsed
        head = Text.assemble(
            (f"{self.title}", "bold"), f"  {elapsed:,.0f}s  ",
            ("pages ", "dim"), (f"{c['pages']:,}", "bold green"),
            ("  pages/s ", "dim"), (f"{rate:,.1f}", "bold"), (f" (avg {stats.pages_per_s:,.1f})", "dim"),
            ("  items ", "dim"), f"{c['items']:,}",
            ("  queued ", "dim"), f"{stats.queued:,}",
            ("  in flight ", "dim"), f"{len(in_flight):,}",
            ("  errors ", "dim"), (f"{stats.error_count():,}", "bold red" if stats.error_count() else ""),
        )
        statuses = "  ".join(f"{code} {n:,}" for code, n in stats.statuses().items()) or "none yet"
        parts: list[Any] = [head, Text.assemble(("statuses  ", "dim"), statuses)]
        hosts = self._busiest(now, stats, in_flight)
        if hosts:
            table = Table(box=None, pad_edge=False, header_style="dim")
            columns = (
                ("busiest hosts", "left"), ("in flight", "right"), ("pages", "right"), ("errors", "right"),
                ("avg time", "right"),
            )
            paced = any(figures.per_host for host, _ in hosts if (figures := stats.hosts.get(host)))
            for name, justify in (*columns, ("pace", "right")) if paced else columns:
                table.add_column(name, justify=justify)  # type: ignore[arg-type]
            for host, flying in hosts:
                figures = stats.hosts.get(host)
                pages = figures.pages if figures else 0
                errors = figures.errors if figures else 0
                mean = figures.seconds / figures.requests if figures and figures.requests else 0.0
                row = [host, str(flying), f"{pages:,}", f"{errors:,}", f"{mean * 1000:,.0f} ms"]
                if paced:  # adaptive politeness: at most so many at once, so far apart
                    row.append(f"{figures.per_host} / {figures.delay:.2f}s" if figures and figures.per_host else "")
                table.add_row(*row)
            parts.append(table)
        return Group(*parts)

    def _busiest(self, now: float, stats: Stats, in_flight: Sequence[str]) -> list[tuple[str, int]]:
        """Hosts with requests in flight in the last ACTIVE_FOR seconds, most in flight first, then most pages."""
        counts: dict[str, int] = {}
        for host in in_flight:
            counts[host] = counts.get(host, 0) + 1
            self.active[host] = now
        for host in [h for h, seen in self.active.items() if now - seen > ACTIVE_FOR]:
            del self.active[host]

        def rank(host: str) -> tuple[int, int]:
            figures = stats.hosts.get(host)
            return counts.get(host, 0), figures.pages if figures else 0

        return [(host, counts.get(host, 0)) for host in sorted(self.active, key=rank, reverse=True)[:BUSIEST]]

