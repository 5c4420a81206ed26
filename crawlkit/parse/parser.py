"""The parser processes: turn each FetchResult into items and new requests.

A parser process reads FetchResults from the Pipes its fetchers registered, and for each one
decides: retry it (connection errors, timeouts, 5xx/429, with backoff and Retry-After), turn a
3xx into a request for its target, hand a robots.txt answer to the engine, or build the
``Response`` and run the spider's callback. The requests a callback yields are checked
(scheme, length, depth, allowed domains), fingerprinted, and sent to the
engine (which asks the seen-URL store about a whole batch of pages at once) in one PageDone
message with the items and the stats deltas.

Around that, the user's hooks and the archive: every HTTP answer is written to the WARC files
(``warc.py``) and its Set-Cookie headers are passed to the engine's jar (``cookies.py``);
middlewares' ``process_response`` hooks see it before any decision (``middlewares.py``); the
items a callback yields go through the item pipelines (``pipelines.py``); sitemaps and the
Sitemap lines of robots.txt become requests (``sitemaps.py``).

Every FetchResult yields exactly one PageDone, whatever the spider does: a callback or hook that
raises or yields junk is logged with spider, callback, URL and type, counted, and the crawl
goes on.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any
from urllib.parse import urljoin, urlsplit

from protego import Protego

from crawlkit.errors import FetchErrorKind, RetryRequest
from crawlkit.extensions.middlewares import DROPPED, ResponseHooks, load_middlewares
from crawlkit.extensions.pipelines import ItemPipelines, load_pipelines
from crawlkit.extensions.robots import NO_ANSWER, ROBOTS_BLOCKED, ROBOTS_CALLBACK, UNREACHABLE
from crawlkit.extensions.sitemaps import SITEMAP_CALLBACK, SitemapError, read_sitemap, sitemap_request
from crawlkit.extensions.warc import WarcWriter
from crawlkit.http import MAX_HTML_DEPTH, Headers, Request, Response
from crawlkit.loader import load_spider, one_line
from crawlkit.log import LogConfig
from crawlkit.messages import LINKS_CHUNK, FetchResult, Links, PageDone, StartFailed
from crawlkit.process import child_setup
from crawlkit.spider import LinkSpider, Spider
from crawlkit.urls import Fingerprinter, host_of, is_http, port_of

log = logging.getLogger("crawlkit.parser")

# Fingerprints a parser remembers having sent (about 80 bytes each); forgotten all at once when
# full, after which links sent before are sent again and the engine's seen store drops them.
SENT_MEMORY = 200_000


@dataclass(slots=True)
class ParserConfig:
    spider: str | None
    spider_kwargs: dict[str, Any]
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
    cookies: bool
    use_sitemaps: bool
    warc: str | None
    warc_max_size: int
    warc_info: dict[str, str]

    @classmethod
    def from_settings(cls, s: Any, spider: str | None, spider_kwargs: dict[str, Any], log: LogConfig) -> ParserConfig:
        """The parser's part of the settings (the engine's parsers and ``crawlkit parse`` alike)."""
        from crawlkit import __version__

        return cls(
            spider=spider, spider_kwargs=spider_kwargs, allowed_domains=list(s.allowed_domains), max_depth=s.max_depth,
            max_repeated_segments=s.max_repeated_segments, max_url_length=s.max_url_length,
            max_links_per_page=s.max_links_per_page, max_redirects=s.max_redirects,
            retries=s.retries, retry_http_codes=list(s.retry_http_codes), retry_backoff=s.retry_backoff,
            retry_after_max=s.retry_after_max, log=log, max_body=s.max_body, pipelines=list(s.pipelines),
            middlewares=list(s.middlewares), cookies=s.cookies, use_sitemaps=s.use_sitemaps, warc=s.warc,
            warc_max_size=s.warc_max_size, warc_info={
                "software": f"crawlkit/{__version__}", "http-header-user-agent": s.user_agent,
                "robots": "obey" if s.robots else "ignore", "description": f"spider {spider or 'crawlkit (built-in)'}",
            },
        )


def build_spider(spec: str | None, kwargs: dict[str, Any]) -> Spider:
    return load_spider(spec)(**kwargs)


def parser_main(config: ParserConfig, registration: Any, events: Any, working: Any, index: int) -> None:
    """Entry point of a parser process; returns when the engine puts None on ``registration``.

    ``events`` is this parser's own Pipe to the engine: one writer, so a parser that dies
    mid-message garbles nothing but its own Pipe, which the engine then drops.
    ``working[index]`` holds the id of the request being handled (0 between pages), so if
    this process dies (a callback calls ``os._exit``, the kernel's OOM killer), the engine
    blames that request and no other. A spider that cannot be built here (its ``__init__``
    fails only outside the engine's process) is reported with ``StartFailed``: replacing
    this process would fail the same way.
    """
    child_setup(config.log, "parser")
    log.debug("parser process %d started", os.getpid())
    try:
        router = Router(build_spider(config.spider, config.spider_kwargs), config, ahead=events.send_bytes)
    except Exception as exc:
        events.send_bytes(pickle.dumps(StartFailed(
            f"spider {config.spider or 'crawlkit (built-in)'} could not be created in a parser process: "
            f"{one_line(exc)}; its __init__ must also work in crawlkit's child processes"
        )))
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
        self.config = config
        # Where a page's candidates but the last LINKS_CHUNK or fewer go, as Links messages
        # ahead of its PageDone (the parser's Pipe); None keeps them all in the PageDone.
        self.ahead = ahead
        if isinstance(spider, LinkSpider):  # its items list the links it may follow, no more
            spider.max_links, spider.max_url_length = config.max_links_per_page, config.max_url_length
        self.fingerprints = Fingerprinter()
        self.sent: set[int] = set()  # fingerprints of the candidates sent to the engine (see _admit)
        self.allowed = AllowedDomains([*getattr(spider, "allowed_domains", []), *config.allowed_domains])
        self.spider_name = getattr(spider, "name", type(spider).__name__)
        self.pipelines = ItemPipelines(load_pipelines(config.pipelines), spider)
        self.hooks = ResponseHooks(load_middlewares(config.middlewares), spider)
        self.warc = WarcWriter(config.warc, config.warc_max_size, config.warc_info) if config.warc else None

    def open(self) -> None:
        """Call the pipelines' and middlewares' ``open(spider)``; once, before the first page."""
        self.pipelines.open()
        self.hooks.open()

    def close(self) -> None:
        """Call their ``close(spider)`` and close the WARC file; at the end of the crawl, Ctrl-C included."""
        self.pipelines.close()
        self.hooks.close()
        if self.warc is not None:
            try:
                self.warc.close()
            except OSError as exc:
                log.error("closing the WARC file failed: %s", exc)

    def handle(self, result: FetchResult) -> bytes:
        """The pickled PageDone for ``result`` (pickled here, so a bad item cannot break the queue)."""
        done = PageDone(
            req_id=result.req_id, host=host_of(result.request.url), status=result.status, elapsed=result.elapsed
        )
        counts: Counter[str] = Counter(result.counts)
        for startup in (self.pipelines.errors, self.hooks.errors):  # open() failures, reported with the first page
            counts.update(startup)
            startup.clear()
        try:
            self._route(result, done, counts)
        except Exception:  # a bug of ours must not lose the request id
            log.exception("internal error on %s", result.request.url)
            counts["error_internal"] += 1
        done.counts = dict(counts)
        candidates = done.candidates
        if self.ahead is not None and len(candidates) > LINKS_CHUNK:
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
        request = result.request
        robots = request.callback == ROBOTS_CALLBACK
        if result.error:
            kind = FetchErrorKind(result.error)
            if kind is FetchErrorKind.DROPPED:
                counts[DROPPED] += 1
                log.debug("%s: %s", result.message, request.url)
            else:
                counts[f"error_{result.error}"] += 1
                if kind.retryable and self._retry(request, done, counts, None):
                    log.info("retrying %s after %s: %s", request.url, result.error, result.message)
                    return
                log.warning("%s: %s (%s)", result.error, request.url, result.message)
            if robots:
                blocked = kind is FetchErrorKind.DESTINATION_BLOCKED
                done.robots = (ROBOTS_BLOCKED if blocked else UNREACHABLE.get(kind, (NO_ANSWER, ""))[0], b"")
            return
        counts[f"status_{result.status}"] += 1
        response = Response(result.url, result.status, result.headers, result.body, request)
        self._archive(result, response.headers, done, counts)
        if self.hooks.stages:
            processed = self._process_response(response, done, counts)
            if processed is None:
                if robots and done.retry is None:
                    done.robots = (NO_ANSWER, b"")
                return
            response = processed
        status, headers = response.status, response.headers
        if status in self.config.retry_http_codes and self._retry(request, done, counts, headers):
            log.info("retrying %s after HTTP %s", request.url, status)
            return
        if robots:
            done.robots = (status, response.body)
            if self.config.use_sitemaps and 200 <= status < 300:
                done.candidates = self._admit(_robots_sitemaps(response), counts)
            return
        if 300 <= status < 400 and "location" in headers:
            self._redirect(response, done, counts)
            return
        if request.callback == SITEMAP_CALLBACK:
            self._sitemap(response, done, counts)
            return
        counts["pages"] += 1
        counts["bytes"] += len(response.body)
        if not 200 <= status < 300 and not getattr(self.spider, "handle_error_statuses", False):
            return
        candidates = self._run_callback(response, done, counts)
        if response.too_deep:
            counts["html_too_deep"] += 1
            log.warning("%s: HTML nested deeper than %d elements; css() and xpath() see the page up to there, "
                        "links() all of it", response.url, MAX_HTML_DEPTH)
        for new in candidates:
            new.depth = request.depth + 1
            new.referer = response.url
        done.candidates = self._admit(candidates, counts)

    def _archive(self, result: FetchResult, headers: Headers, done: PageDone, counts: Counter[str]) -> None:
        """What every HTTP answer is owed before anyone judges it: the WARC record and the cookie jar."""
        if self.config.cookies:
            set_cookies = headers.getlist("Set-Cookie")
            if set_cookies:
                done.set_cookies.append((result.url, set_cookies))
        if self.warc is not None:
            try:
                self.warc.write(result)
            except Exception as exc:  # a full disk must not stop the crawl; the count shows the gap
                counts["error_warc"] += 1
                log.error("WARC record for %s not written: %s", result.url, one_line(exc))

    def _process_response(self, response: Response, done: PageDone, counts: Counter[str]) -> Response | None:
        outcome = self.hooks.process(response, counts)
        if not isinstance(outcome, RetryRequest):
            return outcome
        reason = str(outcome) or "asked by a middleware"
        counts["retries_middleware"] += 1
        if self._retry(response.request, done, counts, None):
            log.info("retrying %s: %s", response.url, reason)
        else:
            log.warning("gave up on %s after %d retries: %s; response dropped",
                        response.url, self.config.retries, reason)
        return None

    def _sitemap(self, response: Response, done: PageDone, counts: Counter[str]) -> None:
        """Turn a sitemap into requests: more sitemaps from an index, pages from a urlset (depth 0, like seeds)."""
        if not 200 <= response.status < 300:
            log.info("no sitemap at %s (HTTP %s)", response.url, response.status)
            return
        try:
            sitemaps, pages = read_sitemap(response.body, self.config.max_body)
        except SitemapError as exc:
            counts["error_sitemap"] += 1
            log.warning("sitemap %s cannot be read: %s", response.url, exc)
            return
        counts["sitemaps"] += 1
        counts["sitemap_urls"] += len(pages)
        log.info("sitemap %s lists %d sitemaps and %d pages", response.url, len(sitemaps), len(pages))
        requests = [sitemap_request(url) for url in sitemaps] + [Request(url) for url in pages]
        for request in requests:
            request.depth = response.request.depth
            request.referer = response.url
        done.candidates = self._admit(requests, counts)

    def _retry(self, request: Request, done: PageDone, counts: Counter[str], headers: Headers | None) -> bool:
        attempt = request.meta.get("retry_times", 0) + 1
        if attempt > self.config.retries:
            counts["retries_exhausted"] += 1
            return False
        wait_s = self.config.retry_backoff * 2 ** (attempt - 1)
        asked = _retry_after(headers) if headers else None
        now = time.monotonic()
        if asked is not None:
            asked = min(asked, self.config.retry_after_max)
            done.host_pause_until = now + asked
            wait_s = max(wait_s, asked)
        done.retry = request.replace(meta={**request.meta, "retry_times": attempt})
        done.retry_at = now + wait_s
        counts["retries"] += 1
        return True

    def _redirect(self, response: Response, done: PageDone, counts: Counter[str]) -> None:
        request = response.request
        target = redirect_target(response.url, response.headers["location"])
        chain = request.meta.get("redirect_urls", []) + [request.url]
        counts["redirects"] += 1
        if not target.startswith(("http://", "https://")):
            counts["dropped_redirect_scheme"] += 1
            log.warning("redirect to a non-http(s) URL dropped: %s -> %s", request.url, target[:200])
            return
        if len(chain) > self.config.max_redirects:
            counts["error_too_many_redirects"] += 1
            log.warning("too many redirects (%d) at %s", len(chain), request.url)
            return
        try:
            target_fp = self.fingerprints.fingerprint(target)
        except ValueError as exc:
            counts["dropped_invalid_url"] += 1
            log.warning("redirect to an invalid URL dropped: %s -> %s (%s)", request.url, target[:200], exc)
            return
        if any(target_fp == self.fingerprints.fingerprint(u) for u in chain if is_http(u)):
            counts["error_redirect_loop"] += 1
            log.warning("redirect loop: %s -> %s", request.url, target)
            return
        done.candidates = self._admit([redirect_request(request, target)], counts)

    def _run_callback(self, response: Response, done: PageDone, counts: Counter[str]) -> list[Request]:
        name = response.request.callback or "parse"
        callback = getattr(self.spider, name, None)
        if not callable(callback):
            counts["error_spider_callback_missing"] += 1
            log.error("spider %s has no callback %r (for %s)", self.spider_name, name, response.url)
            return []
        requests: list[Request] = []
        limit = self.config.max_links_per_page or -1
        over = 0
        try:
            for obj in _iterate(callback(response)):
                if isinstance(obj, Request):
                    if len(requests) != limit:
                        requests.append(obj)
                    else:
                        over += 1  # dropped at once: a page of a million links holds a few thousand
                elif isinstance(obj, dict):
                    writable = _writable(obj)
                    if isinstance(writable, dict):
                        # Pipelines see the item as yielded; what they return is checked again after them.
                        done.items.append(
                            obj if self.pipelines.stages else _count_nulled(obj, writable, response.url, counts)
                        )
                    else:
                        counts["error_spider_output"] += 1
                        log.error(
                            "spider %s callback %s yielded an item that cannot be written as JSON (%s) on %s",
                            self.spider_name, name, writable, response.url,
                        )
                else:
                    counts["error_spider_output"] += 1
                    log.error(
                        "spider %s callback %s yielded a %s on %s; yield dicts (items) or Requests",
                        self.spider_name, name, type(obj).__name__, response.url,
                    )
        except Exception as exc:
            counts["error_spider_exception"] += 1
            log.error(
                "spider %s callback %s raised %s on %s: %s",
                self.spider_name, name, type(exc).__name__, response.url, exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
        if over:
            counts["dropped_links_per_page"] += over
            log.warning("%s yielded %d requests; the first %d are followed, %d dropped (max_links_per_page)",
                        response.url, limit + over, limit, over)
        if done.items and self.pipelines.stages:
            processed = self.pipelines.process(done.items, response.url, counts)
            done.items = self._pipeline_output(processed, response.url, counts)
        counts["items"] += len(done.items)
        return requests

    def _pipeline_output(self, items: Iterable[dict[str, Any]], url: str, counts: Counter[str]) -> list[dict[str, Any]]:
        """The pipelines' items as they can be written; one that cannot is dropped and counted."""
        kept = []
        for item in items:
            writable = _writable(item)
            if isinstance(writable, dict):
                kept.append(_count_nulled(item, writable, url, counts))
            else:
                counts["error_pipeline"] += 1
                counts["items_dropped"] += 1
                log.error("the pipelines made an item from %s that cannot be written as JSON (%s); item dropped",
                          url, writable)
        return kept

    def _admit(self, candidates: list[Request], counts: Counter[str]) -> list[tuple[int | None, Request]]:
        """The candidates that pass the filters, fingerprinted, without repeats within this page
        and without those this parser has sent the engine already.

        Whether they were seen before is the engine's question, asked of the seen store once
        per batch of pages: the store and the frontier then change together, in one process, so
        a parser that dies mid-page cannot mark links seen that never reach the frontier. But
        every candidate sent is offered to the store (even from a page whose request was
        re-queued meanwhile), so one sent before is a duplicate for certain, and not sending it
        again spares pickling, the engine and the store the work: on most sites most links of a
        page are its navigation, sent with the first pages.
        """
        config, fingerprints = self.config, self.fingerprints
        out: dict[int, Request] = {}
        unfiltered: list[tuple[int | None, Request]] = []
        for request in candidates:
            url = request.url
            if url not in fingerprints and not is_http(url):  # a URL fingerprinted before is http(s)
                reason = "scheme"
            elif len(url) > config.max_url_length:
                reason = "url_too_long"
            elif config.max_depth and request.depth > config.max_depth:
                reason = "depth"
            elif config.max_repeated_segments and _repeats_segment(url, config.max_repeated_segments):
                reason = "repeated_segments"
            elif self.allowed and not self.allowed.allows(url):
                reason = "offsite"
            else:
                try:
                    fp = fingerprints.fingerprint(url, request.method, request.body)
                    reason = ""
                except ValueError:
                    reason = "invalid_url"
            if reason:
                # Routine on most sites, so DEBUG; the summary counts them by reason.
                counts[f"dropped_{reason}"] += 1
                log.debug("dropped (%s): %s%s", reason, url[:200], "..." if len(url) > 200 else "")
                continue
            if request.dont_filter:
                unfiltered.append((None, request))
            elif fp in out or fp in self.sent:
                counts["duplicates"] += 1
            else:
                out[fp] = request
        if len(self.sent) + len(out) > SENT_MEMORY:
            self.sent.clear()
        self.sent.update(out)
        return unfiltered + list(out.items())


class AllowedDomains:
    """The offsite rule for links and redirects (used by ``crawlkit fetch``/``parse`` too);
    false when empty, allowing all.

    An entry matches its host and subdomains: ``a.com`` on any port (as in Scrapy), ``a.com:8080``
    and ``[::1]:8080`` on that port only (``::1`` is an IPv6 address without a port).
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self.rules: list[tuple[str, int | None]] = []
        for entry in entries:
            entry = entry.lower().lstrip(".")
            domain, colon, port = entry.rpartition(":")
            if colon and port.isdigit() and (":" not in domain or domain.startswith("[")):
                self.rules.append((domain.strip("[]"), int(port)))
            else:
                self.rules.append((entry.strip("[]"), None))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def allows(self, url: str) -> bool:
        """Whether ``url``'s host is an allowed domain or a subdomain of one, on the entry's port if it names one."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port: int | None = None
        for domain, wanted in self.rules:
            if host == domain or host.endswith("." + domain):
                if wanted is None:
                    return True
                port = port or port_of(parts)
                if port == wanted:
                    return True
        return False


def _repeats_segment(url: str, limit: int) -> bool:
    """True when one path segment occurs more than ``limit`` times: /a/a/a/a/, /x/y/x/y/x/y/x/y/.

    Such a path is a spider trap: relative links that re-append themselves (/a/ -> /a/a/ -> ...),
    as Heritrix's and Nutch's default filters judge.
    """
    path_slashes_at_most = url.count("/") - (2 if url.startswith(("http://", "https://")) else 0)
    if path_slashes_at_most <= limit:  # too few segments to repeat one that often (known without parsing)
        return False
    path = urlsplit(url).path
    counts = Counter(segment for segment in path.split("/") if segment)
    return bool(counts) and max(counts.values()) > limit


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


def _robots_sitemaps(response: Response) -> list[Request]:
    """Requests for the ``Sitemap:`` lines of a robots.txt."""
    rules = Protego.parse(response.body.decode("utf-8", "replace"))
    return [sitemap_request(url) for url in rules.sitemaps]


def redirect_target(url: str, location: str) -> str:
    """The URL a redirect from ``url`` names, as the server meant it (used by ``crawlkit fetch`` too).

    HTTP headers arrive as Latin-1, but servers send UTF-8 bytes in Location (``/päge``), which
    requests' redirect code decodes the same way. A Location urllib cannot even split
    (``http://[::1``) comes back as it is, for the caller to reject.
    """
    try:
        location = location.encode("latin-1").decode("utf-8")
    except UnicodeError:
        pass
    try:
        return urljoin(url, location.strip())
    except ValueError:
        return location


# Request headers that carry the user's identity; a redirect to another origin drops them.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def redirect_request(request: Request, target: str) -> Request:
    """The request that follows ``request``'s redirect to ``target`` (used by ``crawlkit fetch`` too).

    When the redirect changes scheme, host or port, the spider's Authorization, Cookie and
    Proxy-Authorization headers are left behind: they were meant for the origin that sent
    the redirect, not for wherever it points (Scrapy does the same since 2.11.1/2.11.2,
    CVE-2024-1968). ``user:password@`` in a URL stays with its origin by itself: a Location
    naming another origin replaces the whole authority. The cookies of crawlkit's jar are
    not headers of the request; the engine picks them for the target's host at dispatch.
    """
    chain = request.meta.get("redirect_urls", []) + [request.url]
    follow = request.replace(url=target, meta={**request.meta, "redirect_urls": chain, "retry_times": 0})
    if _origin(target) != _origin(request.url):
        for name in CREDENTIAL_HEADERS:
            follow.headers.pop(name, None)
    return follow


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of an http(s) URL."""
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port_of(parts)


def _iterate(output: Any) -> Iterable[Any]:
    if output is None:
        return ()
    if isinstance(output, (dict, Request, str, bytes)) or not hasattr(output, "__iter__"):
        return (output,)  # a lone object; anything but a dict or Request is reported by type
    return output


def _retry_after(headers: Headers) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
