"""URL normalisation and the content-type filter through the CLI: which URLs the server was asked for, how
often, how much of a body it sent, and what the crawl wrote."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support import serve_http, wait_for

TRACKED = b"""<html><head><title>home</title></head><body>
<a href="/a?utm_source=a">a</a> <a href="/a?utm_source=b&amp;utm_medium=mail">a again</a> <a href="/a">plain a</a>
<a href="/a;jsessionid=0F1E2D3C">a with a session</a> <a href="/b?id=2&amp;fbclid=IwAR0">b</a>
<a href="/c?PHPSESSID=77">c</a> <a href="/c">c</a>
</body></html>"""
BACK = b'<html><head><title>leaf</title></head><body><a href="/?utm_campaign=x">home</a></body></html>'


class Handler(BaseHTTPRequestHandler):
    """A quiet handler with one way to answer."""

    def answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Tracked(Handler):
    """A home page linking to three pages under several spellings each; records every request line's target."""

    seen: Counter[str] = Counter()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Tracked.seen[self.path] += 1
        if self.path == "/robots.txt":
            self.send_error(404)
            return
        self.answer(200, TRACKED if self.path == "/" else BACK, {"Content-Type": "text/html"})


def test_a_page_linked_with_tracking_parameters_or_a_session_id_is_fetched_once_by_its_clean_url(
    crawlkit, tmp_path: Path,
) -> None:
    Tracked.seen = Counter()
    with serve_http(Tracked, "127.0.0.71") as base:
        run = crawlkit("crawl", "--stats", "stats.json", seeds=[f"{base}/?utm_source=seed&fbclid=1"])
    assert run.returncode == 0, run.stderr
    assert Tracked.seen == {"/robots.txt": 1, "/": 1, "/a": 1, "/b?id=2": 1, "/c": 1}
    assert sorted(item["url"] for item in run.items()) == [f"{base}/", f"{base}/a", f"{base}/b?id=2", f"{base}/c"]
    counts = json.loads((tmp_path / "stats.json").read_text())["counts"]
    # The seed, then on the home page 5 of 7 links and on each leaf its link home.
    assert counts["urls_normalized"] == 1 + 5 + 3


def test_rewrites_apply_and_an_empty_strip_list_fetches_urls_as_written(crawlkit, tmp_path: Path) -> None:
    Tracked.seen = Counter()
    (tmp_path / "crawl.yaml").write_text(
        "strip_query_params: []\n"
        "url_rewrites:\n"
        "  - {pattern: '[?&]utm_[a-z]+=[^&]*', replace: ''}\n"  # a rewrite of the user's own
        "  - {pattern: ';jsessionid=.*$', replace: ''}\n"
    )
    with serve_http(Tracked, "127.0.0.72") as base:
        run = crawlkit("crawl", "--config", "crawl.yaml", seeds=[f"{base}/"])
    assert run.returncode == 0, run.stderr
    assert Tracked.seen == {"/robots.txt": 1, "/": 1, "/a": 1, "/b?id=2&fbclid=IwAR0": 1, "/c?PHPSESSID=77": 1,
                            "/c": 1}


BIG = 64 << 20  # bytes of the binary's body: far more than the socket buffers between client and server
CHUNK = 64 << 10
LISTING = b"""<html><head><title>files</title></head><body>
<a href="/big.bin">the binary</a> <a href="/page.html">a page</a> <a href="/bare">no type</a>
<a href="/private.html">disallowed</a></body></html>"""


class Files(Handler):
    """HTML pages, a large binary, a page without Content-Type, and a robots.txt served as a binary type."""

    seen: Counter[str] = Counter()
    sent = 0  # bytes of the binary's body written before the client stopped it
    ended = ""  # how the binary's body ended: "closed" by the client, "complete", or "timeout"
    done = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Files.seen[self.path] += 1
        if self.path == "/big.bin":
            self._binary()
            return
        bodies = {"/": LISTING, "/page.html": b"<html><head><title>page</title></head><body>p</body></html>",
                  "/bare": b"<html><head><title>bare</title></head><body>b</body></html>",
                  "/robots.txt": b"User-agent: *\nDisallow: /private\n",
                  "/private.html": b"<html><title>private</title></html>"}
        kind = "application/octet-stream" if self.path == "/robots.txt" else "text/html; charset=utf-8"
        self.answer(200, bodies[self.path], {} if self.path == "/bare" else {"Content-Type": kind})

    def _binary(self) -> None:
        self.connection.settimeout(30)  # a client that neither reads nor closes cannot hold this thread for ever
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(BIG))
        self.end_headers()
        chunk = b"\0" * CHUNK
        try:
            for _ in range(BIG // CHUNK):
                self.wfile.write(chunk)  # blocks while the client's buffers are full: a slow, bounded body
                Files.sent += CHUNK
            Files.ended = "complete"
        except (ConnectionResetError, BrokenPipeError):
            Files.ended = "closed"
        except TimeoutError:
            Files.ended = "timeout"
        finally:
            Files.done.set()


def test_a_type_not_listed_is_dropped_after_its_headers_with_its_body_unsent(crawlkit, tmp_path: Path) -> None:
    Files.seen, Files.sent, Files.ended, Files.done = Counter(), 0, "", threading.Event()
    with serve_http(Files, "127.0.0.73") as base:
        run = crawlkit("crawl", "--stats", "stats.json", "-s", "content_types=[text/html]",
                       "-s", f"max_body={BIG * 2}", "-s", "log_level=DEBUG", seeds=[f"{base}/"])
        wait_for(Files.done.is_set, 40, "the binary's body to end")
    assert run.returncode == 0, run.stderr
    # robots.txt was read whatever its type (the disallowed page was not asked for); every URL once.
    assert Files.seen == {"/robots.txt": 1, "/": 1, "/big.bin": 1, "/page.html": 1, "/bare": 1}
    # The client closed the connection (no draining): the server could write only what the buffers took.
    assert Files.ended == "closed" and Files.sent < BIG // 4, (Files.ended, Files.sent)
    assert sorted(item["url"] for item in run.items()) == [f"{base}/", f"{base}/bare", f"{base}/page.html"]
    counts = json.loads((tmp_path / "stats.json").read_text())["counts"]
    assert counts["dropped_content_type"] == 1 and not any(key.startswith("error_") for key in counts)
    assert f"dropped (content_type): {base}/big.bin" in run.stderr  # at DEBUG, with its URL


class Sessions(Handler):
    """As a servlet container without a session cookie yet: /app redirects to itself with ;jsessionid= and
    sets the cookie; /stubborn does so whatever the request carries."""

    seen: Counter[tuple[str, bool]] = Counter()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        has_cookie = "JSESSIONID=S1" in self.headers.get("Cookie", "")
        Sessions.seen[(self.path, has_cookie)] += 1
        if self.path == "/robots.txt":
            self.send_error(404)
            return
        if self.path == "/":
            body = b'<html><title>home</title><a href="/app">app</a> <a href="/stubborn">stubborn</a></html>'
            self.answer(200, body, {"Content-Type": "text/html"})
        elif self.path == "/app" and has_cookie:
            self.answer(200, b"<html><title>app</title></html>", {"Content-Type": "text/html"})
        else:
            self.answer(302, b"", {"Location": f"{self.path};jsessionid=S1", "Set-Cookie": "JSESSIONID=S1; Path=/"})


def test_a_redirect_that_adds_a_session_id_is_followed_to_the_clean_url_with_the_cookie(crawlkit) -> None:
    Sessions.seen = Counter()
    with serve_http(Sessions, "127.0.0.74") as base:
        run = crawlkit("crawl", "-s", "max_redirects=3", seeds=[f"{base}/"])
    assert run.returncode == 0, run.stderr
    # /app once without the cookie (redirected), once with it; no URL with ;jsessionid= was ever asked for.
    assert Sessions.seen[("/app", False)] == 1 and Sessions.seen[("/app", True)] == 1
    assert not any(";" in path for path, _ in Sessions.seen)
    # A server that redirects whatever the request carries is asked max_redirects + 1 times, then given up.
    assert Sessions.seen[("/stubborn", False)] + Sessions.seen[("/stubborn", True)] == 4
    assert sorted(item["url"] for item in run.items()) == [f"{base}/", f"{base}/app"]
    assert "too many redirects" in run.stderr
