"""The live view of a crawl on a terminal: a rich ``Live`` region on stderr, with the children's log lines above it.

Apart from ``progress.py`` so that a crawl whose stderr is no terminal (CI, cron, a pipe, every
benchmark) never imports rich, about 20 ms of CPU in every such command. Runs in the engine
process, redrawn by ``Monitor.tick``.
"""

from __future__ import annotations

import fcntl
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from crawlkit.log import LogConfig, setup_logging
from crawlkit.stats import Stats

ACTIVE_FOR = 5.0  # seconds a host stays among the busiest after its last request in flight
BUSIEST = 8  # hosts shown in the live view
DRAIN_MAX = 500  # forwarded log lines printed per tick at most, so a storm cannot stall the loop
PIPE_BYTES = 1 << 20  # buffer of the children's log Pipe: a child blocks only when it is full


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

