"""Signals: the crawl's events, and the extensions (the ``extensions`` setting) that handle them.

An extension is any class named in ``extensions`` (``path.py:Class`` or ``module:Class``) with
some of these methods, each called when its event happens, with these arguments::

    crawl_opened(spider)               the processes are up; before the first start request is queued
    crawl_closed(spider, reason)       every process stopped, outputs closed; before the spider's closed(reason)
    request_scheduled(request)         a request is queued: a start request or a link the seen store found
                                       new (or dont_filter), or a retry
    request_dropped(request, reason)   a request is not queued; reason "duplicate": the seen store had it
    response_received(request, status) an exchange got an HTTP response (robots.txt, redirects, retries too)
    item_scraped(item, request)        an item, as written to the output (a dict, after the pipelines)
    item_dropped(request, count)       the pipelines dropped ``count`` items of the page (DropItem, an error)
    error(request, kind, count)        the page counted ``count`` errors of ``kind`` ("read_timeout",
                                       "spider_exception", "pipeline"...: the error_* counters)

Every event is handled in the engine process, on its loop, by one instance of each class made
there: an extension sees the whole crawl (every parser's pages) without locks, and must be
quick, since the loop waits for it. What never reaches the engine is not an event: a
``Response``'s body and the items the pipelines dropped stay in the parser (use a middleware's
``process_response`` or a pipeline there), and the links a parser drops itself (offsite, too
deep, a duplicate it already sent) are only counted (``dropped_*``, ``duplicates``). A resumed
crawl's pending requests were scheduled in the run that queued them. A handler that raises is
logged and counted (``error_extension``); the crawl goes on.

With no extension configured the engine holds no ``Signals`` and pays nothing per page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from crawlkit.errors import SpiderError
from crawlkit.extensions.components import load_components
from crawlkit.http import Request
from crawlkit.loader import one_line
from crawlkit.messages import PageDone
from crawlkit.spider import Spider
from crawlkit.stats import Stats

log = logging.getLogger("crawlkit.extensions")

EVENTS = ("crawl_opened", "crawl_closed", "request_scheduled", "request_dropped", "response_received",
          "item_scraped", "item_dropped", "error")


class Signals:
    """The extensions' handlers, by event; engine process. ``of`` gives None when there is no extension."""

    def __init__(self, specs: Sequence[str], spider: Spider, stats: Stats) -> None:
        instances: list[tuple[str, Any]] = []
        for spec, cls in load_components(specs, "extension", EVENTS):
            try:  # made once, here: the engine process is the only one extensions run in
                instances.append((spec, cls()))
            except Exception as exc:  # a class that cannot be made stops the crawl before it starts
                raise SpiderError(f"extension {spec!r} could not be created: {one_line(exc)}") from exc
        self.spider = spider
        self.stats = stats
        self.handlers: dict[str, list[tuple[str, Callable[..., Any]]]] = {
            event: [(spec, getattr(obj, event)) for spec, obj in instances if callable(getattr(obj, event, None))]
            for event in EVENTS
        }
        self.opened = False

    @classmethod
    def of(cls, specs: Sequence[str], spider: Spider, stats: Stats) -> Signals | None:
        """The crawl's signals, or None when ``specs`` (the ``extensions`` setting) is empty."""
        return cls(specs, spider, stats) if specs else None

    def _send(self, event: str, *args: Any) -> None:
        for spec, handler in self.handlers[event]:
            try:
                handler(*args)
            except Exception as exc:
                self.stats.incr("error_extension")
                log.error("extension %s: %s() raised %s", spec, event, one_line(exc))

    def crawl_opened(self) -> None:
        self.opened = True
        self._send("crawl_opened", self.spider)

    def crawl_closed(self, reason: str) -> None:
        """Sent only after ``crawl_opened``: a crawl that failed to start was never opened."""
        if self.opened:
            self._send("crawl_closed", self.spider, reason)

    def request_scheduled(self, request: Request) -> None:
        self._send("request_scheduled", request)

    def request_dropped(self, request: Request, reason: str) -> None:
        self._send("request_dropped", request, reason)

    def page_done(self, request: Request, done: PageDone) -> None:
        """The events of one PageDone, in the order they happened: the response, its items, drops, errors."""
        if done.status:
            self._send("response_received", request, done.status)
        for item in done.items:
            self._send("item_scraped", item, request)
        counts = done.counts
        if counts.get("items_dropped"):
            self._send("item_dropped", request, counts["items_dropped"])
        for key, n in counts.items():
            if key.startswith("error_") and n:
                self._send("error", request, key[len("error_"):], n)
