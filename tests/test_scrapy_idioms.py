"""A spider written as for Scrapy (parsel selectors, follow_all, FormRequest.from_response) crawls a
site behind a login form: the items it yields, and what the server saw (the form posted with its
CSRF token, the session cookie on every page after it, each page fetched once)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from hostile import free_loopback_ip
from support import serve_http

TOKEN = "c5rf-t0k3n"
SESSION = "sid=ann-42"
QUOTES = {  # page -> (text, author, tags)
    1: [("One", "Ann", ["a", "b"]), ("Two", "Bob", [])],
    2: [("Three", "Cy", ["c"])],
    3: [("Four", "Di", ["a"])],
}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    cookie: str
    body: str


class LoginSite(BaseHTTPRequestHandler):
    """Quotes only for a session that logged in through the form (a CSRF token, a cookie)."""

    seen: list[Seen]  # set on the subclass each test serves

    def do_GET(self) -> None:
        self._record("")
        if self.path == "/login":
            self._send(200, f"""<html><body><form id="search" action="/search"><input name="q"></form>
                <form name="login" action="/session" method="post"><input type="hidden" name="csrf" value="{TOKEN}">
                <input name="user"><input type="password" name="pass"><input type="submit" value="Log in"></form>
                </body></html>""")
        elif self.path.startswith("/quotes/") and self.headers.get("Cookie") == SESSION:
            number = int(self.path.split("/")[2])
            quotes = "".join(
                f'<div class="quote"><span class="text">{text}</span> by <small class="author">{author}</small>'
                + "".join(f'<a class="tag" href="/tag/{tag}">{tag}</a>' for tag in tags) + "</div>"
                for text, author, tags in QUOTES[number])
            pager = f'<li class="next"><a href="../{number + 1}/">Next</a></li>' if number + 1 in QUOTES else ""
            self._send(200, f"<html><title>Quotes {number}</title><body>{quotes}<ul class=pager>{pager}</ul></body>")
        else:
            self._send(404 if self.path == "/robots.txt" else 403, "<p>no</p>")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        self._record(body)
        if self.path == "/session" and dict(parse_qsl(body)) == {"csrf": TOKEN, "user": "ann", "pass": "s3cret"}:
            self._send(200, '<p>Welcome, ann. <a class="start" href="/quotes/1/">Quotes</a></p>',
                       {"Set-Cookie": f"{SESSION}; Path=/; HttpOnly"})
        else:
            self._send(403, "<p>bad login</p>")

    def _record(self, body: str) -> None:
        self.seen.append(Seen(self.command, self.path, self.headers.get("Cookie", ""), body))

    def _send(self, status: int, html: str, headers: dict[str, str] | None = None) -> None:
        data = html.encode()
        self.send_response(status)
        for name, value in {"Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(data)),
                            **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test reads what the server saw from `seen`, not from stderr


@pytest.fixture
def login_site() -> Iterator[tuple[str, list[Seen]]]:
    seen: list[Seen] = []
    handler = type("Handler", (LoginSite,), {"seen": seen})
    with serve_http(handler, free_loopback_ip()) as base:
        yield base, seen


SPIDER = '''
from crawlkit import FormRequest, Spider


class QuotesBehindLogin(Spider):
    name = "quotes-login"
    start_urls = ["{base}/login"]

    def parse(self, response):
        yield FormRequest.from_response(response, formname="login", formdata={{"user": "ann", "pass": "s3cret"}},
                                        callback=self.after_login)

    def after_login(self, response):
        if response.css("p::text").get(default="").startswith("Welcome"):
            yield from response.follow_all(css="a.start", callback=self.parse_quotes)

    def parse_quotes(self, response):
        for quote in response.css("div.quote"):
            yield {{
                "text": quote.css("span.text::text").get(),
                "author": quote.xpath(".//small[@class='author']/text()").get(),
                "tags": quote.css("a.tag::text").getall(),
                "page": int(response.css("title::text").re_first(r"Quotes (\\d+)")),
            }}
        yield from response.follow_all(response.css("li.next a"), callback=self.parse_quotes)
'''


def test_a_scrapy_style_spider_logs_in_with_a_form_and_crawls_with_selectors(
    crawlkit, tmp_path: Path, login_site: tuple[str, list[Seen]],
) -> None:
    base, seen = login_site
    (tmp_path / "spider.py").write_text(SPIDER.format(base=base))
    run = crawlkit("runspider", "spider.py", timeout=90)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(run.items(), key=lambda item: item["text"]) == sorted(
        ({"text": text, "author": author, "tags": tags, "page": page}
         for page, quotes in QUOTES.items() for text, author, tags in quotes),
        key=lambda item: item["text"])
    by_path = {(hit.method, hit.path): hit for hit in seen}
    assert len(by_path) == len(seen), seen  # nothing fetched twice
    login = by_path["POST", "/session"]
    assert parse_qsl(login.body) == [("csrf", TOKEN), ("user", "ann"), ("pass", "s3cret")]
    assert by_path["GET", "/login"].cookie == login.cookie == ""
    quote_pages = sorted(path for method, path in by_path if path.startswith("/quotes/"))
    assert quote_pages == ["/quotes/1/", "/quotes/2/", "/quotes/3/"]
    assert all(by_path["GET", path].cookie == SESSION for path in quote_pages)
    assert not any(path.startswith(("/tag/", "/search")) for _, path in by_path)  # only the links followed
