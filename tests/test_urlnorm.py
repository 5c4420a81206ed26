"""URL normalisation (tracking parameters, session ids, rewrites) and the content-type filter, without a server."""

from __future__ import annotations

import multiprocessing
import pickle
from typing import Any

import pytest
import requests

from crawlkit.backends.local.backend import LocalBackend
from crawlkit.backends.local.jobdir import NullJournal
from crawlkit.core.admission import Admission
from crawlkit.errors import ConfigError, FetchErrorKind
from crawlkit.extensions.robots import ROBOTS_CALLBACK, RobotsGate
from crawlkit.extensions.sitemaps import SITEMAP_CALLBACK
from crawlkit.fetch.channels import FetcherConfig
from crawlkit.fetch.content_types import ContentTypes
from crawlkit.fetch.fetcher import _wanted
from crawlkit.http import Request
from crawlkit.log import LogConfig
from crawlkit.messages import FetchResult, PageDone
from crawlkit.parse.parser import ParserConfig, Router
from crawlkit.settings import load_settings
from crawlkit.spider import Spider
from crawlkit.stats import Stats
from crawlkit.urlnorm import UrlNormalizer

DEFAULT_STRIP = load_settings().strip_query_params

# (link as written, URL fetched) with the default strip_query_params.
NORMALISED = [
    ("http://a.test/x?utm_source=news&utm_medium=mail", "http://a.test/x"),
    ("http://a.test/x?id=3&UTM_Campaign=spring&b=4", "http://a.test/x?id=3&b=4"),  # others kept, in order
    ("http://a.test/x?fbclid=IwAR0&gclid=Cj0&msclkid=1&_hsenc=p2&mc_eid=9", "http://a.test/x"),
    ("http://a.test/x;jsessionid=0123ABC", "http://a.test/x"),
    ("http://a.test/x;JSESSIONID=0123ABC?page=2", "http://a.test/x?page=2"),
    ("http://a.test/x?PHPSESSID=abc&sid=1&ASPSESSIONIDQQ=2&sessionid=3", "http://a.test/x"),
    ("http://a.test/a;v=1/b;sid=2", "http://a.test/a;v=1/b"),  # other path parameters kept
    ("http://a.test/x?utm_source=a#part", "http://a.test/x#part"),
    ("http://a.test/x?q=utm_source&page=sid", "http://a.test/x?q=utm_source&page=sid"),  # keys, not values
    ("http://a.test/x?sidebar=1&utmost=2", "http://a.test/x?sidebar=1&utmost=2"),  # whole keys only
    ("http://a.test/plain", "http://a.test/plain"),
]


@pytest.mark.parametrize(("url", "normal"), NORMALISED)
def test_tracking_parameters_and_session_ids_are_dropped_by_default(url: str, normal: str) -> None:
    assert UrlNormalizer(DEFAULT_STRIP, []).normalize(url) == normal


def test_the_user_rewrites_apply_in_order_after_the_parameters_are_dropped() -> None:
    rules = [{"pattern": r"^http://(www\.)?a\.test/", "replace": "https://a.test/"},
             {"pattern": r"/index\.html?$", "replace": "/"},
             {"pattern": r"(?P<p>[?&])page=1(&|$)", "replace": r"\g<p>"}]
    normalizer = UrlNormalizer(DEFAULT_STRIP, rules)
    assert normalizer.normalize("http://www.a.test/d/index.html?utm_source=x") == "https://a.test/d/"
    assert normalizer.normalize("http://a.test/list?page=1") == "https://a.test/list?"
    assert normalizer.normalize("https://b.test/index.htm") == "https://b.test/"


def test_no_rules_change_nothing_and_a_plain_url_is_returned_as_it_is() -> None:
    assert not UrlNormalizer([], [])
    url = "http://a.test/x?utm_source=a;jsessionid=1"
    assert UrlNormalizer([], []).normalize(url) is url
    plain = "http://a.test/x/y.html"
    assert UrlNormalizer(DEFAULT_STRIP, []).normalize(plain) is plain  # the fast path: no "?" nor ";"
    assert UrlNormalizer(["ref"], []).normalize("http://a.test/?Ref=1&x=2") == "http://a.test/?x=2"


@pytest.mark.parametrize(("value", "message"), [
    ("[{pattern: '(', replace: x}]", "'url_rewrites' rule 1: pattern '(' is not a regular expression"),
    ("[{pattern: a, replace: '\\1'}]", "'url_rewrites' rule 1: replace '\\\\1' does not fit the pattern 'a'"),
    ("[{pattern: '(?P<x>a)', replace: '\\g<y>'}]", "'url_rewrites' rule 1: replace '\\\\g<y>' does not fit"),
    ("[{pattern: a, replace: b}, {pattern: a}]", "'url_rewrites' rule 2 must be a mapping with exactly the keys"),
    ("[{pattern: a, replace: 3}]", "'url_rewrites' rule 1: pattern and replace must be strings"),
    ("a", "'url_rewrites' must be a list of {pattern: REGEX, replace: TEXT} rules"),
])
def test_a_bad_rewrite_is_a_one_line_config_error(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(cli={"url_rewrites": value})
    assert str(error.value).startswith(f"-s url_rewrites={value}: {message}")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("value", ["[html]", "[text/html; charset=utf-8]", "[3]", "text/html"])
def test_a_bad_content_type_is_a_one_line_config_error(value: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(cli={"content_types": value})
    assert "'content_types'" in str(error.value) and "\n" not in str(error.value)


def test_a_strip_setting_of_another_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="'strip_query_params' must be a list of strings"):
        load_settings(cli={"strip_query_params": "[1]"})


# ---------------------------------------------------------------- where URLs are normalised

class Follower(Spider):
    name = "links"

    def parse(self, response: Any) -> Any:
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href)


def route(body: bytes, **settings: Any) -> PageDone:
    config = ParserConfig.from_settings(load_settings(cli=settings), None, {}, LogConfig())
    router = Router(Follower(start_urls=["http://a.test/"]), config)
    request = Request("http://a.test/", callback="parse")
    result = FetchResult(1, request, request.url, status=200, headers=[("Content-Type", "text/html")], body=body)
    done: PageDone = pickle.loads(router.handle(result))
    return done


LINKS = (b'<a href="/a?utm_source=x">1</a><a href="/a?utm_source=y">2</a><a href="/a">3</a>'
         b'<a href="/a;jsessionid=F00">4</a><a href="/b?id=1&amp;fbclid=z">5</a><a href="/c">6</a>')


def test_the_normalize_stage_merges_a_pages_links_into_their_clean_urls_before_dedup() -> None:
    done = route(LINKS)
    assert [request.url for _, request in done.candidates] == ["http://a.test/a", "http://a.test/b?id=1",
                                                               "http://a.test/c"]
    assert done.counts["urls_normalized"] == 4 and done.counts["duplicates"] == 3


def test_without_rules_the_links_are_sent_as_written() -> None:
    done = route(LINKS, strip_query_params="[]")
    assert len(done.candidates) == 6 and "urls_normalized" not in done.counts


def test_start_requests_are_normalised_like_links() -> None:
    class Seeds(Spider):
        name = "seeds"
        start_urls = ["http://a.test/x?utm_source=a", "http://a.test/x", "http://a.test/y;jsessionid=1"]

        def parse(self, response: object) -> None:
            pass

    stats, settings = Stats(), load_settings(cli={"robots": False, "use_sitemaps": False})
    backend = LocalBackend(settings, stats, NullJournal(), multiprocessing.get_context("spawn"), tickets=8)
    admit = Admission(backend, RobotsGate(None, backend, stats, recheck_after=1.0), Seeds(), settings, stats)
    admit.seed()
    admit.admit()
    frontier, urls = backend.frontier, []
    while (host := frontier.next_host(0.0)) is not None:
        taken = frontier.take(host)
        assert taken is not None
        urls.append(taken[1].url)
    assert urls == ["http://a.test/x", "http://a.test/y"]
    assert stats.counts["urls_normalized"] == 2 and stats.counts["duplicates"] == 1


# ---------------------------------------------------------------- content types

def answer(status: int, content_type: str | None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    if content_type is not None:
        response.headers["Content-Type"] = content_type
    return response


def test_only_listed_types_of_2xx_answers_are_downloaded() -> None:
    wanted = ContentTypes(load_settings(cli={"content_types": "[text/html, 'application/*+xml']"}).content_types)
    page, pdf = Request("http://a.test/"), Request("http://a.test/f.pdf")
    assert _wanted(wanted, answer(200, "text/html; charset=utf-8"), page)
    assert _wanted(wanted, answer(200, "TEXT/HTML"), page)
    assert _wanted(wanted, answer(200, "application/xhtml+xml"), page)
    assert not _wanted(wanted, answer(200, "application/pdf"), pdf)
    assert not _wanted(wanted, answer(206, "image/png"), pdf)
    assert _wanted(wanted, answer(200, None), page)  # no Content-Type: downloaded, not sniffed
    assert _wanted(wanted, answer(301, "application/pdf"), pdf)  # a redirect is followed whatever its type
    assert _wanted(wanted, answer(503, "application/json"), pdf)  # and a 503 retried
    for special in (ROBOTS_CALLBACK, SITEMAP_CALLBACK):  # never dropped
        assert _wanted(wanted, answer(200, "application/octet-stream"), Request("http://a.test/x", callback=special))
    assert not ContentTypes([]) and ContentTypes([]).wanted("image/png")


def test_the_fetchers_config_carries_the_filter_to_each_process() -> None:
    config = FetcherConfig.from_settings(load_settings(cli={"content_types": "[text/*]"}), 1, LogConfig())
    copied = pickle.loads(pickle.dumps(config))
    assert copied.content_types.wanted("text/plain") and not copied.content_types.wanted("image/gif")


def test_a_dropped_type_is_counted_not_retried_and_not_sent_to_the_errback() -> None:
    class Errback(Spider):
        name = "errback"

        def parse(self, response: object) -> None:
            pass

        def failed(self, failure: object) -> Any:
            yield {"failed": True}

    config = ParserConfig.from_settings(load_settings(), None, {}, LogConfig())
    request = Request("http://a.test/f.pdf", callback="parse", errback="failed")
    result = FetchResult(1, request, request.url, status=200, error=FetchErrorKind.CONTENT_TYPE.value, message="pdf")
    done: PageDone = pickle.loads(Router(Errback(start_urls=["http://a.test/"]), config).handle(result))
    assert done.counts == {"dropped_content_type": 1}
    assert done.retry is None and not done.items and done.status == 200


def test_a_redirect_target_is_normalised_like_a_link() -> None:
    config = ParserConfig.from_settings(load_settings(), None, {}, LogConfig())
    request = Request("http://a.test/old", callback="parse")
    result = FetchResult(1, request, request.url, status=301, headers=[("Location", "/new;jsessionid=9?utm_term=x")])
    done: PageDone = pickle.loads(Router(Follower(start_urls=["http://a.test/"]), config).handle(result))
    assert [r.url for _, r in done.candidates] == ["http://a.test/new"] and done.counts["urls_normalized"] == 1


def test_a_page_that_redirects_to_itself_with_a_session_id_is_fetched_again_not_dropped_as_seen() -> None:
    config = ParserConfig.from_settings(load_settings(), None, {}, LogConfig())
    router = Router(Follower(start_urls=["http://a.test/"]), config)
    request = Request("http://a.test/a", callback="parse")
    result = FetchResult(1, request, request.url, status=302, headers=[("Location", "/a;jsessionid=S1")])
    done: PageDone = pickle.loads(router.handle(result))
    [(fp, again)] = done.candidates
    assert fp is None and again.dont_filter and again.url == "http://a.test/a"
    assert again.meta["redirect_urls"] == ["http://a.test/a"]  # so max_redirects bounds a server that insists
    result = FetchResult(2, request, request.url, status=302, headers=[("Location", "/b;jsessionid=S1")])
    [(fp, other)] = pickle.loads(router.handle(result)).candidates
    assert fp is not None and not other.dont_filter and other.url == "http://a.test/b"  # another page: deduplicated
