"""Recrawls: whether a run of a finished job directory revisits its pages, and how often each page is revisited.

A crawl with a ``--jobdir`` keeps, for every page it fetched, the status and the ``ETag`` and
``Last-Modified`` it was served with (``crawlkit.backends.local.jobdir``). When a run opens a
finished job directory (nothing pending), ``RecrawlPolicy.starts`` decides whether it begins a
new round: with ``--recrawl`` (``recrawl: true``) always, with ``recrawl_after: 7d`` once the
last round finished that long ago, and otherwise never (the run ends at once, as it always did,
saying how to recrawl). A round re-queues the known pages (but those that answered 404 or 410,
which are gone) with ``If-None-Match`` / ``If-Modified-Since``, so an unchanged page costs a 304
and no parsing.

With ``refetch_interval`` set, each page also has its own interval, adapted as Nutch's
AdaptiveFetchSchedule does (``Schedule.next``): a page that answered 304 is revisited less
often (its interval times ``refetch_grow``), one that changed more often (times
``refetch_shrink``), within ``refetch_min`` and ``refetch_max``; a round revisits only the pages
whose interval has passed since they were fetched, so a long-running recrawl (``recrawl_after``
run again and again, from cron) spends its requests where pages change. Durations are seconds,
or a number with a unit: ``90s``, ``15m``, ``12h``, ``7d``, ``2w``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from crawlkit.errors import ConfigError
from crawlkit.http import Request

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
#: What a round never revisits: pages the server said are gone (reported once, when they went).
GONE = (404, 410)
#: The headers a revisit carries, from the validators of the page's last answer.
CONDITIONAL_HEADERS = ("If-None-Match", "If-Modified-Since")


def forget_revisit(request: Request) -> None:
    """Drop the revisit flag and validators from ``request``, a revisit's copy made for another URL (a
    redirect's target): they belong to the URL they were stored for, and would make a new page a 304."""
    if request.meta.pop("revisit", None):
        for name in CONDITIONAL_HEADERS:
            request.headers.pop(name, None)


#: The longest duration a setting takes: a date that far ahead still fits a timestamp (1e300 seconds would not).
MAX_DURATION = 100 * 365.25 * 86400


def duration(key: str, value: Any) -> float:
    """``value`` (seconds, or "12h", "7d"...) in seconds; ValueError "'key' ..." when it is not a duration > 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"'{key}' must be a duration: seconds or a number with s, m, h, d or w (e.g. 12h, 7d), "
                             f"got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 0 < seconds <= MAX_DURATION:
        raise ValueError(f"'{key}' must be a duration more than 0 and at most 100 years (e.g. 12h, 7d), got {value!r}")
    return seconds


def check_recrawl_after(value: Any) -> float | None:
    """The ``recrawl_after`` setting in seconds; null: a finished crawl is recrawled only with ``--recrawl``."""
    return None if value is None else duration("recrawl_after", value)


def check_refetch_interval(value: Any) -> float | None:
    """The ``refetch_interval`` setting in seconds; null: no adaptive schedule, a round revisits every page."""
    return None if value is None else duration("refetch_interval", value)


def check_refetch_min(value: Any) -> float:
    return duration("refetch_min", value)


def check_refetch_max(value: Any) -> float:
    return duration("refetch_max", value)


@dataclass(frozen=True, slots=True)
class Schedule:
    """The adaptive refetch schedule: the seconds between two visits of a page, as its answers adapt them."""

    initial: float
    least: float
    most: float
    grow: float  # the factor for a page that was unchanged (304)
    shrink: float  # the factor for a page that changed (2xx on a revisit)

    def next(self, interval: float | None, status: int) -> float | None:
        """The interval after an answer with ``status`` to a visit made ``interval`` after the one before
        (None for a first visit); other statuses (errors, 5xx) leave it as it was."""
        if interval is None:
            return self.initial
        if status == 304:
            return min(self.most, interval * self.grow)
        if 200 <= status < 300:
            return max(self.least, interval * self.shrink)
        return interval


@dataclass(frozen=True, slots=True)
class RecrawlPolicy:
    """When a finished job directory is crawled again, and the schedule of its pages (None: none)."""

    now: bool  # --recrawl: a round begins whatever the time
    after: float | None  # recrawl_after in seconds
    schedule: Schedule | None

    @classmethod
    def of(cls, settings: Any) -> RecrawlPolicy:
        """The policy of ``settings``; ConfigError when recrawling is asked for without a job directory
        (a shared Redis crawl has none) or refetch_min is above refetch_max."""
        asked = [key for key in ("recrawl", "recrawl_after", "refetch_interval") if settings[key]]
        if asked and settings.frontier:
            raise ConfigError(f"{asked[0]}: a shared crawl (frontier {settings.frontier!r}) cannot be recrawled: "
                              "it keeps no validators or intervals per page; recrawl with one node and --jobdir")
        if asked and not settings.jobdir:
            raise ConfigError(f"{asked[0]}: recrawling revisits the pages a job directory remembers; "
                              "give --jobdir DIR (the same one on every run)")
        if settings.refetch_min > settings.refetch_max:
            raise ConfigError(f"refetch_min ({settings.refetch_min:g}s) is more than refetch_max "
                              f"({settings.refetch_max:g}s); make refetch_min the smaller")
        schedule = None
        if settings.refetch_interval is not None:
            schedule = Schedule(settings.refetch_interval, settings.refetch_min, settings.refetch_max,
                                settings.refetch_grow, settings.refetch_shrink)
        return cls(bool(settings.recrawl), settings.recrawl_after, schedule)

    def starts(self, finished_at: float | None, now: float) -> str | None:
        """Why a run of a job directory whose crawl finished at ``finished_at`` (epoch seconds; None if
        unknown) begins a new round at ``now``, or None when it does not."""
        if self.now:
            return "--recrawl"
        if self.after is not None and (finished_at is None or now - finished_at >= self.after):
            return f"recrawl_after ({self.after:g}s)"
        return None

    def not_started(self, finished_at: float | None) -> str:
        """What a run that began no round says: when the next one is due, or how to begin one."""
        when = "" if finished_at is None else " at " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(finished_at))
        if self.after is not None and finished_at is not None:
            due = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(finished_at + self.after))
            return f"its crawl finished{when}; the next recrawl is due at {due} (recrawl_after), or now with --recrawl"
        return f"its crawl finished{when}; nothing to do: --recrawl (or recrawl_after) revisits its pages"
