"""A local site whose links and content exist only after JavaScript runs, and what its server saw.

``/`` writes its links with a script (``/p/1`` .. ``/p/3``) and loads more from a JSON endpoint
with ``fetch()`` (``/p/4`` .. ``/p/6``); each ``/p/N`` writes its title with a script that
``fetch()``es ``/api/N.json``, and asks for an image, a stylesheet and a script. ``/plain/N``
pages carry their links and text in the HTML (a plain fetch sees them); ``/shell/N`` pages
are empty until a script runs, and link to the next shell page; ``/to/shell/N`` redirects (302)
to ``/shell/N``. ``/big`` asks for a script and (by ``fetch()``) a JSON of ``BIG`` bytes each,
the JSON sent chunked, with no Content-Length; both would write its title; ``/huge`` is a page
of ``BIG`` bytes; ``/poll`` asks for a JSON every 30 ms, for ever; ``/cdn/N`` loads three
scripts and a stylesheet from the site ``Seen.cdn`` names, another host. The server counts requests in
flight per host (navigations and sub-resources alike), at most, and records every request:
path, whether a browser sent it (``Sec-CH-UA``, which Chromium sends and ``requests`` does
not), the User-Agent and when it arrived.
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

PAGES = 6
BIG = 200_000  # bytes of /big's script and JSON, and of /huge
LATENCY = 0.01  # seconds each answer takes, so that requests of one host overlap if nothing holds them apart

_PAGE = re.compile(r"/p/(\d+)$")
_API = re.compile(r"/api/(\d+)\.json$")
_SHELL = re.compile(r"/shell/(\d+)$")
_PLAIN = re.compile(r"/plain/(\d+)$")
_CDN = re.compile(r"/cdn/(\d+)$")

HOME = """<html><head><title>home</title></head><body><div id="links"></div><script>
var links = document.getElementById("links");
for (var i = 1; i <= 3; i++) { links.innerHTML += '<a href="/p/' + i + '">page ' + i + '</a> '; }
fetch("/api/more.json").then(function (r) { return r.json(); }).then(function (more) {
  more.forEach(function (n) { links.innerHTML += '<a href="/p/' + n + '">page ' + n + '</a> '; });
});
</script></body></html>"""

PAGE = """<html><head><title>p{n}</title><link rel="stylesheet" href="/s.css"><script src="/app.js"></script>
</head><body><h1 id="t"></h1><img src="/img/{n}.png"><script>
fetch("/api/{n}.json").then(function (r) {{ return r.json(); }}).then(function (d) {{
  document.getElementById("t").textContent = d.title;
}});
</script></body></html>"""

SHELL = """<html><head><title>shell</title></head><body><div id="app"></div><script>
document.getElementById("app").innerHTML = '<h1 id="t">Shell {n}</h1><p>' + "rendered text ".repeat(20) + '</p>'
  + ({n} < 3 ? '<a href="/shell/{next}">next</a>' : '');
</script></body></html>"""

BIG_PAGE = """<html><head><title>big</title><script src="/big.js"></script></head><body><h1 id="t">Big</h1><script>
fetch("/big.json").then(function (r) { return r.json(); }).then(function (d) {
  document.getElementById("t").textContent = d.title;
});
</script></body></html>"""

CDN_PAGE = """<html><head><title>cdn</title><link rel="stylesheet" href="{cdn}/s.css?{n}">
<script src="{cdn}/app.js?{n}a"></script><script src="{cdn}/app.js?{n}b"></script>
<script src="{cdn}/app.js?{n}c"></script>
</head><body><h1 id="t">CDN {n}</h1></body></html>"""

# A page that never settles: its script asks for a JSON every 30 ms, for as long as it is open.
POLL_PAGE = """<html><head><title>poll</title></head><body><h1 id="t">Poll</h1><script>
setInterval(function () { fetch("/api/1.json"); }, 30);
</script></body></html>"""

PLAIN = """<html><head><title>plain</title></head><body><h1 id="t">Plain {n}</h1><p>{text}</p>{link}</body></html>"""


class Seen:
    """What the server saw: every request, and the most requests in flight at once by host."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.inflight: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.hold_path: str | None = None  # an answer held until ``release`` is set (or 30 s pass)
        self.robots: str | None = None  # the robots.txt served; None: a 404
        self.cdn = ""  # the base URL of the site /cdn/N pages load their scripts and stylesheet from
        self.release = threading.Event()

    def enter(self, host: str) -> None:
        with self.lock:
            self.inflight[host] = self.inflight.get(host, 0) + 1
            self.peak[host] = max(self.peak.get(host, 0), self.inflight[host])

    def leave(self, host: str) -> None:
        with self.lock:
            self.inflight[host] -= 1

    def saw(self, path: str) -> bool:
        with self.lock:
            return any(r["path"] == path for r in self.requests)

    def paths(self, browser: bool | None = None) -> list[str]:
        with self.lock:
            return [r["path"] for r in self.requests if browser is None or r["browser"] == browser]


def handler(seen: Seen) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            host = self.headers.get("Host", "")
            seen.enter(host)
            try:
                with seen.lock:
                    seen.requests.append({"path": self.path, "browser": "Sec-CH-UA" in self.headers,
                                          "user_agent": self.headers.get("User-Agent", ""), "at": time.monotonic(),
                                          "authorization": self.headers.get("Authorization")})
                time.sleep(LATENCY)
                if self.path == seen.hold_path:
                    seen.release.wait(30)
                status, kind, body = self.answer(self.path.partition("?")[0])
            finally:
                seen.leave(host)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            if 300 <= status < 400:
                self.send_header("Location", body)
            chunked = self.path == "/big.json"
            self.send_header(*(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(len(data)))))
            self.end_headers()
            try:
                if chunked:
                    for start in range(0, len(data), 65536):
                        piece = data[start:start + 65536]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # a page closed before its sub-resource came

        def answer(self, path: str) -> tuple[int, str, str]:
            html = "text/html; charset=utf-8"
            if path == "/":
                return 200, html, HOME
            if path == "/api/more.json":
                return 200, "application/json", "[4, 5, 6]"
            if path == "/robots.txt":
                return (404, "text/plain", "none") if seen.robots is None else (200, "text/plain", seen.robots)
            if path == "/s.css":
                return 200, "text/css", "h1 { color: red }"
            if path == "/app.js":
                return 200, "application/javascript", "window.app = 1;"
            if (match := _PAGE.match(path)) and 1 <= int(match[1]) <= PAGES:
                return 200, html, PAGE.format(n=match[1])
            if match := _API.match(path):
                return 200, "application/json", f'{{"title": "Title {match[1]}"}}'
            if path.startswith("/to/"):
                return 302, html, path.removeprefix("/to")
            if match := _SHELL.match(path):
                n = int(match[1])
                return 200, html, SHELL.format(n=n, next=n + 1)
            if match := _PLAIN.match(path):
                n = int(match[1])
                link = f'<a href="/plain/{n + 1}">next</a>' if n < 3 else ""
                return 200, html, PLAIN.format(n=n, text="plain text " * 20, link=link)
            if match := _CDN.match(path):
                return 200, html, CDN_PAGE.format(cdn=seen.cdn, n=match[1])
            if path == "/big":
                return 200, html, BIG_PAGE
            if path == "/big.js":
                return 200, "application/javascript", 'document.getElementById("t").textContent = "big.js";'.ljust(BIG)
            if path == "/big.json":
                return 200, "application/json", '{"title": "big.json"}'.ljust(BIG)
            if path == "/poll":
                return 200, html, POLL_PAGE
            if path == "/huge":
                return 200, html, "<html><body><h1 id='t'>Huge</h1></body></html>".ljust(BIG)
            if path.startswith("/img/"):
                return 200, "image/png", "png"
            return 404, html, "<html><body>not here</body></html>"

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
