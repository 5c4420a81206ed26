"""The page stages one by one, and their order: Requests, Responses and FetchResults built here, no server."""

from __future__ import annotations

import email.utils
import pickle
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from crawlkit.errors import ConfigError, FetchErrorKind, SpiderError
from crawlkit.extensions.robots import NO_ANSWER, ROBOTS_BLOCKED, ROBOTS_CALLBACK
from crawlkit.extensions.sitemaps import SITEMAP_CALLBACK
from crawlkit.http import Request, Response
from crawlkit.log import LogConfig
from crawlkit.messages import FetchResult, PageDone
from crawlkit.parse.links import (
    DepthFilter,
    LengthFilter,
    OffsiteFilter,
    RepeatedSegmentsFilter,
    SchemeFilter,
    repeats_segment,
)
from crawlkit.parse.order import BUILTIN_STAGES, Stages, ordered_stages
from crawlkit.parse.parser import ParserConfig, Router, build_spider
from crawlkit.parse.redirect import RedirectStage
from crawlkit.parse.retry import RetryPolicy, RetryStage, retry_after
from crawlkit.parse.robots import RobotsStage, robots_answer
from crawlkit.parse.sitemaps import SitemapStage
from crawlkit.parse.stages import Page, StageSetup
from crawlkit.settings import load_settings
from crawlkit.spider import Spider
from crawlkit.urls import Fingerprinter

URL = "http://a.test/start"


def setup(**settings: Any) -> StageSetup:
    """What a parser gives its stages, for a spider that names no allowed domains."""
    config = ParserConfig.from_settings(load_settings(cli=settings), None, {}, LogConfig())
    return StageSetup(config, Spider(start_urls=[URL]), Fingerprinter(),
                      RetryPolicy(config.retries, config.retry_backoff, config.retry_after_max))


def page(request: Request | None = None, **result: Any) -> Page:
    request = request or Request(URL)
    fetched = FetchResult(1, request, request.url, **result)
    return Page(fetched, PageDone(req_id=1, host="a.test"), Counter())


def response(status: int, request: Request | None = None, body: bytes = b"", **headers: str) -> Response:
    request = request or Request(URL)
    return Response(request.url, status, {k.replace("_", "-"): v for k, v in headers.items()}, body, request)


# ---------------------------------------------------------------- retry

def test_a_retry_waits_longer_each_time_and_gives_up_after_the_budget() -> None:
    policy = RetryPolicy(retries=2, backoff=1.0, after_max=60.0)
    first = policy.next_attempt(Request(URL, meta={"mine": 1}), None)
    assert first is not None and first.delay == 1.0 and first.host_pause is None
    assert first.request.meta == {"mine": 1, "retry_times": 1}
    second = policy.next_attempt(first.request, None)
    assert second is not None and second.delay == 2.0 and second.request.meta["retry_times"] == 2
    assert policy.next_attempt(second.request, None) is None


def test_retry_after_lengthens_the_wait_pauses_the_host_and_is_capped() -> None:
    policy = RetryPolicy(retries=3, backoff=1.0, after_max=30.0)
    asked = policy.next_attempt(Request(URL), 10.0)
    assert asked is not None and asked.delay == 10.0 and asked.host_pause == 10.0
    capped = policy.next_attempt(Request(URL), 3600.0)
    assert capped is not None and capped.delay == 30.0 and capped.host_pause == 30.0
    short = policy.next_attempt(Request(URL, meta={"retry_times": 2}), 1.0)  # the backoff is longer: it wins
    assert short is not None and short.delay == 4.0 and short.host_pause == 1.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = 1_700_000_000.0
    assert retry_after(" 120 ", now) == 120.0
    assert retry_after(email.utils.formatdate(now + 90, usegmt=True), now) == 90.0
    assert retry_after(email.utils.formatdate(now - 90, usegmt=True), now) == 0.0  # in the past: at once
    assert retry_after("soon", now) is None
    assert retry_after("-5", now) is None
    assert retry_after(None, now) is None


def test_the_retry_stage_retries_a_retryable_failure_and_reports_the_rest() -> None:
    stage = RetryStage(setup(retries=1))
    timed_out = page(error="read_timeout", message="slow")
    assert stage.on_failure(timed_out, FetchErrorKind.READ_TIMEOUT) is True
    assert timed_out.done.retry is not None and timed_out.done.retry.meta["retry_times"] == 1
    assert timed_out.counts == {"retries": 1}
    assert stage.on_failure(page(error="bad_response"), FetchErrorKind.BAD_RESPONSE) is False
    spent = page(Request(URL, meta={"retry_times": 1}), error="read_timeout")
    assert stage.on_failure(spent, FetchErrorKind.READ_TIMEOUT) is False
    assert spent.done.retry is None and spent.counts == {"retries_exhausted": 1}


def test_the_retry_stage_retries_listed_statuses_and_obeys_retry_after() -> None:
    stage = RetryStage(setup(retries=2, retry_http_codes=[503], retry_after_max=100))
    busy = page(status=503)
    before = time.monotonic()
    assert stage.on_response(busy, response(503, Retry_After="50")) is None
    assert busy.done.retry is not None
    assert 50 <= busy.done.host_pause_until - before < 51 and 50 <= busy.done.retry_at - before < 51
    fine = response(500)  # not in retry_http_codes here
    assert stage.on_response(page(status=500), fine) is fine


# ---------------------------------------------------------------- redirect

def redirected(location: str, request: Request | None = None, **settings: Any) -> Page:
    request = request or Request(URL)
    moved = page(request, status=301)
    assert RedirectStage(setup(**settings)).on_response(moved, response(301, request, Location=location)) is None
    return moved


def test_a_redirect_becomes_a_request_for_its_target_that_remembers_the_chain() -> None:
    moved = redirected("/next", Request(URL, meta={"retry_times": 2}))
    [follow] = moved.candidates
    assert follow.url == "http://a.test/next"
    assert follow.meta == {"redirect_urls": [URL], "retry_times": 0}
    assert moved.counts == {"redirects": 1}


def test_a_redirect_to_another_origin_leaves_the_credentials_behind() -> None:
    headers = {"Authorization": "Bearer x", "Cookie": "a=1", "Accept": "text/html"}
    [same] = redirected("/next", Request(URL, headers=headers)).candidates
    assert same.headers == headers
    [other] = redirected("https://b.test/", Request(URL, headers=headers)).candidates
    assert other.headers == {"Accept": "text/html"}


def test_a_redirect_chain_longer_than_max_redirects_is_dropped() -> None:
    chain = [f"http://a.test/{n}" for n in range(3)]
    moved = redirected("/next", Request(URL, meta={"redirect_urls": chain}), max_redirects=3)
    assert moved.candidates == [] and moved.counts["error_too_many_redirects"] == 1
    assert redirected("/next", Request(URL, meta={"redirect_urls": chain[:2]}), max_redirects=3).candidates


def test_a_redirect_loop_and_a_redirect_off_http_are_dropped() -> None:
    loop = redirected("/start#here", Request(URL, meta={"redirect_urls": ["http://a.test/other"]}))
    assert loop.candidates == [] and loop.counts["error_redirect_loop"] == 1
    mail = redirected("mailto:someone@a.test")
    assert mail.candidates == [] and mail.counts["dropped_redirect_scheme"] == 1


def test_the_redirect_stage_passes_on_what_is_no_redirect() -> None:
    stage = RedirectStage(setup())
    for answer in (response(200, Location="/x"), response(304)):
        assert stage.on_response(page(status=answer.status), answer) is answer


# ---------------------------------------------------------------- robots.txt and sitemaps

@pytest.mark.parametrize("kind, answer", [
    (FetchErrorKind.DESTINATION_BLOCKED, ROBOTS_BLOCKED),
    (FetchErrorKind.CONNECTION_REFUSED, -1),
    (FetchErrorKind.UNRESOLVABLE_HOST, -2),
    (FetchErrorKind.READ_TIMEOUT, NO_ANSWER),
    (FetchErrorKind.BAD_RESPONSE, NO_ANSWER),
])
def test_a_failed_robots_txt_reads_as_its_kind(kind: FetchErrorKind, answer: int) -> None:
    assert robots_answer(kind) == answer
    failed = page(Request("http://a.test/robots.txt", callback=ROBOTS_CALLBACK), error=kind.value)
    assert RobotsStage(setup()).on_failure(failed, kind) is False  # still reported as a failure
    assert failed.done.robots == (answer, b"")


def test_a_robots_txt_answer_goes_to_the_engine_with_its_sitemaps_when_asked() -> None:
    robots = Request("http://a.test/robots.txt", callback=ROBOTS_CALLBACK)
    body = b"User-agent: *\nDisallow: /private/\nSitemap: http://a.test/map.xml\n"
    for use_sitemaps, sitemaps in ((False, []), (True, ["http://a.test/map.xml"])):
        answered = page(robots, status=200)
        assert RobotsStage(setup(use_sitemaps=use_sitemaps)).on_response(answered, response(200, robots, body)) is None
        assert answered.done.robots == (200, body)
        assert [r.url for r in answered.candidates] == sitemaps
        assert all(r.callback == SITEMAP_CALLBACK for r in answered.candidates)
    other = response(200)
    assert RobotsStage(setup()).on_response(page(status=200), other) is other


def test_a_sitemap_becomes_requests_at_its_own_depth() -> None:
    sitemap = Request("http://a.test/map.xml", callback=SITEMAP_CALLBACK)
    sitemap.depth = 1
    body = (b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            b"<url><loc>http://a.test/p1</loc></url><url><loc>http://a.test/p2</loc></url></urlset>")
    read = page(sitemap, status=200)
    assert SitemapStage(setup()).on_response(read, response(200, sitemap, body)) is None
    assert [(r.url, r.depth, r.referer) for r in read.candidates] == [
        ("http://a.test/p1", 1, "http://a.test/map.xml"), ("http://a.test/p2", 1, "http://a.test/map.xml")]
    assert read.counts == {"sitemaps": 1, "sitemap_urls": 2}
    broken = page(sitemap, status=200)
    assert SitemapStage(setup()).on_response(broken, response(200, sitemap, b"<feed></feed>")) is None
    assert broken.candidates == [] and broken.counts == {"error_sitemap": 1}


# ---------------------------------------------------------------- link filters

def filtered(stage: Any, *urls: str, depth: int = 0) -> tuple[list[str], Counter[str]]:
    requests = [Request(url) for url in urls]
    for request in requests:
        request.depth = depth
    links = page()
    return [r.url for r in stage.on_links(links, requests)], links.counts


def test_the_scheme_filter_keeps_http_and_https_only() -> None:
    kept, counts = filtered(SchemeFilter(setup()), "http://a.test/", "mailto:x@a.test", "https://b.test/",
                            "javascript:void(0)", "http:///nohost")
    assert kept == ["http://a.test/", "https://b.test/"] and counts == {"dropped_scheme": 3}


def test_the_length_filter_drops_urls_longer_than_max_url_length() -> None:
    kept, counts = filtered(LengthFilter(setup(max_url_length=20)), "http://a.test/short", "http://a.test/" + "x" * 10)
    assert kept == ["http://a.test/short"] and counts == {"dropped_url_too_long": 1}


def test_the_depth_filter_drops_deeper_requests_and_is_off_by_default() -> None:
    stage = DepthFilter(setup(max_depth=2))
    assert filtered(stage, "http://a.test/", depth=2)[0] == ["http://a.test/"]
    assert filtered(stage, "http://a.test/", depth=3) == ([], Counter({"dropped_depth": 1}))
    assert DepthFilter(setup()).active is False  # max_depth 0: no limit, no cost


def test_the_repeated_segments_filter_drops_spider_traps() -> None:
    assert repeats_segment("http://a.test/a/a/a/a/", 3) and repeats_segment("http://a.test/x/y/x/y/x/y/x/y", 3)
    assert not repeats_segment("http://a.test/a/a/a/", 3) and not repeats_segment("http://a.test/a/b/c/d/e", 1)
    kept, counts = filtered(RepeatedSegmentsFilter(setup(max_repeated_segments=2)),
                            "http://a.test/a/b/a/", "http://a.test/a/a/a/")
    assert kept == ["http://a.test/a/b/a/"] and counts == {"dropped_repeated_segments": 1}
    assert RepeatedSegmentsFilter(setup(max_repeated_segments=0)).active is False


def test_the_offsite_filter_follows_allowed_domains_with_their_subdomains_and_ports() -> None:
    stage = OffsiteFilter(setup(allowed_domains=["a.test", "b.test:8080"]))
    kept, counts = filtered(stage, "http://a.test/", "http://www.a.test:81/", "http://b.test:8080/",
                            "http://b.test/", "http://evil-a.test/", "http://c.test/")
    assert kept == ["http://a.test/", "http://www.a.test:81/", "http://b.test:8080/"]
    assert counts == {"dropped_offsite": 3}
    assert OffsiteFilter(setup()).active is False  # no allowed domains: every host is followed


# ---------------------------------------------------------------- order and the setting

class Seen:
    """A user's stage: counts what reaches it, ends pages under /stop and drops links with ?skip."""

    def __init__(self, setup: StageSetup) -> None:
        self.setup = setup

    def on_response(self, page: Page, response: Response) -> Response | None:
        page.counts[f"seen_{response.status}"] += 1
        return None if "/stop" in response.url else response

    def on_links(self, page: Page, requests: list[Request]) -> list[Request]:
        return [r for r in requests if "?skip" not in r.url]


def names(setting: dict[str, int | None]) -> list[str]:
    return [name for name, _ in ordered_stages(setting)]


def test_the_built_in_order_and_how_the_setting_changes_it() -> None:
    assert names({}) == list(BUILTIN_STAGES)
    assert [number for number, _ in BUILTIN_STAGES.values()] == sorted(number for number, _ in BUILTIN_STAGES.values())
    assert "depth" not in names({"depth": None})
    assert names({"redirect": 50})[:2] == ["redirect", "cookies"]
    mine = "test_stages:Seen"
    order = names({mine: 600, "offsite": None})
    assert order[order.index("redirect"):order.index("redirect") + 3] == ["redirect", mine, "recrawl"]
    assert "offsite" not in order
    assert names({mine: None}) == list(BUILTIN_STAGES)  # a class set to null is simply not added


@pytest.mark.parametrize("setting, error, message", [
    ({"dept": None}, ConfigError, "stages: unknown stage 'dept'; did you mean 'depth'?"),
    ({"nowhere.py:Stage": 10}, SpiderError, "stage file 'nowhere.py' does not exist"),
    ({"json:JSONDecoder": 10}, SpiderError, "stage 'json:JSONDecoder' must name a class (path.py:Class or "
                                            "module:Class) with a on_failure() or on_response() or on_links() method"),
])
def test_a_wrong_stage_is_a_one_line_error(setting: dict[str, int | None], error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        ordered_stages(setting)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


@pytest.mark.parametrize("value", ["{depth: 1.5}", "{depth: true}", "[depth]", "{depth: x}"])
def test_a_stage_number_must_be_an_integer_or_null(value: str) -> None:
    with pytest.raises(ConfigError, match="'stages' must be a mapping of names to integers or null"):
        load_settings(cli={"stages": value})
    assert load_settings(cli={"stages": "{depth: null, redirect: 650}"}).stages == {"depth": None, "redirect": 650}


def test_a_stage_that_cannot_be_created_names_itself(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("class Stage:\n    def __init__(self):\n        pass\n"
                                        "    def on_links(self, page, requests):\n        return requests\n")
    spec = f"{tmp_path / 'broken.py'}:Stage"
    with pytest.raises(SpiderError, match=r"^stage '.*broken\.py:Stage' could not be created: TypeError"):
        Stages(setup(), ordered_stages({spec: 10}))


HTML = [("Content-Type", "text/html")]


def routed(router: Router, result: FetchResult) -> PageDone:
    done: PageDone = pickle.loads(router.handle(result))
    return done


def test_a_user_stage_sees_the_responses_that_reach_its_place_and_filters_links() -> None:
    config = ParserConfig.from_settings(load_settings(cli={"stages": "{test_stages:Seen: 650}"}), None, {}, LogConfig())
    router = Router(build_spider(None, {"start_urls": [URL]}), config)
    html = b'<a href="/a">a</a> <a href="/b?skip">b</a>'
    ok = routed(router, FetchResult(1, Request(URL), URL, status=200, body=html, headers=HTML))
    assert ok.counts["seen_200"] == 1 and [r.url for _, r in ok.candidates] == ["http://a.test/a"]
    # A redirect ends at 600, before this stage; what it ends at /stop never reaches the callback.
    moved = routed(router, FetchResult(2, Request(URL), URL, status=302, headers=[("Location", "/a")]))
    assert "seen_302" not in moved.counts and moved.counts["redirects"] == 1
    stopped = routed(router, FetchResult(3, Request(URL + "/stop"), URL + "/stop", status=200, body=html,
                                         headers=HTML))
    assert stopped.counts["seen_200"] == 1 and "pages" not in stopped.counts and stopped.candidates == []


def test_a_robots_txt_a_stage_ends_still_gets_an_answer() -> None:
    config = ParserConfig.from_settings(load_settings(cli={"stages": "{test_stages:Seen: 50}"}), None, {}, LogConfig())
    router = Router(build_spider(None, {"start_urls": [URL]}), config)
    robots = Request("http://a.test/stop/robots.txt", callback=ROBOTS_CALLBACK)
    done = routed(router, FetchResult(1, robots, robots.url, status=200, body=b"", headers=[]))
    assert done.robots == (NO_ANSWER, b"") and done.retry is None
