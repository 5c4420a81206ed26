"""The spider side of the Scrapy-style API, without a server or a process: requests, callbacks and
errbacks through the parser's Router, items of every kind, start(), pipelines and request hooks.

Requests, responses and FetchResults are built directly, as Scrapy's own middleware tests do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pickle
from collections import Counter
from typing import Any

import attrs
import pytest
from itemadapter import ItemAdapter

from crawlkit import Failure, Field, Item, Request, Response, Spider
from crawlkit.core.start import start_objects
from crawlkit.errors import (
    ConnectionRefused,
    FetchError,
    FetchErrorKind,
    FetchTimeout,
    HttpError,
    IgnoreRequest,
    SpiderError,
    UnresolvableHost,
    fetch_error,
)
from crawlkit.extensions.middlewares import RequestHooks, ResponseHooks
from crawlkit.extensions.pipelines import ItemPipelines
from crawlkit.log import LogConfig
from crawlkit.messages import FetchResult, PageDone
from crawlkit.parse.parser import ParserConfig, Router
from crawlkit.settings import load_settings
from crawlkit.spider import check_spider, close_spider

URL = "http://127.0.0.2:8000/list"
HTML = b"<html><body><a href='/a'>a</a></body></html>"


@dataclasses.dataclass
class Book:
    title: str
    price: float
    url: str = ""


@attrs.define
class Author:
    name: str
    born: int


class Quote(Item):
    text = Field()
    author = Field(serializer=str)
    tags = Field()


class Shop(Spider):
    name = "shop"

    def parse(self, response: Response) -> Any:
        yield Request(response.urljoin("/book"), callback=self.parse_book, cb_kwargs={"shelf": 3},
                      errback=self.failed)

    def parse_book(self, response: Response, shelf: int) -> Any:
        yield Book(title="Dune", price=9.5, url=response.url)
        yield {"shelf": shelf, "setting": self.settings.per_host}
        quote = Quote(tags=["sf"])
        quote["text"] = "fear is the mind-killer"  # set after tags: the export follows the declaration
        yield quote
        yield Author(name="Herbert", born=1920)

    def failed(self, failure: Failure) -> Any:
        yield {"failed": failure.request.url, "kind": type(failure.value).__name__,
               "refused": failure.check(HttpError, ConnectionRefused) is ConnectionRefused}
        yield Request(failure.request.url + "/again", callback="parse_book", cb_kwargs={"shelf": 0})


def router(spider: Spider, **settings: Any) -> Router:
    s = load_settings(cli={"retries": 0, **settings})
    return Router(spider, ParserConfig.from_settings(s, "tests:Shop", {}, LogConfig()))


def handled(r: Router, result: FetchResult) -> PageDone:
    done: PageDone = pickle.loads(r.handle(result))
    return done


def page(request: Request, status: int = 200, body: bytes = HTML) -> FetchResult:
    return FetchResult(1, request, request.url, status=status, body=body, headers=[("Content-Type", "text/html")])


def failed(request: Request, kind: FetchErrorKind) -> FetchResult:
    return FetchResult(1, request, request.url, error=kind.value, message="detail")


# ---------------------------------------------------------------- requests and callbacks


def test_cb_kwargs_and_errback_travel_by_value_and_by_name() -> None:
    spider = Shop()
    request = Request(URL, callback=spider.parse_book, cb_kwargs={"shelf": 3}, errback=spider.failed)
    assert (request.callback, request.errback, request.cb_kwargs) == ("parse_book", "failed", {"shelf": 3})
    back = pickle.loads(pickle.dumps(request))
    assert (back.callback, back.errback, back.cb_kwargs) == ("parse_book", "failed", {"shelf": 3})
    copy = request.replace(url=URL + "?2")
    assert (copy.errback, copy.cb_kwargs) == ("failed", {"shelf": 3})


def test_a_lambda_or_a_nested_function_is_refused_where_the_request_is_made() -> None:
    def local(response: Response) -> None: ...

    for callback in (lambda response: None, local):
        with pytest.raises(TypeError, match="must be a method of the spider or its name"):
            Request(URL, callback=callback)
        with pytest.raises(TypeError, match="must be a method of the spider or its name"):
            Request(URL, errback=callback)


def test_cb_kwargs_become_keyword_arguments_and_the_spider_has_its_settings_in_the_parser() -> None:
    spider = Shop()
    r = router(spider, per_host=3)
    done = handled(r, page(Request(URL + "/book", callback="parse_book", cb_kwargs={"shelf": 7})))
    assert {"shelf": 7, "setting": 3} in done.items
    assert done.counts["items"] == 4


def test_items_of_every_kind_become_dicts_in_their_declared_field_order() -> None:
    done = handled(router(Shop()), page(Request(URL + "/book", callback="parse_book", cb_kwargs={"shelf": 1})))
    assert all(type(item) is dict for item in done.items)
    book, _, quote, author = done.items
    assert list(book.items()) == [("title", "Dune"), ("price", 9.5), ("url", URL + "/book")]
    assert list(quote.items()) == [("text", "fear is the mind-killer"), ("tags", ["sf"])]
    assert list(author.items()) == [("name", "Herbert"), ("born", 1920)]


def test_requests_yielded_by_a_callback_keep_cb_kwargs_and_errback_one_link_deeper() -> None:
    done = handled(router(Shop()), page(Request(URL, depth=2)))
    [(_, request)] = done.candidates
    assert (request.url, request.callback, request.errback) == ("http://127.0.0.2:8000/book", "parse_book", "failed")
    assert (request.cb_kwargs, request.depth, request.referer) == ({"shelf": 3}, 3, URL)


def test_an_errback_gets_the_request_and_a_typed_error_for_a_failed_fetch_and_may_yield() -> None:
    request = Request(URL + "/book", callback="parse_book", errback="failed", depth=1)
    done = handled(router(Shop()), failed(request, FetchErrorKind.CONNECTION_REFUSED))
    assert done.items == [{"failed": URL + "/book", "kind": "ConnectionRefused", "refused": True}]
    [(_, again)] = done.candidates
    assert (again.url, again.cb_kwargs, again.depth, again.referer) == (URL + "/book/again", {"shelf": 0}, 2,
                                                                       URL + "/book")
    assert done.counts["error_connection_refused"] == 1


def test_an_errback_gets_an_http_error_with_the_response_for_a_non_2xx_page() -> None:
    class Statuses(Shop):
        def failed(self, failure: Failure) -> Any:
            assert failure.check(HttpError) is HttpError and failure.check(FetchError) is None
            yield {"status": failure.value.response.status, "body": failure.value.response.text}

    request = Request(URL + "/missing", errback="failed")
    done = handled(router(Statuses()), page(request, status=404, body=b"gone"))
    assert done.items == [{"status": 404, "body": "gone"}]
    assert done.counts["status_404"] == 1
    # Without an errback a 404 is counted only, as before.
    assert handled(router(Statuses()), page(Request(URL + "/missing"), status=404)).items == []


def test_a_retryable_failure_goes_to_the_errback_only_once_the_retries_are_spent() -> None:
    request = Request(URL, errback="failed")
    done = handled(router(Shop(), retries=2), failed(request, FetchErrorKind.READ_TIMEOUT))
    assert done.retry is not None and done.items == []
    done = handled(router(Shop(), retries=0), failed(request, FetchErrorKind.READ_TIMEOUT))
    assert done.items[0]["kind"] == "FetchTimeout"


def test_a_misspelt_callback_or_errback_and_a_missing_parse_are_one_error_line_with_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Typos(Spider):
        name = "typos"

        def list(self, response: Response) -> Any:
            yield Request(URL + "/1", callback="parse_itme")
            yield Request(URL + "/2", callback="list", errback="on_eror")
            yield Request(URL + "/3")  # to parse, which Typos lacks
            yield Request(URL + "/4", callback="list")

    with caplog.at_level(logging.ERROR, logger="crawlkit.parser"):
        done = handled(router(Typos()), page(Request(URL, callback="list")))
    assert [request.url for _, request in done.candidates] == [URL + "/4"]
    assert done.counts["error_spider_callback_missing"] == 3
    lines = [record.getMessage() for record in caplog.records]
    assert any(f"request for {URL}/1: its callback 'parse_itme' is not a method of spider Typos" in line
               for line in lines)
    assert any(f"request for {URL}/2: its errback 'on_eror' is not a method of spider Typos" in line for line in lines)
    assert any(f"request for {URL}/3 names no callback and spider Typos has no parse() method" in line
               for line in lines)


def test_a_spider_whose_start_urls_have_no_callback_is_refused_before_the_crawl() -> None:
    class NoParse(Spider):
        start_urls = [URL]

    with pytest.raises(SpiderError, match="has start_urls but no parse"):
        check_spider(NoParse())

    class OwnStart(NoParse):
        def start_requests(self) -> Any:
            yield Request(URL, callback="other")

        def other(self, response: Response) -> None: ...

    check_spider(OwnStart())

    class SyncStart(Shop):
        def start(self) -> Any:  # type: ignore[override]
            return [Request(URL)]

    with pytest.raises(SpiderError, match="start\\(\\) must be an async generator"):
        check_spider(SyncStart())


# ---------------------------------------------------------------- start()


def test_async_start_is_driven_one_request_at_a_time_without_a_loop_left_running() -> None:
    steps: list[str] = []

    class Async(Shop):
        async def start(self) -> Any:
            for n in range(3):
                await asyncio.sleep(0)
                steps.append(f"yield {n}")
                yield Request(f"{URL}?{n}")
            steps.append("end")

    objects = start_objects(Async())
    assert steps == []  # nothing runs before the first request is asked for
    assert next(objects).url == URL + "?0" and steps == ["yield 0"]
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # between requests, no loop runs
    assert [request.url for request in objects] == [URL + "?1", URL + "?2"]
    assert steps == ["yield 0", "yield 1", "yield 2", "end"]


def test_an_async_start_stopped_early_runs_its_finally_block() -> None:
    closed: list[bool] = []

    class Endless(Shop):
        async def start(self) -> Any:
            try:
                while True:
                    yield Request(URL)
            finally:
                closed.append(True)

    objects = start_objects(Endless())
    next(objects)
    objects.close()  # type: ignore[attr-defined]
    assert closed == [True]


def test_without_start_the_start_requests_come_from_start_requests_and_start_urls() -> None:
    class Plain(Shop):
        start_urls = [URL, URL + "?2"]

    assert [request.url for request in start_objects(Plain())] == [URL, URL + "?2"]

    class Super(Plain):  # Scrapy's idiom: start() extends the default one
        async def start(self) -> Any:
            yield Request(URL + "?first")
            async for request in super().start():
                yield request

    assert [request.url for request in start_objects(Super())] == [URL + "?first", URL, URL + "?2"]


# ---------------------------------------------------------------- spider attributes


def test_spider_arguments_become_attributes_and_the_logger_is_named_after_the_spider() -> None:
    spider = Shop(category="books", limit="3")
    assert (spider.category, spider.limit) == ("books", "3")  # type: ignore[attr-defined]
    assert spider.logger is logging.getLogger("shop")


def test_closed_is_called_with_the_reason_and_what_it_raises_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    reasons: list[str] = []

    class Closing(Shop):
        def closed(self, reason: str) -> None:
            reasons.append(reason)
            raise ValueError("disk gone")

    close_spider(Closing(), "finished")
    close_spider(Shop(), "finished")  # no closed(): nothing to call
    assert reasons == ["finished"]
    assert "spider shop: closed() raised ValueError: disk gone" in caplog.text


# ---------------------------------------------------------------- errors and failures


def test_each_fetch_error_kind_has_an_exception_an_errback_can_check() -> None:
    assert type(fetch_error(FetchErrorKind.CONNECT_TIMEOUT, "x")) is FetchTimeout
    assert type(fetch_error(FetchErrorKind.DOWNLOAD_TIMEOUT, "x")) is FetchTimeout
    assert type(fetch_error(FetchErrorKind.UNRESOLVABLE_HOST, "x")) is UnresolvableHost
    assert type(fetch_error(FetchErrorKind.DROPPED, "x")) is IgnoreRequest
    for kind in FetchErrorKind:
        error = fetch_error(kind, "detail")
        assert str(error) == "detail"
        assert isinstance(error, IgnoreRequest) or error.kind is kind  # type: ignore[attr-defined]
    failure = Failure(Request(URL), fetch_error(FetchErrorKind.CONNECTION_RESET, "reset by peer"))
    assert failure.check(ConnectionRefused, FetchTimeout) is None
    assert failure.check(ConnectionRefused, FetchError) is FetchError
    assert failure.getErrorMessage() == "reset by peer"


# ---------------------------------------------------------------- items


def test_item_takes_declared_fields_only_and_iterates_in_declaration_order() -> None:
    quote = Quote(author="Herbert")
    quote["text"] = "x"
    assert list(quote) == ["text", "author"] and dict(quote) == {"text": "x", "author": "Herbert"}
    with pytest.raises(KeyError, match="Quote does not support field: txet"):
        quote["txet"] = "y"
    with pytest.raises(AttributeError, match="use item\\['text'\\]"):
        quote.text = "y"
    assert Quote.fields["author"] == {"serializer": str}
    adapter = ItemAdapter(quote)
    assert list(adapter.field_names()) == ["text", "author", "tags"]
    assert adapter.get_field_meta("author")["serializer"] is str
    assert adapter.asdict() == {"text": "x", "author": "Herbert"}

    class Longer(Quote):
        source = Field()

    assert list(Longer.fields) == ["text", "author", "tags", "source"]


def test_pipelines_get_items_as_yielded_and_open_spider_close_spider_are_called() -> None:
    calls: list[str] = []

    class Scrapyish:
        def open_spider(self, spider: Spider) -> None:
            calls.append(f"open_spider {spider.name}")

        def process_item(self, item: Any, spider: Spider) -> Any:
            calls.append(type(item).__name__)
            if isinstance(item, Book):
                return dataclasses.replace(item, price=item.price * 2)  # another item of the same kind
            return item

        def close_spider(self, spider: Spider) -> None:
            calls.append("close_spider")

    class Both(Scrapyish):
        def open(self, spider: Spider) -> None:
            calls.append("open")

    spider = Shop()
    pipelines = ItemPipelines([("t:Scrapyish", Scrapyish), ("t:Both", Both)], spider)
    pipelines.open()
    assert calls == ["open_spider shop", "open", "open_spider shop"]  # per pipeline, in order
    calls.clear()
    r = router(spider)
    r.pipelines = pipelines
    done = handled(r, page(Request(URL + "/book", callback="parse_book", cb_kwargs={"shelf": 1})))
    assert calls == ["Book", "Book", "dict", "dict", "Quote", "Quote", "Author", "Author"]
    assert done.items[0] == {"title": "Dune", "price": 38.0, "url": URL + "/book"}
    calls.clear()
    pipelines.close()
    assert calls == ["close_spider", "close_spider"]


# ---------------------------------------------------------------- request hooks


def test_process_request_none_goes_on_a_response_skips_the_fetch_and_ignore_request_drops() -> None:
    class Header:
        def process_request(self, request: Request, spider: Spider) -> None:
            request.headers["X-Token"] = "t"  # changed in place; None: go on

    class Cache:
        def process_request(self, request: Request, spider: Spider) -> Response | None:
            if request.url.endswith("cached"):
                return Response(request.url, 203, {"X-Cache": "hit", "Set-Cookie": ["a=1", "b=2"]}, b"<p>old</p>",
                                request)
            if request.url.endswith("skip"):
                raise IgnoreRequest("not wanted")
            return None

    hooks = RequestHooks([("t:Header", Header), ("t:Cache", Cache)], Shop())
    sent = hooks.process(Request(URL))
    assert isinstance(sent, Request) and sent.headers["x-token"] == "t"
    answered = hooks.process(Request(URL + "/cached"))
    assert isinstance(answered, FetchResult) and answered.error is None
    assert (answered.status, answered.body) == (203, b"<p>old</p>")
    assert answered.headers == [("X-Cache", "hit"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    ignored = hooks.process(Request(URL + "/skip"))
    assert isinstance(ignored, FetchResult) and ignored.error == FetchErrorKind.DROPPED.value
    assert ignored.message == "ignored by middleware t:Cache: not wanted"


def test_an_ignored_request_reaches_its_errback_as_ignore_request() -> None:
    request = Request(URL, errback="failed")
    result = FetchResult(1, request, URL, error=FetchErrorKind.DROPPED.value, message="ignored by middleware t:M")
    done = handled(router(Shop()), result)
    assert done.items[0]["kind"] == "IgnoreRequest"
    assert done.counts["dropped_middleware"] == 1


def test_process_response_raising_ignore_request_drops_the_response_as_filtered() -> None:
    class Ban:
        def process_response(self, response: Response, spider: Spider) -> Response:
            if response.status == 403:
                raise IgnoreRequest("banned")
            return response

    hooks = ResponseHooks([("t:Ban", Ban)], Shop())
    counts: Counter[str] = Counter()
    assert hooks.process(Response(URL, 403, {}, b"", Request(URL)), counts) is None
    assert counts == {"dropped_middleware": 1}
    kept = Response(URL, 200, {}, b"", Request(URL))
    assert hooks.process(kept, counts) is kept


def test_too_many_redirects_and_a_redirect_loop_reach_the_errback_as_fetch_errors() -> None:
    def redirect(request: Request, location: str) -> FetchResult:
        return FetchResult(1, request, request.url, status=302, headers=[("Location", location)])

    spider = Shop()
    looping = Request(URL + "/b", errback="failed", meta={"redirect_urls": [URL + "/a"]})
    done = handled(router(spider), redirect(looping, "/list/a"))
    assert done.items[0] == {"failed": URL + "/b", "kind": "FetchError", "refused": False}
    assert done.counts["error_redirect_loop"] == 1
    long = Request(URL + "/9", errback="failed", meta={"redirect_urls": [f"{URL}/{n}" for n in range(20)]})
    done = handled(router(spider, max_redirects=3), redirect(long, "/list/10"))
    assert done.items[0]["kind"] == "FetchError" and done.counts["error_too_many_redirects"] == 1
    # Followed redirects carry the errback and cb_kwargs to the next hop.
    hop = Request(URL, callback="parse_book", errback="failed", cb_kwargs={"shelf": 2})
    [(_, target)] = handled(router(spider), redirect(hop, "/next")).candidates
    assert (target.url, target.errback, target.cb_kwargs) == ("http://127.0.0.2:8000/next", "failed", {"shelf": 2})
