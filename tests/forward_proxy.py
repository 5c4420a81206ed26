"""A tiny HTTP forwarding proxy on loopback that records every request passing through it.

Takes absolute-form requests (``GET http://127.0.0.2:PORT/path HTTP/1.1``), as HTTP clients send
them to a proxy, forwards each in origin form to its target with ``Connection: close``, and relays
the answer back, also with ``Connection: close``: one exchange per connection keeps it small.

It also tunnels (``CONNECT host:port``), as Playwright's HTTP client asks of a proxy even for an
``http://`` URL: the tunnel is recorded in ``tunnels`` and the plain HTTP requests sent through
it in ``seen``, read off the bytes relayed (request heads, their bodies skipped by Content-Length).
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable
from urllib.parse import urlsplit


class ForwardProxy:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # (method, absolute URL, headers lower-cased)
        self.tunnels: list[tuple[str, dict[str, str]]] = []  # (host:port, headers lower-cased) of each CONNECT
        self.lock = threading.Lock()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = self.connection.recv(65536)
                    if not chunk:
                        return
                    head += chunk
                head, _, rest = head.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                headers = _headers(lines[1:])
                if method == "CONNECT":
                    with proxy.lock:
                        proxy.tunnels.append((target, headers))
                    self.tunnel(target, rest)
                    return
                with proxy.lock:
                    proxy.seen.append((method, target, headers))
                parts = urlsplit(target)
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                kept = [line for line in lines[1:] if not line.lower().startswith(("proxy-", "connection:"))]
                upstream_head = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close"]) + "\r\n\r\n"
                with socket.create_connection((parts.hostname, parts.port or 80), timeout=10) as upstream:
                    upstream.sendall(upstream_head.encode("latin-1") + rest)
                    answer = b""
                    while chunk := upstream.recv(65536):
                        answer += chunk
                status, _, remainder = answer.partition(b"\r\n")
                self.connection.sendall(status + b"\r\nConnection: close\r\n" + remainder)

            def tunnel(self, target: str, rest: bytes) -> None:
                """Relay both ways between the client and ``target``, recording the requests sent through."""
                hostname, _, port = target.rpartition(":")
                with socket.create_connection((hostname, int(port)), timeout=10) as upstream:
                    self.connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    back = threading.Thread(target=_pump, args=(upstream, self.connection, None), daemon=True)
                    back.start()
                    reader = _Requests(lambda method, path, headers: proxy._saw(method, f"http://{target}{path}",
                                                                                 headers))
                    reader.feed(rest)
                    upstream.sendall(rest)
                    _pump(self.connection, upstream, reader.feed)
                    upstream.shutdown(socket.SHUT_WR)
                    back.join(10)

        self.server = socketserver.ThreadingTCPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="forward-proxy", daemon=True)

    def __enter__(self) -> ForwardProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def urls(self) -> list[str]:
        with self.lock:
            return [url for _, url, _ in self.seen]

    def _saw(self, method: str, url: str, headers: dict[str, str]) -> None:
        with self.lock:
            self.seen.append((method, url, headers))


def _headers(lines: list[str]) -> dict[str, str]:
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def _pump(source: socket.socket, sink: socket.socket, watch: Callable[[bytes], None] | None) -> None:
    """Copy ``source`` to ``sink`` until ``source`` ends (or either fails), showing each chunk to ``watch``."""
    try:
        while chunk := source.recv(65536):
            if watch is not None:
                watch(chunk)
            sink.sendall(chunk)
    except OSError:
        pass


class _Requests:
    """Finds the HTTP/1.1 request heads in a stream of bytes fed in any pieces; tells ``saw`` of each."""

    def __init__(self, saw: Callable[[str, str, dict[str, str]], None]) -> None:
        self.saw = saw
        self.buffer = b""
        self.body_left = 0

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.body_left:
                skipped = min(self.body_left, len(self.buffer))
                self.buffer, self.body_left = self.buffer[skipped:], self.body_left - skipped
                if self.body_left:
                    return
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = _headers(lines[1:])
            self.saw(method, path, headers)
            self.buffer, self.body_left = rest, int(headers.get("content-length") or 0)
