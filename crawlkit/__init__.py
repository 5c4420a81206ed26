"""crawlkit: a parallel web-crawler framework.

Write a spider::

    from crawlkit import Spider, Request

    class Docs(Spider):
        name = "docs"
        start_urls = ["https://docs.example/"]

        def parse(self, response):
            yield {"url": response.url, "title": response.css("title::text").get()}
            for url in response.links():
                yield response.follow(url)

and run it with ``crawlkit runspider docs.py -o docs.jsonl``, or from code with
``crawlkit.crawl(Docs, output="docs.jsonl")``. Everything users import is here.
"""

from crawlkit.errors import (
    ConfigError,
    ConnectionRefused,
    CrawlkitError,
    DropItem,
    Failure,
    FetchError,
    FetchTimeout,
    HttpError,
    IgnoreRequest,
    RetryRequest,
    SeedsError,
    SpiderError,
    UnresolvableHost,
)
from crawlkit.forms import FormRequest, JsonRequest
from crawlkit.http import Headers, Request, Response
from crawlkit.items import Field, Item
from crawlkit.runner import CrawlResult, crawl
from crawlkit.spider import LinkSpider, Spider

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConnectionRefused",
    "CrawlResult",
    "CrawlkitError",
    "DropItem",
    "Failure",
    "FetchError",
    "FetchTimeout",
    "Field",
    "FormRequest",
    "Headers",
    "HttpError",
    "IgnoreRequest",
    "Item",
    "JsonRequest",
    "LinkSpider",
    "Request",
    "Response",
    "RetryRequest",
    "SeedsError",
    "Spider",
    "SpiderError",
    "UnresolvableHost",
    "__version__",
    "crawl",
]
