"""What the one-page tools (``crawlkit fetch``, ``parse``, ``shell``) choose to render, without a browser or a server.

``fetch_page`` is driven with its exchange (``fetch``) and its browser (``PageBrowser``) replaced
by recorders that answer from a table, so each hop's way (plain or rendered) is seen; the
choice's parts (``forced``, ``start_choice``, ``render_after_check``) are called directly.
End-to-end runs against a script-built site are in ``test_render_tools.py``.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from crawlkit import Request, Response, Spider
from crawlkit.messages import FetchResult, RenderResult
from crawlkit.render.choose import AUTO, asked
from crawlkit.settings import Settings, load_settings
from crawlkit.tools import debugging, rendering
from crawlkit.tools.debugging import fetch_page, forced, render_after_check, start_choice, status_line

SHELL = b'<html><body><div id="app"></div><script>app.innerHTML = "<h1 id=t>x</h1>"</script></body></html>'


def settings(**cli: Any) -> Settings:
    return load_settings(None, None, {"robots": False, **cli})


class Way:
    """The exchanges of one ``fetch_page``, by way: answers from ``pages`` (URL -> (status, Location))."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pages: dict[str, tuple[int, str | None]]) -> None:
        self.pages = pages
        self.hops: list[tuple[str, str]] = []  # (way, URL)
        self.closed = 0
        way = self

        class Browser:
            def __init__(self, _: Any) -> None:
                pass

            def render(self, request: Request, robots: Any = None) -> RenderResult:
                return way.answer("rendered", request, RenderResult)  # type: ignore[return-value]

            def close(self) -> None:
                way.closed += 1

        monkeypatch.setattr(debugging, "PageBrowser", Browser)
        monkeypatch.setattr(debugging, "fetch", lambda _session, request, _config: self.answer("plain", request))

    def answer(self, how: str, request: Request, kind: type[FetchResult] = FetchResult) -> FetchResult:
        self.hops.append((how, request.url))
        status, location = self.pages[request.url]
        headers = [("Content-Type", "text/html")] + ([("Location", location)] if location else [])
        return kind(0, request, request.url, status=status, headers=headers, body=SHELL)


def test_each_hop_goes_the_way_the_crawl_would_send_it(monkeypatch: pytest.MonkeyPatch) -> None:
    way = Way(monkeypatch, {"http://a.test/": (301, "http://b.test/"), "http://b.test/": (302, "http://a.test/x"),
                            "http://a.test/x": (200, None)})
    result = fetch_page("http://a.test/", settings(hosts={"b.test": {"render": True}}))
    assert way.hops == [("plain", "http://a.test/"), ("rendered", "http://b.test/"), ("plain", "http://a.test/x")]
    assert result.url == "http://a.test/x" and way.closed == 1  # one browser for the call, closed at its end


def test_the_render_setting_renders_every_hop_and_no_render_none(monkeypatch: pytest.MonkeyPatch) -> None:
    way = Way(monkeypatch, {"http://a.test/": (302, "/y"), "http://a.test/y": (200, None)})
    assert isinstance(fetch_page("http://a.test/", settings(render=True)), RenderResult)
    assert way.hops == [("rendered", "http://a.test/"), ("rendered", "http://a.test/y")]
    way.hops.clear()
    fetch_page("http://a.test/", settings(render=True), render=False)
    assert way.hops == [("plain", "http://a.test/"), ("plain", "http://a.test/y")]
    assert way.closed == 1  # the plain call started no browser


def test_the_requests_own_choice_wins_and_render_forces_it(monkeypatch: pytest.MonkeyPatch) -> None:
    way = Way(monkeypatch, {"http://a.test/": (200, None)})
    fetch_page("http://a.test/", settings(), meta={"playwright": True})
    fetch_page(Request("http://a.test/", render=False), settings(render=True))
    fetch_page(Request("http://a.test/", render=False), settings(), render=True)
    assert [how for how, _ in way.hops] == ["rendered", "plain", "rendered"]


def test_forced_sets_the_requests_own_choice_and_keeps_its_render_options() -> None:
    options = Request("http://a.test/", render={"scroll": 2})
    assert forced(options, True).meta["render"] == {"scroll": 2}
    assert asked(forced(options, False)) is False
    assert asked(forced(Request("http://a.test/", meta={"playwright": True}), False)) is False
    assert asked(forced(Request("http://a.test/"), True)) is True


class Starts(Spider):
    name = "starts"

    async def start(self) -> AsyncIterator[Any]:
        yield {"an": "item"}
        yield Request("http://a.test/plain")
        yield Request("http://a.test/app#top", render={"wait_for": "#app h1"})


def test_a_url_of_the_spiders_start_requests_takes_their_render_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same page by its fingerprint (the fragment does not count); its choice only, not its callback.
    request = start_choice(Request("http://a.test/app", callback="parse_app"), Starts())
    assert request.meta == {"render": {"wait_for": "#app h1"}} and request.callback == "parse_app"
    assert start_choice(Request("http://a.test/plain"), Starts()).meta == {}
    way = Way(monkeypatch, {"http://a.test/app": (200, None)})
    fetch_page("http://a.test/app", settings(), spider=Starts())
    fetch_page("http://a.test/app", settings(), spider=Starts(), meta={"render": False})  # --meta says otherwise
    fetch_page(Request("http://a.test/app"), settings(), spider=Starts())  # shell's fetch(Request): as it is
    assert [how for how, _ in way.hops] == ["rendered", "plain", "plain"]


class Broken(Spider):
    name = "broken"

    async def start(self) -> AsyncIterator[Any]:
        raise OSError("seeds.txt is not there")
        yield


def test_a_start_that_fails_leaves_the_page_to_the_other_rules(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "crawlkit.debugging"):
        assert start_choice(Request("http://a.test/"), Broken()).meta == {}
    assert "the spider's start requests could not be read (OSError: seeds.txt is not there)" in caplog.text


class Needs(Spider):
    name = "needs"

    def needs_render(self, response: Response) -> bool:
        return b"<script" in response.body


def plain(body: bytes = SHELL, status: int = 200, kind: str = "text/html", **meta: Any) -> FetchResult:
    request = Request("http://a.test/", meta=meta)
    return FetchResult(0, request, request.url, status=status, headers=[("Content-Type", kind)], body=body)


def test_a_plain_page_failing_the_adaptive_check_is_to_be_rendered_as_the_crawl_would() -> None:
    when = settings(render_when={"missing": "#app h1"})
    again = render_after_check(plain(), None, when)
    assert again is not None and asked(again) is True and again.meta[AUTO] and again.url == "http://a.test/"
    assert render_after_check(plain(b'<div id="app"><h1>x</h1></div>'), None, when) is None  # passes
    assert render_after_check(plain(kind="application/json"), None, when) is None  # not HTML
    assert render_after_check(plain(status=404), None, when) is None
    assert render_after_check(plain(render=False), None, when) is None  # the request chose
    rendered = RenderResult(0, Request("http://a.test/"), "http://a.test/", 200, body=SHELL)
    assert render_after_check(rendered, None, when) is None
    assert render_after_check(plain(), None, settings()) is None  # no check set
    assert render_after_check(plain(), Needs(), settings()) is not None  # the spider's needs_render


def test_the_status_line_says_whether_and_why_a_page_was_rendered() -> None:
    request = Request("http://a.test/")
    assert status_line(FetchResult(0, request, request.url, 200, body=b"abc")) == "200 http://a.test/ (0 ms, 3 bytes)"
    assert status_line(RenderResult(0, request, request.url, 200)) == "200 http://a.test/ (rendered, 0 ms, 0 bytes)"
    auto = Request("http://a.test/", meta={AUTO: True})
    assert status_line(RenderResult(0, auto, auto.url, 200)).startswith(
        "200 http://a.test/ (rendered: the plain page failed the adaptive check, ")


def test_the_one_page_tools_import_no_playwright_until_a_page_is_rendered() -> None:
    code = ("import sys, crawlkit.cli, crawlkit.tools.debugging, crawlkit.tools.shell; "
            "print(sorted(m for m in sys.modules if m.startswith('playwright')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


class _StuckBrowser:
    """A crawlkit Browser whose Chromium never answers its close, and a request of its page still waiting."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.waiting = loop.create_task(asyncio.Event().wait())  # a route handler of a frozen page

    async def close(self) -> None:
        await asyncio.Event().wait()


class _Playwright:
    def __init__(self) -> None:
        self.stopped = False

    async def stop(self) -> None:  # which kills the browsers it started
        self.stopped = True


def test_a_tools_browser_that_does_not_close_is_left_to_playwrights_stop_and_its_loop_ends_clean(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rendering, "CLOSE_WAIT", 0.0)
    tool = rendering.PageBrowser(settings())
    loop = tool.loop = asyncio.new_event_loop()
    browser = _StuckBrowser(loop)
    playwright = _Playwright()
    tool.browser, tool.playwright = browser, playwright  # type: ignore[assignment]
    tool.close()
    assert playwright.stopped and browser.waiting.cancelled() and loop.is_closed()
