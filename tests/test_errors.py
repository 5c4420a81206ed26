"""The exception tree and the fetch error kinds, without a server.

Transport exceptions are built here as requests and urllib3 build them (requests' own tests do
the same): the urllib3 error with its socket error as cause, wrapped in ``MaxRetryError``,
wrapped in the requests exception ``HTTPAdapter.send`` raises for it.
"""

from __future__ import annotations

import http.client
import io
import pickle
import socket
import zlib

import pytest
import requests.exceptions
import urllib3.exceptions

import crawlkit
from crawlkit import errors
from crawlkit.errors import CrawlkitError, CrawlkitSignal, DropItem, FetchErrorKind, IgnoreRequest, RetryRequest
from crawlkit.extensions.middlewares import RequestHooks
from crawlkit.extensions.robots import ROBOTS_BLOCKED, ROBOTS_CALLBACK, UNREACHABLE
from crawlkit.fetch.channels import FetcherConfig, _Exchange
from crawlkit.fetch.destinations import DestinationBlocked
from crawlkit.fetch.fetcher import _failure, _read_body, classify
from crawlkit.http import Request
from crawlkit.log import LogConfig
from crawlkit.messages import FetchResult, PageDone
from crawlkit.parse.parser import ParserConfig, Router, build_spider
from crawlkit.settings import load_settings

URL = "http://127.0.0.2:8000/page.html"


def caused(exc: BaseException, cause: BaseException) -> BaseException:
    """``exc`` as ``raise exc from cause`` leaves it."""
    exc.__cause__ = cause
    return exc


def max_retry(reason: Exception) -> urllib3.exceptions.MaxRetryError:
    return urllib3.exceptions.MaxRetryError(None, URL, reason)  # type: ignore[arg-type]


def refused() -> BaseException:
    failed = urllib3.exceptions.NewConnectionError(None, "Failed to connect")  # type: ignore[arg-type]
    new = caused(failed, ConnectionRefusedError(111, "Connection refused"))
    return requests.exceptions.ConnectionError(max_retry(new))  # type: ignore[arg-type]


def unresolvable() -> BaseException:
    gai = socket.gaierror(-2, "Name or service not known")
    name = caused(urllib3.exceptions.NameResolutionError("nohost.invalid", None, gai), gai)  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(max_retry(name))  # type: ignore[arg-type]


def aborted(cause: BaseException) -> BaseException:
    """What requests raises when the connection breaks while the headers are read."""
    return requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.", cause))


CLASSIFIED = [
    (requests.exceptions.ConnectionError(max_retry(DestinationBlocked("127.0.0.1 is loopback"))),
     FetchErrorKind.DESTINATION_BLOCKED),
    (requests.exceptions.ConnectTimeout(max_retry(urllib3.exceptions.ConnectTimeoutError(None, "timed out"))),
     FetchErrorKind.CONNECT_TIMEOUT),
    (requests.exceptions.ReadTimeout(
        urllib3.exceptions.ReadTimeoutError(None, URL, "Read timed out.")),  # type: ignore[arg-type]
     FetchErrorKind.READ_TIMEOUT),
    (TimeoutError(), FetchErrorKind.READ_TIMEOUT),  # a socket timeout while the body is read
    (refused(), FetchErrorKind.CONNECTION_REFUSED),
    (unresolvable(), FetchErrorKind.UNRESOLVABLE_HOST),
    (aborted(ConnectionResetError(104, "Connection reset by peer")), FetchErrorKind.CONNECTION_RESET),
    # http.client's RemoteDisconnected is a BadStatusLine too: it is the reset it also is.
    (aborted(http.client.RemoteDisconnected("Remote end closed connection without response")),
     FetchErrorKind.CONNECTION_RESET),
    (requests.exceptions.TooManyRedirects("Exceeded 30 redirects."), FetchErrorKind.TOO_MANY_REDIRECTS),
    (requests.exceptions.InvalidURL("Failed to parse: http://[::1"), FetchErrorKind.INVALID_URL),
    (requests.exceptions.MissingSchema("No scheme supplied"), FetchErrorKind.INVALID_URL),
    (urllib3.exceptions.LocationParseError("http://a b/"), FetchErrorKind.INVALID_URL),
    (requests.exceptions.ContentDecodingError(urllib3.exceptions.DecodeError(
        "Received response with content-encoding: gzip, but failed to decode it.", zlib.error("invalid block type"))),
     FetchErrorKind.DECODING_ERROR),
    (aborted(http.client.BadStatusLine("SSH-2.0-OpenSSH_9.6")), FetchErrorKind.BAD_RESPONSE),
    (aborted(http.client.LineTooLong("header line")), FetchErrorKind.BAD_RESPONSE),
    (requests.exceptions.ChunkedEncodingError(urllib3.exceptions.InvalidChunkLength(
        urllib3.HTTPResponse(io.BytesIO(), preload_content=False), b"zz")),
     FetchErrorKind.BAD_RESPONSE),
    # A body cut short: the connection broke, the peer does speak HTTP.
    (requests.exceptions.ChunkedEncodingError(urllib3.exceptions.ProtocolError(
        "Connection broken: IncompleteRead(10 bytes read, 90 more expected)",
        http.client.IncompleteRead(b"x" * 10, 90))),
     FetchErrorKind.CONNECTION_ERROR),
    (OSError(113, "No route to host"), FetchErrorKind.CONNECTION_ERROR),
    (RuntimeError("nothing above explains this"), FetchErrorKind.FETCH_ERROR),
]


@pytest.mark.parametrize(("exc", "kind"), CLASSIFIED, ids=lambda v: v.name if isinstance(v, FetchErrorKind) else "")
def test_each_transport_exception_is_classified_once_into_its_kind(exc: BaseException, kind: FetchErrorKind) -> None:
    found, message = classify(exc)
    assert found is kind
    assert message.startswith(type(exc).__name__) and "\n" not in message and len(message) <= 300


def test_every_kind_is_made_somewhere_and_tested_here() -> None:
    beyond_classify = {FetchErrorKind.DOWNLOAD_TIMEOUT, FetchErrorKind.BODY_TOO_LARGE, FetchErrorKind.MIDDLEWARE,
                       FetchErrorKind.DROPPED, FetchErrorKind.CONTENT_TYPE,
                       FetchErrorKind.CACHE_EVICTED,  # tested below, and in test_urlnorm.py
                       FetchErrorKind.RENDER_ERROR, FetchErrorKind.RENDER_OPTIONS}  # the renderer's: test_render*.py
    assert {kind for _, kind in CLASSIFIED} | beyond_classify == set(FetchErrorKind)


def test_the_kinds_the_fetcher_makes_beyond_classify() -> None:
    config = FetcherConfig.from_settings(load_settings(), 1, LogConfig())
    cut = _Exchange(0.0)
    cut.cut = True  # the watchdog shut the socket: whatever it raised is a download_timeout
    assert _failure(ConnectionResetError(), cut, config)[0] is FetchErrorKind.DOWNLOAD_TIMEOUT
    assert _failure(ConnectionResetError(), _Exchange(0.0), config)[0] is FetchErrorKind.CONNECTION_RESET

    class Raw:
        closed = False

        def read1(self, size: int, decode_content: bool) -> bytes:
            return b"x" * 100

    assert _read_body(Raw(), 150, float("inf"), truncate=False)[1] is FetchErrorKind.BODY_TOO_LARGE
    assert _read_body(Raw(), 10**6, 0.0, truncate=False)[1] is FetchErrorKind.DOWNLOAD_TIMEOUT

    class Hook:
        def process_request(self, request: Request, spider: object) -> Request | None:
            if request.url.endswith("drop"):
                raise IgnoreRequest("not this one")
            raise ValueError("broken hook")

    hooks = RequestHooks([("tests:Hook", Hook)], None)
    for url, kind in ((URL + "?drop", FetchErrorKind.DROPPED), (URL, FetchErrorKind.MIDDLEWARE)):
        unsent = hooks.process(Request(url))
        assert isinstance(unsent, FetchResult) and unsent.error == kind.value


def test_retryability_is_a_property_of_the_kind() -> None:
    retryable = {kind.value for kind in FetchErrorKind if kind.retryable}
    # Another attempt may change these; the others would fail the same way again.
    assert retryable == {
        "connect_timeout", "read_timeout", "download_timeout", "connection_refused", "unresolvable_host",
        "connection_reset", "connection_error", "fetch_error", "http_cache_evicted",
        "render_error",  # the browser failed the page: another browser, or the same later, may not
    }
    assert FetchErrorKind("bad_response") is FetchErrorKind.BAD_RESPONSE
    assert FetchErrorKind.DROPPED.value == "dropped_middleware"  # counted as that, not as an error_ key
    # Every kind an unreachable robots.txt reads as is a kind.
    assert all(isinstance(kind, FetchErrorKind) for kind in UNREACHABLE)


def router() -> Router:
    config = ParserConfig.from_settings(load_settings(), "crawlkit.tools.bench:LightSpider", {}, LogConfig())
    return Router(build_spider(config.spider, {"start_urls": [URL]}), config)


def routed(kind: FetchErrorKind, callback: str | None = None) -> PageDone:
    result = FetchResult(1, Request(URL, callback=callback), URL, error=kind.value, message="detail")
    done: PageDone = pickle.loads(router().handle(result))
    return done


@pytest.mark.parametrize("kind", list(FetchErrorKind), ids=lambda kind: kind.name)
def test_the_parser_asks_the_kind_whether_to_retry(kind: FetchErrorKind) -> None:
    done = routed(kind)
    assert (done.retry is not None) is kind.retryable
    if kind in (FetchErrorKind.DROPPED, FetchErrorKind.CONTENT_TYPE):  # drops, not errors
        assert done.counts == {kind.value: 1}
    else:
        assert done.counts[f"error_{kind.value}"] == 1


def test_an_evicted_cache_hit_is_sent_again_at_once_whatever_the_retries() -> None:
    config = ParserConfig.from_settings(load_settings(cli={"retries": 0}), "crawlkit.tools.bench:LightSpider", {},
                                        LogConfig())
    request = Request(URL)
    result = FetchResult(1, request, URL, error=FetchErrorKind.CACHE_EVICTED.value, message="gone")
    done: PageDone = pickle.loads(Router(build_spider(config.spider, {"start_urls": [URL]}), config).handle(result))
    assert done.retry is not None and done.retry.url == URL and done.retry_at == 0.0
    assert done.counts == {"error_http_cache_evicted": 1}  # no retry counted, none spent


def test_a_robots_txt_that_failed_reads_as_its_kind() -> None:
    assert routed(FetchErrorKind.DESTINATION_BLOCKED, ROBOTS_CALLBACK).robots == (ROBOTS_BLOCKED, b"")
    assert routed(FetchErrorKind.BAD_RESPONSE, ROBOTS_CALLBACK).robots == (0, b"")
    done = routed(FetchErrorKind.CONNECTION_REFUSED, ROBOTS_CALLBACK)
    assert done.robots is None and done.retry is not None  # retried first, given up on after the retries


def test_control_flow_signals_are_not_errors() -> None:
    for signal in (DropItem, RetryRequest):
        assert issubclass(signal, CrawlkitSignal) and not issubclass(signal, CrawlkitError)
        assert getattr(crawlkit, signal.__name__) is signal  # still public API
    # Every exception crawlkit defines is in the one tree, an error or a signal, never both.
    defined = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, BaseException)]
    assert {e.__name__ for e in defined} >= {"Interrupted", "SitemapError", "FetchFailed"}
    assert all(issubclass(e, CrawlkitError) != issubclass(e, CrawlkitSignal) for e in defined
               if e not in (CrawlkitError, CrawlkitSignal))
    assert errors.Interrupted.exit_code == 130 and errors.FetchFailed.exit_code == 1
    assert str(errors.Interrupted()) == "the crawl was stopped by Ctrl-C or SIGTERM"
