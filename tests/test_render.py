"""Choosing what to render, without a browser or a process: the choice, its settings, the adaptive check, dispatch.

Objects are built directly (requests, responses, pages, a Dispatch on plain queues), as Scrapy's
middleware tests do; the crawls with a real browser are in test_render_crawl.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import pickle
import queue
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from crawlkit import Request, Response, safepickle
from crawlkit.backends.local.backend import LocalBackend
from crawlkit.backends.local.jobdir import NullJournal
from crawlkit.core.dispatch import Dispatch
from crawlkit.errors import ConfigError, FetchErrorKind
from crawlkit.extensions.robots import RobotsGate, RobotsRules
from crawlkit.extensions.sitemaps import SPIDER_SITEMAP_CALLBACK
from crawlkit.fetch.channels import FetchChannels
from crawlkit.log import LogConfig
from crawlkit.messages import FetchResult, FetchTask, PageDone, RenderTask
from crawlkit.parse.stages import Page, StageSetup
from crawlkit.render import pool
from crawlkit.render.choose import AUTO, RenderCheck, RenderChoice, options_for
from crawlkit.settings import check_as, load_settings
from crawlkit.sites import SiteRules, check_hosts
from crawlkit.spider import Spider
from crawlkit.stats import Stats
from crawlkit.tools.report import render_report
from tests.test_dispatch import FakeLimiter, sent

# ---------------------------------------------------------------- the choice, engine side


def choice(crawl: bool | dict[str, Any] = False, hosts: dict[str, Any] | None = None) -> RenderChoice:
    return RenderChoice(crawl, SiteRules(check_hosts(hosts or {})))


def test_a_request_asks_for_itself_before_any_rule() -> None:
    rules = choice(crawl=True, hosts={"a.test": {"render": True}})
    assert rules.wants(Request("http://a.test/", render=True), "a.test")
    assert not rules.wants(Request("http://a.test/", render=False), "a.test")
    assert rules.wants(Request("http://b.test/", render={"wait_until": "networkidle"}), "b.test")
    assert choice().wants(Request("http://b.test/", meta={"playwright": True}), "b.test")  # scrapy-playwright's
    assert not choice(crawl=True).wants(Request("http://b.test/", meta={"playwright": False}), "b.test")


def test_a_host_rule_decides_for_its_host_exact_before_glob_then_the_crawl_setting() -> None:
    rules = choice(crawl=False, hosts={"*.js.test": {"render": True}, "plain.js.test": {"render": False},
                                       "other.test": {"per_host": 2}})
    assert rules.wants(Request("http://a.js.test/"), "a.js.test")
    assert not rules.wants(Request("http://plain.js.test/"), "plain.js.test")
    assert not rules.wants(Request("http://other.test/"), "other.test")
    everything = choice(crawl=True, hosts={"plain.test": {"render": False}})
    assert everything.wants(Request("http://any.test/"), "any.test")
    assert not everything.wants(Request("http://plain.test/"), "plain.test")
    assert not choice().wants(Request("http://any.test/"), "any.test")


def test_a_spiders_sitemap_is_never_rendered_by_the_rules() -> None:
    assert not choice(crawl=True).wants(Request("http://a.test/sitemap.xml", callback=SPIDER_SITEMAP_CALLBACK),
                                        "a.test")


def test_a_host_whose_plain_page_failed_the_check_goes_to_the_browser_from_then_on() -> None:
    rules = choice()
    assert not rules.wants(Request("http://a.test/2"), "a.test")
    assert rules.wants(Request("http://a.test/1", meta={"render": True, AUTO: True}), "a.test")
    assert rules.wants(Request("http://a.test/2"), "a.test")
    assert not rules.wants(Request("http://a.test/3", render=False), "a.test")  # a request's own word still wins
    assert not rules.wants(Request("http://b.test/1"), "b.test")


def test_by_settings_says_whether_a_browser_must_be_there_at_the_start() -> None:
    assert choice(crawl=True).by_settings
    assert choice(hosts={"a.test": {"render": {"wait_until": "load"}}}).by_settings
    assert not choice(hosts={"a.test": {"render": False}}).by_settings
    assert not choice().by_settings


def test_render_options_come_from_the_request_then_its_host_rule_then_the_crawl() -> None:
    sites = SiteRules(check_hosts({"a.test": {"render": {"wait_until": "networkidle"}}}))
    crawl = {"wait_until": "domcontentloaded"}
    assert options_for(Request("http://a.test/", render={"wait_until": "load"}), sites, crawl) == {
        "wait_until": "load"}
    assert options_for(Request("http://a.test/", render=True), sites, crawl) == {"wait_until": "networkidle"}
    assert options_for(Request("http://b.test/", render=True), sites, crawl) == crawl
    assert options_for(Request("http://b.test/", render=True), None, True) == {}
    with pytest.raises(ValueError, match="'render' has no action 'scroll_to'; use wait_until"):
        options_for(Request("http://b.test/", meta={"render": {"scroll_to": 1}}), None, True)


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(("key", "value", "message"), [
    ("render", 3, "'render' must be true, false or a map of page actions, got 3"),
    ("render", {"wait_until": "never"}, "'render' wait_until is 'never'; use one of load, domcontentloaded"),
    ("render_when", {"missing": "a[["}, "'render_when': 'missing' is not a valid CSS selector"),
    ("render_when", {"min_text": -1}, "'render_when': 'min_text' must be a number of characters"),
    ("render_when", {"selector": "a"}, "'render_when': unknown key 'selector'; it may set missing, min_text"),
    ("render_block", ["image", "document"], "'render_block': 'document' is not a resource type"),
])
def test_render_settings_are_checked_in_one_line_naming_the_key(key: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("[", r"\[").replace("(", r"\(")):
        check_as(key, value)
    with pytest.raises(ConfigError, match=key):
        load_settings(cli={key: value})


def test_render_settings_normalise_to_plain_data() -> None:
    assert check_as("render", True) is True
    assert check_as("render", {"wait_until": "load"}) == {"wait_until": "load"}
    assert check_as("render_when", {"missing": "#app a", "min_text": 200}) == {"missing": "#app a", "min_text": 200}
    assert check_as("render_block", ["image", "font"]) == ("image", "font")
    assert check_hosts({"A.test": {"render": True}}) == {"a.test": {"render": True}}
    with pytest.raises(ValueError, match="'hosts' → 'a.test': 'render' must be true, false or a map of page actions"):
        check_hosts({"a.test": {"render": "yes"}})


def test_request_render_is_kept_in_meta_and_checked() -> None:
    assert Request("http://a.test/", render=True).meta == {"render": True}
    assert Request("http://a.test/").meta == {}
    assert Request("http://a.test/", render={"wait_until": "networkidle"}).meta["render"] == {
        "wait_until": "networkidle"}
    with pytest.raises(ValueError, match="'render' wait_until is 'soon'; use one of"):
        Request("http://a.test/", render={"wait_until": "soon"})


def test_render_options_survive_the_jobdir_and_redis_as_plain_data() -> None:
    """Both keep requests as ``safepickle`` pickles, which build plain data only."""
    for request in (Request("http://a.test/", render={"wait_until": "networkidle"}),
                    Request("http://a.test/", meta={"playwright": True, AUTO: True})):
        back = safepickle.load_request(safepickle.dumps(request))
        assert back.meta == request.meta
        assert choice().wants(back, "a.test")


def test_without_playwright_or_a_browser_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"^rendering pages needs Playwright, .*: pip install 'crawlkit\[render\]'$"):
        pool.find_browser(None)
    monkeypatch.undo()
    monkeypatch.setattr(pool.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(pool.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="install chromium .* or set render_executable$"):
        pool.find_browser(None)
    with pytest.raises(ConfigError, match="^render_executable '/no/chrome' is not an executable file"):
        pool.find_browser("/no/chrome")


# ---------------------------------------------------------------- the adaptive check, parser side


class Checking(Spider):
    name = "checking"


class Judging(Spider):
    name = "judging"

    def needs_render(self, response: Response) -> bool:
        return "loading..." in response.text


def check(when: dict[str, Any], spider: Spider | None = None) -> RenderCheck:
    settings = load_settings(cli={"render_when": when})
    config: Any = type("Config", (), {"settings": settings})()
    return RenderCheck(StageSetup(config, spider or Checking(), None, None))  # type: ignore[arg-type]


def run(stage: RenderCheck, body: str, request: Request | None = None, status: int = 200,
        kind: str = "text/html") -> tuple[Response | None, Page]:
    request = request or Request("http://a.test/page")
    page = Page(FetchResult(1, request, request.url, status), PageDone(1, "a.test"), Counter())
    response = Response(request.url, status, {"Content-Type": kind}, body, request)
    return stage.on_response(page, response), page


SHELL = "<html><body><div id=app></div><script>render()</script></body></html>"
FULL = "<html><body><div id=app><a href=/x>x</a> " + "words " * 50 + "</div></body></html>"


def test_a_plain_page_failing_the_selector_check_is_queued_again_to_be_rendered() -> None:
    stage = check({"missing": "#app a"})
    assert stage.active
    passed, page = run(stage, SHELL, Request("http://a.test/page", meta={"k": 1}))
    assert passed is None  # the callback does not see the empty shell
    retry = page.done.retry
    assert retry is not None and retry.url == "http://a.test/page"
    assert retry.meta == {"k": 1, "render": True, AUTO: True}
    assert page.counts["render_adaptive"] == 1
    passed, page = run(stage, FULL)
    assert passed is not None and page.done.retry is None


def test_min_text_counts_the_visible_text_not_scripts() -> None:
    stage = check({"min_text": 100})
    assert run(stage, SHELL)[0] is None
    assert run(stage, FULL)[0] is not None


def test_the_spider_may_judge_instead_of_a_setting() -> None:
    stage = check({}, Judging())
    assert stage.active
    assert run(stage, "<html><body>loading...</body></html>")[0] is None
    assert run(stage, FULL)[0] is not None
    assert not check({}).active  # nothing to check: no cost per page


@pytest.mark.parametrize(("request_", "status", "kind"), [
    (Request("http://a.test/page", meta={"rendered": True}), 200, "text/html"),  # the browser's page as it is
    (Request("http://a.test/page", render=False), 200, "text/html"),  # asked to stay plain
    (Request("http://a.test/page", render=True), 200, "text/html"),  # asked already
    (Request("http://a.test/page"), 404, "text/html"),
    (Request("http://a.test/data"), 200, "application/json"),
])
def test_what_the_check_leaves_alone(request_: Request, status: int, kind: str) -> None:
    passed, page = run(check({"missing": "#app a"}), SHELL, request_, status, kind)
    assert passed is not None and page.done.retry is None


# ---------------------------------------------------------------- dispatch


def make(render: RenderChoice, started: list[int], robots: RobotsRules | None = None,
         ) -> tuple[Dispatch, Any, FetchChannels]:
    queues, renderers, tickets = 3, 2, 16  # queue 0 a fetcher's; 1 and 2 the renderers'
    channels = FetchChannels(
        queues=[queue.SimpleQueue() for _ in range(queues)], ready=[threading.Semaphore(0) for _ in range(queues)],
        reads=[0] * queues, owners=[0] * queues, registrations=[None, None], permits=None,
        released=bytearray(tickets), notices=None, deadlines=[0.0] * tickets, heartbeats=[0.0] * queues,
        renderers=renderers,
    )
    stats = Stats()
    backend = LocalBackend(load_settings(), stats, NullJournal(), multiprocessing.get_context("spawn"), tickets)
    frontier = backend.frontier
    backend.limiter = FakeLimiter()  # type: ignore[assignment]
    dispatch = Dispatch(channels, frontier, backend.limiter, RobotsGate(robots, backend, stats, 0.0), None, stats,
                        threads=4, parsers=2, concurrency=8, max_inflight=tickets, max_pages=0,
                        max_process_deaths=3, sites=SiteRules({}), crawl_count=backend.crawl_count, drop=print,
                        render=render, start_renderers=lambda: started.append(1), render_pages=2)
    return dispatch, frontier, channels


def test_pages_to_render_wait_for_a_renderer_which_the_first_of_them_starts() -> None:
    started: list[int] = []
    dispatch, frontier, channels = make(choice(), started)
    dispatch.queue_claimed(0)
    frontier.push([(0, Request("http://a.test/plain")), (0, Request("http://b.test/js", render=True))])
    dispatch.schedule(0.0)
    assert [t.request.url for t in sent(channels, 0)] == ["http://a.test/plain"]
    assert started == [1]  # no renderer had claimed a queue: the page went back to its host, which waits
    assert len(dispatch.inflight) == 1 and not sent(channels, 1) and not sent(channels, 2)
    dispatch.queue_claimed(2)  # a renderer claimed the second render queue
    dispatch.schedule(1.0)
    tasks: list[FetchTask] = sent(channels, 2)
    assert [t.request.url for t in tasks] == ["http://b.test/js"]
    assert dispatch.render_load == {2: 1} and dispatch.queue_load == {0: 1}


def test_a_renderer_gets_at_most_render_pages_pages_and_gives_them_back_as_they_end() -> None:
    dispatch, frontier, channels = make(choice(crawl=True), [])
    dispatch.queue_claimed(0)
    dispatch.queue_claimed(1)
    frontier.push([(0, Request(f"http://h{i}.test/")) for i in range(3)])
    dispatch.schedule(0.0)
    assert len(sent(channels, 1)) == 2 and not sent(channels, 0)  # render_pages; the third waits
    first = min(dispatch.inflight)
    dispatch.done(first)
    dispatch.schedule(1.0)
    assert len(sent(channels, 1)) == 1
    lost = dispatch.fetcher_died(1, 1234, None)  # the renderer died: its pages go back to the frontier
    assert not lost and dispatch.render_load == {} and not dispatch.inflight


def test_a_page_to_render_carries_its_hosts_robots_rules_and_a_plain_one_nothing_more() -> None:
    rules = RobotsRules("crawlkit/0.1")
    dispatch, frontier, channels = make(choice(), [], rules)
    text = b"User-agent: *\nDisallow: /app.js\n"
    dispatch.gate.learn("a.test", 200, text)
    dispatch.gate.learn("b.test", 404, b"not here")
    dispatch.queue_claimed(0)
    dispatch.queue_claimed(1)
    frontier.push([(0, Request("http://a.test/plain")), (0, Request("http://a.test/js", render=True)),
                   (0, Request("http://b.test/js", render=True))])
    dispatch.schedule(0.0)
    [plain] = sent(channels, 0)
    assert type(plain) is FetchTask  # the plain path's task, unchanged
    rendered = {task.request.url: task for task in sent(channels, 1)}
    task = pickle.loads(pickle.dumps(rendered["http://a.test/js"]))  # as a render queue carries it
    assert isinstance(task, RenderTask) and task.robots is not None  # the engine's own rules
    parsed, agent = pickle.loads(task.robots)
    assert agent == "crawlkit" and not parsed.can_fetch("http://a.test/app.js", agent)
    assert parsed.can_fetch("http://a.test/style.css", agent)
    other = rendered["http://b.test/js"]
    assert isinstance(other, RenderTask) and other.robots is None  # a 404: no rules to obey


# ---------------------------------------------------------------- the renderer's choices, without a browser


def render_config(**changes: Any) -> pool.RenderConfig:
    """A renderer's config as the settings' defaults make it (no browser is looked for), with ``changes``."""
    config = pool.RenderConfig(
        executable="chromium", pages=4, block=("image",), timeout=30.0, recycle_pages=0, recycle_mb=0,
        user_agent="crawlkit/0.1", connect_timeout=10.0, read_timeout=30.0, allow_private_addresses=True, sites=None,
        crawl=True, log=LogConfig(), archive=False, proxy=None, max_body=1 << 20, per_host=2,
        scratch="/tmp/crawlkit-render-test",
    )
    return dataclasses.replace(config, **changes)


def test_a_rendered_page_goes_through_the_proxy_of_the_plain_path_its_credentials_apart(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("playwright")
    from crawlkit.fetch.fetcher import _environment_proxy
    from crawlkit.render.browser import Proxy

    own = Proxy.of(Request("http://a.test/", meta={"proxy": "http://agent:p%40ss@own.test:3128"}), "http://set.test:8")
    assert own == Proxy("http://agent:p%40ss@own.test:3128", None)
    assert own.settings() == {"server": "http://own.test:3128", "username": "agent", "password": "p@ss"}
    assert Proxy.of(Request("http://a.test/"), "http://set.test:8") == Proxy("http://set.test:8", None)
    monkeypatch.setenv("HTTP_PROXY", "env.test:3128")
    monkeypatch.setenv("NO_PROXY", "direct.test")
    _environment_proxy.cache_clear()
    try:
        found = Proxy.of(Request("http://a.test/"), None)
        assert found is not None and found.settings() == {"server": "http://env.test:3128", "bypass": "direct.test"}
        assert Proxy.of(Request("http://direct.test/"), None) is None
    finally:
        _environment_proxy.cache_clear()
    for url, why in (("http://agent:s3cret@:3128", "its host name is empty"),
                     ("http://agent:s3cret@bad host:3128", "its host name is not one"),
                     ("http://agent:s3cret@own.test:0", "its port is 0"),
                     ("http://agent:s3cret@own.test:x", "Port could not be cast to integer value as 'x'")):
        with pytest.raises(ValueError) as refused:  # not Playwright's to take for another proxy
            Proxy(url, None).settings()
        assert str(refused.value) == why


def test_a_browsers_memory_is_looked_at_after_a_page_at_most_every_second_and_once_over_it_stays_due(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("playwright")
    from crawlkit.render import browser as module

    looks: list[int] = []
    used = {"mb": 50}
    clock = {"now": 1000.0}
    monkeypatch.setattr(module, "browser_memory", lambda pid: looks.append(pid) or used["mb"] << 20)
    monkeypatch.setattr(module.time, "monotonic", lambda: clock["now"])
    browser = module.Browser(None, render_config(recycle_mb=100))  # type: ignore[arg-type]
    assert browser.due() is None and looks == []  # nothing rendered yet
    browser.rendered = 1
    assert browser.due() is None and len(looks) == 1
    used["mb"] = 200
    clock["now"] += module.MEMORY_EVERY - 0.01
    assert browser.due() is None and len(looks) == 1  # not again within MEMORY_EVERY
    clock["now"] += 0.01
    over = "its processes hold 200 MB of anonymous memory (render_recycle_mb: 100)"
    assert browser.due() == over and len(looks) == 2
    used["mb"] = 10
    clock["now"] += 10
    assert browser.due() == over and len(looks) == 2  # stays due
    pages = module.Browser(None, render_config(recycle_pages=3))  # type: ignore[arg-type]
    pages.rendered = 3
    assert pages.due() == "3 pages rendered (render_recycle_pages: 3)" and len(looks) == 2


def test_a_hosts_robots_rules_are_pickled_once_by_the_engine_and_unpickled_once_by_a_renderer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A robots.txt of thousands of rules takes a few hundred ms each way: once per host, not per page."""
    pytest.importorskip("playwright")
    from crawlkit.extensions import robots as robots_module
    from crawlkit.render import browser as module

    rules = RobotsRules("crawlkit/0.1")
    rules.learn("a.test", 200, b"User-agent: *\nDisallow: /app.js\n")
    blob = rules.rules_of("a.test")
    assert blob is not None and rules.rules_of("a.test") is blob  # pickled once
    assert rules.rules_of("b.test") is None  # not known: nothing to obey
    rules.learn("a.test", 200, b"User-agent: *\nDisallow: /other.js\n")  # a recrawl round asks again
    again = rules.rules_of("a.test")
    assert again is not None and again != blob
    monkeypatch.setattr(robots_module, "PICKLED_KEPT", 2)
    for n in range(3):
        rules.learn(f"h{n}.test", 200, b"User-agent: *\nDisallow: /x\n")
        rules.rules_of(f"h{n}.test")
    assert len(rules._pickled) == 2  # bounded: the hosts asked last

    loads: list[bytes] = []
    real_loads = pickle.loads
    monkeypatch.setattr(module.pickle, "loads", lambda data: loads.append(data) or real_loads(data))
    browser = module.Browser(None, render_config())  # type: ignore[arg-type]
    for _ in range(3):
        parsed, agent = browser._robots_of("a.test", bytes(again))  # a new bytes object with every task
        assert agent == "crawlkit" and not parsed.can_fetch("http://a.test/other.js", agent)
    assert len(loads) == 1  # unpickled once for the host
    browser._robots_of("a.test", blob)
    assert len(loads) == 2  # its rules changed: unpickled again

def test_a_page_whose_render_options_are_refused_comes_back_a_render_options_error_without_the_browser() -> None:
    pytest.importorskip("playwright")
    from crawlkit.render.browser import Browser

    browser = Browser(None, render_config())  # type: ignore[arg-type]
    request = Request("http://a.test/p", meta={"render": {"bogus": 1}})
    result = asyncio.run(browser.render(FetchTask(7, 0, 0, 0, 0.0, request), None))
    assert (result.req_id, result.url, result.error) == (7, "http://a.test/p", "render_options")
    assert result.message.startswith("'render' has no action 'bogus'; use wait_until")
    assert browser.rendered == 0 and not browser.free  # no tab was opened, no page counted
    assert not FetchErrorKind.RENDER_OPTIONS.retryable  # the same options would be refused again


def test_a_sub_resource_waiting_for_a_busy_other_host_gives_up_at_its_pages_deadline_and_the_host_is_forgotten(
        ) -> None:
    pytest.importorskip("playwright")
    from crawlkit.render.browser import _OtherHosts

    async def scenario() -> None:
        hosts = _OtherHosts(1, SiteRules({"cdn.test": {"per_host": 2}}))
        now = time.monotonic()
        async with hosts.slot("slow.test", now + 60):  # a host that does not answer holds its one slot
            with pytest.raises(asyncio.TimeoutError):  # a page past its deadline waits no longer for it
                async with hosts.slot("slow.test", now - 1):
                    pytest.fail("a slot past the deadline")
            assert hosts.held["slow.test"][1] == [1]  # the waiter that gave up is not counted
            async with hosts.slot("cdn.test", now + 60), hosts.slot("cdn.test", now + 60):  # its rule's per_host
                pass
        assert hosts.held == {}  # no host is kept once it has nothing in flight

    asyncio.run(scenario())


def test_playwright_messages_lose_the_call_log_that_lists_the_requests_headers() -> None:
    pytest.importorskip("playwright")
    from playwright.async_api import Error as PlaywrightError

    from crawlkit.render.browser import classify

    error = PlaywrightError("Route.fetch: connect ECONNREFUSED 127.0.0.9:1\nCall log:\n  - → GET http://a.test/\n"
                            "  - authorization: Bearer s3cret\n  - cookie: session=s3cret\n")
    assert classify(error) == (FetchErrorKind.CONNECTION_REFUSED, "Route.fetch: connect ECONNREFUSED 127.0.0.9:1")


class _RefusingBrowser:
    """A Playwright browser that refuses new contexts, connected or not."""

    def __init__(self, connected: bool) -> None:
        self.connected = connected

    def is_connected(self) -> bool:
        return self.connected

    async def new_context(self, **options: Any) -> Any:
        from playwright.async_api import Error as PlaywrightError

        raise PlaywrightError("Browser.new_context: Browser does not support socks5 proxy authentication")


def test_a_proxy_the_browser_refuses_fails_the_page_not_the_browser() -> None:
    pytest.importorskip("playwright")
    from crawlkit.render.browser import Browser, BrowserGone

    request = Request("http://a.test/p", meta={"proxy": "socks5://agent:s3cret@proxy.test:1080"})
    browser = Browser(None, render_config())  # type: ignore[arg-type]
    browser.browser = _RefusingBrowser(connected=True)  # type: ignore[assignment]
    result = asyncio.run(browser.render(FetchTask(7, 0, 0, 0, 0.0, request), None))
    assert (result.error, result.message) == (
        "render_error", "Browser.new_context: Browser does not support socks5 proxy authentication")
    browser.browser = _RefusingBrowser(connected=False)  # type: ignore[assignment]
    with pytest.raises(BrowserGone):  # a browser that is gone is the renderer's end, as before
        asyncio.run(browser.render(FetchTask(8, 0, 0, 0, 0.0, request), None))


def test_burying_a_renderer_kills_its_browsers_processes_and_no_other_crawls_or_renderers(tmp_path: Path) -> None:
    root = str(tmp_path / "crawl")
    other_root = str(tmp_path / "other-crawl")
    started: list[subprocess.Popen[bytes]] = []

    def sleeper(tmpdir: str | None = None) -> subprocess.Popen[bytes]:
        env = {**os.environ, "TMPDIR": tmpdir} if tmpdir is not None else None
        started.append(subprocess.Popen(["sleep", "60"], env=env, start_new_session=True))
        return started[-1]

    try:
        renderer = sleeper()  # a group of its own, as renderer_main makes
        browser = [sleeper(pool.scratch(root, renderer.pid)) for _ in range(2)]  # a session of its own, each
        others = [sleeper(pool.scratch(other_root, renderer.pid)),  # another crawl's renderer of that pid
                  sleeper(pool.scratch(root, renderer.pid) + "1")]  # another renderer of this crawl
        os.makedirs(pool.scratch(root, renderer.pid))
        pool.bury(root, renderer.pid)
        assert [process.wait(10) for process in (renderer, *browser)] == [-signal.SIGKILL] * 3
        assert [process.poll() for process in others] == [None, None]
        assert not os.path.exists(pool.scratch(root, renderer.pid))
    finally:
        for process in started:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- stats


def test_the_summary_and_the_report_tell_what_the_browsers_did() -> None:
    stats = Stats()
    stats.reason = "finished"
    assert "rendered" not in stats.summary()
    assert not lxml.html.fromstring(render_report(stats.full_dict())).xpath("//div[@data-key='rendered']")
    stats.incr("rendered", 40)
    stats.incr("render_adaptive", 3)
    stats.incr("render_recycled", 2)
    stats.incr("render_crashed")
    assert ("  rendered: 40 pages (3 after a plain fetch failed render_when); browsers recycled 2, crashed 1"
            in stats.summary().splitlines())
    card = lxml.html.fromstring(render_report(stats.full_dict())).xpath("//div[@data-key='rendered']")[0]
    assert card.get("data-value") == "40" and card.text_content() == "Rendered in a browser40 (2 recycled, 1 crashed)"
