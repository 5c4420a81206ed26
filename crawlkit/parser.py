"""The parser processes: turn each FetchResult into items and new requests.

A parser process reads FetchResults from the Pipes its fetchers registered, and for each one
decides: retry it (connection errors, timeouts, 5xx/429, with backoff and Retry-After), turn a
3xx into a request for its target, hand a robots.txt answer to the engine, or build the
``Response`` and run the spider's callback. The requests a callback yields are checked
(scheme, length, depth, allowed domains), fingerprinted, and sent to the
engine (which asks the seen-URL store about a whole batch of pages at once) in one PageDone
message with the items and the stats deltas.

Every FetchResult yields exactly one PageDone, whatever the spider does: a callback that
raises or yields junk is logged with spider, callback, URL and type, counted, and the crawl
goes on.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import pickle
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Iterable
from urllib.parse import urljoin, urlsplit

from .http import Request, Response
from .loader import load_spider
from .log import LogConfig
from .messages import FetchResult, PageDone
from .process import child_setup
from .robots import ROBOTS_CALLBACK
from .spider import Spider
from .urls import Fingerprinter, host_of, is_http

log = logging.getLogger("crawlkit.parser")

# A path naming one segment more often than this is a spider trap: relative links that
# re-append themselves (/a/ -> /a/a/ -> ...), as Heritrix's and Nutch's default filters judge.

# Failures worth another attempt; the others would fail the same way again.
RETRYABLE_ERRORS = {"connect_timeout", "read_timeout", "connection_refused", "connection_reset", "connection_error", "download_timeout", "fetch_error"}


@dataclass(slots=True)
class ParserConfig:
    spider: str | None
    spider_kwargs: dict[str, Any]
    allowed_domains: list[str]
    max_depth: int
    max_repeated_segments: int
    max_url_length: int
    max_redirects: int
    retries: int
    retry_http_codes: list[int]
    retry_backoff: float
    retry_after_max: float
    log: LogConfig

    @classmethod
    def from_settings(cls, s: Any, spider: str | None, spider_kwargs: dict[str, Any], log: LogConfig) -> "ParserConfig":
        """The parser's part of the settings (the engine's parsers and ``crawlkit parse`` alike)."""
        return cls(
            spider=spider, spider_kwargs=spider_kwargs, allowed_domains=list(s.allowed_domains), max_depth=s.max_depth,
            max_repeated_segments=s.max_repeated_segments, max_url_length=s.max_url_length, max_redirects=s.max_redirects,
            retries=s.retries, retry_http_codes=list(s.retry_http_codes), retry_backoff=s.retry_backoff,
            retry_after_max=s.retry_after_max, log=log,
        )


def build_spider(spec: str | None, kwargs: dict[str, Any]) -> Spider:
    return load_spider(spec)(**kwargs)


def parser_main(config: ParserConfig, registration: Any, events: Any) -> None:
    """Entry point of a parser process; returns when the engine puts None on ``registration``.

    ``events`` is this parser's own Pipe to the engine: one writer, so a parser that dies
    mid-message garbles nothing but its own Pipe, which the engine then drops.
    """
    child_setup(config.log)
    log.debug("parser process %d started", os.getpid())
    router = Router(build_spider(config.spider, config.spider_kwargs), config)
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
                inboxes.append(pickle.loads(message[1]))
                continue
            try:
                data = ready.recv_bytes()
            except (EOFError, OSError):  # that fetcher has exited; its replacement registers anew
                inboxes.remove(ready)
                ready.close()
                continue
            events.send_bytes(router.handle(pickle.loads(data)))


class Router:
    """What one parser process does with a FetchResult; separate from the loop so tests can drive it."""

    def __init__(self, spider: Spider, config: ParserConfig) -> None:
        self.spider = spider
        self.config = config
        self.fingerprints = Fingerprinter()
        self.allowed = [d.lower().lstrip(".") for d in [*getattr(spider, "allowed_domains", []), *config.allowed_domains]]
        self.spider_name = getattr(spider, "name", type(spider).__name__)

    def handle(self, result: FetchResult) -> bytes:
        """The pickled PageDone for ``result`` (pickled here, so a bad item cannot break the queue)."""
        done = PageDone(req_id=result.req_id, host=host_of(result.request.url), status=result.status, elapsed=result.elapsed)
        counts: Counter[str] = Counter()
        try:
            self._route(result, done, counts)
        except Exception:  # a bug of ours must not lose the request id
            log.exception("internal error on %s", result.request.url)
            counts["error_internal"] += 1
        done.counts = dict(counts)
        try:
            return pickle.dumps(done, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            log.error("spider %s: items from %s cannot be sent (%s); dropped", self.spider_name, result.request.url, exc)
            done.counts["items_unpicklable"] = len(done.items)
            done.items = []
            return pickle.dumps(done, pickle.HIGHEST_PROTOCOL)

    def _route(self, result: FetchResult, done: PageDone, counts: Counter[str]) -> None:
        request = result.request
        robots = request.callback == ROBOTS_CALLBACK
        if result.error:
            counts[f"error_{result.error}"] += 1
            if result.error in RETRYABLE_ERRORS and self._retry(request, done, counts, None):
                log.info("retrying %s after %s: %s", request.url, result.error, result.message)
                return
            log.warning("%s: %s (%s)", result.error, request.url, result.message)
            if robots:
                done.robots = (0, b"")
            return
        status = result.status
        counts[f"status_{status}"] += 1
        headers = dict(result.headers)
        if status in self.config.retry_http_codes and self._retry(request, done, counts, headers):
            log.info("retrying %s after HTTP %s", request.url, status)
            return
        if robots:
            done.robots = (status, result.body)
            return
        if 300 <= status < 400 and "location" in {k.lower() for k in headers}:
            self._redirect(result, done, counts)
            return
        done.page = True
        counts["pages"] += 1
        counts["bytes"] += len(result.body)
        response = Response(result.url, status, headers, result.body, request)
        if not 200 <= status < 300 and not getattr(self.spider, "handle_error_statuses", False):
            return
        candidates = self._run_callback(response, done, counts)
        for new in candidates:
            new.depth = request.depth + 1
            new.referer = response.url
        done.candidates = self._admit(candidates, counts)

    def _retry(self, request: Request, done: PageDone, counts: Counter[str], headers: dict[str, str] | None) -> bool:
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

    def _redirect(self, result: FetchResult, done: PageDone, counts: Counter[str]) -> None:
        request = result.request
        location = _header_text(next(v for k, v in result.headers if k.lower() == "location"))
        chain = request.meta.get("redirect_urls", []) + [request.url]
        counts["redirects"] += 1
        try:
            target = urljoin(result.url, location.strip())
        except ValueError:  # e.g. "http://[::1": urllib cannot even split it
            target = location
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
        follow = request.replace(url=target, meta={**request.meta, "redirect_urls": chain, "retry_times": 0})
        done.candidates = self._admit([follow], counts)

    def _run_callback(self, response: Response, done: PageDone, counts: Counter[str]) -> list[Request]:
        name = response.request.callback or "parse"
        callback = getattr(self.spider, name, None)
        if not callable(callback):
            counts["error_spider_callback_missing"] += 1
            log.error("spider %s has no callback %r (for %s)", self.spider_name, name, response.url)
            return []
        requests: list[Request] = []
        try:
            for obj in _iterate(callback(response)):
                if isinstance(obj, Request):
                    requests.append(obj)
                elif isinstance(obj, dict):
                    problem = _unwritable(obj)
                    if problem is None:
                        done.items.append(obj)
                    else:
                        counts["error_spider_output"] += 1
                        log.error(
                            "spider %s callback %s yielded an item that cannot be written as JSON (%s) on %s",
                            self.spider_name, name, problem, response.url,
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
                "spider %s callback %s raised %s on %s: %s", self.spider_name, name, type(exc).__name__, response.url, exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
        counts["items"] += len(done.items)
        return requests

    def _admit(self, candidates: list[Request], counts: Counter[str]) -> list[tuple[int | None, Request]]:
        """The candidates that pass the filters, fingerprinted, without repeats within this page.

        Whether they were seen before is the engine's question, asked of the seen store once
        per batch of pages: the store and the frontier then change together, in one process, so
        a parser that dies mid-page cannot mark links seen that never reach the frontier.
        """
        config = self.config
        out: dict[int, Request] = {}
        unfiltered: list[tuple[int | None, Request]] = []
        for request in candidates:
            url = request.url
            if not is_http(url):
                reason = "scheme"
            elif len(url) > config.max_url_length:
                reason = "url_too_long"
            elif config.max_depth and request.depth > config.max_depth:
                reason = "depth"
            elif config.max_repeated_segments and _repeats_segment(url, config.max_repeated_segments):
                reason = "repeated_segments"
            elif self.allowed and not self._allowed(url):
                reason = "offsite"
            else:
                try:
                    fp = self.fingerprints.fingerprint(url, request.method, request.body)
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
            elif fp in out:
                counts["duplicates"] += 1
            else:
                out[fp] = request
        return unfiltered + list(out.items())

    def _allowed(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        return any(host == d or host.endswith("." + d) for d in self.allowed)


def _repeats_segment(url: str, limit: int) -> bool:
    """True when one path segment occurs more than ``limit`` times: /a/a/a/a/, /x/y/x/y/x/y/x/y/."""
    path = urlsplit(url).path
    if path.count("/") <= limit:  # too few segments to repeat one that often
        return False
    counts = Counter(segment for segment in path.split("/") if segment)
    return bool(counts) and max(counts.values()) > limit


def _unwritable(item: dict[str, Any]) -> str | None:
    """Why the feed writers would fail on ``item``, or None.

    They write any value (as ``str`` at worst), but not a key such as a tuple nor a circular
    item; found here, in the parser, such an item is one counted error instead of a crash of
    the engine's writer.
    """
    try:
        json.dumps(item, default=str)
    except (TypeError, ValueError, RecursionError) as exc:
        return str(exc)
    return None


def _header_text(value: str) -> str:
    """A header value as the server meant it: HTTP headers arrive as Latin-1, but servers send
    UTF-8 bytes in Location (``/päge``), which requests' redirect code decodes the same way."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _iterate(output: Any) -> Iterable[Any]:
    if output is None:
        return ()
    if isinstance(output, (dict, Request, str, bytes)) or not hasattr(output, "__iter__"):
        return (output,)  # a lone object; anything but a dict or Request is reported by type
    return output


def _retry_after(headers: dict[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
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
