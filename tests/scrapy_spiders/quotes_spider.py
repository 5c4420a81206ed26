"""Quotes and their authors, in Scrapy's idioms: ``async def start``, ``-a`` arguments, ``cb_kwargs``,
CSS and XPath selectors, ``follow``/``follow_all``, a dataclass item, ``self.logger``, Scrapy's setting
names in ``custom_settings``.

Runs unchanged on crawlkit and (with its import line rewritten, see tests/benchmarks/compare_spiders.py)
on Scrapy: ``crawlkit runspider quotes_spider.py -a base=http://127.0.0.1:PORT -a tag=love -o out.jsonl``.
"""

import dataclasses

from crawlkit import Request, Spider


@dataclasses.dataclass
class Quote:
    text: str
    author: str
    tags: list
    page: int


class QuotesSpider(Spider):
    name = "quotes"
    base = "http://127.0.0.1:8000"  # -a base=URL
    tag = ""  # -a tag=love: only the quotes with that tag
    custom_settings = {"USER_AGENT": "quotes-bot/1.0", "ROBOTSTXT_OBEY": True, "DOWNLOAD_TIMEOUT": 30}

    async def start(self):
        self.logger.info("starting at %s (tag %r)", self.base, self.tag)
        yield Request(self.base + "/page/1/", callback=self.parse, cb_kwargs={"page": 1})

    def parse(self, response, page):
        for quote in response.css("div.quote"):
            tags = quote.css("a.tag::text").getall()
            if self.tag and self.tag not in tags:
                continue
            yield Quote(
                text=quote.css("span.text::text").get(),
                author=quote.xpath(".//small[@class='author']/text()").get(),
                tags=tags,
                page=int(response.css("title::text").re_first(r"Quotes (\d+)")),
            )
        yield from response.follow_all(css="div.quote a.author", callback=self.parse_author)
        for link in response.css("li.next a"):
            yield response.follow(link, callback=self.parse, cb_kwargs={"page": page + 1})

    def parse_author(self, response):
        yield {
            "author": response.css("h3.name::text").get().strip(),
            "born": int(response.css("span.born::text").re_first(r"\d{4}")),
            "url": response.url,
        }
