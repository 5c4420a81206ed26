"""The fetcher processes: a ``multiprocessing.Pool`` whose workers run HTTP requests with ``requests``.

Each Pool worker claims a fetch queue (a ``multiprocessing.Queue``) of its own and starts, in
its initializer, ``threads`` fetch threads with one keep-alive ``requests.Session`` each (so
``concurrency`` is independent of the number of processes). A thread takes a ``FetchTask``,
runs the exchange under the time and size caps, releases the host's permit the moment the
exchange is over (and tells the engine, which may then send that host's next request), and
sends a ``FetchResult`` down a Pipe to the parser the engine chose. The Pool's job is process
lifetime: a worker that dies is replaced, and the replacement claims a free queue and starts
its threads the same way. The queues' both ends, the notices, the watchdog and this module's
config are in ``channels.py``, which the engine imports without ``requests``.

A fetch thread waits for work on its queue's ``ready`` semaphore (a permit per task), never
inside ``Queue.get``: ``get`` holds the queue's reader lock while it waits, so a process killed
there would leave the queue unusable for good. ``get`` is entered only once a task has reached
the pipe, and each process counts its entries and exits in shared memory (``_Inbox``). When a
fetcher dies outside ``get`` (nearly always) the engine drains the tasks it left, which it has
re-queued already, and frees the queue for a later fetcher (``FetchChannels.recycle``); only
one that died inside ``get`` (the lock perhaps held, a message perhaps half read) is retired.
So a crawl survives any number of fetcher deaths.

``download_timeout`` is a deadline for the whole exchange, from connect to the last body byte.
The socket options of ``requests`` only bound each wait for a packet, so a server dripping its
headers a byte a second could hold a thread for ever; a watchdog thread in each fetcher
process shuts down the socket of an exchange past its deadline (``_Watchdog``). It also
writes the process's heartbeat, and each fetch thread writes its task's deadline, both into
shared memory: the engine replaces a fetcher that stops beating (SIGSTOP, a frozen process)
or one whose thread overruns its deadline by a grace period (a hook that hangs, a DNS lookup
that never ends), and re-queues its requests.

Each worker makes its own Pipe to every parser and hands the parser the read end through that
parser's registration queue. Middlewares' ``process_request`` hooks run here, in the fetch
thread, just before sending (see ``middlewares.py``); cookies come from the engine with each
task (see ``cookies.py``), so the sessions keep none. Redirects are *not* followed
here: a 3xx goes to the parser, which queues its target through dedup, robots and the per-host
limiter like any other link (robots.txt requests are the exception, see ``robots.py``).
With ``allow_private_addresses: false`` the sessions connect only to public addresses, checked
after DNS resolution (``destinations.py``). With ``warc`` on (``FetcherConfig.archive``), an
encoded body is read as transferred and decoded here (``_read_encoded_body``), so the WARC record
keeps the bytes the server sent; with it off, nothing of that is done. With ``http_cache`` a
request, once its hooks have run, is first looked up on disk (``cache.py``): a hit is the
result, without the host's turn; one the engine sent as a hit (``NO_GRANT``: no permit) is
never sent to the server. A recrawl's ``RevalidateTask`` (``_revalidate``) is a batch of one
host's revisits run one after another by one thread under one permit; a 304 that says nothing
new is written to the notice pipe (``UNCHANGED``) instead of going to a parser, and plain-HTTP
revisits skip ``requests`` for the 304's head (``_Revisits``).
"""

from __future__ import annotations

import functools
import http.client
import http.cookiejar
import io
import logging
import math
import os
import re
import select
import socket
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager
from urllib3.response import ContentDecoder, HTTPResponse, _get_decoder

from crawlkit.backends.base import NO_GRANT
from crawlkit.errors import FetchErrorKind
from crawlkit.extensions.middlewares import RequestHooks, load_middlewares
from crawlkit.extensions.robots import ROBOTS_CALLBACK
from crawlkit.extensions.sitemaps import SITEMAP_CALLBACK, SPIDER_SITEMAP_CALLBACK
from crawlkit.fetch.channels import (
    _WATCHDOG,
    CLOSED,
    JOINED,
    UNCHANGED,
    WATCH_EVERY,
    FetchChannels,
    FetcherConfig,
    _Exchange,
    _Inbox,
    _notify,
    _Outbox,
    claim,
)
from crawlkit.fetch.content_types import ContentTypes
from crawlkit.fetch.destinations import DestinationBlocked, PublicOnly, check_host
from crawlkit.http import Headers, Request
from crawlkit.loader import one_line
from crawlkit.messages import FetchResult, RevalidateTask
from crawlkit.process import child_setup
from crawlkit.sites import SiteRule
from crawlkit.urls import host_of, keep_escapes

log = logging.getLogger("crawlkit.fetcher")

CHUNK = 64 * 1024


def worker_init(config: FetcherConfig, channels: FetchChannels) -> None:
    """Pool initializer, and the whole life of the worker: claim a fetch queue, connect to
    every parser, run the fetch threads until each has taken a STOP, then exit the process.

    Each process reads a queue of its own, so the engine knows which requests a dead process
    held, and a process killed inside ``get`` only ever spoils its own queue, which is retired
    with it (see ``_Inbox``).
    """
    child_setup(config.log, "fetcher")
    pid = os.getpid()
    free = claim(channels, 0, len(channels.queues) - channels.renderers, pid)
    if free is None:
        if CLOSED in channels.owners[:]:
            raise SystemExit(0)  # the crawl is shutting down
        log.error("fetcher %d: no fetch queue left to claim (too many fetcher processes died); idle", pid)
        return
    inbox = _Inbox(channels, free)
    _WATCHDOG.start((channels.heartbeats, free))
    os.set_blocking(channels.notices.fileno(), False)
    log.debug("fetcher process %d reads fetch queue %d", pid, free)
    _notify(channels.notices.fileno(), JOINED)  # the engine may use the queue now, not at its next check
    outboxes = [_Outbox(registration) for registration in channels.registrations]
    hooks: tuple[list[tuple[str, type]], Any] | None = None  # middleware classes and the spider they are given
    if config.middlewares:
        from crawlkit.parse.parser import build_spider

        try:
            hooks = (load_middlewares(config.middlewares), build_spider(config.spider, config.spider_kwargs))
            if config.settings is not None:
                hooks[1].settings = config.settings
        except Exception as exc:  # one line, not a traceback per replacement; the engine stops a crash loop
            log.error("fetcher %d: spider %s could not be created for the middlewares: %s", pid,
                      config.spider or "crawlkit (built-in)", one_line(exc))
            raise SystemExit(1) from None
    threads = [
        threading.Thread(target=_fetch_loop, args=(config, inbox, outboxes, channels, i, hooks), name=f"fetch-{i}")
        for i in range(config.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Never return into the Pool's task loop: it waits on the Pool's own task queue holding
    # that queue's lock, and a worker killed there would leave every other worker unable to
    # receive the Pool's exit sentinel. We end here once our threads have had their STOPs.
    raise SystemExit(0)


def _fetch_loop(
    config: FetcherConfig, inbox: _Inbox, outboxes: list[_Outbox], channels: FetchChannels, index: int,
    middlewares: tuple[list[tuple[str, type]], Any] | None,
) -> None:
    session = new_session(config)
    hooks = RequestHooks(*middlewares) if middlewares is not None else None
    if hooks is not None:
        hooks.open()
    notices = channels.notices.fileno()
    cache = config.http_cache
    debug = log.isEnabledFor(logging.DEBUG)  # a line an exchange at DEBUG; otherwise this one test a page
    while True:
        task = inbox.get()
        if task is None:  # one STOP sentinel per thread
            break
        if isinstance(task, RevalidateTask):
            _revalidate(session, task, config, channels, outboxes[task.parser], notices, debug)
            continue
        host = host_of(task.request.url)
        turn: Any = nullcontext()
        budget = config.connect_timeout + config.download_timeout
        if task.delay:
            limit = config.connect_timeout + config.read_timeout + task.delay
            turn = channels.permits.turn(task.slot, host, task.delay, limit, task.ticket)
            budget += limit + task.delay
        # Before anything that may block: from now on, a death of this process blames this request.
        channels.deadlines[task.ticket] = time.monotonic() + budget
        try:
            # Hooks get a copy: what they change is for this send only, never for the retries
            # and redirects made from the request later (an Authorization header must not
            # follow a redirect to another host).
            to_send = hooks.process(task.request.replace()) if hooks is not None else task.request
            if isinstance(to_send, FetchResult):  # a hook dropped it or failed
                result = to_send
            else:
                # The engine chose the cookies for the request's host; a hook may have sent it elsewhere.
                same_host = to_send is task.request or host_of(to_send.url) == host_of(task.request.url)
                cookie = task.cookie if same_host else ""
                if cache is None:
                    result = fetch(session, to_send, config, turn, cookie)
                elif task.slot == NO_GRANT:  # sent as a hit, without a permit: never to the server
                    result = cache.hit(to_send) or FetchResult(
                        0, task.request, task.request.url, error=FetchErrorKind.CACHE_EVICTED.value,
                        message="its http_cache file is gone; sent again with the host's turn")
                else:  # a hit neither waits for the host's turn nor reaches the server
                    result = cache.fetch(to_send, functools.partial(fetch, session, config=config, turn=turn,
                                                                    cookie=cookie))
        finally:
            if task.slot != NO_GRANT:
                channels.permits.release(task.slot, host)
            channels.released[task.ticket] = 1
            _notify(notices, task.req_id)
        result.req_id = task.req_id
        result.request = task.request  # what a hook changed was for this send only
        if debug:
            _log_exchange(result)
        if hooks is not None and hooks.errors:  # open() failures reach the stats with the first result
            result.counts.update(hooks.errors)
            hooks.errors.clear()
        try:
            outboxes[task.parser].send(result)
        except OSError as exc:
            log.error("could not hand %s to parser %d: %s", task.request.url, task.parser, exc)
    if hooks is not None:
        hooks.close()
    session.close()


def _revalidate(session: requests.Session, task: RevalidateTask, config: FetcherConfig, channels: FetchChannels,
                outbox: _Outbox, notices: int, debug: bool) -> None:
    """Send a revalidation batch's requests one after another, each in the host's turn, under the batch's one permit.

    Each entry is an exchange as ``fetch`` makes it (timeouts, watchdog, destination checks,
    site headers), with its own deadline and ticket, so that a death of this process blames
    the entry on hand only. An entry's 304 that carries no new validators is only noted: all of
    them are written, with the notice that the batch is over, in one write after the permit is
    released; any other answer goes to the parser as its FetchResult at once.
    """
    entries = task.entries
    host = host_of(entries[0][2].url)
    limit = config.connect_timeout + config.read_timeout + task.delay
    budget = config.connect_timeout + config.download_timeout + (limit + task.delay if task.delay else 0.0)
    unchanged = bytearray()
    last: FetchResult | None = None
    revisits = _Revisits(session, config)
    try:
        for req_id, ticket, request, cookie in entries:
            turn = channels.permits.turn(task.slot, host, task.delay, limit, ticket) if task.delay else None
            channels.deadlines[ticket] = time.monotonic() + budget
            result = revisits.fetch(request, turn, cookie)
            result.req_id = req_id
            if debug:
                _log_exchange(result)
            if req_id == entries[-1][0]:
                last = result  # sent once the batch is over, after its notice
            else:
                channels.released[ticket] = 1  # over: a parser's death now takes it back, not a fetcher's
            if _unchanged(result, request):
                unchanged += (UNCHANGED | req_id).to_bytes(8, "little")
                if result is last:
                    last = None
            elif result is not last:
                _hand_over(outbox, result)
    finally:
        revisits.close()
        channels.permits.release(task.slot, host)
        channels.released[entries[-1][1]] = 1
        _notify_all(notices, entries[-1][0].to_bytes(8, "little") + unchanged)
    if last is not None:
        _hand_over(outbox, last)


# A request target ``requests`` would send as it is (no escapes to keep, nothing to quote), and a plain host.
_PLAIN_TARGET = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*")
_PLAIN_HOST = re.compile(r"[a-z0-9\-.]+(?::\d{1,5})?")


class _Revisits:
    """A revalidation batch's exchanges: its own keep-alive connection for the plain-HTTP revisits, the
    session (``fetch``) for the others.

    Most of a 304's cost through ``requests`` is machinery its answer does not need (preparing the
    request, urllib3's pool and response objects, ``http.client``'s header parsing through the
    email package). A revisit of an ``http://`` URL with no proxy, no address check
    (``allow_private_addresses``) and no escapes in its URL is sent here on a socket of the batch's
    own, with the same headers ``requests`` sends (the session's, then the request's, the site's
    and the cookie), within the same timeouts, watched by the same watchdog. A 304 head is read
    here; any other answer is handed to ``http.client`` and urllib3 as the session would have
    received it, and read by ``fetch``'s own code (``_answer``), so its body, caps and errors are
    the same. The connection is closed after such an answer, and at the batch's end.
    """

    def __init__(self, session: requests.Session, config: FetcherConfig) -> None:
        self.session, self.config = session, config
        self.sock: socket.socket | None = None
        self.base = {name: value for name, value in session.headers.items() if isinstance(value, str)}
        self.lean = config.allow_private_addresses and not config.proxy and len(self.base) == len(session.headers)

    def fetch(self, request: Request, turn: AbstractContextManager[Any] | None, cookie: str) -> FetchResult:
        config = self.config
        url = request.url
        origin = _origin(url)
        netloc = origin[7:]
        target = url[len(origin):] or "/"
        if (not self.lean or not url.startswith("http://") or request.meta.get("proxy")
                or not _PLAIN_HOST.fullmatch(netloc) or not _PLAIN_TARGET.fullmatch(target)
                or _environment_proxy(origin)):
            return fetch(self.session, request, config, turn, cookie)
        headers = request.headers
        if config.sites is not None:
            headers = site_headers(config.sites.for_host(host_of(url)), headers, False)
        sent: CaseInsensitiveDict[str] = CaseInsensitiveDict(self.base)
        sent.update(headers)
        if cookie and "Cookie" not in headers:
            sent["Cookie"] = cookie
        lines = [f"GET {target} HTTP/1.1"]
        if "Host" not in sent:  # one of the request's own is sent instead, as urllib3 does
            lines.append(f"Host: {netloc.removesuffix(':80')}")
        lines += [f"{name}: {value}" for name, value in sent.items()]
        if any("\r" in line or "\n" in line or not line.isascii() for line in lines):
            return fetch(self.session, request, config, turn, cookie)  # requests' checks and encoding decide
        lines.append("\r\n")
        text = "\r\n".join(lines)
        host, _, port = netloc.partition(":")
        result = FetchResult(req_id=0, request=request, url=url)
        exchange = _WATCHDOG.watch(math.inf)
        started = time.monotonic()
        try:
            with turn or nullcontext():
                started = time.monotonic()
                exchange.deadline = started + config.download_timeout
                head, rest = self._exchange(host, int(port or 80), text.encode(), exchange)
            status_line, _, fields = head.partition(b"\r\n")
            version, _, answer = status_line.partition(b" ")
            status, _, reason = answer.partition(b" ")
            if not version.startswith(b"HTTP/") or len(status) != 3 or not status.isdigit():
                raise http.client.BadStatusLine(status_line.decode("latin-1"))
            if status != b"304":
                return self._other(result, sent, head + b"\r\n\r\n" + rest, exchange, started)
            names = []
            for line in fields.split(b"\r\n") if fields else ():
                name, colon, value = line.partition(b":")
                if not colon or name[:1] in (b" ", b"\t"):  # folded or broken: not for a quick reading
                    raise http.client.BadStatusLine(line.decode("latin-1"))
                names.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        except Exception as exc:
            self.close()
            _fail(result, *_failure(exc, exchange, config))
            result.elapsed = time.monotonic() - started
            _WATCHDOG.done()
            return result
        _WATCHDOG.done()
        if rest or version == b"HTTP/1.0" or any(n.lower() == "connection" and "close" in v.lower() for n, v in names):
            self.close()
        result.status = 304
        result.status_line = f"{'HTTP/1.0' if version == b'HTTP/1.0' else 'HTTP/1.1'} 304 " \
                             f"{reason.decode('latin-1')}".rstrip()
        result.headers = names
        result.request_headers = list(sent.items())
        result.elapsed = time.monotonic() - started
        return result

    def _exchange(self, host: str, port: int, data: bytes, exchange: _Exchange) -> tuple[bytes, bytes]:
        """Send ``data`` on the batch's connection (a new one if it has none, or the server closed it) and
        read the answer's head: (status line and fields, what came after them)."""
        sock = self.sock
        if sock is not None and select.select([sock], [], [], 0)[0]:  # closed by the server, or junk: not reused
            self.close()
            sock = None
        if sock is None:
            try:
                sock = socket.create_connection((host, port), self.config.connect_timeout)
            except TimeoutError as exc:
                raise urllib3.exceptions.ConnectTimeoutError(None, f"connection to {host}:{port} timed out") from exc
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
        sock.settimeout(self.config.read_timeout)
        exchange.sock = sock
        sock.sendall(data)
        received = b""
        while (end := received.find(b"\r\n\r\n")) < 0:
            if len(received) > 65_536:
                raise http.client.LineTooLong("header")
            chunk = sock.recv(65_536)
            if not chunk:
                raise http.client.RemoteDisconnected("Remote end closed connection without response")
            received += chunk
        return received[:end], received[end + 4:]

    def _other(self, result: FetchResult, sent: CaseInsensitiveDict[str], received: bytes, exchange: _Exchange,
               started: float) -> FetchResult:
        """An answer that is no 304, its head read already: handed to ``http.client`` and urllib3 as the
        session would have received it, then read by ``fetch``'s code; the connection is not reused."""
        sock, self.sock = self.sock, None
        assert sock is not None  # _exchange made it
        try:
            original = http.client.HTTPResponse(_Replayed(received, sock), method="GET")  # type: ignore[arg-type]
            original.begin()
            raw = HTTPResponse(body=original, headers=urllib3.HTTPHeaderDict(original.msg.items()),
                               status=original.status, version=original.version, reason=original.reason,
                               preload_content=False, decode_content=True, original_response=original,
                               request_method="GET", request_url=result.url)
            prepared = requests.PreparedRequest()
            prepared.prepare_method("GET")
            prepared.prepare_url(result.url, None)
            prepared.prepare_headers(sent)
            adapter = self.session.get_adapter(result.url)
            assert isinstance(adapter, HTTPAdapter)  # new_session mounts one for http://
            response = adapter.build_response(prepared, raw)
            return _answer(result, response, self.config, exchange, started)
        finally:
            sock.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _Replayed:
    """A socket as ``http.client`` reads it: the bytes already received, then the socket's."""

    def __init__(self, received: bytes, sock: socket.socket) -> None:
        self.received, self.sock = received, sock

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_ReplayedRaw(self.received, self.sock), CHUNK)


class _ReplayedRaw(io.RawIOBase):
    def __init__(self, received: bytes, sock: socket.socket) -> None:
        self.received, self.sock = memoryview(received), sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.received:
            n = min(len(buffer), len(self.received))
            buffer[:n] = self.received[:n]
            self.received = self.received[n:]
            return n
        return self.sock.recv_into(buffer)


def _unchanged(result: FetchResult, request: Request) -> bool:
    """Whether ``result`` is a 304 to ``request`` with no validators but those it was sent with (the journal keeps
    the stored ones then): the page is done with nothing to parse or to store."""
    if result.status != 304 or result.error is not None:
        return False
    sent = request.headers
    for name, value in result.headers:
        lower = name.lower()
        if (lower == "etag" and value != sent.get("If-None-Match")
                or lower == "last-modified" and value != sent.get("If-Modified-Since")):
            return False
    return True


def _hand_over(outbox: _Outbox, result: FetchResult) -> None:
    try:
        outbox.send(result)
    except OSError as exc:
        log.error("could not hand %s to a parser: %s", result.request.url, exc)


def _notify_all(fd: int, data: bytes) -> None:
    """Write notices that must not be dropped (a batch's 304s: nothing else tells the engine), in one write.

    Up to ``select.PIPE_BUF`` bytes a write is atomic, so they never interleave with other
    threads' notices; while the engine has not read the pipe, wait for room (the engine reads it
    on every pass of its loop). Dropped only when the engine is gone.
    """
    while True:
        try:
            os.write(fd, data)
            return
        except BlockingIOError:
            select.select([], [fd], [], WATCH_EVERY)
        except BrokenPipeError:
            return


def _log_exchange(result: FetchResult) -> None:
    """The DEBUG line of one exchange, as Scrapy's ``Crawled (200) <GET url>``: status, size and time."""
    request = result.request
    if result.error is None:
        log.debug("Crawled (%d) <%s %s> %s bytes in %.3fs (referer: %s)", result.status, request.method, result.url,
                  f"{len(result.body):,}", result.elapsed, request.referer)
    else:
        log.debug("Failed (%s) <%s %s> after %.3fs: %s", result.error, request.method, request.url, result.elapsed,
                  result.message)


def _watch_socket(sock: socket.socket | None) -> None:
    exchange = _WATCHDOG.exchanges.get(threading.get_ident())
    if exchange is not None:
        exchange.sock = sock


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self) -> Any:
        _watch_socket(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> Any:
        _watch_socket(self.sock)
        return super().getresponse()


class _GuardedHTTPConnection(PublicOnly, _WatchedHTTPConnection):
    pass


class _GuardedHTTPSConnection(PublicOnly, _WatchedHTTPSConnection):
    pass


def _pools(http: type, https: type) -> dict[str, type]:
    """urllib3's pool classes by scheme, making connections of the classes given."""
    return {
        "http": type("Pool", (HTTPConnectionPool,), {"ConnectionCls": http}),
        "https": type("Pool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
    }


_WATCHED_POOLS = _pools(_WatchedHTTPConnection, _WatchedHTTPSConnection)
# allow_private_addresses: false; through a proxy the proxy connects, so its pools stay watched only
_GUARDED_POOLS = _pools(_GuardedHTTPConnection, _GuardedHTTPSConnection)


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter, with connections whose socket the watchdog can cut (direct and through
    an HTTP proxy), and that connect only to public addresses when given the guarded pools."""

    def __init__(self, pools: dict[str, type], **kwargs: Any) -> None:
        self.pools = pools  # before HTTPAdapter.__init__, which calls init_poolmanager
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self.pools

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if type(manager) is ProxyManager:  # a SOCKS manager keeps its own pool classes
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


def new_session(config: FetcherConfig) -> requests.Session:
    session = requests.Session()
    pools = _WATCHED_POOLS if config.allow_private_addresses else _GUARDED_POOLS
    adapter = _WatchedAdapter(pools, pool_connections=16, pool_maxsize=4, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = config.user_agent
    session.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    session.max_redirects = min(config.max_redirects, 5)  # only robots.txt follows redirects here
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))  # the engine keeps cookies
    # trust_env makes requests read the proxy variables and ~/.netrc again for every request:
    # a third of a fetch's CPU. The proxy variables are read once per host instead
    # (_environment_proxy), the CA bundle variables once here; ~/.netrc passwords are never
    # sent, which a crawler visiting other people's sites should not do unasked anyway.
    session.trust_env = False
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return session


_ORIGIN = re.compile(r"[^:/?#]*://[^/?#]*")


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of an absolute URL."""
    match = _ORIGIN.match(url)
    return match.group() if match else url


@functools.lru_cache(maxsize=4096)
def _environment_proxy(origin: str) -> str | None:
    """The proxy that HTTP_PROXY/HTTPS_PROXY/NO_PROXY name for ``origin`` (scheme://host[:port]), if any."""
    return requests.utils.get_environ_proxies(origin + "/").get(origin.split(":", 1)[0])


def fetch(
    session: requests.Session,
    request: Request,
    config: FetcherConfig,
    turn: AbstractContextManager[Any] | None = None,
    cookie: str = "",
) -> FetchResult:
    """Run one HTTP exchange; never raises: failures come back as ``FetchResult.error``.

    ``turn`` is entered around sending the request and receiving the headers (per-host delay).
    ``download_timeout`` runs from the moment the turn is had to the last body byte.
    ``cookie`` is sent as the Cookie header unless the request sets one itself. The request
    goes through ``meta["proxy"]``, else ``config.proxy``, else the environment's proxy.
    """
    started = time.monotonic()
    result = FetchResult(req_id=0, request=request, url=request.url)
    meta = request.meta
    headers = request.headers
    if config.sites is not None:
        headers = site_headers(config.sites.for_host(host_of(request.url)), headers, bool(meta.get("follow_redirects")))
    if cookie and "Cookie" not in headers:
        headers = Headers(headers)  # the jar's cookie goes with this send only, not with the request
        headers["Cookie"] = cookie
    proxy = meta.get("proxy") or config.proxy or _environment_proxy(_origin(request.url))
    exchange = _WATCHDOG.watch(math.inf)  # not while waiting for the turn: the clock starts with the exchange
    try:
        # Through a proxy the proxy connects: only the URL's own address can be checked here.
        if proxy and not config.allow_private_addresses:
            check_host(urlsplit(request.url).hostname or "")
        with turn or nullcontext():
            started = time.monotonic()  # the exchange's time, for the response times: not the politeness wait
            exchange.deadline = started + config.download_timeout
            response = _send(session, request, headers, (config.connect_timeout, config.read_timeout), proxy)
    except Exception as exc:  # every failure is data for the stats, never a crash
        _fail(result, *_failure(exc, exchange, config))
        result.elapsed = time.monotonic() - started
        _WATCHDOG.done()
        return result
    return _answer(result, response, config, exchange, started)


def _answer(result: FetchResult, response: requests.Response, config: FetcherConfig, exchange: _Exchange,
            started: float) -> FetchResult:
    """The rest of ``fetch`` once the response head is in: the body read within the caps, the watch ended."""
    request = result.request
    meta = request.meta
    max_body = meta.get("max_body", config.max_body)
    try:
        result.url = response.url
        result.status = response.status_code
        version = "HTTP/1.0" if response.raw.version == 10 else "HTTP/1.1"
        result.status_line = f"{version} {response.status_code} {response.reason or ''}".rstrip()
        if config.archive:
            _archive_exchange(result, response, exchange)
        else:
            result.headers = list(response.raw.headers.items())  # urllib3's: repeated headers stay apart
        result.request_headers = list(response.request.headers.items())
        length = response.headers.get("Content-Length", "")
        if config.content_types and not _wanted(config.content_types, response, request):
            # Closed below with its body unread: urllib3 closes a connection whose response is not drained.
            _fail(result, FetchErrorKind.CONTENT_TYPE,
                  f"Content-Type {response.headers.get('Content-Type')!r} not in content_types")
        elif length.isdigit() and int(length) > max_body and not meta.get("truncate"):
            _fail(result, FetchErrorKind.BODY_TOO_LARGE, f"Content-Length {length} > max_body {max_body}")
        else:
            decoder = _decoder(response.headers.get("Content-Encoding", "")) if config.archive else None
            if decoder is None:
                result.body, kind, message = _read_body(
                    response.raw, max_body, exchange.deadline, bool(meta.get("truncate"))
                )
            else:
                result.body, result.transferred, kind, message = _read_encoded_body(
                    response.raw, decoder, max_body, exchange.deadline, bool(meta.get("truncate"))
                )
            if kind is not None:
                _fail(result, kind, message)
    except Exception as exc:
        _fail(result, *_failure(exc, exchange, config))
    finally:
        _WATCHDOG.done()
        response.close()
    if exchange.cut and result.error is None:
        # A socket shut down reads as the end of the headers, or of a body without a length:
        # what arrived is a fragment, not the answer.
        result.body = b""
        _fail(result, *_failure(TimeoutError(), exchange, config))
    result.elapsed = time.monotonic() - started
    return result


def _wanted(content_types: ContentTypes, response: requests.Response, request: Request) -> bool:
    """Whether the body of ``response`` is to be read: see ``content_types.py`` for what is never dropped."""
    return (
        not 200 <= response.status_code < 300
        or request.callback in (ROBOTS_CALLBACK, SITEMAP_CALLBACK, SPIDER_SITEMAP_CALLBACK)
        or content_types.wanted(response.headers.get("Content-Type"))
    )


def site_headers(rule: SiteRule, headers: Headers, follows_redirects: bool) -> Headers:
    """The headers sent to a host with a rule: the request's own, then the rule's user agent and headers.

    They are added at send time, for the host the request goes to, and never become part of
    the request: a redirect is a new request, sent with its own host's rule, so a token meant
    for one host never reaches another. A request that follows redirects inside the fetcher
    (robots.txt) gets the user agent only, as its redirects go wherever they point with the
    headers they started with.
    """
    extra = () if follows_redirects else rule.headers
    if rule.user_agent is not None:
        extra = (*extra, ("User-Agent", rule.user_agent))
    if not extra:
        return headers
    sent = Headers(headers)
    for name, value in extra:
        if name not in sent:
            sent[name] = value
    return sent


def _fail(result: FetchResult, kind: FetchErrorKind, message: str) -> None:
    """Record a failure in ``result``: the kind crosses the Pipe as its plain string value."""
    result.error, result.message = kind.value, message


def _failure(exc: BaseException, exchange: _Exchange, config: FetcherConfig) -> tuple[FetchErrorKind, str]:
    """``classify``, except that an exchange the watchdog cut is a ``download_timeout`` whatever it raised."""
    if exchange.cut:
        return (FetchErrorKind.DOWNLOAD_TIMEOUT,
                f"no complete response within download_timeout ({config.download_timeout:g}s)")
    return classify(exc)


def _send(
    session: requests.Session, request: Request, headers: Headers, timeout: tuple[float, float],
    proxy: str | None,
) -> requests.Response:
    """Send ``request`` and return the streamed response (headers read, body not yet).

    A request that follows redirects (robots.txt) goes through ``Session.request``. Every other
    one is prepared here and handed straight to the transport adapter: what ``Session`` adds on
    top (merging environment settings, its cookie jar, hooks, redirect bookkeeping) is what
    this module turns off anyway, and skipping it saves a quarter of a fetch's CPU. The request
    sent is the same: session headers overlaid by the request's, ``user:password@`` in the URL
    as Basic auth, the same URL quoting except for percent-escapes (``urls.keep_escapes``).
    """
    proxies = {"http": proxy, "https": proxy} if proxy else None
    data = request.body or None
    if request.meta.get("follow_redirects"):
        return session.request(request.method, request.url, headers=headers or None, data=data, timeout=timeout,
                               allow_redirects=True, stream=True, proxies=proxies)
    merged = CaseInsensitiveDict(session.headers)
    merged.update(headers)
    prepared = requests.PreparedRequest()
    prepared.prepare_method(request.method)
    prepared.prepare_url(request.url, None)
    # The stubs allow None where requests has set a value: prepared.url after prepare_url(),
    # session.verify from new_session() (a CA bundle path or True).
    if "%" in request.url:
        prepared.url = keep_escapes(prepared.url, request.url)  # type: ignore[arg-type]
    prepared.prepare_headers(merged)
    prepared.prepare_body(data, None)
    prepared.prepare_auth(None, request.url)
    adapter = session.get_adapter(prepared.url)  # type: ignore[arg-type]
    return adapter.send(prepared, stream=True, timeout=timeout, verify=session.verify,  # type: ignore[arg-type]
                        cert=session.cert, proxies=proxies)


def _read_body(
    raw: Any, max_body: int, deadline: float, truncate: bool,
) -> tuple[bytes, FetchErrorKind | None, str]:
    """Read the decompressed body in pieces, so size and time caps hold against bombs and slow drips.

    ``read1`` returns whatever has arrived (at most one read timeout of waiting), unlike
    ``read(n)``, which a server dripping a byte a second could hold for hours.
    """
    body = bytearray()
    while True:
        chunk = raw.read1(CHUNK, decode_content=True)
        if chunk:
            body += chunk
            if len(body) > max_body:
                if truncate:
                    return bytes(body[:max_body]), None, ""
                return b"", FetchErrorKind.BODY_TOO_LARGE, f"body over max_body {max_body} bytes"
        elif raw.closed:
            return bytes(body), None, ""
        if time.monotonic() > deadline:
            return (b"", FetchErrorKind.DOWNLOAD_TIMEOUT,
                    f"body not complete after download_timeout, {len(body)} bytes read")


def _archive_exchange(result: FetchResult, response: requests.Response, exchange: _Exchange) -> None:
    """What the WARC record needs besides the body: the headers in the order and case the server sent them
    (``http.client``'s list; urllib3's dict groups a repeated header), and the address connected to."""
    original = response.raw._original_response
    result.headers = original.msg.items() if original is not None else list(response.raw.headers.items())
    if exchange.sock is not None:
        try:
            result.peer = str(exchange.sock.getpeername()[0])
        except OSError:  # the socket is closed already: the record goes without WARC-IP-Address
            pass


def _decoder(encoding: str) -> ContentDecoder | None:
    """A decoder for the Content-Encoding ``encoding`` (gzip, deflate, br, zstd or a list of them) as urllib3
    would choose it, or None when the body is not encoded (or in an encoding urllib3 leaves alone)."""
    encoding = encoding.lower()
    if encoding in HTTPResponse.CONTENT_DECODERS:
        return _get_decoder(encoding)
    if "," in encoding and any(e.strip() in HTTPResponse.CONTENT_DECODERS for e in encoding.split(",")):
        return _get_decoder(encoding)
    return None


def _read_encoded_body(
    raw: Any, decoder: ContentDecoder, max_body: int, deadline: float, truncate: bool,
) -> tuple[bytes, bytes | None, FetchErrorKind | None, str]:
    """``_read_body`` for an archived exchange: the body as transferred (de-chunked, still encoded), for the
    WARC record, and decoded here, for the spider: (decoded, transferred, error kind, message).

    ``max_body`` bounds both: the decoded size, so that a gzip bomb stops at ``max_body`` bytes of output
    (the decoder is asked for no more than that), and the transferred size, so that an encoded stream that
    decodes to nothing cannot run on either.
    """
    transferred, body = bytearray(), bytearray()
    while True:
        chunk = raw.read1(CHUNK, decode_content=False)
        ended = not chunk and raw.closed
        if chunk or ended:
            transferred += chunk
            try:
                body += decoder.flush() if ended else decoder.decompress(chunk, max_length=max_body + 1 - len(body))
            except Exception as exc:
                raise urllib3.exceptions.DecodeError(f"cannot decode the body: {one_line(exc)}") from exc
            if len(body) > max_body or len(transferred) > max_body:
                if truncate:
                    return bytes(body[:max_body]), bytes(transferred), None, ""
                return b"", None, FetchErrorKind.BODY_TOO_LARGE, f"body over max_body {max_body} bytes"
            if ended:
                return bytes(body), bytes(transferred), None, ""
        if time.monotonic() > deadline:
            return (b"", None, FetchErrorKind.DOWNLOAD_TIMEOUT,
                    f"body not complete after download_timeout, {len(body)} bytes read")


def classify(exc: BaseException) -> tuple[FetchErrorKind, str]:
    """The kind of a failed exchange and a one-line message: the one place a transport exception is read.

    Judged by the exception types anywhere in the chain (requests wraps urllib3, which wraps
    http.client and the socket error), most specific first: a ``RemoteDisconnected`` is a
    reset, a ``BadStatusLine`` or an over-long header is a ``bad_response`` (the peer does not
    speak HTTP; retrying will not change that), a body cut short is a ``connection_error``.
    """
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    causes = _causes(exc)

    def found(*types: type) -> bool:
        return any(isinstance(cause, types) for cause in causes)

    if found(DestinationBlocked):
        kind = FetchErrorKind.DESTINATION_BLOCKED
    elif found(requests.exceptions.ConnectTimeout) or any(
        # urllib3's NewConnectionError (refused, DNS failure) subclasses ConnectTimeoutError
        isinstance(c, urllib3.exceptions.ConnectTimeoutError)
        and not isinstance(c, urllib3.exceptions.NewConnectionError)
        for c in causes
    ):
        kind = FetchErrorKind.CONNECT_TIMEOUT
    elif found(requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError):
        kind = FetchErrorKind.READ_TIMEOUT
    elif found(ConnectionRefusedError):
        kind = FetchErrorKind.CONNECTION_REFUSED
    elif found(socket.gaierror):  # urllib3's NameResolutionError wraps it: no address for the host name
        kind = FetchErrorKind.UNRESOLVABLE_HOST
    elif found(ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        kind = FetchErrorKind.CONNECTION_RESET
    elif found(requests.exceptions.TooManyRedirects):
        kind = FetchErrorKind.TOO_MANY_REDIRECTS
    elif found(requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema,
               urllib3.exceptions.LocationParseError):
        kind = FetchErrorKind.INVALID_URL
    elif found(urllib3.exceptions.DecodeError, requests.exceptions.ContentDecodingError):
        kind = FetchErrorKind.DECODING_ERROR
    elif found(urllib3.exceptions.InvalidChunkLength, requests.exceptions.InvalidHeader) or any(
        isinstance(cause, http.client.HTTPException) and not isinstance(cause, http.client.IncompleteRead)
        for cause in causes
    ):
        kind = FetchErrorKind.BAD_RESPONSE
    elif found(requests.exceptions.ConnectionError, urllib3.exceptions.ProtocolError, http.client.IncompleteRead,
               OSError):
        kind = FetchErrorKind.CONNECTION_ERROR
    else:
        kind = FetchErrorKind.FETCH_ERROR
    return kind, text[:300]


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it wraps: its cause and context, urllib3's ``reason``, and
    exceptions passed as arguments (``ProtocolError('Connection aborted.', BadStatusLine(...))``)."""
    found: list[BaseException] = []
    stack: list[Any] = [exc]
    while stack and len(found) < 32:
        cause = stack.pop()
        if not isinstance(cause, BaseException) or any(cause is f for f in found):
            continue
        found.append(cause)
        stack += [cause.__cause__, cause.__context__, getattr(cause, "reason", None), *getattr(cause, "args", ())]
    return found
