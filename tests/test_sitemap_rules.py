"""Sitemap entries (lastmod, alternates), sitemap_since, and SitemapSpider's rules, on sitemaps built directly
and through the CLI against a site whose sitemaps change between runs."""

from __future__ import annotations

import gzip
from datetime import datetime, timezone
from pathlib import Path

import pytest

from crawlkit import Request, Response, SitemapSpider
from crawlkit.errors import ConfigError
from crawlkit.extensions.sitemaps import changed_since, parse_lastmod, read_entries, read_sitemap
from crawlkit.settings import load_settings
from crawlkit.tools.site import Site, SiteSpec, respond

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:xhtml="http://www.w3.org/1999/xhtml"'
XML = {"Content-Type": "application/xml"}


def urlset(entries: list[tuple[str, str | None]], alternates: dict[str, str] | None = None) -> bytes:
    """A urlset of (loc, lastmod or None) entries; ``alternates`` maps a loc to its German version."""
    parts = []
    for loc, lastmod in entries:
        parts.append(f"<url><loc>{loc}</loc>")
        if lastmod:
            parts.append(f"<lastmod>{lastmod}</lastmod>")
        if alternates and loc in alternates:
            parts.append(f'<xhtml:link rel="alternate" hreflang="de" href="{alternates[loc]}"/>')
        parts.append("<changefreq>daily</changefreq></url>")
    return f'<?xml version="1.0"?><urlset {NS}>{"".join(parts)}</urlset>'.encode()


def index(entries: list[tuple[str, str | None]]) -> bytes:
    parts = "".join(f"<sitemap><loc>{loc}</loc>" + (f"<lastmod>{mod}</lastmod>" if mod else "") + "</sitemap>"
                    for loc, mod in entries)
    return f'<?xml version="1.0"?><sitemapindex {NS}>{parts}</sitemapindex>'.encode()


def test_entries_carry_lastmod_and_alternates() -> None:
    body = urlset([("http://a.test/en/1", "2026-03-04"), ("http://a.test/en/2", None)], {"http://a.test/en/1":
                                                                                           "http://a.test/de/1"})
    kind, entries = read_entries(gzip.compress(body), 100_000)
    assert kind == "urlset"
    assert entries == [
        {"loc": "http://a.test/en/1", "lastmod": "2026-03-04", "alternate": ["http://a.test/de/1"],
         "changefreq": "daily"},
        {"loc": "http://a.test/en/2", "changefreq": "daily"},
    ]
    assert read_entries(index([("http://a.test/s.xml", "2026-01")]), 10_000) == (
        "sitemapindex", [{"loc": "http://a.test/s.xml", "lastmod": "2026-01"}])
    assert read_entries(b"http://a.test/x\nnot a url\n", 1000) == ("text", [{"loc": "http://a.test/x"}])


@pytest.mark.parametrize(("text", "moment"), [
    ("2026", datetime(2026, 1, 1, tzinfo=timezone.utc)),
    ("2026-03", datetime(2026, 3, 1, tzinfo=timezone.utc)),
    ("2026-03-04", datetime(2026, 3, 4, tzinfo=timezone.utc)),
    ("2026-03-04T10:30:00+02:00", datetime(2026, 3, 4, 8, 30, tzinfo=timezone.utc)),
    ("2026-03-04T10:30Z", datetime(2026, 3, 4, 10, 30, tzinfo=timezone.utc)),
    (" 2026-03-04T10:30:00.25 ", datetime(2026, 3, 4, 10, 30, 0, 250_000, tzinfo=timezone.utc)),
    ("yesterday", None), ("2026-13-01", None), ("", None), (None, None),
])
def test_lastmod_is_read_as_a_utc_time(text: str | None, moment: datetime | None) -> None:
    assert parse_lastmod(text) == moment


def test_a_lastmod_whose_utc_time_falls_outside_the_calendar_is_unreadable_not_a_crash() -> None:
    assert parse_lastmod("0001-01-01T00:00:00+01:00") is None  # a hostile sitemap's, or a typo's
    assert parse_lastmod("9999-12-31T23:00:00-05:00") is None
    with pytest.raises(ConfigError):
        load_settings(cli={"sitemap_since": "0001-01-01T00:00:00+01:00"})


def test_changed_since_keeps_changed_entries_and_those_without_a_date() -> None:
    entries = [{"loc": "old", "lastmod": "2026-01-01"}, {"loc": "new", "lastmod": "2026-06-01T00:00:00+00:00"},
               {"loc": "undated"}, {"loc": "unreadable", "lastmod": "soon"}, {"loc": "same", "lastmod": "2026-05-01"}]
    kept = [entry["loc"] for entry in changed_since(entries, datetime(2026, 5, 1))]  # naive: UTC
    assert kept == ["new", "undated", "unreadable", "same"]
    body = urlset([("http://a.test/old", "2026-01-01"), ("http://a.test/new", "2026-06-01")])
    assert read_sitemap(body, 10_000, datetime(2026, 5, 1, tzinfo=timezone.utc)) == ([], ["http://a.test/new"])


def test_sitemap_since_is_checked_like_every_setting() -> None:
    assert load_settings(cli={"sitemap_since": "2026-05-01"}).sitemap_since == "2026-05-01"
    assert load_settings().sitemap_since is None
    assert load_settings(cli={"sitemap_since": "2026"}).sitemap_since == "2026"  # a year, read by YAML as a number
    with pytest.raises(ConfigError) as error:
        load_settings(cli={"sitemap_since": "last week"})
    assert str(error.value) == ("-s sitemap_since=last week: 'sitemap_since' must be a date or time as sitemaps "
                                "write them (2026-01-31 or 2026-01-31T08:00:00Z) or null, got 'last week'")


class Shop(SitemapSpider):
    name = "shop"
    sitemap_urls = ["http://a.test/robots.txt"]
    sitemap_rules = [("/product/", "parse_product"), (r"/blog/\d", "parse_post")]
    sitemap_follow = ["/maps/shop"]

    def parse_product(self, response: Response) -> None: ...

    def parse_post(self, response: Response) -> None: ...


def shop(**settings: object) -> Shop:
    spider = Shop()
    spider.settings = load_settings(cli=settings)
    return spider


def requests(spider: SitemapSpider, url: str, body: bytes) -> list[tuple[str, str | None]]:
    response = Response(url, body=body, headers=XML, request=Request(url, callback="_parse_sitemap"))
    return [(r.url, r.callback) for r in spider._parse_sitemap(response)]


def test_sitemap_spider_routes_urls_to_callbacks_by_rule() -> None:
    spider = shop()
    assert [(r.url, r.callback) for r in spider.start_requests()] == [("http://a.test/robots.txt", "_parse_sitemap")]
    robots = b"User-agent: *\nSitemap: http://a.test/maps/shop.xml\nSitemap: http://a.test/maps/shop-2.xml.gz\n"
    assert requests(spider, "http://a.test/robots.txt", robots) == [
        ("http://a.test/maps/shop.xml", "_parse_sitemap"), ("http://a.test/maps/shop-2.xml.gz", "_parse_sitemap")]
    body = index([("http://a.test/maps/shop-products.xml", None), ("http://a.test/maps/news.xml", None)])
    assert requests(spider, "http://a.test/maps/shop.xml", body) == [
        ("http://a.test/maps/shop-products.xml", "_parse_sitemap")]  # sitemap_follow
    body = urlset([("http://a.test/product/1", None), ("http://a.test/blog/2", None), ("http://a.test/blog/", None),
                   ("http://a.test/about", None)], {"http://a.test/product/1": "http://a.test/de/product/1"})
    assert requests(spider, "http://a.test/maps/shop-products.xml", gzip.compress(body)) == [
        ("http://a.test/product/1", "parse_product"), ("http://a.test/blog/2", "parse_post")]
    spider.sitemap_alternate_links = True
    assert requests(spider, "http://a.test/maps/shop-products.xml", body)[:2] == [
        ("http://a.test/product/1", "parse_product"), ("http://a.test/de/product/1", "parse_product")]
    assert requests(spider, "http://a.test/maps/broken.xml", b"<html>soft 404</html>") == []


def test_sitemap_filter_sees_lastmod_and_sitemap_since_applies_after_it() -> None:
    class Recent(Shop):
        def sitemap_filter(self, entries):
            self.seen = list(entries)
            yield from (entry for entry in self.seen if "/product/" in entry["loc"])

    spider = Recent()
    spider.settings = load_settings(cli={"sitemap_since": "2026-05-01"})
    body = urlset([("http://a.test/product/1", "2026-01-01"), ("http://a.test/product/2", "2026-06-01"),
                   ("http://a.test/product/3", None), ("http://a.test/blog/4", "2026-07-01")])
    assert requests(spider, "http://a.test/maps/shop.xml", body) == [
        ("http://a.test/product/2", "parse_product"), ("http://a.test/product/3", "parse_product")]
    assert [entry.get("lastmod") for entry in spider.seen] == ["2026-01-01", "2026-06-01", None, "2026-07-01"]


def test_with_a_jobdir_the_sitemap_spiders_page_requests_carry_their_lastmod() -> None:
    body = urlset([("http://a.test/product/1", "2026-03-04T10:30:00+02:00"), ("http://a.test/product/2", None)],
                  {"http://a.test/product/1": "http://a.test/de/product/1"})
    response = Response("http://a.test/maps/shop.xml", body=body, headers=XML,
                        request=Request("http://a.test/maps/shop.xml", callback="_parse_sitemap"))
    stamp = datetime(2026, 3, 4, 8, 30, tzinfo=timezone.utc).timestamp()
    spider = shop(jobdir="job")
    spider.sitemap_alternate_links = True
    assert [(r.url, r.callback, r.meta) for r in spider._parse_sitemap(response)] == [
        ("http://a.test/product/1", "parse_product", {"sitemap_lastmod": stamp}),
        ("http://a.test/de/product/1", "parse_product", {"sitemap_lastmod": stamp}),
        ("http://a.test/product/2", "parse_product", {})]
    assert all(not r.meta for r in shop()._parse_sitemap(response))  # without one, nothing to compare it with


SPIDER = '''
from crawlkit import SitemapSpider


class Shop(SitemapSpider):
    name = "shop"
    sitemap_urls = ["{base}/robots.txt"]
    sitemap_rules = [("/product/", "parse_product"), ("/blog/", "parse_post")]
    sitemap_follow = ["/maps/shop"]

    def parse_product(self, response):
        yield {{"url": response.url, "kind": "product", "name": response.css("h1::text").get()}}

    def parse_post(self, response):
        yield {{"url": response.url, "kind": "post"}}
'''


def serve_shop(site: Site, changed: str) -> None:
    """A shop whose robots.txt names a sitemap index; product 2 last changed on ``changed``."""
    base = site.urls[0]
    site.route("/robots.txt", respond(200, f"User-agent: *\nSitemap: {base}/maps/shop.xml\n".encode(),
                                      {"Content-Type": "text/plain"}))
    site.route("/maps/shop.xml", respond(200, index([(f"{base}/maps/shop-products.xml.gz", None),
                                                     (f"{base}/maps/shop-blog.xml", None),
                                                     (f"{base}/maps/other.xml", None)]), XML))
    products = urlset([(f"{base}/product/1", "2026-01-01"), (f"{base}/product/2", changed),
                       (f"{base}/about", "2026-01-01")])
    site.route("/maps/shop-products.xml.gz", respond(200, gzip.compress(products),
                                                     {"Content-Type": "application/x-gzip"}))
    site.route("/maps/shop-blog.xml", respond(200, urlset([(f"{base}/blog/1", None)]), XML))
    for n in (1, 2):
        site.route(f"/product/{n}", respond(200, f"<html><h1>product {n}</h1></html>".encode()))
    site.route("/blog/1", respond(200, b"<html><h1>post</h1></html>"))


def test_a_scrapy_sitemap_spider_crawls_by_rules_and_a_recrawl_fetches_what_changed(crawlkit, tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False)) as site:
        base = site.urls[0]
        netloc = base.split("//")[1]
        (tmp_path / "shop.py").write_text(SPIDER.format(base=base))
        serve_shop(site, "2026-01-01")
        # content_types drops no sitemap (application/xml, application/x-gzip) of a SitemapSpider either.
        first = crawlkit("runspider", "shop.py", "-s", "content_types=[text/html]", "-O", "one.jsonl", output=None)
        assert first.returncode == 0, first.stderr
        fetched = site.stats()["fetches"]
        first.output = tmp_path / "one.jsonl"
        serve_shop(site, "2026-06-01T12:00:00+00:00")  # product 2 changed
        site.reset_stats()
        second = crawlkit("runspider", "shop.py", "-s", "sitemap_since=2026-05-01", "-O", "two.jsonl", output=None)
        assert second.returncode == 0, second.stderr
        refetched = site.stats()["fetches"]
    second.output = tmp_path / "two.jsonl"
    sitemaps = {f"{netloc}/robots.txt", f"{netloc}/maps/shop.xml", f"{netloc}/maps/shop-products.xml.gz",
                f"{netloc}/maps/shop-blog.xml"}
    # No /about (no rule), no other.xml (not followed); robots.txt once for the rules and once as a sitemap source.
    assert set(fetched) == sitemaps | {f"{netloc}/product/1", f"{netloc}/product/2", f"{netloc}/blog/1"}
    assert sorted((item["url"], item["kind"], item.get("name")) for item in first.items()) == [
        (f"{base}/blog/1", "post", None), (f"{base}/product/1", "product", "product 1"),
        (f"{base}/product/2", "product", "product 2")]
    # Since May: product 2, and the post whose sitemap gives no lastmod.
    assert set(refetched) == sitemaps | {f"{netloc}/product/2", f"{netloc}/blog/1"}
    assert sorted(item["url"] for item in second.items()) == [f"{base}/blog/1", f"{base}/product/2"]


def test_use_sitemaps_with_sitemap_since_fetches_only_changed_pages(crawlkit) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False)) as site:
        base = site.urls[0]
        netloc = base.split("//")[1]
        body = urlset([(f"{base}/old.html", "2025-12-31T23:59:59Z"), (f"{base}/new.html", "2026-01-01")])
        site.route("/sitemap.xml", respond(200, body, XML))
        run = crawlkit("crawl", "-s", "use_sitemaps=true", "-s", "sitemap_since=2026-01-01", seeds=site.seeds())
        assert run.returncode == 0, run.stderr
        fetched = site.stats()["fetches"]
    assert f"{netloc}/new.html" in fetched and f"{netloc}/old.html" not in fetched
