"""Incremental recrawls through the CLI, against a local site whose pages change between runs.

The site records every request with its conditional headers, so each run is checked from the
server's side: which pages a recrawl asked for, with which If-None-Match / If-Modified-Since,
and which answered 304. Time passing between rounds is simulated by moving the job
directory's clock (its ``finished_at`` and each page's ``fetched``), never by sleeping.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from support import serve_http
from warcio.archiveiterator import ArchiveIterator

OLD_DATE = "Mon, 02 Nov 2026 10:00:00 GMT"


class ChangingSite:
    """Pages that change between runs (``round`` is bumped by the test), and what the server saw.

    ``/`` links to every page; ``/a`` never changes (ETag), ``/c`` never changes (Last-Modified
    only), ``/b`` changes every round and links to a page new in that round, ``/gone`` is 404 from
    round 2 on. A request whose validator matches the page's current one gets a 304.
    """

    def __init__(self) -> None:
        self.round = 1
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str | None, str | None, int]] = []  # path, If-None-Match, If-Modified-Since, status

    def page(self, path: str) -> tuple[int, dict[str, str], str]:
        links = {"/": ["/a", "/b", "/c", "/gone"], "/b": [f"/new{self.round}"]}.get(path, [])
        body = "".join(f'<a href="{link}">{link}</a>' for link in links)
        if path == "/" or path == "/a":
            return 200, {"ETag": f'"{path}-1"'}, body
        if path == "/b":
            return 200, {"ETag": f'"b-{self.round}"'}, f"<title>b {self.round}</title>{body}"
        if path == "/c":
            return 200, {"Last-Modified": OLD_DATE}, body
        if path == "/gone" and self.round == 1 or path.startswith("/new"):
            return 200, {}, body
        return 404, {}, "not here"

    def requests(self) -> list[tuple[str, str | None, str | None, int]]:
        with self.lock:
            seen, self.seen = self.seen, []
        return sorted(seen)

    @contextmanager
    def serve(self) -> Iterator[str]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = site.page(self.path)
                inm, ims = self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")
                matches = (inm and inm == headers.get("ETag")) or (ims and ims == headers.get("Last-Modified"))
                if status == 200 and matches:
                    status, body = 304, ""
                with site.lock:
                    site.seen.append((self.path, inm, ims, status))
                data = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/html")
                if status != 304:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return None

        with serve_http(Handler, "127.0.0.41") as base:
            yield base


def _age(jobdir: Path, seconds: float) -> None:
    """Move the job directory's clock back by ``seconds``: as if its rounds ran that long ago."""
    db = sqlite3.connect(jobdir / "crawl.sqlite")
    with db:
        db.execute("UPDATE meta SET value = CAST(value AS REAL) - ? WHERE key = 'finished_at'", (seconds,))
        db.execute("UPDATE requests SET fetched = fetched - ? WHERE fetched IS NOT NULL", (seconds,))
    db.close()


def test_recrawl_revisits_known_pages_with_their_validators(crawlkit, tmp_path: Path) -> None:
    site = ChangingSite()
    job = tmp_path / "job"
    stats = tmp_path / "stats.json"
    with site.serve() as base:
        common = ["crawl", "--jobdir", str(job), "--no-robots", "--stats", str(stats)]
        first = crawlkit(*common, seeds=[base + "/"])
        assert first.returncode == 0, first.stderr
        assert site.requests() == [("/", None, None, 200), ("/a", None, None, 200), ("/b", None, None, 200),
                                   ("/c", None, None, 200), ("/gone", None, None, 200), ("/new1", None, None, 200)]
        written = len(first.items())
        assert written == 6

        again = crawlkit(*common, seeds=[base + "/"])  # finished, neither --recrawl nor recrawl_after: nothing to do
        assert again.returncode == 0, again.stderr
        assert "nothing to do: --recrawl (or recrawl_after) revisits its pages" in again.stderr
        assert site.requests() == []

        site.round = 2
        recrawl = crawlkit(*common, "--recrawl", "--warc", str(tmp_path / "warc"), seeds=[base + "/"])
        assert recrawl.returncode == 0, recrawl.stderr
        assert site.requests() == [
            ("/", '"/-1"', None, 304), ("/a", '"/a-1"', None, 304), ("/b", '"b-1"', None, 200),
            ("/c", None, OLD_DATE, 304), ("/gone", None, None, 404), ("/new1", None, None, 200),
            ("/new2", None, None, 200),  # the changed page's new link is followed
        ]
        report = json.loads(stats.read_text())
        assert report["counts"]["unchanged"] == 3 and report["counts"]["gone"] == 1
        assert report["gone"] == [base + "/gone"]
        assert "gone: " + base + "/gone answered 404 to a recrawl" in recrawl.stderr
        # Items of the changed and new pages only (/new1 sends no validator: a 200 is a change), and of
        # the gone page, which the built-in spider lists with its status as it lists every 404.
        items = recrawl.items()[written:]
        assert sorted((item["url"].removeprefix(base), item["status"]) for item in items) == [
            ("/b", 200), ("/gone", 404), ("/new1", 200), ("/new2", 200)]
        revisits = []
        for warc in (tmp_path / "warc").glob("*.warc.gz"):
            with open(warc, "rb") as f:
                revisits += [(r.rec_headers.get_header("WARC-Target-URI"), r.rec_headers.get_header("WARC-Profile"),
                              r.http_headers.get_statuscode())
                             for r in ArchiveIterator(f) if r.rec_type == "revisit"]
        profile = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"
        assert sorted(revisits) == sorted((base + path, profile, "304") for path in ("/", "/a", "/c"))

        # recrawl_after: not due yet an hour after the round; due once the round is two hours old.
        site.round = 3
        early = crawlkit(*common, "-s", "recrawl_after=2h", seeds=[base + "/"])
        assert early.returncode == 0 and "the next recrawl is due at" in early.stderr
        assert site.requests() == []
        _age(job, 7200)
        due = crawlkit(*common, "-s", "recrawl_after=2h", seeds=[base + "/"])
        assert due.returncode == 0, due.stderr
        # The gone page is not asked for again; the page that was new last round is revisited.
        assert [path for path, *_ in site.requests()] == ["/", "/a", "/b", "/c", "/new1", "/new2", "/new3"]


def test_adaptive_refetch_revisits_only_the_pages_that_are_due(crawlkit, tmp_path: Path) -> None:
    site = ChangingSite()
    job = tmp_path / "job"
    day = 86_400
    with site.serve() as base:
        common = ["crawl", "--jobdir", str(job), "--no-robots", "--recrawl", "-s", "refetch_interval=1d",
                  "-s", "refetch_grow=2", "-s", "refetch_shrink=0.5"]
        first = crawlkit(*common, seeds=[base + "/"])  # a new jobdir: --recrawl has nothing to revisit yet
        assert first.returncode == 0, first.stderr
        assert len(site.requests()) == 6

        nothing = crawlkit(*common, seeds=[base + "/"])  # every page's interval (1 day) is still running
        assert nothing.returncode == 0, nothing.stderr
        assert "0 known pages to revisit, 6 not due yet" in nothing.stderr
        assert site.requests() == []

        _age(job, day)
        site.round = 2
        assert crawlkit(*common, seeds=[base + "/"]).returncode == 0
        seen = site.requests()
        assert [(path, status) for path, _, _, status in seen] == [
            ("/", 304), ("/a", 304), ("/b", 200), ("/c", 304), ("/gone", 404), ("/new1", 200), ("/new2", 200)]

        # A day later: /b changed (its interval halved to 12 h), the page fetched a day ago
        # for the first time (/new2) are due, as is /new1 (a 200 again: 12 h); the unchanged ones (2 days) are not.
        _age(job, day)
        site.round = 3
        assert crawlkit(*common, seeds=[base + "/"]).returncode == 0
        assert [(path, inm) for path, inm, _, _ in site.requests()] == [
            ("/b", '"b-2"'), ("/new1", None), ("/new2", None), ("/new3", None)]
