"""A local multi-host website that crawlkit serves itself: for the demo, the benchmarks and the tests.

Host ``i`` listens on ``127.0.0.(2+i)``, all on one port. Pages are rendered once, at start, to
complete HTTP responses (status line, headers and body in one bytes object), and the server is
a small asyncio loop with keep-alive, so it stays far faster than any crawler on the same
machine. Every request is recorded: fetches per path, peak requests in flight per host, arrival
times per host, User-Agents; tests assert on what the *server* saw.

The link graph is deterministic: page n links to page n+1 (so every page is reachable from
``/``) and to pseudo-random others. With ``extras`` on, pages also link to what a real site
has: fragments, 404s, redirects, a redirect loop, robots-disallowed pages, other hosts,
``mailto:`` and ``javascript:`` links. ``expected_urls()`` is the set a correct crawler fetches.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import socket
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Site", "SiteProcess", "SiteRequest", "SiteSpec", "respond"]

CONTROL = "/__site__/"
_WORDS = (
    "crawler frontier politeness robots fetch parse queue host latency semaphore archive page link "
    "index spider item pipeline process manager worker request response header body charset"
).split()


@dataclass
class SiteSpec:
    hosts: int = 2
    pages: int = 100  # per host, besides the index
    page_size: int = 20_000  # approximate bytes of HTML per page
    links: int = 10  # links to other pages of the same host, per page
    latency: float = 0.0  # seconds before each response
    # Requests a host serves at full speed, as a server with that many workers: past it each
    # request's latency grows with the host's requests in flight (latency * in_flight / capacity,
    # so its throughput stays capacity / latency). 0: the latency is fixed.
    capacity: int = 0
    first_ip: str = "127.0.0.2"
    port: int = 0  # 0: a free port, the same on every host
    extras: bool = True  # fragments, 404s, redirects, loops, private pages, cross-host links
    robots: bool = True  # serve a robots.txt that disallows /private/


@dataclass
class SiteRequest:
    method: str
    path: str
    headers: dict[str, str]
    host: int  # index of the host that received it


Handler = Callable[[SiteRequest, asyncio.StreamWriter], Awaitable[None]]


def respond(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    """A route handler that answers with a fixed response."""
    raw = _response(status, body, headers or {})

    async def handler(request: SiteRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()

    return handler


_REASONS = {
    200: "OK", 301: "Moved Permanently", 302: "Found", 404: "Not Found", 429: "Too Many Requests",
    500: "Internal Server Error", 503: "Service Unavailable",
}


def _response(status: int, body: bytes, headers: dict[str, str]) -> bytes:
    head = {"Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(body)), **headers}
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"] + [f"{k}: {v}" for k, v in head.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Graph:
    """The site's pages and links, shared by the server (to render) and expected_urls (to walk)."""

    def __init__(self, spec: SiteSpec, bases: list[str]) -> None:
        self.spec = spec
        self.bases = bases

    def links(self, host: int, page: int | None) -> list[str]:
        """Hrefs on the index (page None) or on page n of a host, as written in the HTML."""
        spec, base = self.spec, self.bases[host]
        rng = random.Random(host * 1_000_003 + (page if page is not None else -1))
        hrefs: list[str] = []
        if page is None:
            hrefs += ["/page/0.html", "page/1.html" if spec.pages > 1 else "/page/0.html"]
            if spec.extras:
                hrefs += ["/loop/a", "/missing/index.html"]
                if host == spec.hosts - 1 and spec.robots:
                    hrefs.append("/private/public.html")
            return hrefs
        if page + 1 < spec.pages:
            hrefs.append(f"{base}/page/{page + 1}.html" if page % 2 else f"/page/{page + 1}.html")
        for _ in range(max(0, spec.links - 1)):
            hrefs.append(f"../page/{rng.randrange(spec.pages)}.html")
        if spec.extras and page % 10 == 0:
            hrefs += [
                f"/page/{(page + 3) % spec.pages}.html#top",
                f"/missing/{page}.html",
                f"/redirect/{(page + 7) % spec.pages}",
                f"/private/{page}.html",
                "mailto:someone@example.com",
                "javascript:void(0)",
            ]
            if spec.hosts > 1:
                hrefs.append(f"{self.bases[(host + 1) % spec.hosts]}/page/{page}.html")
        return hrefs

    def render(self, host: int, page: int | None) -> bytes:
        title = f"Host {host} page {page}" if page is not None else f"Host {host} index"
        rng = random.Random(host * 7919 + (page or 0))
        links = "".join(f'<li><a href="{href}">link {i}</a></li>' for i, href in enumerate(self.links(host, page)))
        parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body>",
                 f"<h1>{title}</h1><nav><ul>{links}</ul></nav><main>"]
        size = sum(map(len, parts))
        n = 0
        while size < self.spec.page_size:
            text = " ".join(rng.choice(_WORDS) for _ in range(30))
            block = f'<div class="item"><span class="text">{text}</span><p>{text.upper()} <b>{n}</b></p></div>'
            parts.append(block)
            size += len(block)
            n += 1
        parts.append("</main><footer>crawlkit test site</footer></body></html>")
        return "".join(parts).encode()

    def routes(self, host: int) -> dict[str, bytes]:
        spec = self.spec
        table = {"/": _response(200, self.render(host, None), {})}
        for page in range(spec.pages):
            table[f"/page/{page}.html"] = _response(200, self.render(host, page), {})
        if spec.robots:
            table["/robots.txt"] = _response(
                200, b"User-agent: *\nAllow: /private/public.html\nDisallow: /private/\n",
                {"Content-Type": "text/plain"},
            )
        if spec.extras:
            for page in range(spec.pages):
                table[f"/redirect/{page}"] = _response(301, b"", {"Location": f"/page/{page}.html"})
                table[f"/private/{page}.html"] = _response(200, b"<html><title>private</title></html>", {})
            table["/loop/a"] = _response(302, b"", {"Location": "/loop/b"})
            table["/loop/b"] = _response(302, b"", {"Location": "/loop/a"})
            table["/private/public.html"] = _response(200, b"<html><title>public</title></html>", {})
        return table

    def expected(self, hosts: Iterable[int]) -> set[str]:
        """URLs a robots-obeying crawler seeded with these hosts' indexes fetches with a 200."""
        return self.walk(hosts)[0]

    def walk(self, hosts: Iterable[int]) -> tuple[set[str], set[str]]:
        """(URLs answered 200, URLs answered 404) for a robots-obeying crawler seeded with these hosts' indexes."""
        from urllib.parse import urldefrag, urljoin

        allowed = {self.bases[h] for h in hosts}
        todo = [self.bases[h] + "/" for h in hosts]
        seen = set(todo)
        missing: set[str] = set()
        while todo:
            url = todo.pop()
            base, path = url[: url.index("/", 8)], url[url.index("/", 8):]
            host = self.bases.index(base)
            page = None if path == "/" else int(path.rsplit("/", 1)[1].split(".")[0])
            for href in self.links(host, page):
                target = urldefrag(urljoin(url, href))[0]
                if not target.startswith("http") or target[: target.index("/", 8)] not in allowed:
                    continue
                tpath = target[target.index("/", 8):]
                if tpath.startswith("/redirect/"):
                    target = target.replace("/redirect/", "/page/") + ".html"
                elif tpath.startswith("/private/"):
                    if self.spec.robots and tpath != "/private/public.html":
                        continue  # disallowed
                elif not (tpath == "/" or tpath.startswith("/page/")):
                    if not tpath.startswith("/loop/"):  # the redirect loop never answers
                        missing.add(target)
                    continue
                if target not in seen:
                    seen.add(target)
                    if "/page/" in target or target.endswith("/"):
                        todo.append(target)
        return seen, missing


class Site:
    """The site served by an asyncio loop in a background thread (``with Site(spec) as site``)."""

    def __init__(self, spec: SiteSpec | None = None) -> None:
        self.spec = spec or SiteSpec()
        self.ips = [_ip(self.spec.first_ip, i) for i in range(self.spec.hosts)]
        self.port = self.spec.port or _free_port(self.ips)
        self.urls = [f"http://{ip}:{self.port}" for ip in self.ips]
        self._graph = _Graph(self.spec, self.urls)
        self._tables = [self._graph.routes(h) for h in range(self.spec.hosts)]
        self._routes: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._arrived = 0  # requests received, ever (reset_stats leaves it)
        self._hold_from: int | None = None  # arrivals from this one on wait for release()
        self._released = asyncio.Event()
        self.reset_stats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- what tests use

    def seeds(self) -> list[str]:
        return [url + "/" for url in self.urls]

    def expected_urls(self, hosts: Iterable[int] | None = None) -> set[str]:
        return self._graph.expected(range(self.spec.hosts) if hosts is None else hosts)

    def missing_urls(self, hosts: Iterable[int] | None = None) -> set[str]:
        """The broken links (404) a crawl from these hosts' indexes meets: the built-in spider lists them too."""
        return self._graph.walk(range(self.spec.hosts) if hosts is None else hosts)[1]

    def route(self, path: str, handler: Handler) -> None:
        """Serve ``path`` (on every host) with ``handler`` instead of the built-in page."""
        self._routes[path] = handler

    def hold(self, after: int = 0) -> None:
        """Answer ``after`` more requests, then hold every later one until ``release``.

        Held requests are counted on arrival and stay in flight, so a test can catch a crawl in
        a known state (requests out, none answered) instead of racing it.
        """
        with self._lock:
            self._hold_from = self._arrived + after
            self._released = asyncio.Event()

    def release(self) -> None:
        """Answer the held requests, and every later one at once."""
        with self._lock:
            released, self._hold_from = self._released, None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(released.set)

    def stats(self) -> dict[str, Any]:
        """What the server saw: ``fetches`` {"ip:port/path": n}, ``peak_inflight``, ``arrivals`` and ``latencies``
        (seconds each request waited, in arrival order) per "ip:port", and ``peak_inflight_total``, over all hosts."""
        with self._lock:
            return {
                "fetches": dict(self._fetches),
                "peak_inflight": dict(self._peak),
                "peak_inflight_total": self._peak_total,
                "arrivals": {k: list(v) for k, v in self._arrivals.items()},
                "latencies": {k: list(v) for k, v in self._latencies.items()},
                "user_agents": dict(self._agents),
                "total": sum(self._fetches.values()),
            }

    def reset_stats(self) -> None:
        with self._lock:
            self._fetches: Counter[str] = Counter()
            self._inflight: Counter[str] = Counter()
            self._peak: Counter[str] = Counter()
            self._peak_total = 0
            self._arrivals: dict[str, list[float]] = defaultdict(list)
            self._latencies: dict[str, list[float]] = defaultdict(list)
            self._agents: Counter[str] = Counter()

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> Site:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                servers = [
                    loop.run_until_complete(
                        asyncio.start_server(self._make_handler(h), ip, self.port, reuse_address=True)
                    )
                    for h, ip in enumerate(self.ips)
                ]
            except BaseException as exc:  # handed to start(), which raises it
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            for server in servers:
                server.close()
                loop.run_until_complete(server.wait_closed())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=serve, name="crawlkit-site", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None

    # -------------------------------------------------------------- serving

    def _make_handler(self, host: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        netloc = f"{self.ips[host]}:{self.port}"
        table = self._tables[host]
        latency, capacity = self.spec.latency, self.spec.capacity
        missing = _response(404, b"<html><title>not found</title></html>", {})

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    try:
                        head = await reader.readuntil(b"\r\n\r\n")
                    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                        return
                    lines = head.decode("latin-1").split("\r\n")
                    method, target, _ = (lines[0].split(" ") + ["", ""])[:3]
                    headers = {}
                    for line in lines[1:]:
                        name, sep, value = line.partition(":")
                        if sep:
                            headers[name.strip().lower()] = value.strip()
                    if target.startswith(CONTROL):
                        writer.write(self._control(target))
                        await writer.drain()
                        continue
                    key = netloc + target
                    with self._lock:
                        self._fetches[key] += 1
                        self._arrivals[netloc].append(time.monotonic())
                        self._agents[headers.get("user-agent", "")] += 1
                        self._inflight[netloc] += 1
                        if self._inflight[netloc] > self._peak[netloc]:
                            self._peak[netloc] = self._inflight[netloc]
                        self._peak_total = max(self._peak_total, self._inflight.total())
                        wait = latency * max(1.0, self._inflight[netloc] / capacity) if capacity else latency
                        self._latencies[netloc].append(wait)
                        holding = self._hold_from is not None and self._arrived >= self._hold_from
                        held = self._released if holding else None
                        self._arrived += 1
                    try:
                        if held is not None:
                            await held.wait()
                        if wait:
                            await asyncio.sleep(wait)
                        path = target.split("?", 1)[0]
                        if path in self._routes:
                            await self._routes[path](SiteRequest(method, target, headers, host), writer)
                        else:
                            raw = table.get(path, missing)
                            writer.write(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" if method == "HEAD" else raw)
                            await writer.drain()
                    finally:
                        with self._lock:
                            self._inflight[netloc] -= 1
                    if headers.get("connection", "").lower() == "close" or writer.is_closing():
                        return
            except (ConnectionError, asyncio.CancelledError):
                return
            finally:
                writer.close()

        return handle

    def _control(self, target: str) -> bytes:
        if target.startswith(CONTROL + "reset"):
            self.reset_stats()
            return _response(200, b"{}", {"Content-Type": "application/json"})
        return _response(200, json.dumps(self.stats()).encode(), {"Content-Type": "application/json"})


class SiteProcess:
    """The same site in a child process, so it does not share a GIL with the crawler (for ``crawlkit bench``)."""

    def __init__(self, spec: SiteSpec | None = None) -> None:
        self.spec = spec or SiteSpec()
        ips = [_ip(self.spec.first_ip, i) for i in range(self.spec.hosts)]
        if not self.spec.port:
            self.spec = SiteSpec(**{**asdict(self.spec), "port": _free_port(ips)})
        self._site = Site.__new__(Site)  # for seeds/expected_urls only: no server in this process
        self._site.spec = self.spec
        self._site.ips = ips
        self._site.port = self.spec.port
        self.urls = self._site.urls = [f"http://{ip}:{self.spec.port}" for ip in ips]
        self._site._graph = _Graph(self.spec, self.urls)
        self._process: Any = None

    @property
    def pid(self) -> int:
        """The server process's pid (0 before it starts), for tools that leave its cost out."""
        return self._process.pid if self._process is not None else 0

    def seeds(self) -> list[str]:
        return self._site.seeds()

    def expected_urls(self, hosts: Iterable[int] | None = None) -> set[str]:
        return self._site.expected_urls(hosts)

    def missing_urls(self, hosts: Iterable[int] | None = None) -> set[str]:
        return self._site.missing_urls(hosts)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.urls[0] + CONTROL + "stats", timeout=30) as answer:
            return json.loads(answer.read())

    def reset_stats(self) -> None:
        urllib.request.urlopen(self.urls[0] + CONTROL + "reset", timeout=30).close()

    def __enter__(self) -> SiteProcess:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve_child, args=(self.spec, child), name="crawlkit-site", daemon=True)
        self._process.start()
        child.close()
        message = parent.recv()  # "ready", or the error that stopped the server
        if message != "ready":
            self._process.join(5)
            raise RuntimeError(f"site process failed to start: {message}")
        self._conn = parent
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()


def _serve_child(spec: SiteSpec, conn: Any) -> None:
    try:
        site = Site(spec)
        site.start()
    except BaseException as exc:
        conn.send(f"{type(exc).__name__}: {exc}")
        return
    conn.send("ready")
    try:
        conn.recv()  # "stop", or EOF when the parent is gone
    except EOFError:
        pass
    site.stop()


def _ip(first: str, offset: int) -> str:
    parts = first.split(".")
    return ".".join(parts[:3] + [str(int(parts[3]) + offset)])


def _free_port(ips: list[str]) -> int:
    """A port free on every one of ``ips`` (checked by binding each)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((ips[0], 0))
            port = probe.getsockname()[1]
        try:
            for ip in ips:
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((ip, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on all site addresses")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Serve crawlkit's local test site until Ctrl-C.")
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with Site(SiteSpec(hosts=args.hosts, pages=args.pages, latency=args.latency, port=args.port)) as site:
        for url in site.seeds():
            print(url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
