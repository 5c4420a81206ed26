"""The quotes site's authors, as a Scrapy ``CrawlSpider``: rules of ``LinkExtractor``s (``allow``,
``deny``, ``restrict_css``), a rule that follows the pager, one with a callback and ``cb_kwargs``,
and ``parse_start_url`` for the first page.

Runs unchanged on crawlkit and (with its import line rewritten, see tests/benchmarks/compare_spiders.py)
on Scrapy: ``crawlkit runspider crawl_spider.py -a base=http://127.0.0.1:PORT -o out.jsonl``.
"""

from crawlkit import CrawlSpider, LinkExtractor, Request, Rule


class AuthorsSpider(CrawlSpider):
    name = "authors"
    base = "http://127.0.0.1:8000"  # -a base=URL
    custom_settings = {"USER_AGENT": "authors-bot/1.0", "ROBOTSTXT_OBEY": True}
    rules = (
        # The pager's "Next", followed; no callback, so its pages' links are followed by every rule.
        Rule(LinkExtractor(allow=r"/page/\d+/$", restrict_css="ul.pager")),
        # Every other link but the tags' (403 without a login): the authors' pages, parsed, not followed.
        Rule(LinkExtractor(deny=(r"/tag/", r"/page/")), callback="parse_author", cb_kwargs={"via": "rule"}),
    )

    async def start(self):
        yield Request(self.base + "/page/1/")  # no callback: the CrawlSpider's own, which applies the rules

    def parse_start_url(self, response):
        yield {"start": response.css("title::text").get()}

    def parse_author(self, response, via):
        yield {
            "author": response.css("h3.name::text").get().strip(),
            "born": int(response.css("span.born::text").re_first(r"\d{4}")),
            "via": via,
            "link_text": response.meta["link_text"],
        }
