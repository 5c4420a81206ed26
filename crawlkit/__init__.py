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

and run it with ``crawlkit runspider docs.py -o docs.jsonl``. Everything users import is here.
"""

from crawlkit.errors import ConfigError, CrawlkitError, DropItem, RetryRequest, SeedsError, SpiderError
from crawlkit.forms import FormRequest, JsonRequest
from crawlkit.http import Headers, Request, Response
from crawlkit.spider import LinkSpider, Spider

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "CrawlkitError",
    "DropItem",
    "FormRequest",
    "Headers",
    "JsonRequest",
    "LinkSpider",
    "Request",
    "Response",
    "RetryRequest",
    "SeedsError",
    "Spider",
    "SpiderError",
    "__version__",
]
