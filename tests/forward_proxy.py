"""A tiny HTTP forwarding proxy on loopback that records every request passing through it.

Takes absolute-form requests (``GET http://127.0.0.2:PORT/path HTTP/1.1``), as HTTP clients send
them to a proxy, forwards each in origin form to its target with ``Connection: close``, and relays
the answer back, also with ``Connection: close``: one exchange per connection keeps it small.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from urllib.parse import urlsplit


class ForwardProxy:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # (method, absolute URL, headers lower-cased)
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
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
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
