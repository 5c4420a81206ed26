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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crawlkit.crawlspider import CrawlSpider, Rule
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
    from crawlkit.link import Link
    from crawlkit.linkextractors import LinkExtractor
    from crawlkit.runner import CrawlResult, crawl
    from crawlkit.sitemap_spider import SitemapSpider
    from crawlkit.spider import LinkSpider, Spider

# Where each public name lives. They are imported on first use (PEP 562), not with the package:
# the crawlkit command, and every spider file that imports one name, would otherwise load parsel,
# itemadapter and the runner before the fork server can start (60 ms of the time to the first request).
_HOMES = {
    "CrawlSpider": "crawlkit.crawlspider", "Rule": "crawlkit.crawlspider",
    **dict.fromkeys(("ConfigError", "ConnectionRefused", "CrawlkitError", "DropItem", "Failure", "FetchError",
                     "FetchTimeout", "HttpError", "IgnoreRequest", "RetryRequest", "SeedsError", "SpiderError",
                     "UnresolvableHost"), "crawlkit.errors"),
    "FormRequest": "crawlkit.forms", "JsonRequest": "crawlkit.forms",
    "Headers": "crawlkit.http", "Request": "crawlkit.http", "Response": "crawlkit.http",
    "Field": "crawlkit.items", "Item": "crawlkit.items",
    "Link": "crawlkit.link", "LinkExtractor": "crawlkit.linkextractors",
    "CrawlResult": "crawlkit.runner", "crawl": "crawlkit.runner",
    "LinkSpider": "crawlkit.spider", "Spider": "crawlkit.spider",
    "SitemapSpider": "crawlkit.sitemap_spider",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'crawlkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConnectionRefused",
    "CrawlResult",
    "CrawlSpider",
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
    "Link",
    "LinkExtractor",
    "LinkSpider",
    "Request",
    "Response",
    "RetryRequest",
    "Rule",
    "SeedsError",
    "SitemapSpider",
    "Spider",
    "SpiderError",
    "UnresolvableHost",
    "__version__",
    "crawl",
]
