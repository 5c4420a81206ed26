"""A spider in Scrapy's idioms run through the real command against a local site: ``-a``, ``async def
start``, ``cb_kwargs``, errbacks, items of every kind in field order, ``self.logger``,
``self.settings``, ``closed(reason)``, ``open_spider``/``close_spider`` and a middleware that
returns None; asserting what the server saw and what was written.
"""

from __future__ import annotations

import csv
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawlkit.tools.site import Site, SiteRequest, SiteSpec, respond

SPIDER = '''
import dataclasses
import os

import attrs

from crawlkit import Field, HttpError, Item, Request, Spider

OUT = {out!r}


@dataclasses.dataclass
class Book:
    title: str
    category: str
    shelf: int
    per_host: int


@attrs.define
class Author:
    name: str
    born: int


class Quote(Item):
    text = Field()
    author = Field()


class Shop(Spider):
    name = "shop"

    async def start(self):
        self.logger.info("starting on category %s", self.category)
        yield Request({base!r} + "/cat/" + self.category, callback=self.parse_list, cb_kwargs={{"shelf": 3}})
        yield Request({base!r} + "/missing", callback=self.parse_list, errback=self.failed)
        yield Request({refused!r} + "/", callback=self.parse_list, errback=self.failed)

    def parse_list(self, response, shelf=1):
        self.logger.info("listing %s on shelf %d", response.url, shelf)
        title = response.css("title::text").get()
        yield Book(title=title, category=self.category, shelf=shelf, per_host=self.settings.per_host)
        yield Author(name="Herbert", born=1920)
        quote = Quote()
        quote["author"] = "Herbert"  # set before text: the item still lists text first
        quote["text"] = "fear"
        yield quote

    def failed(self, failure):
        status = failure.value.response.status if failure.check(HttpError) else None
        yield {{"failed": failure.request.url, "error": type(failure.value).__name__, "status": status}}

    def closed(self, reason):
        with open(os.path.join(OUT, "closed.txt"), "a") as f:
            f.write(f"{{reason}} {{os.getpid()}}\\n")
'''

COMPONENTS = '''
import os

OUT = {out!r}


class Kinds:
    def open_spider(self, spider):
        self.kinds = []

    def process_item(self, item, spider):
        self.kinds.append(type(item).__name__)
        return item

    def close_spider(self, spider):
        with open(os.path.join(OUT, f"kinds-{{os.getpid()}}.json"), "w") as f:
            f.write(__import__("json").dumps(sorted(self.kinds)))


class Token:
    def process_request(self, request, spider):
        request.headers["X-Category"] = spider.category  # in place; None goes on, as in Scrapy
        request.headers["X-Per-Host"] = str(spider.settings.per_host)
'''


@pytest.fixture()
def refused() -> Iterator[str]:
    """A loopback port that refuses connections: bound, never listening (so no other test takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


class Recorder:
    """The site's /cat/ pages, recording the headers of each request as the server received them."""

    def __init__(self, site: Site) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        page = respond(200, b"<html><head><title>Books</title></head><body>list</body></html>",
                       {"Content-Type": "text/html"})

        async def record(request: SiteRequest, writer: Any) -> None:
            self.seen.append((request.path, dict(request.headers)))
            await page(request, writer)

        site.route("/cat/books", record)


def write_spider(tmp_path: Path, base: str, refused: str) -> None:
    (tmp_path / "shop.py").write_text(SPIDER.format(out=str(tmp_path), base=base, refused=refused))
    (tmp_path / "components.py").write_text(COMPONENTS.format(out=str(tmp_path)))


def test_a_scrapy_style_spider_runs_with_its_arguments_callbacks_errbacks_and_hooks(
    crawlkit, tmp_path: Path, refused: str
) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False, robots=False)) as site:
        recorder = Recorder(site)
        write_spider(tmp_path, site.urls[0], refused)
        run = crawlkit("runspider", "shop.py", "-a", "category=books", "--no-robots", "--parsers", "2",
                       "--per-host", "3", "-s", "retries=0", "-s", "pipelines=[components.py:Kinds]",
                       "-s", "middlewares=[components.py:Token]")
        fetched = site.stats()["fetches"]
    assert run.returncode == 0, run.stderr
    netloc = site.urls[0].removeprefix("http://")
    assert fetched == {f"{netloc}/cat/books": 1, f"{netloc}/missing": 1}
    # The middleware returned None, so the request went on, with what it set in place.
    assert [(path, headers["x-category"], headers["x-per-host"]) for path, headers in recorder.seen] == [
        ("/cat/books", "books", "3")]
    items = run.items()
    assert len(items) == 5
    by_shape = {tuple(item): item for item in items}
    assert by_shape[("title", "category", "shelf", "per_host")] == {
        "title": "Books", "category": "books", "shelf": 3, "per_host": 3}
    assert by_shape[("name", "born")] == {"name": "Herbert", "born": 1920}
    assert by_shape[("text", "author")] == {"text": "fear", "author": "Herbert"}
    failures = sorted((item["failed"], item["error"], item["status"]) for item in items if "failed" in item)
    assert failures == [(refused + "/", "ConnectionRefused", None), (site.urls[0] + "/missing", "HttpError", 404)]
    # self.logger: a logger named after the spider, in the engine (start) and in a parser (callback).
    assert "shop[" in run.stderr and "starting on category books" in run.stderr
    assert f"listing {site.urls[0]}/cat/books on shelf 3" in run.stderr
    closed = (tmp_path / "closed.txt").read_text().split()
    assert closed[0] == "finished" and len(closed) == 2  # once, in one process
    # Each parser's pipeline was opened and closed, and saw the items as yielded.
    kinds = [json.loads(path.read_text()) for path in tmp_path.glob("kinds-*.json")]
    assert len(kinds) == 2
    assert sorted(kind for found in kinds for kind in found) == ["Author", "Book", "Quote", "dict", "dict"]


ONLY = '''
from crawlkit import Request
from shop import Shop


class Only(Shop):
    """Shop's items of one kind only, so that the CSV's columns are that kind's."""

    async def start(self):
        yield Request(self.base + "/cat/books", callback=self.parse_list)

    def parse_list(self, response, shelf=1):
        return (item for item in super().parse_list(response, shelf) if type(item).__name__.lower() == {kind!r})
'''


@pytest.mark.parametrize(("kind", "header"), [
    ("book", ["title", "category", "shelf", "per_host"]),
    ("author", ["name", "born"]),
    ("quote", ["text", "author"]),
])
def test_csv_columns_follow_the_declared_field_order_of_each_item_kind(
    crawlkit, tmp_path: Path, refused: str, kind: str, header: list[str]
) -> None:
    (tmp_path / "only.py").write_text(ONLY.format(kind=kind))
    with Site(SiteSpec(hosts=1, pages=1, extras=False, robots=False)) as site:
        Recorder(site)
        write_spider(tmp_path, site.urls[0], refused)
        run = crawlkit("runspider", "only.py:Only", "-a", "category=books", "-a", f"base={site.urls[0]}",
                       output="out.csv")
    assert run.returncode == 0, run.stderr
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == header and len(rows) == 2


def test_json_export_keeps_the_item_class_order(crawlkit, tmp_path: Path, refused: str) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False, robots=False)) as site:
        Recorder(site)
        write_spider(tmp_path, site.urls[0], refused)
        run = crawlkit("runspider", "shop.py", "-a", "category=books", "--no-robots", "-s", "retries=0",
                       output="out.json")
    assert run.returncode == 0, run.stderr
    items = json.loads((tmp_path / "out.json").read_text())
    assert [list(item) for item in items if "failed" not in item] == [
        ["title", "category", "shelf", "per_host"], ["name", "born"], ["text", "author"]]


def test_parse_takes_spider_arguments(crawlkit, tmp_path: Path, refused: str) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False, robots=False)) as site:
        Recorder(site)
        write_spider(tmp_path, site.urls[0], refused)
        run = crawlkit("parse", site.urls[0] + "/cat/books", "--spider", "shop.py", "--callback", "parse_list",
                       "-a", "category=poetry", output=None)
    assert run.returncode == 0, run.stderr
    assert '"category": "poetry"' in run.stdout


def test_a_spider_argument_that_is_not_name_value_is_a_one_line_error(crawlkit, tmp_path: Path) -> None:
    (tmp_path / "any.py").write_text("from crawlkit import Spider\n\nclass Any(Spider):\n    pass\n")
    run = crawlkit("runspider", "any.py", "-a", "category", output=None)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "Error: -a 'category': expected NAME=VALUE with NAME a Python identifier, e.g. -a category=books"]


BROKEN = '''
from crawlkit import Request, Spider


class Broken(Spider):
    name = "broken"

    def start_requests(self):
        yield Request({base!r} + "/a", callback="parse_itme")
        yield Request({base!r} + "/b", callback=self.page)

    def page(self, response):
        yield Request({base!r} + "/c", errback="on_eror", callback=self.page)
        yield Request({base!r} + "/d", callback=lambda response: None)
'''


def test_misspelt_callbacks_and_lambdas_are_one_error_line_each_with_the_url(crawlkit, tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False, robots=False)) as site:
        base = site.urls[0]
        site.route("/b", respond(200, b"<html>b</html>", {"Content-Type": "text/html"}))
        (tmp_path / "broken.py").write_text(BROKEN.format(base=base))
        run = crawlkit("runspider", "broken.py", "--no-robots")
        fetched = site.stats()["fetches"]
    assert run.returncode == 0, run.stderr
    assert list(fetched) == [base.removeprefix("http://") + "/b"]  # the server saw only the one good request
    assert f"request for {base}/a: its callback 'parse_itme' is not a method of spider Broken" in run.stderr
    assert f"request for {base}/c: its errback 'on_eror' is not a method of spider Broken" in run.stderr
    assert "must be a method of the spider or its name" in run.stderr and f"on {base}/b" in run.stderr


def test_a_spider_without_parse_for_its_start_urls_is_refused_before_the_crawl(crawlkit, tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False, robots=False)) as site:
        (tmp_path / "noparse.py").write_text(
            "from crawlkit import Spider\n\n"
            f"class NoParse(Spider):\n    name = 'noparse'\n    start_urls = [{site.urls[0] + '/'!r}]\n"
        )
        run = crawlkit("runspider", "noparse.py", output=None)
        fetched = site.stats()["total"]
    assert run.returncode == 2 and fetched == 0
    assert run.stderr.strip().splitlines() == [
        "Error: spider NoParse has start_urls but no parse() method to call on their pages; "
        "define parse(self, response), or start_requests() yielding Requests with a callback"]
