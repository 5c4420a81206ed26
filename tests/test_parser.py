"""The parser's Router on its own: what it sends the engine for each page."""

from __future__ import annotations

import pickle

import pytest

from crawlkit import Request
from crawlkit.log import LogConfig
from crawlkit.messages import FetchResult, PageDone
from crawlkit.parse import parser as parser_module
from crawlkit.parse.parser import ParserConfig, Router, _writable, build_spider
from crawlkit.settings import load_settings

SITE = "http://127.0.0.2:8000"


def router() -> Router:
    config = ParserConfig.from_settings(load_settings(), "crawlkit.tools.bench:LightSpider", {}, LogConfig())
    return Router(build_spider(config.spider, {"start_urls": [SITE + "/"]}), config)


def page(req_id: int, path: str, links: list[str]) -> FetchResult:
    anchors = "".join(f'<a href="{href}">x</a>' for href in links)
    html = "<html><head><title>t</title></head><body>" + anchors + "</body></html>"
    url = SITE + path
    return FetchResult(req_id, Request(url, callback="parse"), url, status=200, body=html.encode(),
                       headers=[("Content-Type", "text/html; charset=utf-8")])


def sent(r: Router, result: FetchResult) -> tuple[list[str], dict[str, int]]:
    done: PageDone = pickle.loads(r.handle(result))
    return [request.url for _, request in done.candidates], done.counts


def test_a_link_is_sent_to_the_engine_once_then_counted_as_a_duplicate() -> None:
    r = router()
    first, counts = sent(r, page(1, "/a/1.html", ["2.html", "/a/3.html", "2.html#top", "../a/2.html"]))
    assert first == [SITE + "/a/2.html", SITE + "/a/3.html"]
    assert counts["duplicates"] == 2  # the repeats within the page
    # The next page shares its navigation: only the new link goes to the engine.
    second, counts = sent(r, page(2, "/a/2.html", ["/a/3.html", "2.html", "4.html"]))
    assert second == [SITE + "/a/4.html"]
    assert counts["duplicates"] == 2
    # dont_filter requests are never held back (none here); a fresh parser sends everything again.
    assert sent(router(), page(3, "/a/2.html", ["/a/3.html"]))[0] == [SITE + "/a/3.html"]


def test_the_memory_of_sent_links_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser_module, "SENT_MEMORY", 3)
    r = router()
    assert len(sent(r, page(1, "/1.html", ["/x1", "/x2", "/x3"]))[0]) == 3
    # Full: what is remembered is forgotten at once, so old links reach the engine again,
    # whose seen store decides.
    assert sent(r, page(2, "/2.html", ["/x1", "/x4"]))[0] == [SITE + "/x4"]
    assert len(r.sent) == 1
    assert sent(r, page(3, "/3.html", ["/x1", "/x4"]))[0] == [SITE + "/x1"]


def test_writable_nulls_nan_and_infinity_and_keeps_other_items_as_they_are() -> None:
    fine = {"a": 1.5, "b": [1, "x"], "c": {"d": None}}
    assert _writable(fine) is fine  # no copy when nothing needs changing
    nan = {"a": float("nan"), "b": [float("inf"), 2.0, (float("-inf"),)], "c": {"d": float("nan")}, "e": "NaN"}
    assert _writable(nan) == {"a": None, "b": [None, 2.0, [None]], "c": {"d": None}, "e": "NaN"}
    assert nan["a"] != nan["a"]  # the spider's own item is left alone
    assert _writable({(1, 2): float("nan")}) == "keys must be str, int, float, bool or None, not tuple"
