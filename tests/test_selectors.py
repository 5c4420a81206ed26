"""A callback's Response in Scrapy's idioms, built from strings: parsel selectors, follow/follow_all, json()."""

from __future__ import annotations

import pytest
from parsel import Selector, SelectorList

from crawlkit import Request, Response

QUOTES = """<html><head><title> Quotes </title><base href="/site/"></head><body>
<div class="quote" data-id="1"><span class="text">“One”</span><small class="author">Ann</small>
  <a class="tag" href="tag/one">one</a><a class="tag" href="tag/two">two</a></div>
<div class="quote" data-id="2"><span class="text">“Two”</span><small class="author">Bob</small></div>
<p id="price">Price: 12.50 EUR, was 15.00 EUR</p>
<ul class="pager"><li class="next"><a href=" page/2/ ">Next <b>→</b></a></li><li><a>no href</a></li></ul>
<link rel="next" href="/site/page/2/"><img src="logo.png">
</body></html>"""


def quotes() -> Response:
    return Response("http://quotes.test/site/index.html", body=QUOTES)


def test_css_and_xpath_give_parsel_selectors_with_text_attr_get_and_getall() -> None:
    response = quotes()
    assert isinstance(response.selector, Selector)
    assert isinstance(response.css("div.quote"), SelectorList)
    assert response.css("title::text").get() == " Quotes "
    assert response.css("span.text::text").getall() == ["“One”", "“Two”"]
    assert response.css("div.quote::attr(data-id)").getall() == ["1", "2"]
    assert response.css("h1::text").get() is None
    assert response.css("h1::text").get(default="none") == "none"
    assert response.xpath("//small[@class=$cls]/text()", cls="author").getall() == ["Ann", "Bob"]
    assert response.xpath("string(//li[@class='next'])").get() == "Next →"
    assert response.css("li.next a").attrib == {"href": " page/2/ "}
    # Every selected element selects further, by CSS and XPath, relative to itself.
    first, second = response.css("div.quote")
    assert first.css("span.text::text").get() == "“One”"
    assert first.xpath(".//a/@href").getall() == ["tag/one", "tag/two"]
    assert second.css("a.tag") == []
    assert [q.css("small::text").get() for q in response.css("div.quote")] == ["Ann", "Bob"]


def test_re_and_re_first_on_selectors_and_lists() -> None:
    response = quotes()
    assert response.css("#price::text").re(r"(\d+\.\d+) EUR") == ["12.50", "15.00"]
    assert response.css("#price").re_first(r"(\d+\.\d+)") == "12.50"
    assert response.css("#price::text").re_first(r"(\d+) USD") is None
    assert response.css("#price::text").re_first(r"(\d+) USD", default="0") == "0"


def test_the_selector_is_built_on_the_pages_one_tree() -> None:
    response = quotes()
    assert response.selector.root is response.tree  # no second parse
    assert response.selector is response.selector
    assert response.tree.xpath("//small/text()") == ["Ann", "Bob"]  # the raw lxml tree stays
    assert [t.text for t in response.tree.cssselect("span.text")] == ["“One”", "“Two”"]


def test_jmespath_and_json_on_a_json_body() -> None:
    response = Response("http://api.test/quotes", body='{"quotes": [{"author": "Ann", "tags": ["a", "b"]}, '
                                                      '{"author": "Bob", "tags": []}], "next": null}')
    assert response.content_type == "application/json"
    assert response.jmespath("quotes[].author").getall() == ["Ann", "Bob"]
    assert response.jmespath("quotes[0].tags").getall() == ["a", "b"]
    assert response.jmespath("next").get() is None
    assert response.json() == {"quotes": [{"author": "Ann", "tags": ["a", "b"]}, {"author": "Bob", "tags": []}],
                               "next": None}
    assert response.json() is response.json()
    served = Response("http://api.test/v", 200, {"Content-Type": "application/vnd.api+json; charset=utf-8"},
                      b'{"data": [{"id": "7"}]}', Request("http://api.test/v"))
    assert served.jmespath("data[].id").getall() == ["7"]
    with pytest.raises(ValueError):
        quotes().json()


def test_an_xml_body_is_selected_as_xml() -> None:
    response = Response("http://feed.test/rss", 200, {"Content-Type": "application/rss+xml"},
                        b'<?xml version="1.0"?><rss><channel><Item><title>A</title></Item></channel></rss>')
    assert response.xpath("//Item/title/text()").getall() == ["A"]  # tags keep their case in XML


def test_follow_takes_a_url_an_a_or_link_selector_or_an_href_selector() -> None:
    response = quotes()
    assert response.follow("tag/x").url == "http://quotes.test/site/tag/x"  # against <base href>
    assert response.follow(response.css("li.next a")[0]).url == "http://quotes.test/site/page/2/"
    assert response.follow(response.css("link")[0]).url == "http://quotes.test/site/page/2/"
    assert response.follow(response.css("a.tag::attr(href)")[1]).url == "http://quotes.test/site/tag/two"
    assert response.follow(response.xpath("//img/@src")[0]).url == "http://quotes.test/site/logo.png"
    assert response.follow(response.tree.cssselect("a.tag")[0]).url == "http://quotes.test/site/tag/one"
    request = response.follow("tag/x", callback="parse_tag", cb_kwargs={"tag": "x"}, meta={"m": 1}, priority=3)
    assert (request.callback, request.cb_kwargs, request.meta, request.priority) == ("parse_tag", {"tag": "x"},
                                                                                      {"m": 1}, 3)
    # As in Scrapy: an <img> is followed by its ::attr(src) (above), not as an element.
    for bad in (response.css("img")[0], response.css("li")[1].css("a")[0], response.css("div.quote")):
        with pytest.raises(ValueError):
            response.follow(bad)


def test_follow_all_by_css_xpath_or_urls_skips_elements_without_a_url() -> None:
    response = quotes()
    by_css = [r.url for r in response.follow_all(css="ul.pager a, a.tag", callback="parse")]
    assert by_css == ["http://quotes.test/site/tag/one", "http://quotes.test/site/tag/two",
                      "http://quotes.test/site/page/2/"]  # document order; the <a> without href is skipped
    assert [r.url for r in response.follow_all(xpath="//link")] == ["http://quotes.test/site/page/2/"]
    hrefs = response.css("a.tag::attr(href)").getall()
    assert [r.url for r in response.follow_all(hrefs, "parse_tag")] == by_css[:2]
    assert [r.url for r in response.follow_all(response.css("ul.pager a"))] == by_css[2:]
    assert all(r.callback == "parse" for r in response.follow_all(css="a", callback="parse"))
    for arguments in ({}, {"urls": hrefs, "css": "a"}, {"css": "a", "xpath": "//a"}):
        with pytest.raises(ValueError, match="exactly one"):
            response.follow_all(**arguments)


def test_a_response_built_for_a_test_has_the_defaults_a_server_would_give() -> None:
    response = Response("http://quotes.test/p", body="<p>Grüße <a href='q'>q</a></p>")
    assert (response.status, response.content_type, response.encoding) == (200, "text/html", "utf-8")
    assert response.request.url == "http://quotes.test/p" and response.meta == {} and response.cb_kwargs == {}
    assert response.css("p::text").get() == "Grüße "
    assert response.links() == ["http://quotes.test/q"]
    latin = Response("http://quotes.test/l", body="<p>Grüße</p>", encoding="latin-1")
    assert (latin.body, latin.encoding, latin.css("p::text").get()) == ("<p>Grüße</p>".encode("latin-1"),
                                                                        "cp1252", "Grüße")
    request = Request("http://quotes.test/p", cb_kwargs={"n": 1}, meta={"m": 2})
    from_request = Response(request.url, body=b"<p>x</p>", request=request)
    assert (from_request.cb_kwargs, from_request.meta) == ({"n": 1}, {"m": 2})
