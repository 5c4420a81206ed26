"""``crawlkit.testing.run_callback``: a callback run on a Response built in the test, as the crawl's
parser would run it (callback by name, cb_kwargs, errbacks, settings, the requests' checks); no
server, no processes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import pytest

from crawlkit import Failure, HttpError, Request, Response, Spider, SpiderError
from crawlkit.testing import run_callback


@dataclasses.dataclass
class Book:
    title: str
    shelf: int


class Shop(Spider):
    name = "shop"
    custom_settings = {"DOWNLOAD_DELAY": 2, "per_host": 3}

    def parse(self, response: Response) -> Iterable[Any]:
        yield from response.follow_all(css="a.book", callback=self.parse_book, cb_kwargs={"shelf": 3})
        yield response.follow("/next", meta={"page": 2})

    def parse_book(self, response: Response, shelf: int) -> Iterable[Any]:
        yield Book(response.css("h1::text").get(default=""), shelf)

    def settings_seen(self, response: Response) -> dict[str, Any]:
        return {"delay": self.settings.delay, "per_host": self.settings.per_host}

    def failed(self, failure: Failure) -> Iterable[Any]:
        if failure.check(HttpError):
            yield {"url": failure.request.url, "status": failure.value.response.status}

    def stray(self, response: Response) -> Iterable[Any]:
        yield Request(response.urljoin("/x"), callback="nowhere")

    def junk(self, response: Response) -> Iterable[Any]:
        yield 42


LIST = '<a class="book" href="/item/7">Dune</a> <a class="book" href="item/8">Emma</a>'


def test_parse_runs_when_the_request_names_no_callback_and_its_requests_are_absolute() -> None:
    out = run_callback(Shop(), Response("https://books.example/list/", body=LIST))
    assert out.items == []
    assert [(r.url, r.callback, r.cb_kwargs, r.meta) for r in out.requests] == [
        ("https://books.example/item/7", "parse_book", {"shelf": 3}, {}),
        ("https://books.example/list/item/8", "parse_book", {"shelf": 3}, {}),
        ("https://books.example/next", None, {}, {"page": 2}),
    ]


def test_the_callback_the_request_names_gets_its_cb_kwargs_and_items_come_as_yielded() -> None:
    spider = Shop()
    request = Request("https://books.example/item/7", callback=spider.parse_book, cb_kwargs={"shelf": 5})
    out = run_callback(spider, Response(request.url, body="<h1>Dune</h1>", request=request))
    assert out.items == [Book("Dune", 5)] and out.requests == []


def test_settings_come_from_custom_settings_scrapy_names_included_unless_the_test_set_them() -> None:
    request = Request("https://books.example/", callback="settings_seen")
    assert run_callback(Shop(), Response(request.url, request=request)).items == [{"delay": 2.0, "per_host": 3}]


def test_a_failure_goes_to_the_errback() -> None:
    request = Request("https://books.example/gone", callback="parse_book", errback="failed")
    failure = Failure(request, HttpError(Response(request.url, status=404, request=request)))
    assert run_callback(Shop(), failure).items == [{"url": "https://books.example/gone", "status": 404}]


@pytest.mark.parametrize(("callback", "message"), [
    ("stray", "stray yielded a request the crawl would drop: request for https://books.example/x: "
              "its callback 'nowhere' is not a method of spider Shop"),
    ("junk", "junk yielded a int on https://books.example/; yield items"),
    ("missing", "spider Shop has no 'missing' for https://books.example/"),
])
def test_what_the_crawl_would_drop_fails_the_test(callback: str, message: str) -> None:
    request = Request("https://books.example/", callback=callback)
    with pytest.raises(SpiderError) as info:
        run_callback(Shop(), Response(request.url, request=request))
    assert str(info.value).startswith(message)
