"""One Scrapy crawl for compare_scrapy.py, in a process of its own; prints one JSON line of results.

The two spiders do what crawlkit.tools.bench's LightSpider and SoupSpider do: the light one takes the
title and the links by CSS (parsel on lxml), the soup one parses the whole page with
BeautifulSoup's html.parser and takes get_text() and the links. Both follow every http(s) link
within the seeds' hosts and yield one item per page, which no pipeline or feed keeps. (crawlkit
drops ``mailto:`` and ``javascript:`` links after the callback; Scrapy's ``Request`` raises on
them, ending the callback, so they are skipped here first.)

``--reactor epoll`` runs Twisted's own reactor instead of Scrapy's default asyncio one: in Scrapy
2.19 with asyncio, ``Downloader._process_queue`` starts every queued request of a slot at once
(``free_transfer_slots()`` only drops when the scheduled tasks begin), so
CONCURRENT_REQUESTS_PER_DOMAIN is not enforced; with epoll it is.

    python tests/benchmarks/run_scrapy.py --spider light --seeds-file seeds.txt --concurrency 16 --per-host 8
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import scrapy
from bs4 import BeautifulSoup
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response, TextResponse


class LightSpider(scrapy.Spider):
    name = "light"

    def __init__(self, start_urls: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_urls = start_urls
        self.allowed_domains = sorted({urlsplit(url).hostname for url in start_urls})

    def parse(self, response: Response) -> Iterator[Any]:
        if not isinstance(response, TextResponse):
            yield {"url": response.url}
            return
        yield {"url": response.url, "title": response.css("title::text").get()}
        yield from self.follow_all(response, response.css("a::attr(href)").getall())

    def follow_all(self, response: TextResponse, hrefs: list[str]) -> Iterator[scrapy.Request]:
        for href in hrefs:
            url = response.urljoin(href)
            if url.startswith(("http://", "https://")):
                yield scrapy.Request(url, callback=self.parse)


class SoupSpider(LightSpider):
    name = "soup"

    def parse(self, response: Response) -> Iterator[Any]:
        if not isinstance(response, TextResponse):
            yield {"url": response.url}
            return
        soup = BeautifulSoup(response.text, "html.parser")
        yield {"url": response.url, "chars": len(soup.get_text())}
        yield from self.follow_all(response, [a["href"] for a in soup.find_all("a", href=True)])


SPIDERS = {"light": LightSpider, "soup": SoupSpider}
REACTORS = {
    "asyncio": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",  # Scrapy's default
    "epoll": "twisted.internet.epollreactor.EPollReactor",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spider", choices=sorted(SPIDERS), required=True)
    parser.add_argument("--seeds-file", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--per-host", type=int, default=8)
    parser.add_argument("--reactor", choices=sorted(REACTORS), default="asyncio")
    args = parser.parse_args()
    with open(args.seeds_file, encoding="utf-8") as f:
        seeds = [line.strip() for line in f if line.strip()]
    process = CrawlerProcess(settings={
        "CONCURRENT_REQUESTS": args.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": args.per_host,
        "ROBOTSTXT_OBEY": True,
        "LOG_LEVEL": "WARNING",
        "AUTOTHROTTLE_ENABLED": False,
        "HTTPCACHE_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "TWISTED_REACTOR": REACTORS[args.reactor],
    })
    crawler = process.create_crawler(SPIDERS[args.spider])
    process.crawl(crawler, start_urls=seeds)
    process.start()
    stats = crawler.stats.get_stats()
    robots = stats.get("robotstxt/response_count", 0)
    print(json.dumps({
        "pages": stats.get("response_received_count", 0) - robots,
        "items": stats.get("item_scraped_count", 0),
        "elapsed_s": stats["elapsed_time_seconds"],
        "reason": stats.get("finish_reason"),
    }))


if __name__ == "__main__":
    main()
