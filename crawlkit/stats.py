"""The crawl's counters and the closing summary.

Parsers send counter deltas with each PageDone; the engine adds them here, beside its own
(robots drops, dispatches). Keys are flat strings: ``status_404``, ``error_read_timeout``,
``dropped_offsite``... so a new kind of event needs no schema change.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any


class Stats:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()
        self.finished: float | None = None
        self.reason = "running"
        self.crawl_totals: tuple[str, dict[str, int]] | None = None  # (crawl id, counts of all nodes) of a shared crawl

    def add(self, deltas: dict[str, int]) -> None:
        self.counts.update(deltas)

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
        elapsed = self.elapsed
        pages = self.counts["pages"]
        return {
            "reason": self.reason,
            "elapsed_s": round(elapsed, 3),
            "pages": pages,
            "pages_per_s": round(pages / elapsed, 1) if elapsed > 0 else 0.0,
            "items": self.counts["items"],
            "duplicates": self.counts["duplicates"],
            "statuses": self.statuses(),
            "errors": self.errors(),
            "counts": dict(sorted(self.counts.items())),
        }

    def summary(self) -> str:
        d = self.as_dict()
        c = self.counts
        dropped = {k[len("dropped_"):]: v for k, v in sorted(c.items()) if k.startswith("dropped_") and v}
        fmt = lambda m: ", ".join(f"{k} {v}" for k, v in m.items()) or "none"  # noqa: E731
        lines = [
            f"crawl {d['reason']} in {d['elapsed_s']:.1f}s: {d['pages']} pages ({d['pages_per_s']}/s), {d['items']} items, {c['bytes']:,} bytes",
            f"  statuses: {fmt(d['statuses'])}",
            f"  errors: {fmt(d['errors'])}",
            f"  duplicates dropped: {d['duplicates']}; redirects: {c['redirects']}; retries: {c['retries']}",
            f"  robots: {c['robots_disallowed']} disallowed, {c['robots_unavailable']} on unreachable hosts; filtered: {fmt(dropped)}",
        ]
        if c["items_dropped"]:
            lines.append(f"  items dropped by pipelines: {c['items_dropped']}")
        if self.crawl_totals is not None:
            crawl_id, t = self.crawl_totals
            errors = sum(v for k, v in t.items() if k.startswith("error_"))
            lines.append(
                f"  shared crawl {crawl_id!r}, all nodes: {t.get('pages', 0)} pages, {t.get('items', 0)} items, "
                f"{t.get('bytes', 0):,} bytes, {errors} errors, {t.get('duplicates', 0)} duplicates dropped"
            )
        return "\n".join(lines)
