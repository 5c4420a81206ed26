"""The plain-data messages that cross process boundaries, in the order a page travels.

    engine --FetchTask--> fetch queue (one per fetcher) --> fetcher --FetchResult--> Pipe --> parser
    (a recrawl's revalidation batch: --RevalidateTask--> fetcher --304s as notices--> engine)
    (a rendered page: --> render queue --> renderer --RenderResult--> Pipe --> parser)
    parser --PageDone--> engine

Each is a small slotted dataclass of str/bytes/int/float/list/dict, so pickling stays cheap. A
task carries the id the engine gave the request: every id the engine dispatches comes back in
exactly one PageDone, which is how the engine knows when the crawl is over and what to re-queue
if a process dies. A page with more than ``LINKS_CHUNK`` links sends the others in ``Links``
messages ahead of its PageDone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crawlkit.http import Request

#: (ETag, Last-Modified) of an answer: what a recrawl revisits the page with.
Validators = tuple[str | None, str | None]

LINKS_CHUNK = 2_000  # candidates in one Links message, and in the PageDone that ends a page


@dataclass(slots=True)
class FetchTask:
    req_id: int
    slot: int  # the per-host semaphore the fetcher releases when the exchange is over
    ticket: int  # the fetcher sets ``released[ticket]`` after releasing, so a reclaim knows
    parser: int  # which parser's Pipe the result goes down
    delay: float  # the host's delay between request starts; 0 for none
    request: Request
    cookie: str = ""  # the Cookie header from the engine's jar (cookies.py); "" for none


@dataclass(slots=True)
class RenderTask(FetchTask):
    """A page for a renderer: a FetchTask and its host's robots.txt rules, which the page's sub-resources of
    that host obey (``render/browser.py``); a plain task carries none of it."""

    # The host's parsed robots.txt (a Protego) and the product token it is matched for, pickled once per host
    # by the engine (RobotsRules.rules_of) and unpickled once per host by the renderer; None: no rules to obey
    robots: bytes | None = None


@dataclass(slots=True)
class RevalidateTask:
    """Revisits of one host's known pages, sent to a fetcher as one task under one per-host permit.

    A recrawl of an unchanged site is mostly 304s, each costing the engine a task, a notice and
    a PageDone, and a parser an unpickling, when the answer says only "unchanged": a batch pays
    those once for up to ``dispatch.BATCH`` pages. The fetcher sends the ``entries`` one after
    another, each in the host's turn (``delay`` apart), and releases the permit ``slot`` after the
    last; each entry has its own request id and ticket, so a fetcher's death re-queues just those
    not answered. A 304 comes back as a notice (``fetcher.UNCHANGED``); any other answer goes to
    ``parser`` as the FetchResult of that entry's id, as a FetchTask's would.
    """

    slot: int
    parser: int
    delay: float
    entries: list[tuple[int, int, Request, str]]  # (req_id, ticket, request, Cookie header or "") in sending order


@dataclass(slots=True)
class FetchResult:
    req_id: int
    request: Request
    url: str
    status: int = 0  # 0 when no HTTP response came back (see ``error``)
    status_line: str = ""  # as the server sent it: "HTTP/1.1 200 OK"
    headers: list[tuple[str, str]] = field(default_factory=list)  # as sent: a repeated header (Set-Cookie) repeats
    request_headers: list[tuple[str, str]] = field(default_factory=list)  # what was sent (for WARC)
    body: bytes = b""  # decompressed (Content-Encoding undone)
    # With ``warc`` on, an encoded body as transferred (de-chunked, Content-Encoding kept) for the WARC
    # record; None when it is ``body`` (no Content-Encoding), or warc is off
    transferred: bytes | None = None
    peer: str = ""  # with ``warc`` on, the IP address the fetcher connected to (a proxy's, through one)
    error: str | None = None  # a FetchErrorKind's value ("connect_timeout", ...); None when a response came back
    message: str = ""  # human detail for the log
    elapsed: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)  # the fetch thread's own failures (a hook's open()), once


@dataclass(slots=True)
class RenderResult(FetchResult):
    """A page a browser rendered: the main document's URL, status and headers with the DOM as ``body``.

    A subclass, so the plain path's FetchResult pickles no extra field. ``resources`` are the
    page's network responses as the browser received them (for the WARC; empty with ``warc``
    off); ``meta`` is what the page actions returned, merged into ``response.meta``.
    """

    resources: list[FetchResult] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Links:
    """Candidates of a page with more than ``LINKS_CHUNK`` of them, sent ahead of its PageDone.

    In chunks, so that neither process pickles, holds or unpickles a page's fan-out at once,
    and the engine queues it a batch per pass of its loop while serving the other hosts.
    """

    req_id: int
    candidates: list[tuple[int | None, Request]]


@dataclass(slots=True)
class PageDone:
    """What the parser made of one FetchResult: the engine's whole work for that request id."""

    req_id: int
    host: str
    items: list[Any] = field(default_factory=list)
    # Requests the page yields that passed the filters, with their fingerprints (None for
    # dont_filter); the engine deduplicates them against the seen store in one call.
    candidates: list[tuple[int | None, Request]] = field(default_factory=list)
    retry: Request | None = None  # the same request again, not before ``retry_at``
    retry_at: float = 0.0
    host_pause_until: float = 0.0  # Retry-After asks the whole host to wait
    robots: tuple[int, bytes] | None = None  # (status, body) of a robots.txt fetch; status 0 = unreachable
    set_cookies: list[tuple[str, list[str]]] = field(default_factory=list)  # (url, Set-Cookie values) for the jar
    counts: dict[str, int] = field(default_factory=dict)  # stats deltas: "status_200", "error_read_timeout", ...
    status: int = 0  # the HTTP status of the exchange; 0 when no response came back
    elapsed: float = 0.0  # seconds the exchange took (for the per-host response times)
    # The fingerprint of the page's canonical URL when it is another page's and skip_duplicate_canonical is on:
    # the engine drops the page (items, candidates) if that URL was seen, and marks it seen otherwise.
    canonical: int | None = None
    validators: Validators | None = None  # (ETag, Last-Modified) for a job directory's recrawl


@dataclass(slots=True)
class StartFailed:
    """Sent instead of any PageDone by a parser that cannot build the spider: the crawl stops with ``message``."""

    message: str
