"""A hostile HTTP server for the fault tests: each path may misbehave freely, every request is recorded.

A plain asyncio server on a loopback address (127.0.0.x, a free port per site), running in a
background thread, so a handler can do what real servers do to crawlers: stop half way, drip
a byte at a time, say nothing, reset the connection (SO_LINGER 0), send garbage or bombs.
``requests``/``http.server`` would be too polite for that; here a handler gets the raw stream.

    with HostileServer() as server:
        site = server.site({"/": page(b"<a href=/slow>x</a>"), "/slow": silence()})
        ... crawl site.url("/") ...
        assert server.count(site, "/slow") == 2

One server may hold several sites (each its own port, so its own host for robots.txt and the
per-host limits). It also works as an HTTP proxy (a request line with an absolute URL is
recorded by the URL's host), which lets a test crawl host names no resolver knows.
Handlers never wait unbounded: every pause ends when the client goes away, when its time is
up, or when the server stops.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024  # bytes of request line and headers a client may send
HOLD_MAX = 30.0  # seconds any pause lasts at most, whatever the handler asked


@dataclass(slots=True)
class Hit:
    """One request as the server saw it."""

    site: str  # "ip:port" of the site that received it
    host: str  # the Host header (or the host of an absolute-form target, for proxied requests)
    path: str  # path and query as sent
    time: float  # time.monotonic() on arrival
    headers: dict[str, str]  # request headers, names lower-case (a repeated name keeps its last value)


class Exchange:
    """One request on one connection, and the means to answer it (or not)."""

    def __init__(self, writer: asyncio.StreamWriter, server: HostileServer, path: str) -> None:
        self.writer = writer
        self.server = server
        self.path = path
        self.gone = asyncio.Event()  # the client closed or reset its end

    async def respond(self, status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None,
                      content_type: str | None = "text/html; charset=utf-8", length: bool = True) -> None:
        """A whole response, then close; ``length=False`` leaves out Content-Length (the close ends the body)."""
        head = {"Connection": "close"}
        if content_type is not None:
            head["Content-Type"] = content_type
        if length:
            head["Content-Length"] = str(len(body))
        head.update(headers or {})
        await self.write(response_head(status, head) + body)

    async def write(self, data: bytes) -> bool:
        """Send bytes; False when the client is gone."""
        if self.gone.is_set() or self.writer.is_closing():
            return False
        self.writer.write(data)
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            self.gone.set()
            return False
        return True

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (at most HOLD_MAX); False when the client left or the server stopped first."""
        done = asyncio.ensure_future(self.gone.wait())
        stop = asyncio.ensure_future(self.server._stopping.wait())
        try:
            finished, _ = await asyncio.wait({done, stop}, timeout=min(seconds, HOLD_MAX),
                                             return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            stop.cancel()
        return not finished

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER with a zero timeout)."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Handler = Callable[[Exchange], Awaitable[None]]


class Site:
    """One listening port: exact paths first, then path prefixes, else 404."""

    def __init__(self, routes: dict[str, Handler], prefixes: dict[str, Handler] | None) -> None:
        self.routes = routes
        self.prefixes = sorted((prefixes or {}).items(), key=lambda kv: -len(kv[0]))
        self.address = ""  # "ip:port", set when listening
        self.active = 0
        self.peak = 0

    def url(self, path: str = "/") -> str:
        return f"http://{self.address}{path}"

    def handler(self, path: str) -> Handler:
        bare = path.split("?", 1)[0]
        if bare in self.routes:
            return self.routes[bare]
        for prefix, handler in self.prefixes:
            if bare.startswith(prefix):
                return handler
        return page(b"not here", status=404)


class HostileServer:
    """Sites on one loopback IP, served by one event loop in a background thread; use as a context manager."""

    def __init__(self, ip: str | None = None) -> None:
        self.ip = ip or free_loopback_ip()
        self.sites: list[Site] = []
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hostile-server", daemon=True)
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task] = set()
        self._held: list[socket.socket] = []
        self._stopping: asyncio.Event | None = None

    # ------------------------------------------------------------- life cycle

    def __enter__(self) -> HostileServer:
        self._thread.start()
        self._stopping = self._call(_make_event())
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Close every site and connection and end the thread; raises if it does not end in 10 s."""
        if not self._thread.is_alive():
            return
        self._call(self._shutdown(), timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        assert not self._thread.is_alive(), "hostile server thread did not stop"
        self._loop.close()
        for sock in self._held:
            sock.close()

    async def _shutdown(self) -> None:
        self._stopping.set()
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    def _call(self, coro: Awaitable, timeout: float = 10) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # ------------------------------------------------------------- sites

    def site(self, routes: dict[str, Handler], prefixes: dict[str, Handler] | None = None) -> Site:
        """Start listening on a free port of this server's IP for a new site."""
        site = Site(routes, prefixes)

        async def listen() -> asyncio.base_events.Server:
            return await asyncio.start_server(lambda r, w: self._accept(site, r, w), self.ip, 0, limit=MAX_HEAD)

        server = self._call(listen())
        self._servers.append(server)
        host, port = server.sockets[0].getsockname()[:2]
        site.address = f"{host}:{port}"
        self.sites.append(site)
        return site

    def refusing_url(self, path: str = "/") -> str:
        """A URL on another loopback IP whose port is bound but not listening: connects are refused.

        The socket is held until the server stops, so no one else can take the port meanwhile.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((free_loopback_ip(avoid=self.ip), 0))
        self._held.append(sock)
        ip, port = sock.getsockname()[:2]
        return f"http://{ip}:{port}{path}"

    # ------------------------------------------------------------- what was seen

    def count(self, site: Site | None, path: str) -> int:
        """Requests for ``path`` (path and query, exactly as sent) on ``site`` (None: any site)."""
        with self._lock:
            return sum(1 for h in self.hits if h.path == path and (site is None or h.site == site.address))

    def paths(self, site: Site | None = None) -> Counter:
        """path -> requests, for one site or all."""
        with self._lock:
            return Counter(h.path for h in self.hits if site is None or h.site == site.address)

    def seen(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    # ------------------------------------------------------------- the connection

    async def _accept(self, site: Site, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._serve(site, reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            pass  # a client that went away or sent junk: nothing to record
        except asyncio.CancelledError:
            pass  # the server is stopping
        finally:
            self._tasks.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _serve(self, site: Site, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HOLD_MAX)
        lines = head.decode("latin-1").split("\r\n")
        target = (lines[0].split(" ") + [""])[1]
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        host = headers.get("host", "")
        if target.startswith(("http://", "https://")):  # absolute form: we are someone's proxy
            parts = urlsplit(target)
            host, target = parts.netloc, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        with self._lock:
            self.hits.append(Hit(site.address, host, target, time.monotonic(), headers))
        exchange = Exchange(writer, self, target)
        watcher = asyncio.ensure_future(_watch_eof(reader, exchange.gone))
        site.active += 1
        site.peak = max(site.peak, site.active)
        try:
            await site.handler(target)(exchange)
        finally:
            site.active -= 1
            watcher.cancel()


async def _make_event() -> asyncio.Event:
    return asyncio.Event()  # made inside the loop, which it belongs to


async def _watch_eof(reader: asyncio.StreamReader, gone: asyncio.Event) -> None:
    try:
        while await reader.read(4096):
            pass
    except (ConnectionError, OSError):
        pass
    gone.set()


def response_head(status: int, headers: dict[str, str]) -> bytes:
    """A status line and headers, for handlers that write the body (or not) themselves."""
    lines = [f"HTTP/1.1 {status} Whatever"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")  # raw UTF-8, as servers send a Location


def free_loopback_ip(avoid: str = "") -> str:
    """A random 127.0.0.x address other than ``avoid``; ports are bound as 0, so sharing one is harmless."""
    while True:
        ip = f"127.0.0.{random.randrange(2, 255)}"
        if ip != avoid:
            return ip


# ----------------------------------------------------------------- handlers


def page(body: bytes, status: int = 200, content_type: str | None = "text/html; charset=utf-8",
         headers: dict[str, str] | None = None, length: bool = True) -> Handler:
    """A well-formed response (whatever its body)."""

    async def handle(ex: Exchange) -> None:
        await ex.respond(status, body, headers, content_type, length)

    return handle


def raw(data: bytes) -> Handler:
    """Exactly these bytes, whatever they are, then close."""

    async def handle(ex: Exchange) -> None:
        await ex.write(data)

    return handle


def redirect(location: str, status: int = 302) -> Handler:
    return page(b"", status=status, headers={"Location": location})


def reset() -> Handler:
    """Read the request, then reset the connection."""

    async def handle(ex: Exchange) -> None:
        ex.reset()

    return handle


def silence(head: bool = False) -> Handler:
    """Accept and say nothing (or only the response head) until the client gives up."""

    async def handle(ex: Exchange) -> None:
        if head:
            await ex.write(response_head(200, {"Content-Type": "text/plain", "Content-Length": "1000"}))
        await ex.pause(HOLD_MAX)

    return handle


def held(until: threading.Event, body: bytes = b"<title>held</title>") -> Handler:
    """A page answered once ``until`` is set (or HOLD_MAX has passed, or the client left)."""

    async def handle(ex: Exchange) -> None:
        deadline = time.monotonic() + HOLD_MAX
        while not until.is_set() and time.monotonic() < deadline:
            if not await ex.pause(0.02):
                return
        await ex.respond(200, body)

    return handle


def drip(interval: float, size: int = 10_000) -> Handler:
    """A body of ``size`` bytes, one byte every ``interval`` seconds."""

    async def handle(ex: Exchange) -> None:
        head = response_head(200, {"Content-Type": "text/html", "Content-Length": str(size), "Connection": "close"})
        if not await ex.write(head):
            return
        for _ in range(size):
            if not await ex.write(b"x") or not await ex.pause(interval):
                return

    return handle


def drip_head(interval: float, padding: int = 2000) -> Handler:
    """The status line and headers one byte every ``interval`` seconds (a long header makes it last), then a page."""

    async def handle(ex: Exchange) -> None:
        head = response_head(200, {"Content-Type": "text/html", "X-Padding": "p" * padding, "Content-Length": "2",
                                   "Connection": "close"})
        for i in range(len(head)):
            if not await ex.write(head[i:i + 1]) or not await ex.pause(interval):
                return
        await ex.write(b"ok")

    return handle


def first_then(first: Handler, then: Handler) -> Handler:
    """``first`` for the first request to the path, ``then`` for every later one."""
    calls = 0

    async def handle(ex: Exchange) -> None:
        nonlocal calls
        calls += 1
        await (first if calls == 1 else then)(ex)

    return handle


def stream(total: int, chunk: int = 16 * 1024, length: bool = True) -> Handler:
    """``total`` bytes of HTML-ish filler, written as fast as the client takes them."""

    async def handle(ex: Exchange) -> None:
        head = {"Content-Type": "text/html", "Connection": "close"}
        if length:
            head["Content-Length"] = str(total)
        if not await ex.write(response_head(200, head)):
            return
        sent = 0
        while sent < total:
            n = min(chunk, total - sent)
            if not await ex.write(b"<p>" + b"z" * (n - 3)):
                return
            sent += n

    return handle


def bomb(encoding: str, size: int = 50 * 1024 * 1024) -> Handler:
    """``size`` bytes of zeros, compressed (``gzip`` or ``deflate``) to a few tens of KiB."""
    wbits = {"gzip": 31, "deflate": 15}[encoding]
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(1024 * 1024)
    body = b"".join(packer.compress(zeros) for _ in range(size // len(zeros))) + packer.flush()
    return page(body, headers={"Content-Encoding": encoding})
