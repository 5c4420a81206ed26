"""The parser processes: turn each FetchResult into items and new requests.

A parser process reads FetchResults from the Pipes its fetchers registered and hands each one
to its ``Router``, which walks the page rules as ordered stages: ``stages.py`` says what a stage
is, ``order.py`` lists them in order, and one module holds each family (``archive.py``: cookies
and WARC; ``hooks.py``: the middlewares' ``process_response``; ``retry.py``, ``robots.py``,
``redirect.py``, ``recrawl.py``, ``sitemaps.py``; ``directives.py``: robots directives in pages and canonical
URLs; ``normalize.py`` and ``links.py``: the link stages). A page no stage ends goes to
the spider's callback (with the request's ``cb_kwargs``); a failed fetch no stage took (a
retry), or a non-2xx page the spider does not take, goes to the request's errback, if it has
one, as a ``Failure``. The items either yields go through the item pipelines
(``crawlkit.extensions.pipelines``) and become dicts (``crawlkit.items``); the requests, once
their callback and errback are known to be methods of the spider, go through the link
stages; then they are
fingerprinted and sent to the engine (which asks the seen-URL store about a whole batch of
pages at once) in one PageDone message with the items and the stats deltas.

Every FetchResult yields exactly one PageDone, whatever the spider does: a callback or hook that
raises or yields junk is logged with spider, callback, URL and type, counted, and the crawl
goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import wait
from types import GeneratorType
from typing import Any

from crawlkit.errors import Failure, FetchErrorKind, HttpError, SpiderError, fetch_error
from crawlkit.extensions.middlewares import DROPPED
from crawlkit.extensions.pipelines import ItemPipelines, load_pipelines
from crawlkit.extensions.robots import NO_ANSWER, ROBOTS_CALLBACK
from crawlkit.extensions.sitemaps import SITEMAP_CALLBACKS
from crawlkit.extensions.warc import warcinfo_settings
from crawlkit.http import MAX_HTML_DEPTH, Request, Response
from crawlkit.items import as_dict, is_item
from crawlkit.loader import load_spider, one_line
from crawlkit.log import LogConfig
from crawlkit.messages import LINKS_CHUNK, FetchResult, Links, PageDone, StartFailed
from crawlkit.parse.order import Stages, ordered_stages
from crawlkit.parse.retry import RetryPolicy
from crawlkit.parse.stages import Page, StageSetup
from crawlkit.process import child_setup
from crawlkit.settings import Settings
from crawlkit.spider import CallbackCheck, LinkSpider, Spider
from crawlkit.urls import Fingerprinter, host_of

log = logging.getLogger("crawlkit.parser")

# Fingerprints a parser remembers having sent (about 80 bytes each); forgotten all at once when
# full, after which links sent before are sent again and the engine's seen store drops them.
SENT_MEMORY = 200_000
DROPPED_CONTENT_TYPE = FetchErrorKind.CONTENT_TYPE.value  # also its stats key


@dataclass(slots=True)
class ParserConfig:
    spider: str | None
    spider_kwargs: dict[str, Any]
    settings: Settings  # the spider's ``settings`` in this process
    allowed_domains: list[str]
    max_depth: int
    max_repeated_segments: int
    max_url_length: int
    max_links_per_page: int
    max_redirects: int
    retries: int
    retry_http_codes: list[int]
    retry_backoff: float
    retry_after_max: float
    log: LogConfig
    max_body: int
    pipelines: list[str]
    middlewares: list[str]
    stages: dict[str, int | None]
    cookies: bool
    use_sitemaps: bool
    warc: str | None
    warc_max_size: int
    warc_info: dict[str, str]
    warc_revisits: bool

    @classmethod
    def from_settings(cls, s: Any, spider: str | None, spider_kwargs: dict[str, Any], log: LogConfig) -> ParserConfig:
        """The parser's part of the settings (the engine's parsers and ``crawlkit parse`` alike)."""
        from crawlkit import __version__

        return cls(
            spider=spider, spider_kwargs=spider_kwargs, settings=s, allowed_domains=list(s.allowed_domains),
            max_depth=s.max_depth,
            max_repeated_segments=s.max_repeated_segments, max_url_length=s.max_url_length,
            max_links_per_page=s.max_links_per_page, max_redirects=s.max_redirects,
            retries=s.retries, retry_http_codes=list(s.retry_http_codes), retry_backoff=s.retry_backoff,
            retry_after_max=s.retry_after_max, log=log, max_body=s.max_body, pipelines=list(s.pipelines),
            middlewares=list(s.middlewares), stages=dict(s.stages), cookies=s.cookies, use_sitemaps=s.use_sitemaps,
            warc=s.warc, warc_max_size=s.warc_max_size, warc_info={
                "software": f"crawlkit/{__version__}", "http-header-user-agent": s.user_agent,
                "robots": "obey" if s.robots else "ignore", "description": f"spider {spider or 'crawlkit (built-in)'}",
                "crawlkit-settings": warcinfo_settings(s),
            } if s.warc else {}, warc_revisits=s.warc_revisits,
        )


def build_spider(spec: str | None, kwargs: dict[str, Any]) -> Spider:
    return load_spider(spec)(**kwargs)


def parser_main(config: ParserConfig, registration: Any, events: Any, working: Any, index: int) -> None:
    """Entry point of a parser process; returns when the engine puts None on ``registration``.

    ``events`` is this parser's own Pipe to the engine: one writer, so a parser that dies
    mid-message garbles nothing but its own Pipe, which the engine then drops.
    ``working[index]`` holds the id of the request being handled (0 between pages), so if
    this process dies (a callback calls ``os._exit``, the kernel's OOM killer), the engine
    blames that request and no other. A spider or a stage that cannot be built here (its
    ``__init__`` fails only outside the engine's process, or a stage's at all: stages are
    first built here) is reported with ``StartFailed``: replacing this process would fail
    the same way.
    """
    child_setup(config.log, "parser")
    log.debug("parser process %d started", os.getpid())
    try:
        spider = build_spider(config.spider, config.spider_kwargs)
    except Exception as exc:
        events.send_bytes(pickle.dumps(StartFailed(
            f"spider {config.spider or 'crawlkit (built-in)'} could not be created in a parser process: "
            f"{one_line(exc)}; its __init__ must also work in crawlkit's child processes"
        )))
        return
    try:
        router = Router(spider, config, ahead=events.send_bytes)
    except SpiderError as exc:
        events.send_bytes(pickle.dumps(StartFailed(str(exc))))
        return
    router.open()
    try:
        _serve(router, registration, events, working, index)
    finally:
        router.close()


def _serve(router: Router, registration: Any, events: Any, working: Any, index: int) -> None:
    inboxes: list[Any] = []
    # The registration queue's reader is waited on beside the Pipes, so a new fetcher is
    # picked up at once and an idle parser sleeps in one wait() instead of polling.
    control = registration._reader
    while True:
        for ready in wait([control, *inboxes]):
            if ready is control:
                message = registration.get()
                if message is None:
                    return
                try:
                    inboxes.append(pickle.loads(message[1]))
                except (OSError, EOFError):  # the fetcher died before its Pipe could be handed over
                    log.debug("fetcher process %s exited before its Pipe reached this parser", message[0])
                continue
            # wait() gives back what it was given, here only Connections; typeshed says any waitable.
            try:
                data = ready.recv_bytes()  # type: ignore[union-attr]
            except (EOFError, OSError):  # that fetcher has exited; its replacement registers anew
                inboxes.remove(ready)
                ready.close()  # type: ignore[union-attr]
                continue
            result: FetchResult = pickle.loads(data)
            working[index] = result.req_id
            events.send_bytes(router.handle(result))
            working[index] = 0


class Router:
    """What one parser process does with a FetchResult; separate from the loop so tests can drive it."""

    def __init__(self, spider: Spider, config: ParserConfig, ahead: Callable[[bytes], None] | None = None) -> None:
        self.spider = spider
        spider.settings = config.settings
        self.config = config
        self.callbacks = CallbackCheck(spider)
        # Where a page's candidates but the last LINKS_CHUNK or fewer go, as Links messages
        # ahead of its PageDone (the parser's Pipe); None keeps them all in the PageDone.
        self.ahead = ahead
        if isinstance(spider, LinkSpider):  # its items list the links it may follow, no more
            spider.max_links, spider.max_url_length = config.max_links_per_page, config.max_url_length
        self.fingerprints = Fingerprinter()
        self.sent: set[int] = set()  # fingerprints of the candidates sent to the engine (see _admit)
        self.dated = bool(config.settings.jobdir)  # a sitemap's pages carry their lastmod (see _admit)
        self.spider_name = getattr(spider, "name", type(spider).__name__)
        self.pipelines = ItemPipelines(load_pipelines(config.pipelines), spider)
        retry = RetryPolicy(config.retries, config.retry_backoff, config.retry_after_max)
        self.stages = Stages(StageSetup(config, spider, self.fingerprints, retry), ordered_stages(config.stages))

    def open(self) -> None:
        """Call the pipelines' ``open(spider)`` and the stages' ``open()``; once, before the first page."""
        self.pipelines.open()
        self.stages.open()

    def close(self) -> None:
        """Call their ``close``; at the end of the crawl, Ctrl-C included."""
        self.pipelines.close()
        self.stages.close()

    def handle(self, result: FetchResult) -> bytes:
        """The pickled PageDone for ``result`` (pickled here, so a bad item cannot break the queue)."""
        done = PageDone(
            req_id=result.req_id, host=host_of(result.request.url), status=result.status, elapsed=result.elapsed
        )
        counts: Counter[str] = Counter(result.counts)
        for startup in (self.pipelines.errors, *self.stages.errors):  # open() failures, reported with the first page
            counts.update(startup)
            startup.clear()
        try:
            self._route(result, done, counts)
        except Exception:  # a bug of ours must not lose the request id
            log.exception("internal error on %s", result.request.url)
            counts["error_internal"] += 1
        done.counts = dict(counts)
        candidates = done.candidates
        # A page with a canonical URL to check keeps its candidates: the engine may drop them all.
        if self.ahead is not None and len(candidates) > LINKS_CHUNK and done.canonical is None:
            cut = (len(candidates) - 1) // LINKS_CHUNK * LINKS_CHUNK  # the PageDone keeps the last 1 to LINKS_CHUNK
            for start in range(0, cut, LINKS_CHUNK):
                chunk = Links(done.req_id, candidates[start:start + LINKS_CHUNK])
                self.ahead(pickle.dumps(chunk, pickle.HIGHEST_PROTOCOL))
            done.candidates = candidates[cut:]
        try:
            return pickle.dumps(done, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            log.error("spider %s: items from %s cannot be sent (%s); dropped",
                      self.spider_name, result.request.url, exc)
            done.counts["items_unpicklable"] = len(done.items)
            done.items = []
            return pickle.dumps(done, pickle.HIGHEST_PROTOCOL)

    def _route(self, result: FetchResult, done: PageDone, counts: Counter[str]) -> None:
        """Hand ``result`` down the stages (``stages.py``), to the callback, and its requests down the link stages."""
        page = Page(result, done, counts)
        request = result.request
        robots = request.callback == ROBOTS_CALLBACK
        if result.error == DROPPED_CONTENT_TYPE:  # a filter's drop (fetch/content_types.py): no stage, no errback
            counts[DROPPED_CONTENT_TYPE] += 1
            log.debug("dropped (content_type): %s (%s)", request.url, result.message)
        elif result.error:
            kind = FetchErrorKind(result.error)
            counts[DROPPED if kind is FetchErrorKind.DROPPED else f"error_{result.error}"] += 1
            for on_failure in self.stages.failure:
                if on_failure(page, kind):
                    break
            else:
                if kind is FetchErrorKind.DROPPED:
                    log.debug("%s: %s", result.message, request.url)
                else:
                    log.warning("%s: %s (%s)", result.error, request.url, result.message)
                if request.errback is not None:
                    page.candidates = self._errback(Failure(request, fetch_error(kind, result.message)), done, counts)
        else:
            counts[f"status_{result.status}"] += 1
            response = Response(result.url, result.status, result.headers, result.body, request)
            for on_response in self.stages.response:
                passed = on_response(page, response)
                if passed is None:
                    if page.failure is not None and request.errback is not None:
                        page.candidates += self._errback(Failure(request, page.failure), done, counts)
                    break
                response = passed
            else:
                if not robots:
                    page.candidates = self._callback(response, done, counts, page.drop_items)
        if robots and done.robots is None and done.retry is None:
            done.robots = (NO_ANSWER, b"")  # the engine waits for an answer, whichever stage ended the page
        if page.candidates:
            done.candidates = self._admit(page)

    def _callback(self, response: Response, done: PageDone, counts: Counter[str], drop_items: str) -> list[Request]:
        """The spider's callback on a page no stage ended: its items into ``done`` (unless a stage said why not:
        ``drop_items``), its requests returned."""
        counts["pages"] += 1
        counts["bytes"] += len(response.body)
        request = response.request
        if (not 200 <= response.status < 300 and not getattr(self.spider, "handle_error_statuses", False)
                and not request.meta.get("unchanged")):  # a recrawl's 304 with recrawl_callbacks_on_304
            if request.errback is None:
                return []
            return self._errback(Failure(request, HttpError(response)), done, counts)
        name = request.callback or "parse"
        callback = getattr(self.spider, name, None)
        if not callable(callback):
            counts["error_spider_callback_missing"] += 1
            log.error("spider %s has no callback %r (for %s)", self.spider_name, name, response.url)
            return []
        candidates = self._collect(name, callback, response, request.cb_kwargs, response.url, done, counts,
                                   drop_items)
        if response.too_deep:
            counts["html_too_deep"] += 1
            log.warning("%s: HTML nested deeper than %d elements; css() and xpath() see the page up to there, "
                        "links() all of it", response.url, MAX_HTML_DEPTH)
        return _below(candidates, request.depth, response.url)

    def _errback(self, failure: Failure, done: PageDone, counts: Counter[str]) -> list[Request]:
        """The request's errback on ``failure``: its items into ``done``, its requests returned (one
        link deeper than the failed request, which is their referer)."""
        request = failure.request
        name = request.errback or ""
        errback = getattr(self.spider, name, None)
        if not callable(errback):  # checked when the request was made, unless it was resumed from a job directory
            counts["error_spider_callback_missing"] += 1
            log.error("spider %s has no errback %r (for %s)", self.spider_name, name, request.url)
            return []
        return _below(self._collect(name, errback, failure, {}, request.url, done, counts), request.depth, request.url)

    def _collect(self, name: str, method: Callable[..., Any], argument: Response | Failure, kwargs: dict[str, Any],
                 url: str, done: PageDone, counts: Counter[str], drop_items: str = "") -> list[Request]:
        """Call a callback or errback: its items, through the pipelines, into ``done`` (or, with a ``drop_items``
        reason, counted as ``items_<reason>`` and dropped before the pipelines); its requests returned."""
        requests: list[Request] = []
        limit = self.config.max_links_per_page or -1
        over = 0
        known = self.callbacks.known  # the usual request (a known callback, no errback) costs no call
        try:
            for obj in callback_output(method(argument, **kwargs)):
                if isinstance(obj, Request):
                    fine = obj.callback in known and obj.errback is None
                    problem = None if fine else self.callbacks.problem(obj)
                    if problem is not None:
                        counts["error_spider_callback_missing"] += 1
                        log.error("spider %s callback %s on %s: %s; dropped", self.spider_name, name, url, problem)
                    elif len(requests) != limit:
                        requests.append(obj)
                    else:
                        over += 1  # dropped at once: a page of a million links holds a few thousand
                elif is_item(obj):
                    plain = as_dict(obj)
                    writable = _writable(plain)
                    if isinstance(writable, dict):
                        # Pipelines see the item as yielded; what they return is checked again after them.
                        done.items.append(obj if self.pipelines.stages else _count_nulled(plain, writable, url, counts))
                    else:
                        counts["error_spider_output"] += 1
                        log.error(
                            "spider %s callback %s yielded an item that cannot be written as JSON (%s) on %s",
                            self.spider_name, name, writable, url,
                        )
                else:
                    counts["error_spider_output"] += 1
                    log.error(
                        "spider %s callback %s yielded a %s on %s; yield items (dicts, dataclasses, attrs, Item) "
                        "or Requests", self.spider_name, name, type(obj).__name__, url,
                    )
        except Exception as exc:
            counts["error_spider_exception"] += 1
            log.error(
                "spider %s callback %s raised %s on %s: %s",
                self.spider_name, name, type(exc).__name__, url, exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
        if over:
            counts["dropped_links_per_page"] += over
            log.warning("%s yielded %d requests; the first %d are followed, %d dropped (max_links_per_page)",
                        url, limit + over, limit, over)
        if drop_items and done.items:
            counts[f"items_{drop_items}"] += len(done.items)
            done.items = []
        if done.items and self.pipelines.stages:
            processed = self.pipelines.process(done.items, url, counts)
            done.items = self._pipeline_output(processed, url, counts)
        counts["items"] += len(done.items)
        return requests

    def _pipeline_output(self, items: Iterable[Any], url: str, counts: Counter[str]) -> list[dict[str, Any]]:
        """The pipelines' items as dicts that can be written; one that cannot is dropped and counted."""
        kept = []
        for item in items:
            plain = as_dict(item)
            writable = _writable(plain)
            if isinstance(writable, dict):
                kept.append(_count_nulled(plain, writable, url, counts))
            else:
                counts["error_pipeline"] += 1
                counts["items_dropped"] += 1
                log.error("the pipelines made an item from %s that cannot be written as JSON (%s); item dropped",
                          url, writable)
        return kept

    def _admit(self, page: Page) -> list[tuple[int | None, Request]]:
        """The page's candidates that pass the link stages, fingerprinted, without repeats within this page
        and without those this parser has sent the engine already.

        Whether they were seen before is the engine's question, asked of the seen store once
        per batch of pages: the store and the frontier then change together, in one process, so
        a parser that dies mid-page cannot mark links seen that never reach the frontier. But
        every candidate sent is offered to the store (even from a page whose request was
        re-queued meanwhile), so one sent before is a duplicate for certain, and not sending it
        again spares pickling, the engine and the store the work: on most sites most links of a
        page are its navigation, sent with the first pages.
        """
        candidates = page.candidates
        for on_links in self.stages.links:
            candidates = on_links(page, candidates)
        counts, fingerprint = page.counts, self.fingerprints.fingerprint
        out: dict[int, Request] = {}
        unfiltered: list[tuple[int | None, Request]] = []
        # With a jobdir, a sitemap's pages go to the engine even if sent before: their lastmod is news for
        # the journal (JobDir.relist), which marks them as left to their sitemap in a recrawl.
        dated = self.dated and page.request.callback in SITEMAP_CALLBACKS
        for request in candidates:
            try:
                fp = fingerprint(request.url, request.method, request.body)
            except ValueError:
                counts["dropped_invalid_url"] += 1
                log.debug("dropped (invalid_url): %s", request.url[:200])
                continue
            if request.dont_filter:
                unfiltered.append((None, request))
            elif fp in out or fp in self.sent and not dated:
                counts["duplicates"] += 1
            else:
                out[fp] = request
        if page.done.canonical is None:  # else the engine may drop them all (a duplicate page): not sent for sure
            if len(self.sent) + len(out) > SENT_MEMORY:
                self.sent.clear()
            self.sent.update(out)
        return unfiltered + list(out.items())


def _writable(item: dict[str, Any]) -> dict[str, Any] | str:
    """``item`` as the feed writers can write it, or why they cannot.

    They write any value (as ``str`` at worst), but not a key such as a tuple nor a circular
    item; found here, in the parser, such an item is one counted error instead of a crash of
    the engine's writer. NaN and Infinity are not JSON (strict readers reject the bare ``NaN``
    Python would write): an item holding them comes back as a copy with null in their place,
    the same in every format. One ``json.dumps`` checks an item; only one with such a float
    is walked.
    """
    try:
        json.dumps(item, default=str, allow_nan=False)
        return item
    except (TypeError, ValueError, RecursionError) as exc:
        problem = str(exc)
    try:
        nulled = _null_non_finite(item)
        json.dumps(nulled, default=str, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return problem
    return nulled


def _count_nulled(item: dict[str, Any], writable: dict[str, Any], url: str, counts: Counter[str]) -> dict[str, Any]:
    """``writable``, counted and logged when it is ``item`` with NaN or Infinity made null."""
    if writable is not item:
        counts["items_nan_to_null"] += 1
        log.warning("an item from %s holds NaN or Infinity, which JSON cannot hold: written as null", url)
    return writable


def _null_non_finite(value: Any) -> Any:
    """A copy of ``value`` with every NaN and infinite float, in dicts, lists, tuples and sets, as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _null_non_finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_null_non_finite(item) for item in value]
    return value


def _below(requests: list[Request], depth: int, referer: str) -> list[Request]:
    """``requests``, yielded on a page at ``depth``, made one link deeper with that page as their referer."""
    for request in requests:
        request.depth = depth + 1
        request.referer = referer
    return requests


def callback_output(output: Any) -> Iterable[Any]:
    """What a callback or errback returned, as the objects to go through: a generator as it is, None as
    nothing, a lone item or Request (or anything else, to be reported) as one object."""
    if type(output) is GeneratorType:  # most callbacks: spared the checks below
        return output
    if output is None:
        return ()
    if isinstance(output, (Mapping, Request, str, bytes)) or not hasattr(output, "__iter__"):
        return (output,)  # a lone object (an Item is a Mapping too); anything but an item or Request is reported
    return output
