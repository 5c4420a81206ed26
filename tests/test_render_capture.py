"""A rendered page's network responses: captured from Chromium as the server sent them, and written to a WARC.

No crawl engine: a page of a loopback site loads a script, a fetch() of JSON (and a POST), an
image, a gzip-encoded stylesheet and a redirect; the captured FetchResults are compared with the
site's own log, then written through the WARC stage as a RenderResult.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from browser import Answer, Chromium, Exchange, chromium, fixed, site
from support import warc_records

from crawlkit.extensions.warc import prepare_warc_dir
from crawlkit.http import Request, Response
from crawlkit.log import LogConfig
from crawlkit.messages import FetchResult, PageDone, RenderResult
from crawlkit.parse.archive import WarcStage
from crawlkit.parse.parser import ParserConfig
from crawlkit.parse.retry import RetryPolicy
from crawlkit.parse.stages import Page, StageSetup
from crawlkit.render.capture import BODY_WAIT, NetworkCapture
from crawlkit.settings import load_settings
from crawlkit.spider import Spider
from crawlkit.urls import Fingerprinter

WARCIO = str(Path(sys.executable).with_name("warcio"))
CSS = b"body { color: #123456; }\n" * 200
PACKED_CSS = gzip.compress(CSS)
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + b"\x1f\x15\xc4\x89" + bytes.fromhex(
    "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")
APP = (b"fetch('/data.json').then(r => r.json()).then(d => { document.getElementById('out').textContent = d.word; })"
       b".then(() => fetch('/echo', {method: 'POST', body: 'q=1'})).then(() => fetch('/moved'))"
       b".then(r => r.text()).then(t => { document.title = t; });")


def echo(query: str, received: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    return 200, [("Content-Type", "text/plain"), ("Content-Length", str(len(received)))], received


ROUTES: dict[str, Answer] = {
    # (The data: icon keeps Chromium from asking for /favicon.ico, a request of the browser's, not the page's.)
    "/page": fixed("text/html", b"<html><head><link rel=icon href='data:,'><link rel=stylesheet href=/style.css>"
                                b"<script src=/app.js></script></head>"
                                b"<body><p id=out></p><img src=/logo.png></body></html>",
                   ("Set-Cookie", "a=1"), ("X-Odd-CASE", "kept"), ("Set-Cookie", "b=2")),
    "/app.js": fixed("text/javascript", APP),
    "/data.json": fixed("application/json", b'{"word": "fetched"}'),
    "/echo": echo,
    "/logo.png": fixed("image/png", PNG),
    "/style.css": fixed("text/css", PACKED_CSS, ("Content-Encoding", "gzip")),
    "/moved": lambda query, received: (302, [("Location", "/target"), ("Content-Length", "0")], b""),
    "/target": fixed("text/plain", b"redirected"),
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with chromium() as launched:
        yield launched


def capture(browser: Chromium, url: str) -> tuple[list[FetchResult], str]:
    """The page's captured responses once its network is idle, and its DOM."""
    async def go() -> tuple[list[FetchResult], str]:
        async with browser.page() as page:
            captured = NetworkCapture(page)
            await page.goto(url, wait_until="networkidle")
            return await captured.finish(), await page.content()

    return browser.run(go())


@pytest.fixture(scope="module")
def captured(browser: Chromium) -> Iterator[tuple[list[FetchResult], str, list[Exchange]]]:
    with site(ROUTES, "127.0.0.7") as (base, seen):
        resources, dom = capture(browser, f"{base}/page")
        yield resources, dom, seen


def test_every_response_the_server_sent_is_captured_in_order(
        captured: tuple[list[FetchResult], str, list[Exchange]]) -> None:
    resources, dom, seen = captured
    assert '<p id="out">fetched</p>' in dom and "<title>redirected</title>" in dom  # the scripts ran
    paths = [urlsplit(resource.url).path for resource in resources]
    assert Counter(paths) == Counter(exchange.target for exchange in seen)
    assert paths[0] == "/page"  # the document first; the others as they arrived
    assert paths.index("/data.json") < paths.index("/echo") < paths.index("/moved") < paths.index("/target")


def by_name(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(headers, key=lambda header: header[0])  # a stable sort: repeated headers keep their order


def test_each_capture_holds_what_the_server_sent_and_received(
        captured: tuple[list[FetchResult], str, list[Exchange]]) -> None:
    resources, _, seen = captured
    by_path = {urlsplit(r.url).path: r for r in resources}
    for exchange in seen:
        resource = by_path[exchange.target]
        assert resource.status == exchange.status and resource.peer == "127.0.0.7"
        assert resource.status_line.startswith(f"HTTP/1.1 {exchange.status} ")
        assert resource.request.method == exchange.method and resource.request.body == exchange.body
        sent_agent = dict(exchange.headers)["User-Agent"]
        assert ("User-Agent", sent_agent) in resource.request_headers
        assert resource.elapsed >= 0
        if exchange.target == "/style.css":  # decoded by the browser: the headers say so
            assert resource.body == CSS
            assert by_name(resource.headers) == by_name([
                ("Content-Type", "text/css"), ("X-Crawlkit-Orig-Content-Length", str(len(PACKED_CSS))),
                ("X-Crawlkit-Orig-Content-Encoding", "gzip"), ("Content-Length", str(len(CSS)))])
        else:  # as sent: the names' case, repeats in their order (Chromium lists the names sorted)
            assert resource.body == exchange.sent_body
            assert by_name(resource.headers) == by_name(exchange.sent_headers)


def test_the_caps_count_what_they_leave_out(browser: Chromium) -> None:
    async def go() -> tuple[list[FetchResult], int, list[FetchResult], int]:
        async with browser.page() as page:
            few = NetworkCapture(page, max_resources=2)
            small = NetworkCapture(page, max_bytes=len(APP) + 500)
            await page.goto(f"{base}/page", wait_until="networkidle")
            return await few.finish(), few.skipped, await small.finish(), small.skipped

    with site(ROUTES) as (base, seen):
        few, few_skipped, small, small_skipped = browser.run(go())
        assert len(few) == 2 and few_skipped == len(seen) - 2
        assert sum(len(r.body) for r in small) <= len(APP) + 500 and small_skipped == len(seen) - len(small)
        assert any(r.url.endswith("/app.js") for r in small) and not any(r.url.endswith("/style.css") for r in small)


def test_a_response_still_loading_is_left_out_after_a_bounded_wait(browser: Chromium) -> None:
    routes: dict[str, Answer] = {
        "/page": fixed("text/html", b"<link rel=icon href='data:,'><script>fetch('/endless')</script>"),
        "/endless": lambda query, received: (200, [("Content-Type", "text/plain"), ("Content-Length", "100000")],
                                             b"the first of 100000 bytes"),
    }

    async def go() -> tuple[list[FetchResult], int, float]:
        async with browser.page() as page:
            captured = NetworkCapture(page)
            async with page.expect_response(f"{base}/endless"):
                await page.goto(f"{base}/page")
            start = time.monotonic()
            resources = await captured.finish()
            return resources, captured.skipped, time.monotonic() - start

    with site(routes, held="/endless") as (base, seen):
        resources, skipped, took = browser.run(go())
    assert [urlsplit(r.url).path for r in resources] == ["/page"] and skipped == 1
    assert BODY_WAIT <= took < BODY_WAIT + 5  # a wide margin for a loaded machine, far below the 60 s hold


def test_the_warc_stage_writes_a_rendered_pages_responses_and_warcio_checks_them(
        captured: tuple[list[FetchResult], str, list[Exchange]], tmp_path: Path) -> None:
    resources, dom, _ = captured
    document = resources[0]
    rendered = RenderResult(
        req_id=1, request=document.request, url=document.url, status=200, status_line=document.status_line,
        headers=document.headers, request_headers=document.request_headers, body=dom.encode(), resources=resources,
    )
    warc = tmp_path / "warc"
    prepare_warc_dir(str(warc), True, [])
    config = ParserConfig.from_settings(load_settings(cli={"warc": str(warc)}), None, {}, LogConfig())
    stage = WarcStage(StageSetup(config, Spider(start_urls=[document.url]), Fingerprinter(), RetryPolicy(0, 1, 1)))
    for _ in range(2):  # the second time every payload is stored already
        page = Page(rendered, PageDone(req_id=1, host="127.0.0.7"), Counter())
        assert stage.on_response(page, Response(document.url, 200, {}, dom.encode(), Request(document.url)))
        assert not page.counts
    stage.close()
    files = sorted(str(p) for p in warc.glob("*.warc.gz"))
    check = subprocess.run([WARCIO, "check", "-v", *files], capture_output=True, text=True, timeout=120)
    assert files and check.returncode == 0, check.stdout + check.stderr
    records = warc_records(warc)
    answers = [(r.rec_headers.get_header("WARC-Target-URI"), r.rec_type) for r in records
               if r.rec_type in ("response", "revisit")]
    urls = [r.url for r in resources]
    revisited = [r.url for r in resources if r.body and 200 <= r.status < 300]
    assert answers == [(url, "response") for url in urls] + [
        (url, "revisit" if url in revisited else "response") for url in urls]
    assert len([r for r in records if r.rec_type == "request"]) == 2 * len(resources)
    stored = {r.rec_headers.get_header("WARC-Target-URI"): r for r in records if r.rec_type == "response"}
    css = stored[next(url for url in urls if url.endswith("/style.css"))]
    assert css.stored == CSS and css.http_headers.get_header("Content-Encoding") is None
    assert css.rec_headers.get_header("WARC-Truncated") is None
    assert all(r.stored != dom.encode() for r in stored.values())  # the DOM is no network response
    post = stored[next(url for url in urls if url.endswith("/echo"))]
    assert post.stored == b"q=1"
    assert [r.stored for r in records if r.rec_type == "request"
            and r.rec_headers.get_header("WARC-Target-URI") == post.rec_headers.get_header("WARC-Target-URI")] == [
        b"q=1", b"q=1"]
