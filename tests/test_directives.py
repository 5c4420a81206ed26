"""The directives stage (robots meta, X-Robots-Tag, nofollow, canonical) on Responses built here: no server."""

from __future__ import annotations

import pickle
from collections import Counter
from typing import Any

from crawlkit.backends.local.seen import FingerprintSet
from crawlkit.http import Request, Response
from crawlkit.log import LogConfig
from crawlkit.messages import FetchResult, PageDone
from crawlkit.parse.directives import DirectivesStage, header_canonical, header_directives
from crawlkit.parse.parser import ParserConfig, Router
from crawlkit.parse.retry import RetryPolicy
from crawlkit.parse.stages import Page, StageSetup
from crawlkit.settings import load_settings
from crawlkit.spider import Spider
from crawlkit.urls import Fingerprinter, fingerprint

URL = "http://a.test/dir/page"
HTML = [("Content-Type", "text/html; charset=utf-8")]


def stage(**settings: Any) -> DirectivesStage:
    config = ParserConfig.from_settings(load_settings(cli=settings), None, {}, LogConfig())
    return DirectivesStage(StageSetup(config, Spider(start_urls=[URL]), Fingerprinter(),
                                      RetryPolicy(config.retries, config.retry_backoff, config.retry_after_max)))


def read(directives: DirectivesStage, body: str = "", headers: list[tuple[str, str]] | None = None,
         request: Request | None = None) -> tuple[Page, Response]:
    """The page and response after ``directives.on_response``, which must pass the response on."""
    request = request or Request(URL)
    response = Response(URL, 200, HTML + (headers or []), body.encode(), request)
    page = Page(FetchResult(1, request, URL), PageDone(req_id=1, host="a.test"), Counter())
    assert directives.on_response(page, response) is response
    return page, response


def links(directives: DirectivesStage, page: Page, *urls: str) -> list[str]:
    return [r.url for r in directives.on_links(page, [Request(url) for url in urls])]


def head(*tags: str) -> str:
    return f"<html><head><title>t</title>{''.join(tags)}</head><body><a href='/x'>x</a></body></html>"


def test_meta_robots_noindex_nofollow_drops_the_items_and_every_request_and_is_counted() -> None:
    directives = stage()
    page, response = read(directives, head('<meta name="Robots" content="NOINDEX, nofollow, noarchive">'))
    assert response.meta["robots"] == {"noindex", "nofollow", "noarchive"}
    assert page.drop_items == "noindex"
    assert links(directives, page, "http://a.test/x", "http://b.test/y") == []
    assert page.counts == {"pages_noindex": 1, "pages_nofollow": 1, "dropped_nofollow": 2}


def test_the_crawlers_own_meta_counts_other_crawlers_do_not_and_none_and_all_mean_what_google_says() -> None:
    directives = stage(user_agent="MyBot/2.0 (+https://example.test)")
    mine, _ = read(directives, head('<meta name="mybot" content="noindex">', '<meta name="googlebot" content="none">'))
    assert mine.drop_items == "noindex" and mine.counts == {"pages_noindex": 1}
    assert links(directives, mine, "http://a.test/x") == ["http://a.test/x"]
    none, response = read(directives, head('<meta name="robots" content="none">'))
    assert {"noindex", "nofollow"} <= response.meta["robots"] and none.drop_items == "noindex"
    everything, response = read(directives, head('<meta name="robots" content="all">'))
    assert everything.drop_items == "" and not everything.counts
    assert links(directives, everything, "http://a.test/x") == ["http://a.test/x"]


def test_x_robots_tag_headers_for_all_and_for_this_crawler_only() -> None:
    directives = stage()
    page, response = read(directives, "<p>a PDF's text</p>", headers=[
        ("X-Robots-Tag", "googlebot: noindex"), ("X-Robots-Tag", "crawlkit: nofollow"),
        ("X-Robots-Tag", "unavailable_after: 25 Jun 2030 15:00:00 PST"),
    ])
    assert response.meta["robots"] >= {"nofollow", "unavailable_after: 25 jun 2030 15:00:00 pst"}
    assert "noindex" not in response.meta["robots"] and page.drop_items == ""
    assert links(directives, page, "http://a.test/x") == []
    assert header_directives(["noindex", "otherbot: nofollow"], "crawlkit") == {"noindex"}
    assert header_directives(["noarchive, otherbot: noindex, nofollow, crawlkit: NONE"], "crawlkit") == \
        {"noarchive", "none", "noindex", "nofollow"}
    # Not HTML at all: the header is all there is, and it is read.
    pdf = Response(URL, 200, [("Content-Type", "application/pdf"), ("X-Robots-Tag", "noindex")], b"%PDF-1.4")
    page = Page(FetchResult(1, pdf.request, URL), PageDone(req_id=1, host="a.test"), Counter())
    directives.on_response(page, pdf)
    assert page.drop_items == "noindex" and page.counts == {"pages_noindex": 1}


def test_rel_nofollow_drops_the_requests_for_those_links_only() -> None:
    directives = stage()
    body = ('<html><body><a rel="external NoFollow" href="../ad#top">ad</a> <area rel="nofollow" href="/map">'
            '<a href="/ok">ok</a> <a rel="next" href="/next">next</a></body></html>')
    page, response = read(directives, body)
    assert "robots" not in response.meta and page.drop_items == ""
    kept = links(directives, page, "http://a.test/ad", "http://a.test/ad#other", "http://a.test/map",
                 "http://a.test/ok", "http://a.test/next")
    assert kept == ["http://a.test/ok", "http://a.test/next"]
    assert page.counts == {"dropped_nofollow": 3}


def test_rel_nofollow_in_capitals_counts_whether_or_not_the_callback_built_the_tree() -> None:
    directives = stage()
    body = '<html><body><a rel="NOFOLLOW" href="/ad">ad</a> <a href="/ok">ok</a></body></html>'
    for parsed in (False, True):
        page, response = read(directives, body)
        if parsed:
            assert response.css("a::attr(href)").getall() == ["/ad", "/ok"]  # as a callback would
        assert links(directives, page, "http://a.test/ad", "http://a.test/ok") == ["http://a.test/ok"]
        assert page.counts == {"dropped_nofollow": 1}


def test_a_page_that_names_no_directive_is_never_parsed_and_its_requests_pass() -> None:
    directives = stage()
    page, response = read(directives, head('<meta charset="utf-8">', '<link rel="stylesheet" href="/s.css">'),
                          request=Request(URL, meta={"robots": frozenset({"nofollow"}), "canonical": "http://x"}))
    assert response._tree is None  # no tree built: the callback's parse is the page's only one
    assert "robots" not in response.meta and "canonical" not in response.meta  # copied from the linking page
    assert links(directives, page, "http://a.test/x") == ["http://a.test/x"]
    assert response._tree is None  # nor by the nofollow check: its bytes name no nofollow


def test_robots_meta_false_follows_and_keeps_everything_but_still_reads_the_canonical() -> None:
    directives = stage(robots_meta=False)
    page, response = read(directives, head('<meta name="robots" content="noindex,nofollow">',
                                           '<link rel="canonical" href="/dir/page?id=1">',
                                           '<a rel="nofollow" href="/x">x</a>'),
                          headers=[("X-Robots-Tag", "noindex")])
    assert "robots" not in response.meta and page.drop_items == "" and page.robots is None
    assert response.meta["canonical"] == "http://a.test/dir/page?id=1"
    assert links(directives, page, "http://a.test/x") == ["http://a.test/x"] and not page.counts


def test_the_canonical_url_from_the_head_or_the_link_header_and_its_fingerprint_only_when_another_pages() -> None:
    directives = stage(skip_duplicate_canonical=True)
    page, response = read(directives, head('<link rel="canonical" href="other#frag">'))
    assert response.meta["canonical"] == "http://a.test/dir/other"
    assert page.done.canonical == fingerprint("http://a.test/dir/other")
    own, response = read(directives, "<p>pdf</p>", headers=[("Link", '<http://a.test/dir/page>; rel="canonical"')])
    assert response.meta["canonical"] == URL and own.done.canonical is None  # its own URL: nothing to check
    assert header_canonical('</a.css>; rel=preload, <https://b.test/p>; rel="alternate canonical"', URL) == \
        "https://b.test/p"
    assert header_canonical('<https://b.test/p>; rel="alternate"', URL) is None
    off, _ = read(stage(), head('<link rel="canonical" href="/other">'))
    assert off.done.canonical is None  # skip_duplicate_canonical off: the engine is not asked
    # Another host's URL is not this page's to speak for: a hostile page would keep it from ever being fetched.
    elsewhere, response = read(directives, head('<link rel="canonical" href="http://b.test/dir/other">'))
    assert response.meta["canonical"] == "http://b.test/dir/other"
    assert elsewhere.done.canonical is None and elsewhere.counts["canonical_other_host"] == 1


def test_the_router_drops_a_noindex_pages_items_before_the_pipelines_and_a_nofollow_pages_links() -> None:
    config = ParserConfig.from_settings(load_settings(cli={}), None, {}, LogConfig())
    router = Router(_Yielding(), config)
    body = head('<meta name="robots" content="noindex">', '<link rel="canonical" href="/c">')
    done: PageDone = pickle.loads(router.handle(FetchResult(1, Request(URL), URL, 200, body=body.encode(),
                                                            headers=HTML)))
    assert done.items == [] and done.counts["items_noindex"] == 1 and done.counts["items"] == 0
    assert [r.url for _, r in done.candidates] == ["http://a.test/x"]  # noindex alone: its links are followed
    body = head('<meta name="robots" content="nofollow">')
    done = pickle.loads(router.handle(FetchResult(2, Request(URL), URL, 200, body=body.encode(), headers=HTML)))
    assert done.items == [{"canonical": None}] and done.candidates == []
    assert done.counts["dropped_nofollow"] == 1 and done.counts["pages_nofollow"] == 1


def test_the_links_of_a_page_the_engine_may_drop_as_a_duplicate_are_sent_again_from_the_next_page() -> None:
    config = ParserConfig.from_settings(load_settings(cli={"skip_duplicate_canonical": True}), None, {}, LogConfig())
    router = Router(_Yielding(), config)
    body = head('<link rel="canonical" href="/c">').encode()
    first: PageDone = pickle.loads(router.handle(FetchResult(1, Request(URL), URL, 200, body=body, headers=HTML)))
    assert first.canonical == fingerprint("http://a.test/c") and len(first.candidates) == 1
    # The engine may have dropped the first page's /x: the second page sends it again; after that, never.
    for req_id in (2, 3):
        done: PageDone = pickle.loads(router.handle(FetchResult(req_id, Request(URL + "2"), URL + "2", 200,
                                                                body=head().encode(), headers=HTML)))
        assert [r.url for _, r in done.candidates] == (["http://a.test/x"] if req_id == 2 else [])


class _Yielding(Spider):
    name = "yielding"
    start_urls = [URL]

    def parse(self, response: Response) -> Any:
        yield {"canonical": response.meta.get("canonical")}
        yield response.follow("/x")


def test_a_claim_on_the_seen_store_is_won_once() -> None:
    seen = FingerprintSet()
    assert seen.add_many([5]) == [5]
    assert seen.claim(7) is True and seen.claim(7) is False and seen.claim(5) is False
    assert seen.add_many([7, 8]) == [8]


def test_a_host_with_a_user_agent_of_its_own_is_addressed_by_that_agents_name_as_its_robots_txt_is() -> None:
    directives = stage(hosts={"a.test": {"user_agent": "OtherBot/1.0 (+https://example.test)"}})
    own, _ = read(directives, head('<meta name="otherbot" content="noindex">'))
    assert own.drop_items == "noindex"
    crawls, _ = read(directives, head('<meta name="crawlkit" content="noindex">'))  # the crawl's name: not this host's
    assert crawls.drop_items == "" and not crawls.counts
    tagged, response = read(directives, "<p>x</p>", headers=[("X-Robots-Tag", "otherbot: nofollow")])
    assert response.meta["robots"] == {"nofollow"} and tagged.robots is not None and tagged.robots.nofollow
    other = Request("http://b.test/")  # another host keeps the crawl's name
    page = Page(FetchResult(1, other, "http://b.test/"), PageDone(req_id=1, host="b.test"), Counter())
    response = Response("http://b.test/", 200, HTML, head('<meta name="crawlkit" content="noindex">').encode(), other)
    assert directives.on_response(page, response) is response and page.drop_items == "noindex"
