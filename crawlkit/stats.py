"""The crawl's counters, per-host figures, pages over time, and the closing summary.

Parsers send counter deltas with each PageDone; the engine adds them here, beside its own
(robots drops, dispatches). Keys are flat strings: ``status_404``, ``error_read_timeout``,
``dropped_offsite``... so a new kind of event needs no schema change. Everything here lives in
the engine process and is updated once per PageDone, so the per-page work is a few additions.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Points the time series keeps at most; past it, every other point goes and the step doubles.
SERIES_POINTS = 720
SERIES_STEP = 1.0  # seconds between points at first
SERIES_COLUMNS = ["t", "pages", "errors", "queued", "in_flight"]
GONE_LISTED = 10_000  # URLs of gone pages listed in the stats file at most (all are counted)


@dataclass(slots=True)
class HostStats:
    """One host's figures: exchanges (robots.txt, redirects and retries included) and their outcome."""

    requests: int = 0
    pages: int = 0
    errors: int = 0  # error_* events: failed exchanges, callback failures
    bytes: int = 0
    seconds: float = 0.0  # summed exchange time
    slowest: float = 0.0  # the longest exchange, seconds
    statuses: Counter[int] = field(default_factory=Counter)
    per_host: int = 0  # adaptive politeness' requests at once and delay in force (0: it is off)
    delay: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        pace = {"per_host": self.per_host, "delay_s": round(self.delay, 3)} if self.per_host else {}
        return {
            "requests": self.requests,
            "pages": self.pages,
            "errors": self.errors,
            "bytes": self.bytes,
            "mean_s": round(self.seconds / self.requests, 4) if self.requests else 0.0,
            "max_s": round(self.slowest, 4),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            **pace,
        }


class Stats:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()
        # When the processes were up and the start requests went in (set by the engine): what
        # benchmarks time a crawl from, as Scrapy's start_time is its spider_opened.
        self.crawl_started: float | None = None
        self.started_wall = time.time()
        self.finished: float | None = None
        self.reason = "running"
        self.crawl_totals: tuple[str, dict[str, int]] | None = None  # (crawl id, counts of all nodes) of a shared crawl
        # Pages of the earlier runs of a resumed crawl: in ``pages`` (and max_pages), not in this run's rate.
        self.earlier_pages = 0
        self.hosts: dict[str, HostStats] = {}
        self.series: list[list[float]] = []  # rows of SERIES_COLUMNS, t in seconds since the start
        self.series_step = SERIES_STEP
        self.queued = 0  # the last sample's frontier size and requests in flight
        self.in_flight = 0
        self.gone: list[str] = []  # pages a recrawl found gone (404/410), for the stats file and report

    def add(self, deltas: dict[str, int]) -> None:
        self.counts.update(deltas)

    def resume(self, counts: dict[str, int]) -> None:
        """Start from the counters a job directory committed: the totals go on, the rates are this run's."""
        self.counts.update(counts)
        self.earlier_pages = counts.get("pages", 0)

    @property
    def run_pages(self) -> int:
        """Pages fetched by this run (all of them, but for a resumed crawl)."""
        return self.counts["pages"] - self.earlier_pages

    @property
    def pages_per_s(self) -> float:
        """This run's pages over this run's time."""
        elapsed = self.elapsed
        return self.run_pages / elapsed if elapsed > 0 else 0.0

    def page_done(self, host: str, deltas: dict[str, int], status: int, elapsed: float) -> None:
        """Count one finished exchange (a PageDone): the crawl's counters and its host's figures."""
        self.counts.update(deltas)
        figures = self.hosts.get(host)
        if figures is None:
            figures = self.hosts[host] = HostStats()
        figures.requests += 1
        figures.seconds += elapsed
        if elapsed > figures.slowest:
            figures.slowest = elapsed
        if status:
            figures.statuses[status] += 1
        for key, n in deltas.items():
            if key.startswith("error_"):
                figures.errors += n
        figures.pages += deltas.get("pages", 0)
        figures.bytes += deltas.get("bytes", 0)

    def paced(self, host: str, per_host: int, delay: float) -> None:
        """Note the pace adaptive politeness put in force for ``host``."""
        figures = self.hosts.get(host)
        if figures is None:
            figures = self.hosts[host] = HostStats()
        figures.per_host, figures.delay = per_host, delay

    def sample(self, now: float, queued: int, in_flight: int) -> None:
        """Record a point of the time series if one is due (call it often; it is cheap when not)."""
        self.queued, self.in_flight = queued, in_flight
        t = now - self.started
        if self.series and t - self.series[-1][0] < self.series_step:
            return
        self.series.append([round(t, 2), self.counts["pages"], self.error_count(), queued, in_flight])
        if len(self.series) > SERIES_POINTS:
            self.series = self.series[::2]
            self.series_step *= 2

    def went(self, url: str) -> None:
        """List a page a recrawl found gone (the parser counted it), up to ``GONE_LISTED`` of them."""
        if len(self.gone) < GONE_LISTED:
            self.gone.append(url)

    def error_count(self) -> int:
        return sum(v for k, v in self.counts.items() if k.startswith("error_"))

    def incr(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def errors(self) -> dict[str, int]:
        return {k[len("error_"):]: v for k, v in sorted(self.counts.items()) if k.startswith("error_") and v}

    def statuses(self) -> dict[str, int]:
        return {k[len("status_"):]: v for k, v in sorted(self.counts.items()) if k.startswith("status_") and v}

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "elapsed_s": round(self.elapsed, 3),
            "pages": self.counts["pages"],
            "pages_this_run": self.run_pages,
            "pages_per_s": round(self.pages_per_s, 1),
            "items": self.counts["items"],
            "duplicates": self.counts["duplicates"],
            "statuses": self.statuses(),
            "errors": self.errors(),
            "counts": dict(sorted(self.counts.items())),
        }

    def full_dict(self) -> dict[str, Any]:
        """Everything, for ``--stats`` and the report: ``as_dict`` plus hosts and the time series."""
        d = self.as_dict()
        d["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_wall))
        d["bytes"] = self.counts["bytes"]
        d["queued"], d["in_flight"] = self.queued, self.in_flight
        d["hosts"] = {host: figures.as_dict() for host, figures in sorted(self.hosts.items())}
        now = [round(self.elapsed, 2), self.counts["pages"], self.error_count(), self.queued, self.in_flight]
        rows = list(self.series)
        if rows and now[0] <= rows[-1][0]:
            # A sample from the same hundredth of a second may predate the last pages: the
            # current figures take its place, so the last row always matches the totals.
            now[0] = rows.pop()[0]
        rows.append(now)
        d["series"] = {"step_s": self.series_step, "columns": SERIES_COLUMNS, "rows": rows}
        if self.gone:
            d["gone"] = self.gone
        return d

    def summary(self) -> str:
        d = self.as_dict()
        c = self.counts
        dropped = {k[len("dropped_"):]: v for k, v in sorted(c.items()) if k.startswith("dropped_") and v}
        fmt = lambda m: ", ".join(f"{k} {v}" for k, v in m.items()) or "none"  # noqa: E731
        rate = f"{d['pages_per_s']}/s"
        if self.earlier_pages:  # a resumed crawl: its totals go on, its rate is this run's
            rate = f"{d['pages_this_run']} this run, {rate}"
        lines = [
            f"crawl {d['reason']} in {d['elapsed_s']:.1f}s: {d['pages']} pages ({rate}), "
            f"{d['items']} items, {c['bytes']:,} bytes",
            f"  statuses: {fmt(d['statuses'])}",
            f"  errors: {fmt(d['errors'])}",
            f"  duplicates dropped: {d['duplicates']}; redirects: {c['redirects']}; retries: {c['retries']}",
            f"  robots: {c['robots_disallowed']} disallowed, {c['robots_unavailable']} on unreachable hosts; "
            f"filtered: {fmt(dropped)}",
        ]
        if c["unchanged"] or c["gone"]:
            lines.append(f"  recrawl: {c['unchanged']} unchanged (304), {c['gone']} gone (404/410)")
        if c["items_dropped"]:
            lines.append(f"  items dropped by pipelines: {c['items_dropped']}")
        if c["rendered"] or c["render_crashed"] or c["render_adaptive"]:
            lines.append(f"  rendered: {c['rendered']} pages ({c['render_adaptive']} after a plain fetch failed "
                         f"render_when); browsers recycled {c['render_recycled']}, crashed {c['render_crashed']}")
        if c["pages_noindex"] or c["pages_nofollow"]:
            lines.append(f"  robots directives in pages: {c['pages_noindex']} noindex ({c['items_noindex']} items not "
                         f"written), {c['pages_nofollow']} nofollow")
        if c["pages_duplicate_canonical"]:
            lines.append(f"  duplicates of a canonical URL seen before: {c['pages_duplicate_canonical']} pages "
                         f"({c['items_duplicate_canonical']} items not written)")
        if c["items_nan_to_null"]:
            lines.append(f"  items with NaN or Infinity, written as null: {c['items_nan_to_null']}")
        if self.crawl_totals is not None:
            crawl_id, t = self.crawl_totals
            errors = sum(v for k, v in t.items() if k.startswith("error_"))
            lines.append(
                f"  shared crawl {crawl_id!r}, all nodes: {t.get('pages', 0)} pages, {t.get('items', 0)} items, "
                f"{t.get('bytes', 0):,} bytes, {errors} errors, {t.get('duplicates', 0)} duplicates dropped"
            )
        return "\n".join(lines)
