"""CrawlSpider and Rule on Responses built directly, run as the crawl's parser runs callbacks
(``crawlkit.testing.run_callback``): which requests each rule makes, with what callback, and what
the rules' callbacks, ``cb_kwargs``, ``process_links``, ``process_request`` and errbacks see.
No server, no process; tests/test_scrapy_spiders.py crawls a local site with one."""

from __future__ import annotations

from typing import Any

import pytest

from crawlkit import CrawlSpider, Failure, HttpError, LinkExtractor, Request, Response, Rule, SpiderError
from crawlkit.testing import run_callback

SHOP = """<html><body>
<ul class="pager"><a href="/list/2">next</a></ul>
<div class="items"><a href="/item/1">One</a><a href="/item/2">Two</a><a href="/item/1">One again</a></div>
<a href="/about" rel="nofollow">about</a> <a href="/logo.png">logo</a>
</body></html>"""


class Shop(CrawlSpider):
    name = "shop"
    start_urls = ["http://shop.test/list/1"]
    rules = (
        Rule(LinkExtractor(allow=r"/list/")),
        Rule(LinkExtractor(restrict_css="div.items"), callback="parse_item", cb_kwargs={"kind": "item"},
             errback="item_failed"),
    )

    def parse_start_url(self, response: Response, **kwargs: Any) -> Any:
        return {"start": response.url}

    def parse_item(self, response: Response, kind: str) -> Any:
        yield {"url": response.url, "kind": kind, "text": response.meta["link_text"]}

    def item_failed(self, failure: Failure) -> Any:
        yield {"failed": failure.request.url}


def page(url: str, body: str = SHOP, request: Request | None = None) -> Response:
    return Response(url, body=body, request=request)


def test_a_start_page_gives_parse_start_url_then_each_rules_links_once_tagged_with_the_rule() -> None:
    out = run_callback(Shop(), page("http://shop.test/list/1"))
    assert out.items == [{"start": "http://shop.test/list/1"}]
    assert [(r.url, r.callback, r.errback, r.meta) for r in out.requests] == [
        ("http://shop.test/list/2", "_callback", None, {"rule": 0, "link_text": "next"}),
        ("http://shop.test/item/1", "_callback", "_errback", {"rule": 1, "link_text": "One"}),
        ("http://shop.test/item/2", "_callback", "_errback", {"rule": 1, "link_text": "Two"}),
    ]


def test_a_rules_page_goes_to_its_callback_with_cb_kwargs_and_is_not_followed_when_it_has_one() -> None:
    spider = Shop()
    request = run_callback(spider, page("http://shop.test/list/1")).requests[1]
    out = run_callback(spider, page(request.url, request=request))
    assert out.items == [{"url": "http://shop.test/item/1", "kind": "item", "text": "One"}]
    assert out.requests == []  # follow defaults to False for a rule with a callback
    listing = run_callback(spider, page("http://shop.test/list/2", request=run_callback(
        spider, page("http://shop.test/list/1")).requests[0]))
    assert [r.url for r in listing.requests] == ["http://shop.test/list/2", "http://shop.test/item/1",
                                                 "http://shop.test/item/2"]  # no callback: followed


def test_a_request_s_own_cb_kwargs_win_over_the_rules() -> None:
    spider = Shop()
    request = run_callback(spider, page("http://shop.test/list/1")).requests[1]
    request.cb_kwargs["kind"] = "special"
    assert run_callback(spider, page(request.url, request=request)).items[0]["kind"] == "special"


def test_the_rules_errback_gets_the_failure() -> None:
    spider = Shop()
    request = run_callback(spider, page("http://shop.test/list/1")).requests[2]
    missing = Response(request.url, status=404, body="<p>gone</p>", request=request)
    assert run_callback(spider, Failure(request, HttpError(missing))).items == [{"failed": "http://shop.test/item/2"}]


class Processed(CrawlSpider):
    name = "processed"
    rules = (Rule(LinkExtractor(deny_extensions=[]), callback="parse_page", follow=True,
                  process_links="drop_nofollow", process_request="mark"),)

    def parse_page(self, response: Response) -> Any:
        return None

    def drop_nofollow(self, links: list[Any]) -> list[Any]:
        return [link for link in links if not link.nofollow]

    def mark(self, request: Request, response: Response) -> Request | None:
        if request.url.endswith(".png"):
            return None
        return request.replace(priority=5, meta={**request.meta, "from": response.url})


def test_process_links_and_process_request_filter_and_change_what_a_rule_follows() -> None:
    spider = Processed()
    seed = run_callback(spider, page("http://shop.test/list/1"))
    assert [r.url for r in seed.requests] == ["http://shop.test/list/2", "http://shop.test/item/1",
                                              "http://shop.test/item/2"]  # no nofollow link, no .png
    assert {r.priority for r in seed.requests} == {5}
    followed = run_callback(spider, page("http://shop.test/list/2", request=seed.requests[0]))
    assert followed.items == [] and len(followed.requests) == 3  # follow=True with a callback
    assert followed.requests[0].meta["from"] == "http://shop.test/list/2"


class Results(CrawlSpider):
    name = "results"
    rules = (Rule(callback="parse_page"),)

    def parse_page(self, response: Response) -> Any:
        return [{"n": 1}, {"n": 2}]

    def process_results(self, response: Response, results: Any) -> Any:
        return [item for item in results if item["n"] == 2]


def test_process_results_sees_what_a_rules_callback_returned_and_a_default_rule_follows_every_link() -> None:
    spider = Results()
    seed = run_callback(spider, page("http://shop.test/list/1"))
    assert seed.items == [] and len(seed.requests) == 4  # the default extractor: every link but the .png
    assert run_callback(spider, page(seed.requests[0].url, request=seed.requests[0])).items == [{"n": 2}]


def test_a_rule_naming_no_method_of_the_spider_fails_when_the_spider_is_made() -> None:
    class Wrong(CrawlSpider):
        name = "wrong"
        rules = (Rule(LinkExtractor(), callback="parse_itme"),)

    with pytest.raises(SpiderError, match="a rule's callback 'parse_itme' is not a method of the spider"):
        Wrong()


def test_a_page_that_is_not_html_yields_no_links() -> None:
    json_page = Response("http://shop.test/api", body='{"next": "/list/2"}')
    assert run_callback(Shop(), json_page).requests == []
