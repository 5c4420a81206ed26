"""The local site the Scrapy-idiom spiders of this directory crawl, with what it holds and what it saw.

Public quote pages (``/page/1/`` to ``/page/3/``, linked by "Next", with author pages), and a members'
area behind a login form (a CSRF token, a session cookie): ``/members/`` lists more quotes, ``/api/count``
answers JSON, ``/missing`` is a 404 for errbacks. Served by ``http.server`` on a loopback address in a
thread, so a test (or ``tests/benchmarks/compare_spiders.py``) and the crawler it runs stay apart from
crawlkit's own site code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl

from support import serve_http

TOKEN = "c5rf-t0k3n"
SESSION = "sid=ann-42"
LOGIN = {"csrf": TOKEN, "user": "ann", "pass": "s3cret"}
AUTHORS = {"ann-lee": ("Ann Lee", 1920), "bob-ray": ("Bob Ray", 1931), "cy-moss": ("Cy Moss", 1899)}
QUOTES = {  # page -> (text, author slug, tags)
    1: [("One", "ann-lee", ["life", "love"]), ("Two", "bob-ray", [])],
    2: [("Three", "cy-moss", ["love"]), ("Four", "ann-lee", ["life"])],
    3: [("Five", "bob-ray", ["love", "wit"])],
}
MEMBERS = [("Six", "cy-moss", ["secret"]), ("Seven", "ann-lee", ["secret", "love"])]


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    cookie: str
    agent: str  # the User-Agent header
    body: str


def _quotes(quotes: list[tuple[str, str, list[str]]]) -> str:
    return "".join(
        f'<div class="quote"><span class="text">{text}</span> by <small class="author">{AUTHORS[slug][0]}</small>'
        f' <a class="author" href="/author/{slug}/">(about)</a>'
        + "".join(f'<a class="tag" href="/tag/{tag}/">{tag}</a>' for tag in tags) + "</div>"
        for text, slug, tags in quotes)


class QuotesHandler(BaseHTTPRequestHandler):
    """The site's pages; every request is recorded in ``seen`` (set on the subclass each server gets)."""

    seen: list[Seen]

    def do_GET(self) -> None:
        self._record("")
        path, member = self.path, self.headers.get("Cookie") == SESSION
        if path.startswith("/page/") and path.split("/")[2].isdigit() and int(path.split("/")[2]) in QUOTES:
            number = int(path.split("/")[2])
            pager = f'<li class="next"><a href="/page/{number + 1}/">Next</a></li>' if number + 1 in QUOTES else ""
            self._send(200, f"<html><head><title>Quotes {number}</title></head><body>{_quotes(QUOTES[number])}"
                            f"<ul class='pager'>{pager}</ul></body></html>")
        elif path.startswith("/author/") and path.split("/")[2] in AUTHORS:
            name, born = AUTHORS[path.split("/")[2]]
            self._send(200, f"<html><body><h3 class='name'> {name} </h3><p>Born: <span class='born'>March {born}"
                            "</span></p></body></html>")
        elif path == "/login":
            self._send(200, f"""<html><body><form id="search" action="/search"><input name="q"></form>
                <form name="login" action="/session" method="post"><input type="hidden" name="csrf" value="{TOKEN}">
                <input name="user"><input type="password" name="pass"><input type="submit" value="Log in"></form>
                </body></html>""")
        elif path == "/members/" and member:
            self._send(200, f"<html><head><title>Members</title></head><body>{_quotes(MEMBERS)}</body></html>")
        elif path == "/api/count" and member:
            self._send(200, json.dumps({"quotes": len(MEMBERS), "user": "ann"}), "application/json")
        elif path == "/robots.txt":
            self._send(200, "User-agent: *\nDisallow: /private/\n", "text/plain")
        else:
            self._send(404 if path == "/missing" or member else 403, "<p>no</p>")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        self._record(body)
        if self.path == "/session" and dict(parse_qsl(body)) == LOGIN:
            self._send(200, '<p>Welcome, ann. <a class="start" href="/members/">Members</a></p>',
                       headers={"Set-Cookie": f"{SESSION}; Path=/; HttpOnly"})
        else:
            self._send(403, "<p>bad login</p>")

    def _record(self, body: str) -> None:
        headers = self.headers
        self.seen.append(Seen(self.command, self.path, headers.get("Cookie", ""), headers.get("User-Agent", ""), body))

    def _send(self, status: int, text: str, content_type: str = "text/html; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        data = text.encode()
        self.send_response(status)
        for name, value in {"Content-Type": content_type, "Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # what the server saw is in `seen`


@contextmanager
def quotes_site(ip: str = "127.0.0.1") -> Iterator[tuple[str, list[Seen]]]:
    """Serve the site on ``ip`` (a free port) until the block ends: its base URL and what it saw."""
    seen: list[Seen] = []
    with serve_http(type("Handler", (QuotesHandler,), {"seen": seen}), ip) as base:
        yield base, seen


def expected_quotes(tag: str = "") -> list[dict[str, object]]:
    """The public quotes the quotes spider yields (with ``-a tag=TAG``, those with that tag)."""
    return [{"text": text, "author": AUTHORS[slug][0], "tags": tags, "page": page}
            for page, quotes in QUOTES.items() for text, slug, tags in quotes if not tag or tag in tags]
