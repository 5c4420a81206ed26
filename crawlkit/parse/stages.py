"""The page rules as ordered stages: what a stage is, and the page it works on.

A parser process hands each FetchResult down one ordered list of stages, as Scrapy's
DOWNLOADER_MIDDLEWARES and SPIDER_MIDDLEWARES numbers order its middlewares, so a new crawl
rule is one more small stage rather than one more branch in the Router::

    fetch failure -> on_failure stages --------------------------------.
    HTTP answer   -> on_response stages -> spider callback             |
                                                 |                     v
                     candidate requests -> on_links stages -> fingerprints -> PageDone -> engine

A response-side stage either passes the page on or ends it (a retry, a redirect, a robots.txt
answer, a drop; ``page.failure`` set when the request failed for good, which the request's
errback then receives); whatever it ended with, the requests it left in ``page.candidates`` (a redirect
target, a sitemap's URLs) still go through the link stages. A stage that passes the page on may
set ``page.drop_items`` to a reason, so that the callback runs but its items are dropped before
the pipelines (a ``noindex`` page). A link stage filters the candidate
requests of a page, whichever stage or callback made them. ``order.py`` lists the built-in
stages with their numbers and reads the ``stages`` setting.

A stage is a class called with the parser's ``StageSetup``, with any of ``on_failure``,
``on_response`` and ``on_links`` (see the Protocols below), and optionally ``open()`` and
``close()`` (before the first page, after the last), ``errors`` (a Counter of failures outside
any page, sent with the next page's stats) and ``active`` (false: not used in this crawl, so it
costs nothing per page). Users' stages are the same: the built-in ones are written against
nothing a user's cannot reach.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from crawlkit.errors import FetchErrorKind
from crawlkit.http import Request, Response
from crawlkit.messages import FetchResult, PageDone
from crawlkit.urls import Fingerprinter

if TYPE_CHECKING:
    from crawlkit.parse.directives import PageRobots
    from crawlkit.parse.parser import ParserConfig
    from crawlkit.parse.retry import RetryPolicy
    from crawlkit.spider import Spider


@dataclass(slots=True)
class StageSetup:
    """What a stage is built from, once per parser process: the settings, the spider, shared helpers."""

    config: ParserConfig
    spider: Spider
    fingerprints: Fingerprinter  # the parser's, whose cache the fingerprint step then hits
    retry: RetryPolicy  # the retry budget and backoff, for any stage that asks for another fetch


@dataclass(slots=True)
class Page:
    """One FetchResult on its way through the stages, and what they make of it for the engine."""

    result: FetchResult
    done: PageDone  # what the engine gets: retry, robots answer, cookies, items
    counts: Counter[str]  # the page's stats deltas
    # Requests for the link stages; a stage that ends the page may leave some (a redirect's target).
    candidates: list[Request] = field(default_factory=list)
    # Why a stage that ended the page failed the request (too many redirects): the errback's failure.value.
    failure: Exception | None = None
    # Why the page's items are not written, not even seen by the pipelines ("noindex", counted as items_noindex).
    drop_items: str = ""
    # What the page's robots directives ask of its requests (directives.py), for its link stage.
    robots: PageRobots | None = None

    @property
    def request(self) -> Request:
        """The request that was fetched."""
        return self.result.request


@runtime_checkable
class FailureStage(Protocol):
    def on_failure(self, page: Page, kind: FetchErrorKind) -> bool:
        """True when this stage has dealt with the failure (a retry), so it is not reported as one."""


@runtime_checkable
class ResponseStage(Protocol):
    def on_response(self, page: Page, response: Response) -> Response | None:
        """The response to pass on (this one or a changed one), or None when this stage ended the page."""


@runtime_checkable
class LinkStage(Protocol):
    def on_links(self, page: Page, requests: list[Request]) -> list[Request]:
        """The requests that pass this stage, in order; those dropped are counted as ``dropped_<reason>``."""
