"""Incremental recrawls: the pieces on their own (durations, the schedule, the policy, a journal's
round, the recrawl stage), then through the CLI against a local site whose pages change between runs.

The site records every request with its conditional headers, so each run is checked from the
server's side: which pages a recrawl asked for, with which If-None-Match / If-Modified-Since,
and which answered 304. Time passing between rounds is simulated by moving the job
directory's clock (its ``finished_at`` and each page's ``fetched``), never by sleeping.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from support import serve_http
from warcio.archiveiterator import ArchiveIterator

from crawlkit import safepickle
from crawlkit.backends.local.jobdir import JobDir
from crawlkit.errors import ConfigError
from crawlkit.extensions.sitemaps import sitemap_request
from crawlkit.http import Request, Response
from crawlkit.log import LogConfig
from crawlkit.messages import FetchResult, PageDone
from crawlkit.parse.parser import ParserConfig, Router, build_spider
from crawlkit.parse.recrawl import RecrawlStage
from crawlkit.parse.redirect import redirect_request
from crawlkit.parse.retry import RetryPolicy
from crawlkit.parse.sitemaps import SitemapStage
from crawlkit.parse.stages import Page, StageSetup
from crawlkit.recrawl import RecrawlPolicy, Schedule, duration
from crawlkit.settings import load_settings
from crawlkit.spider import Spider
from crawlkit.stats import Stats
from crawlkit.tools.report import render_report
from crawlkit.urls import Fingerprinter

OLD_DATE = "Mon, 02 Nov 2026 10:00:00 GMT"
URL = "http://a.test/page"
HOUR, DAY = 3_600.0, 86_400.0


# ---------------------------------------------------------------- durations, schedule, policy

@pytest.mark.parametrize("value, seconds", [(90, 90.0), (1.5, 1.5), ("45", 45.0), ("15m", 900.0), ("12h", 43_200.0),
                                            ("7d", 604_800.0), ("2w", 1_209_600.0), (" 1.5h ", 5_400.0)])
def test_a_duration_is_seconds_or_a_number_with_a_unit(value: Any, seconds: float) -> None:
    assert duration("recrawl_after", value) == seconds


@pytest.mark.parametrize("value", ["soon", "7 days", "-1h", "0", 0, True, [1], "1y", 1e300, "5300w"])
def test_a_wrong_recrawl_after_is_a_one_line_error_naming_the_key_value_and_fix(value: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(cli={"recrawl_after": value})
    message = str(raised.value)
    assert "'recrawl_after' must be a duration" in message and "e.g. 12h, 7d" in message and "\n" not in message


def test_the_schedule_grows_an_unchanged_pages_interval_and_shrinks_a_changed_ones_within_bounds() -> None:
    schedule = Schedule(initial=DAY, least=HOUR, most=4 * DAY, grow=2.0, shrink=0.5)
    assert schedule.next(None, 200) == DAY  # a first visit
    assert schedule.next(DAY, 304) == 2 * DAY
    assert schedule.next(3 * DAY, 304) == 4 * DAY  # capped at refetch_max
    assert schedule.next(DAY, 200) == DAY / 2
    assert schedule.next(1.5 * HOUR, 200) == HOUR  # floored at refetch_min
    assert schedule.next(DAY, 503) == DAY and schedule.next(DAY, 0) == DAY  # an error says nothing of change


def settings(**values: Any) -> Any:
    return load_settings(cli=values)


def test_the_policy_begins_a_round_with_recrawl_or_once_recrawl_after_has_passed() -> None:
    now = 1_000_000.0
    assert RecrawlPolicy.of(settings(jobdir="j", recrawl=True)).starts(now, now) == "--recrawl"
    after = RecrawlPolicy.of(settings(jobdir="j", recrawl_after="1h"))
    assert after.starts(now - HOUR + 1, now) is None
    assert after.starts(now - HOUR, now) == "recrawl_after (3600s)"
    assert after.starts(None, now) is not None  # a crawl finished before finished_at was kept
    assert "the next recrawl is due at 1970-01-12 14:46:40 UTC" in after.not_started(now)
    plain = RecrawlPolicy.of(settings(jobdir="j"))
    assert plain.starts(0.0, now) is None and plain.schedule is None
    assert "--recrawl (or recrawl_after) revisits its pages" in plain.not_started(now)
    adaptive = RecrawlPolicy.of(settings(jobdir="j", refetch_interval="1d", refetch_min="2h"))
    assert adaptive.schedule == Schedule(DAY, 2 * HOUR, 30 * DAY, 1.5, 0.5)


@pytest.mark.parametrize("values, message", [
    ({"recrawl": True}, "recrawl: recrawling revisits the pages a job directory remembers; give --jobdir DIR"),
    ({"recrawl_after": "7d"}, "recrawl_after: recrawling revisits the pages a job directory remembers"),
    ({"recrawl": True, "frontier": "redis://127.0.0.1:1/0"},
     "recrawl: a shared crawl (frontier 'redis://127.0.0.1:1/0') cannot be recrawled"),
    ({"jobdir": "j", "refetch_min": "2d", "refetch_max": "1d"},
     "refetch_min (172800s) is more than refetch_max (86400s); make refetch_min the smaller"),
])
def test_recrawl_settings_that_cannot_work_are_a_one_line_error(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        RecrawlPolicy.of(settings(**values))
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


# ---------------------------------------------------------------- the journal's rounds

def pending(journal: JobDir) -> list[Request]:
    return [request for batch in journal.pending() for _, request in batch]


def test_a_round_makes_the_known_pages_pending_again_with_their_validators(tmp_path: Path) -> None:
    journal = JobDir(tmp_path)
    assert journal.begin("") is None
    pages = ["/etag", "/modified", "/none", "/gone", "/failed", "/dropped"]
    jobs = [job for job, _ in journal.add((n, Request("http://a.test" + path)) for n, path in enumerate(pages, 1))]
    journal.done(jobs[0], 200, ('"v1"', None))
    journal.done(jobs[1], 200, (None, OLD_DATE))
    journal.done(jobs[2], 200, None)
    journal.done(jobs[3], 410, None)
    journal.done(jobs[4], 0, ("bad\r\nX-Injected: 1", "x" * 5_000))  # no answer, and validators no server sends
    journal.done(jobs[5])  # dropped before it was fetched
    journal.commit(0, {"pages": 5})
    journal.close()

    unchanged = JobDir(tmp_path)  # no policy: a finished crawl stays finished
    assert unchanged.begin("") == (0, {"pages": 5}) and pending(unchanged) == []
    unchanged.close()

    again = JobDir(tmp_path, recrawl=RecrawlPolicy(True, None, None))
    assert again.begin("") == (0, {})  # a round's stats start from zero
    requests = {request.url.removeprefix("http://a.test"): request for request in pending(again)}
    assert sorted(requests) == ["/dropped", "/etag", "/failed", "/modified", "/none"]  # never the gone page
    assert dict(requests["/etag"].headers.items()) == {"If-None-Match": '"v1"'}
    assert dict(requests["/modified"].headers.items()) == {"If-Modified-Since": OLD_DATE}
    assert not requests["/none"].headers and requests["/none"].meta == {"revisit": True}
    assert requests["/dropped"].meta == {}  # never fetched: no revisit
    assert not requests["/failed"].headers and requests["/failed"].meta == {"revisit": True}
    # A 304 or a failed fetch that sends no validator keeps the stored ones; new content replaces them.
    etag_job = jobs[0]
    row = "SELECT status, etag FROM requests WHERE id = ?"
    again.done(etag_job, 304, None)
    assert again.db.execute(row, (etag_job,)).fetchone() == (304, '"v1"')
    again.done(etag_job, 0, None)
    assert again.db.execute(row, (etag_job,)).fetchone() == (0, '"v1"')
    again.done(etag_job, 200, None)
    assert again.db.execute(row, (etag_job,)).fetchone() == (200, None)
    again.close()


def test_a_round_asks_for_robots_txt_again_and_a_resume_does_not(tmp_path: Path) -> None:
    """A round may come days later (recrawl_after), when the site's rules may have changed; RFC 9309
    asks a crawler not to use a robots.txt for more than a day. A resume of a cut-short run keeps it."""
    journal = JobDir(tmp_path)
    journal.begin("")
    [(job, _)] = journal.add([(1, Request("http://a.test/"))])
    journal.save_robots("a.test", 200, b"User-agent: *\nDisallow: /private/\n")
    journal.commit(0, {"pages": 0})
    journal.close()

    resumed = JobDir(tmp_path, recrawl=RecrawlPolicy(True, None, None))  # a page still pending: a resume
    resumed.begin("")
    assert list(resumed.robots()) == [("a.test", 200, b"User-agent: *\nDisallow: /private/\n")]
    resumed.done(job, 200, None)
    resumed.commit(0, {"pages": 1})
    resumed.close()

    again = JobDir(tmp_path, recrawl=RecrawlPolicy(True, None, None))  # finished: a new round
    assert again.begin("") == (0, {})
    assert list(again.robots()) == []
    again.close()


def test_adaptive_refetch_keeps_an_interval_per_page_and_a_round_takes_the_due_ones(tmp_path: Path) -> None:
    policy = RecrawlPolicy(True, None, Schedule(DAY, HOUR, 30 * DAY, 2.0, 0.5))
    journal = JobDir(tmp_path, recrawl=policy)
    journal.begin("")
    jobs = [job for job, _ in journal.add([(1, Request("http://a.test/1")), (2, Request("http://a.test/2"))])]
    for job in jobs:
        journal.done(job, 200, ('"x"', None))
    rows = journal.db.execute("SELECT interval FROM requests ORDER BY id").fetchall()
    assert rows == [(DAY,), (DAY,)]
    journal.db.execute("UPDATE requests SET fetched = fetched - ? WHERE id = ?", (DAY, jobs[0]))  # a day ago
    journal.commit(0, {})
    journal.close()
    again = JobDir(tmp_path, recrawl=policy)
    again.begin("")
    assert [request.url for request in pending(again)] == ["http://a.test/1"]
    again.done(jobs[0], 304, None)
    assert again.db.execute("SELECT interval FROM requests WHERE id = ?", (jobs[0],)).fetchone() == (2 * DAY,)
    again.close()


def test_a_job_directory_written_before_recrawls_gains_the_columns_and_is_recrawled(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "crawl.sqlite")
    db.executescript("""
        CREATE TABLE requests (id INTEGER PRIMARY KEY, fp INTEGER, state INTEGER NOT NULL, request BLOB NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE robots (host TEXT PRIMARY KEY, status INTEGER NOT NULL, body BLOB NOT NULL);
    """)
    db.execute("INSERT INTO requests VALUES (1, 7, 1, ?)", (safepickle.dumps(Request(URL)),))
    db.commit()
    db.close()
    journal = JobDir(tmp_path, recrawl=RecrawlPolicy(True, None, None))
    assert journal.begin("") == (0, {})
    assert [request.url for request in pending(journal)] == [URL]  # fetched again, without validators to send
    journal.done(1, 200, ('"v2"', None))
    assert journal.db.execute("SELECT status, etag FROM requests").fetchall() == [(200, '"v2"')]
    journal.close()


def test_a_revisit_that_redirects_sends_its_target_without_its_validators() -> None:
    revisit = Request(URL, headers={"If-None-Match": '"v1"', "If-Modified-Since": OLD_DATE, "X-Mine": "1"},
                      meta={"revisit": True, "mine": 1})
    follow = redirect_request(revisit, "http://a.test/moved")
    assert dict(follow.headers.items()) == {"X-Mine": "1"} and follow.meta["mine"] == 1 and "revisit" not in follow.meta
    assert revisit.meta["revisit"] and revisit.headers["If-None-Match"] == '"v1"'  # the request fetched keeps them
    # A spider's own conditional request, no revisit, is left as it is.
    own = redirect_request(Request(URL, headers={"If-None-Match": '"x"'}), "http://a.test/moved")
    assert own.headers["If-None-Match"] == '"x"'


def test_a_round_leaves_the_pages_a_sitemap_dated_to_it_and_relists_those_changed(tmp_path: Path) -> None:
    counted: Counter[str] = Counter()
    policy = RecrawlPolicy(True, None, None)
    journal = JobDir(tmp_path, lambda key: counted.update([key]), policy)
    journal.begin("")
    assert not journal.recrawling
    urls = ["http://a.test/p1", "http://a.test/p2", "http://a.test/sitemap.xml", "http://a.test/", "http://a.test/p3"]
    # /p1 came from a sitemap; /p2 was found by a link first, then a sitemap listed it too; /p3 failed.
    requests = [Request(urls[0], meta={"sitemap_lastmod": 0.0}), Request(urls[1]), sitemap_request(urls[2]),
                Request(urls[3]), Request(urls[4], meta={"sitemap_lastmod": 0.0})]
    jobs = [job for job, _ in journal.add(enumerate(requests, 1))]
    for job, status in zip(jobs, (200, 200, 200, 200, 503)):
        journal.done(job, status, ('"v1"', None))
    assert journal.relist([(2, Request(urls[1], meta={"sitemap_lastmod": 0.0}))]) == []  # no round: nothing to do
    journal.close()

    journal = JobDir(tmp_path, lambda key: counted.update([key]), policy)
    journal.begin("")
    assert journal.recrawling and sorted(request.url for request in pending(journal)) == [urls[3], urls[4], urls[2]]
    now = time.time()
    entries = journal.relist([(1, Request(urls[0], meta={"sitemap_lastmod": now + 60})),  # changed since its fetch
                              (2, Request(urls[1], meta={"sitemap_lastmod": now - 60})),  # not
                              (9, Request("http://a.test/new", meta={"sitemap_lastmod": now}))])  # not known: new
    assert [(job, request.url, request.meta, request.headers.get("If-None-Match")) for job, request in entries] == [
        (jobs[0], urls[0], {"sitemap_lastmod": now + 60, "revisit": True}, '"v1"')]
    assert counted == {"sitemap_changed": 1, "sitemap_unchanged": 1}
    assert journal.relist([(1, Request(urls[0], meta={"sitemap_lastmod": now + 60}))]) == []  # pending already
    journal.close()
    # A round cut short here is resumed with the relisted page still to revisit.
    journal = JobDir(tmp_path, lambda key: counted.update([key]), RecrawlPolicy(False, None, None))
    journal.begin("")
    assert sorted((request.url, request.meta.get("revisit")) for request in pending(journal)) == [
        (urls[3], True), (urls[0], True), (urls[4], True), (urls[2], True)]
    journal.close()


def test_the_sitemap_stage_dates_its_page_requests_with_a_jobdir_only() -> None:
    body = (b"<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'><url><loc>http://a.test/p1</loc>"
            b"<lastmod>2026-11-02T10:00:00Z</lastmod></url><url><loc>http://a.test/p2</loc></url></urlset>")
    request = sitemap_request("http://a.test/sitemap.xml")
    made = []
    for values in ({"jobdir": "j"}, {}):
        config = ParserConfig.from_settings(load_settings(cli=values), None, {}, LogConfig())
        stage = SitemapStage(StageSetup(config, Spider(start_urls=[URL]), Fingerprinter(), RetryPolicy(0, 1.0, 1.0)))
        page = Page(FetchResult(1, request, request.url, status=200), PageDone(req_id=1, host="a.test"), Counter())
        assert stage.on_response(page, Response(request.url, 200, {}, body, request)) is None
        made.append([(candidate.url, candidate.meta) for candidate in page.candidates])
    stamp = datetime(2026, 11, 2, 10, tzinfo=timezone.utc).timestamp()
    assert made == [[("http://a.test/p1", {"sitemap_lastmod": stamp}), ("http://a.test/p2", {})],
                    [("http://a.test/p1", {}), ("http://a.test/p2", {})]]


# ---------------------------------------------------------------- the recrawl stage

def stage(**values: Any) -> RecrawlStage:
    config = ParserConfig.from_settings(load_settings(cli={"jobdir": "j", **values}), None, {}, LogConfig())
    return RecrawlStage(StageSetup(config, Spider(start_urls=[URL]), Fingerprinter(), RetryPolicy(0, 1.0, 1.0)))


def answer(status: int, revisit: bool, **headers: str) -> tuple[Page, Response]:
    request = Request(URL, meta={"revisit": True} if revisit else None)
    page = Page(FetchResult(1, request, URL, status=status), PageDone(req_id=1, host="a.test"), Counter())
    return page, Response(URL, status, {k.replace("_", "-"): v for k, v in headers.items()}, b"", request)


def test_the_recrawl_stage_sends_the_validators_and_ends_a_revisits_304() -> None:
    recrawl = stage()
    page, response = answer(200, False, ETag='"v1"', Last_Modified=OLD_DATE)
    assert recrawl.on_response(page, response) is response
    assert page.done.validators == ('"v1"', OLD_DATE) and not page.counts
    page, response = answer(200, False)
    assert recrawl.on_response(page, response) is response and page.done.validators is None
    page, response = answer(304, True, ETag='"v1"')
    assert recrawl.on_response(page, response) is None and page.counts == {"unchanged": 1}
    page, response = answer(410, True)
    assert recrawl.on_response(page, response) is response and page.counts == {"gone": 1}
    page, response = answer(404, False)  # a first visit's 404 is not a page that went
    assert recrawl.on_response(page, response) is response and not page.counts
    assert not stage(jobdir=None).active  # without a job directory it costs nothing per page


class Unchanged(Spider):
    name = "unchanged"

    def parse(self, response: Response) -> Iterable[dict[str, Any]]:
        yield {"status": response.status, "unchanged": response.meta.get("unchanged", False)}


def test_recrawl_callbacks_on_304_runs_the_callback_which_sees_meta_unchanged() -> None:
    result = FetchResult(1, Request(URL, meta={"revisit": True}), URL, status=304, headers=[("ETag", '"v1"')])
    for on_304, items in ((False, []), (True, [{"status": 304, "unchanged": True}])):
        values = {"jobdir": "j", "recrawl_callbacks_on_304": on_304}
        config = ParserConfig.from_settings(load_settings(cli=values), "test_recrawl:Unchanged", {}, LogConfig())
        router = Router(build_spider(config.spider, {}), config)
        done: PageDone = pickle.loads(router.handle(result))
        assert done.items == items and done.counts["unchanged"] == 1


def test_the_stats_file_and_the_report_list_the_gone_pages() -> None:
    stats = Stats()
    stats.incr("gone", 2)
    stats.went("http://a.test/old?a=<b>")
    stats.went("http://a.test/older")
    data = stats.full_dict()
    assert data["gone"] == ["http://a.test/old?a=<b>", "http://a.test/older"]
    page = lxml.html.fromstring(render_report(data))
    assert page.xpath("//ul[@id='gone']/li/text()") == data["gone"]
    assert "Gone since the last crawl" in page.xpath("string(//h2[contains(., 'Gone')])")
    assert "gone" not in Stats().full_dict()
    assert "recrawl: 0 unchanged (304), 2 gone (404/410)" in stats.summary()


# ---------------------------------------------------------------- through the CLI


class _Recording:
    """What a test site's server saw: ``seen``, appended under ``lock`` by its handler; ``requests`` takes
    what came since the last call, sorted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[Any] = []

    def requests(self) -> list[Any]:
        with self.lock:
            seen, self.seen = self.seen, []
        return sorted(seen)


class ChangingSite(_Recording):
    """Pages that change between runs (``round`` is bumped by the test), and what the server saw.

    ``/`` links to every page; ``/a`` never changes (ETag), ``/c`` never changes (Last-Modified
    only), ``/b`` changes every round and links to a page new in that round, ``/gone`` is 404 from
    round 2 on. A request whose validator matches the page's current one gets a 304.
    """

    def __init__(self) -> None:
        super().__init__()  # seen: (path, If-None-Match, If-Modified-Since, status)
        self.round = 1

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


def test_a_round_cut_short_is_resumed_before_any_new_round(crawlkit, tmp_path: Path) -> None:
    site = ChangingSite()
    with site.serve() as base:
        common = ["crawl", "--jobdir", str(tmp_path / "job"), "--no-robots", "--recrawl"]
        assert crawlkit(*common, seeds=[base + "/"]).returncode == 0
        first = site.requests()
        # A 304 is no page: max_pages 1 lets the round go on to the first page that answers 200 (/gone).
        cut = crawlkit(*common, "--max-pages", "1", seeds=[base + "/"])
        assert cut.returncode == 0 and "recrawl round 1 (--recrawl): 6 known pages to revisit" in cut.stderr
        assert "finished (max_pages reached)" in cut.stderr
        part = site.requests()
        assert [(path, status) for path, _, _, status in part] == [
            ("/", 304), ("/a", 304), ("/b", 304), ("/c", 304), ("/gone", 200)]
        rest = crawlkit(*common, "--max-pages", "10", seeds=[base + "/"])  # pages pending: this run resumes the round
        assert rest.returncode == 0 and "recrawl round" not in rest.stderr
        assert [path for path, *_ in site.requests()] == ["/new1"]
    assert [(path, inm, ims) for path, inm, ims, _ in part if inm or ims] == [
        ("/", '"/-1"', None), ("/a", '"/a-1"', None), ("/b", '"b-1"', None), ("/c", None, OLD_DATE)]
    assert len(first) == 6


class SitemapSite(_Recording):
    """``/sitemap.xml`` lists ``/p1``... with the ``lastmod`` of ``self.lastmod``; a page's ETag changes with it."""

    def __init__(self, lastmod: dict[str, str]) -> None:
        super().__init__()  # seen: (path, If-None-Match, status)
        self.lastmod = lastmod

    @contextmanager
    def serve(self) -> Iterator[str]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                base = f"http://{self.headers['Host']}"
                inm = self.headers.get("If-None-Match")
                status, etag = 200, f'"{self.path} {site.lastmod.get(self.path)}"'
                if self.path == "/sitemap.xml":
                    etag, body = "", "<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>" + "".join(
                        f"<url><loc>{base}{path}</loc><lastmod>{changed}</lastmod></url>"
                        for path, changed in site.lastmod.items()) + "</urlset>"
                elif self.path in site.lastmod or self.path == "/":
                    body = f"<title>{self.path}</title>"
                    status = 304 if inm == etag else 200
                else:
                    status, etag, body = 404, "", "not here"
                with site.lock:
                    site.seen.append((self.path, inm, status))
                data = b"" if status == 304 else body.encode()
                self.send_response(status)
                if etag:
                    self.send_header("ETag", etag)
                self.send_header("Content-Type", "application/xml" if self.path == "/sitemap.xml" else "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return None

        with serve_http(Handler, "127.0.0.42") as base:
            yield base


def test_a_recrawl_fetches_only_the_pages_the_sitemap_says_changed_since_their_last_fetch(
        crawlkit, tmp_path: Path) -> None:
    old = "2026-01-01"
    site = SitemapSite({"/p1": old, "/p2": old, "/p3": "2026-02-01T10:00:00+01:00", "/p4": old})
    job, stats = tmp_path / "job", tmp_path / "stats.json"
    # A 30-day refetch interval: after a day, no page is due by its interval; the sitemap always is.
    common = ["crawl", "--jobdir", str(job), "--no-robots", "--recrawl", "-s", "use_sitemaps=true",
              "-s", "refetch_interval=30d", "--stats", str(stats)]
    with site.serve() as base:
        first = crawlkit(*common, seeds=[base + "/"])
        assert first.returncode == 0, first.stderr
        assert [path for path, *_ in site.requests()] == ["/", "/p1", "/p2", "/p3", "/p4", "/sitemap.xml"]

        _age(job, DAY)
        # Since then /p2 and /p3 changed (by the sitemap), /p5 is new; /p1 and /p4 did not change.
        an_hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - HOUR))
        site.lastmod.update({"/p2": an_hour_ago, "/p3": an_hour_ago, "/p5": old})
        again = crawlkit(*common, seeds=[base + "/"])
        assert again.returncode == 0, again.stderr
        assert "4 left to their sitemaps' lastmod" in again.stderr
        assert site.requests() == [("/p2", f'"/p2 {old}"', 200), ("/p3", '"/p3 2026-02-01T10:00:00+01:00"', 200),
                                   ("/p5", None, 200), ("/sitemap.xml", None, 200)]
    counts = json.loads(stats.read_text())["counts"]
    assert (counts["sitemap_changed"], counts["sitemap_unchanged"]) == (2, 2)


# ---------------------------------------------------------------- revalidation batches, through the CLI


class ManyPages:
    """``/`` links to ``/p0``... ``/p{n-1}``, each with an ETag, over keep-alive HTTP/1.1; what the server saw.

    From round 2 ``/p3`` has changed (a new ETag, and a link to ``/fresh``) and ``/p5`` is gone (410).
    A request for ``hold`` with an If-None-Match waits, once, for ``release`` (``held`` says it came), so a
    test can act while a batch is on it. ``inflight`` is how many requests the server is answering.
    """

    def __init__(self, n: int) -> None:
        self.paths = ["/"] + [f"/p{i}" for i in range(n)]
        self.round = 1
        self.lock = threading.Lock()
        self.seen: list[list[Any]] = []  # path, If-None-Match, status (0 until answered), start, inflight
        self.inflight = 0
        self.hold: str | None = None
        self.held, self.release = threading.Event(), threading.Event()

    def page(self, path: str) -> tuple[int, str, str]:
        """(status, ETag, body) of ``path`` this round."""
        if path == "/":
            return 200, '"root"', "".join(f'<a href="{p}">{p}</a>' for p in self.paths[1:])
        if path == "/p3" and self.round > 1:
            return 200, '"p3-2"', '<title>p3 changed</title><a href="/fresh">fresh</a>'
        if path == "/p5" and self.round > 1:
            return 410, "", "gone"
        if path in self.paths:
            return 200, f'"{path}"', f"<title>{path}</title>"
        if path == "/fresh":
            return 200, "", "<title>fresh</title>"
        return 404, "", "not here"

    def requests(self) -> list[tuple[str, str | None, int, float, int]]:
        with self.lock:
            seen, self.seen = self.seen, []
        return [(path, inm, status, start, inflight) for path, inm, status, start, inflight in seen]

    @contextmanager
    def serve(self) -> Iterator[str]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                started = time.monotonic()
                inm = self.headers.get("If-None-Match")
                with site.lock:
                    site.inflight += 1
                    record = [self.path, inm, 0, started, site.inflight]
                    site.seen.append(record)
                try:
                    if self.path == site.hold and inm and not site.held.is_set():
                        site.held.set()
                        site.release.wait(60)
                    status, etag, body = site.page(self.path)
                    if inm and inm == etag:
                        status, body = 304, ""
                    record[2] = status
                    data = body.encode()
                    self.send_response(status)
                    if etag:
                        self.send_header("ETag", etag)
                    if status != 304:
                        self.send_header("Content-Type", "text/html")
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client was killed
                    self.close_connection = True
                finally:
                    with site.lock:
                        site.inflight -= 1

            def log_message(self, *args: object) -> None:
                return None

        with serve_http(Handler, "127.0.0.43") as base:
            yield base


def test_a_recrawl_revalidates_each_page_once_within_the_hosts_cap_and_delay(crawlkit, tmp_path: Path) -> None:
    """Revisits go out in batches (engine and fetcher side: ``Dispatch``); as the server sees them, every
    known page is asked for once with its ETag, at most ``per_host`` at once and ``delay`` apart; the
    changed page is parsed and its new link followed, the gone one reported."""
    site = ManyPages(60)
    job, stats = tmp_path / "job", tmp_path / "stats.json"
    delay = 0.04
    common = ["crawl", "--jobdir", str(job), "--no-robots", "--per-host", "2", "-s", f"delay={delay}",
              "--stats", str(stats)]
    with site.serve() as base:
        first = crawlkit(*common, seeds=[base + "/"])
        assert first.returncode == 0, first.stderr
        assert sorted(path for path, *_ in site.requests()) == sorted(site.paths)
        written = len(first.items())
        site.round = 2
        again = crawlkit(*common, "--recrawl", seeds=[base + "/"])
        assert again.returncode == 0, again.stderr
        seen = site.requests()
        report = json.loads(stats.read_text())
        items = again.items()[written:]
        third = crawlkit(*common, "--recrawl", seeds=[base + "/"])
        assert third.returncode == 0, third.stderr
        asked = {path: inm for path, inm, *_ in site.requests()}
    etags = {path: site.page(path)[1] for path in site.paths}
    site.round = 1
    first_etags = {path: site.page(path)[1] for path in site.paths}
    assert sorted((path, inm) for path, inm, *_ in seen) == sorted(
        [(path, first_etags[path]) for path in site.paths] + [("/fresh", None)])
    statuses = {path: status for path, _, status, _, _ in seen}
    assert statuses["/p3"] == 200 and statuses["/p5"] == 410 and statuses["/fresh"] == 200
    assert {statuses[p] for p in site.paths if p not in ("/p3", "/p5")} == {304}
    assert max(inflight for *_, inflight in seen) <= 2
    starts = sorted(start for _, _, _, start, _ in seen)
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.75 * delay
    counts = report["counts"]
    assert counts["unchanged"] == counts["status_304"] == len(site.paths) - 2
    assert report["gone"] == [base + "/p5"]
    assert sorted((item["url"].removeprefix(base), item["status"]) for item in items) == [
        ("/fresh", 200), ("/p3", 200), ("/p5", 410)]
    # The next round revisits the changed page with its new ETag, and no more the gone one.
    assert asked["/p3"] == etags["/p3"] == '"p3-2"' and "/p5" not in asked and asked["/p4"] == '"/p4"'


def test_a_fetcher_killed_mid_batch_loses_no_revisit(crawlkit, tmp_path: Path) -> None:
    """The only fetcher is killed while a batch is on ``/p20``: the batch's entries not reported come back,
    and every known page is answered once or twice, none lost."""
    from types import SimpleNamespace

    from support import wait_for
    from test_durability import pids, start

    site = ManyPages(60)
    common = ["--jobdir", str(tmp_path / "job"), "--no-robots", "--per-host", "2", "--workers", "1"]
    with site.serve() as base:
        seeds = SimpleNamespace(seeds=lambda: [base + "/"])
        assert crawlkit("crawl", *common, seeds=[base + "/"]).returncode == 0
        site.requests()
        site.hold = "/p20"
        with start(tmp_path, seeds, *common, "--recrawl") as (proc, _, log, _):  # type: ignore[arg-type]
            wait_for(lambda: site.held.is_set() and bool(pids(log, r"fetcher process (\d+) reads")), 60, "/p20 held")
            os.kill(pids(log, r"fetcher process (\d+) reads")[0], signal.SIGKILL)
            site.release.set()
            _, stderr = proc.communicate(timeout=120)
        seen = site.requests()
    assert proc.returncode == 0, stderr
    assert "fetcher_died 1" in stderr
    asked = Counter(path for path, *_ in seen)
    assert set(asked) == set(site.paths) and max(asked.values()) <= 2
    assert asked["/p20"] == 2


def test_an_interrupted_recrawl_resumes_its_round(crawlkit, tmp_path: Path) -> None:
    """A recrawl SIGKILLed while a batch is on ``/p20`` is resumed by the next run (no new round): between the
    two runs every known page is revisited, none more than twice."""
    from types import SimpleNamespace

    from support import wait_for
    from test_durability import start

    site = ManyPages(60)
    job = tmp_path / "job"
    common = ["crawl", "--jobdir", str(job), "--no-robots", "--per-host", "2"]
    with site.serve() as base:
        assert crawlkit(*common, seeds=[base + "/"]).returncode == 0
        site.requests()
        site.hold = "/p20"
        seeds = SimpleNamespace(seeds=lambda: [base + "/"])
        with start(tmp_path, seeds, *common[1:], "--recrawl") as (proc, _, _, _):  # type: ignore[arg-type]
            wait_for(site.held.is_set, 60, "/p20 held")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        site.release.set()
        cut = [path for path, _, status, _, _ in site.requests() if status == 304 and path != site.hold]
        rest = crawlkit(*common, seeds=[base + "/"])
        assert rest.returncode == 0, rest.stderr
        assert "recrawl round" not in rest.stderr
        resumed = site.requests()
    assert set(cut) | {path for path, *_ in resumed} == set(site.paths)
    assert max(Counter(cut + [path for path, *_ in resumed]).values()) <= 2
    assert ("/p20", '"/p20"', 304) in [(path, inm, status) for path, inm, status, _, _ in resumed]
