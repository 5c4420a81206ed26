"""crawlkit's exceptions, in one tree users can catch, and the kinds of failed fetches.

    CrawlkitError                 base of everything crawlkit raises on purpose
     +-- ConfigError              a bad setting: unknown key, wrong type, bad value, bad YAML
     +-- SeedsError               a seeds file that is missing, unreadable or has no valid URL
     +-- SpiderError              a spider that cannot be loaded or constructed
     +-- SharedCrawlError         the Redis of a shared crawl stopped answering during the crawl
     +-- WriteFailed              the system refused to write an output or jobdir file (exit code 3)
     +-- CrashLoopError           crawlkit's own processes keep dying as they start: replacing them is futile
     +-- Interrupted              the crawl was stopped by Ctrl-C or SIGTERM (exit code 130)
     +-- FetchFailed              ``crawlkit fetch``/``parse`` could not fetch its page (exit code 1)
     +-- SitemapError             a sitemap that cannot be read (caught by the parser, counted)
     +-- FetchError               why a request brought no page, as an errback sees it (``.kind``)
          +-- FetchTimeout        connect, read or download timeout
          +-- ConnectionRefused   nothing listens on the host's port
          +-- UnresolvableHost    no address for the host name
     +-- HttpError                a final response with a non-2xx status (``.response``), as an errback sees it

    CrawlkitSignal                raised by user code to steer crawlkit: control flow, not an error
     +-- DropItem                 raised by an item pipeline to drop an item
     +-- RetryRequest             raised by a response hook to fetch the request again
     +-- IgnoreRequest            raised by a request hook not to send a request

The CLI turns any CrawlkitError into a one-line message and exit code 2 (or the error's
``exit_code``); see ``cli.py``. A CrawlkitSignal is caught where it is meant to be (the
pipelines, the response hooks) and never reaches the CLI as a user error.

Faults met *during* a crawl (timeouts, resets, callback exceptions) are never raised to the
user: they are counted in the stats and logged with their URL. A failed exchange is one
``FetchErrorKind``: the fetcher maps every transport exception to one, once (``fetcher.classify``),
and whether it is worth another attempt is a property of the kind. A request with an errback
has its failure handed to it as a ``Failure`` whose ``value`` is a ``FetchError`` built from the
kind (``fetch_error``), in the parser process: the kind crosses the Pipe, never an exception.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crawlkit.http import Request, Response


class FetchErrorKind(Enum):
    """Why an exchange brought no usable response: the ``error_<value>`` stats key, and whether to retry.

    The value is what ``FetchResult.error`` carries across the Pipe (a plain string);
    ``FetchErrorKind(result.error)`` gives the kind back. Retryable kinds are those another
    attempt may change (a timeout, a reset, a host that may come back); the others would fail
    the same way again.
    """

    _value_: str
    retryable: bool

    # Every member gives both; the default is for mypy, which reads ``FetchErrorKind(value)``, a
    # lookup of a member by its value, as a call of this method.
    def __new__(cls, value: str, retryable: bool = False) -> FetchErrorKind:
        kind = object.__new__(cls)
        kind._value_ = value
        kind.retryable = retryable
        return kind

    CONNECT_TIMEOUT = "connect_timeout", True  # no connection within connect_timeout
    READ_TIMEOUT = "read_timeout", True  # no byte within read_timeout
    DOWNLOAD_TIMEOUT = "download_timeout", True  # no complete response within download_timeout
    CONNECTION_REFUSED = "connection_refused", True
    UNRESOLVABLE_HOST = "unresolvable_host", True  # no address for the host name
    CONNECTION_RESET = "connection_reset", True
    CONNECTION_ERROR = "connection_error", True  # any other broken exchange (a body cut short, ...)
    FETCH_ERROR = "fetch_error", True  # an exception nothing above explains
    DESTINATION_BLOCKED = "destination_blocked", False  # a private address (allow_private_addresses: false)
    TOO_MANY_REDIRECTS = "too_many_redirects", False
    INVALID_URL = "invalid_url", False
    DECODING_ERROR = "decoding_error", False  # a body that does not decode as its Content-Encoding says
    BAD_RESPONSE = "bad_response", False  # the peer does not speak HTTP
    BODY_TOO_LARGE = "body_too_large", False  # over max_body
    RENDER_ERROR = "render_error", True  # the browser failed the page (its tab crashed, it refused to navigate)
    RENDER_OPTIONS = "render_options", False  # a request's render options were refused (render/actions.py)
    MIDDLEWARE = "middleware", False  # a process_request hook raised or returned something else
    DROPPED = "dropped_middleware", False  # not a failure: a process_request hook raised IgnoreRequest
    CONTENT_TYPE = "dropped_content_type", False  # not a failure: a type content_types leaves out, body unread
    # dispatched as an http_cache hit, without the host's permit, but its file was gone: sent again with one
    CACHE_EVICTED = "http_cache_evicted", True


class CrawlkitError(Exception):
    """Base class of the errors crawlkit raises for a user to act on."""


class ConfigError(CrawlkitError):
    """A setting, a config file or a command-line value is wrong; the message says which and how to fix it."""


class SeedsError(CrawlkitError):
    """The seeds file is missing, unreadable, or holds no http(s) URL."""


class SpiderError(CrawlkitError):
    """A spider cannot be imported, found or constructed."""


class SharedCrawlError(CrawlkitError):
    """The Redis server of a shared crawl failed mid-crawl; its state is kept there for a rejoin."""


class WriteFailed(CrawlkitError):
    """The system refused a write the crawl must make (disk full, read-only, file too large).

    The crawl stops, prints its summary and exits with ``exit_code`` 3. What was written before
    is whole: each output file ends on a complete record, and a job directory records only
    output that was written, so the same command resumes with no item twice.
    """

    exit_code = 3

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason
        self.resumable = False  # set by the engine when a job directory keeps the crawl's state

    def __str__(self) -> str:
        again = (
            "run the same command again to resume" if self.resumable
            else "run the command again (with --jobdir a crawl resumes where it stopped)"
        )
        return f"cannot write {self.path}: {self.reason}; free space or make it writable, then {again}"


class CrashLoopError(CrawlkitError):
    """Fetcher, parser or seen-store processes died again and again with no page done in between."""


class Interrupted(CrawlkitError):
    """The crawl was stopped by Ctrl-C or SIGTERM, with its stats flushed; the CLI exits 130."""

    exit_code = 130

    def __init__(self, message: str = "the crawl was stopped by Ctrl-C or SIGTERM") -> None:
        super().__init__(message)


class FetchFailed(CrawlkitError):
    """``crawlkit fetch``/``parse`` could not fetch its page (connection error, timeout, robots.txt,
    redirects); the message is one line, the exit code 1."""

    exit_code = 1


class SitemapError(CrawlkitError):
    """A sitemap that cannot be read (bad gzip, over the size cap, not a sitemap)."""


class CrawlkitSignal(Exception):
    """Base class of what user code raises to steer crawlkit: not an error, never a CrawlkitError."""


class DropItem(CrawlkitSignal):
    """Raised by an item pipeline's ``process_item`` to drop the item; counted, not logged as an error."""


class RetryRequest(CrawlkitSignal):
    """Raised by a middleware's ``process_response`` to fetch the request again.

    The retry obeys ``retries`` and ``retry_backoff`` like a 503; the message is the reason,
    logged with the URL. When the retries are spent the response is dropped, not parsed.
    """


class IgnoreRequest(CrawlkitSignal):
    """Raised by a middleware's ``process_request`` not to send the request (Scrapy's meaning).

    Counted as ``dropped_middleware``; the request's errback, if it has one, gets it as the
    failure's value.
    """


class FetchError(CrawlkitError):
    """Why a request brought no usable page: the value of the ``Failure`` its errback receives.

    ``kind`` is the ``FetchErrorKind`` (every kind has one, so ``failure.value.kind`` tells
    them all apart); the subclasses are the families errbacks usually test with
    ``failure.check(...)``. Never raised to the user: a crawl counts failures, it does not stop.
    """

    def __init__(self, kind: FetchErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class FetchTimeout(FetchError):
    """No connection, no byte or no complete response within its timeout."""


class ConnectionRefused(FetchError):
    """The host refused the connection: nothing listens on its port."""


class UnresolvableHost(FetchError):
    """The host name has no address (Twisted's ``DNSLookupError`` in Scrapy)."""


class HttpError(CrawlkitError):
    """The final response has a status outside 2xx (``response`` holds it) and the spider does
    not take such pages in its callbacks (``handle_error_statuses``): its errback gets this."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP status {response.status} on {response.url}")
        self.response = response


_FAMILIES: dict[FetchErrorKind, type[FetchError]] = {
    FetchErrorKind.CONNECT_TIMEOUT: FetchTimeout,
    FetchErrorKind.READ_TIMEOUT: FetchTimeout,
    FetchErrorKind.DOWNLOAD_TIMEOUT: FetchTimeout,
    FetchErrorKind.CONNECTION_REFUSED: ConnectionRefused,
    FetchErrorKind.UNRESOLVABLE_HOST: UnresolvableHost,
}


def fetch_error(kind: FetchErrorKind, message: str) -> Exception:
    """The exception an errback sees for a failed fetch of ``kind``: ``IgnoreRequest`` for a
    request a hook did not send, else the ``FetchError`` of its family."""
    if kind is FetchErrorKind.DROPPED:
        return IgnoreRequest(message)
    return _FAMILIES.get(kind, FetchError)(kind, message)


class Failure:
    """What an errback receives: the request that failed and why, as Scrapy's (Twisted's) Failure
    gives them to errbacks: ``request``, ``value`` (the exception) and ``check(*types)``."""

    __slots__ = ("request", "value")

    def __init__(self, request: Request, value: Exception) -> None:
        self.request = request
        self.value = value

    def check(self, *types: type[BaseException]) -> type[BaseException] | None:
        """The first of ``types`` the exception is an instance of, or None."""
        return next((t for t in types if isinstance(self.value, t)), None)

    def getErrorMessage(self) -> str:  # Twisted's name, which errbacks call
        return str(self.value)

    def __repr__(self) -> str:
        return f"<Failure {type(self.value).__name__}: {self.value} for {self.request!r}>"
