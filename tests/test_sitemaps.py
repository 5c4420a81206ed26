"""Sitemaps as a source of URLs: an index, gzipped and plain sitemaps, robots.txt Sitemap lines."""

from __future__ import annotations

import gzip

import pytest

from crawlkit.errors import SitemapError
from crawlkit.extensions.sitemaps import read_sitemap
from crawlkit.tools.site import Site, SiteSpec, respond

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(urls: list[str]) -> bytes:
    entries = "".join(f"<url><loc>{u}</loc></url>" for u in urls)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {NS}>{entries}</urlset>'.encode()


def index(urls: list[str]) -> bytes:
    entries = "".join(f"<sitemap><loc>{u}</loc></sitemap>" for u in urls)
    return f'<?xml version="1.0"?><sitemapindex {NS}>{entries}</sitemapindex>'.encode()


def test_pages_listed_only_in_sitemaps_are_fetched_exactly_once(crawlkit) -> None:
    with Site(SiteSpec(hosts=2, pages=3, extras=False)) as site:
        base, other = site.urls
        hidden = [f"{base}/hidden/{n}.html" for n in range(12)]
        for n in range(12):
            site.route(f"/hidden/{n}.html", respond(200, f"<html><title>hidden {n}</title></html>".encode()))
        # /sitemap.xml is an index of a plain and a gzipped sitemap; robots.txt names a third one.
        site.route("/sitemap.xml", respond(200, index([f"{base}/maps/a.xml", f"{base}/maps/b.xml.gz"]),
                                           {"Content-Type": "application/xml"}))
        site.route("/maps/a.xml",
                   respond(200, urlset(hidden[:5] + [f"{base}/page/0.html", f"{base}/private/secret.html"])))
        site.route("/maps/b.xml.gz", respond(200, gzip.compress(urlset(hidden[4:9] + [f"{other}/hidden/0.html"])),
                                             {"Content-Type": "application/x-gzip"}))
        site.route("/maps/extra.txt", respond(200, "\n".join(hidden[9:]).encode(), {"Content-Type": "text/plain"}))
        site.route("/robots.txt",
                   respond(200, f"User-agent: *\nDisallow: /private/\nSitemap: {base}/maps/extra.txt\n".encode(),
                           {"Content-Type": "text/plain"}))
        run = crawlkit("crawl", "-s", "use_sitemaps=true", seeds=site.seeds()[:1])
        assert run.returncode == 0, run.stderr
        fetched = site.stats()["fetches"]
        netloc = base.split("//")[1]
    served = {f"http://{key}" for key in fetched}
    assert set(hidden) <= served  # none of them is linked from any page
    assert set(fetched.values()) == {1}  # each once: page 0 listed and linked, hidden/4 listed twice
    assert f"{netloc}/private/secret.html" not in fetched  # robots.txt still rules
    assert not any(key.startswith(other.split("//")[1]) for key in fetched)  # offsite, filtered like a link
    maps = {f"{netloc}/sitemap.xml", f"{netloc}/maps/a.xml", f"{netloc}/maps/b.xml.gz", f"{netloc}/maps/extra.txt"}
    assert maps <= set(fetched)
    items = {item["url"] for item in run.items()}
    # Sitemaps are no pages.
    assert set(hidden) <= items and not any("/maps/" in url or "sitemap" in url for url in items)

    with Site(SiteSpec(hosts=1, pages=3, extras=False)) as site:
        run = crawlkit("crawl", seeds=site.seeds())  # use_sitemaps is off by default
        assert run.returncode == 0, run.stderr
        assert not any("sitemap" in key for key in site.stats()["fetches"])


def test_max_pages_counts_pages_not_sitemaps(crawlkit) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False)) as site:
        base = site.urls[0]
        site.route("/sitemap.xml", respond(200, urlset([f"{base}/hidden/{n}.html" for n in range(10)])))
        run = crawlkit("crawl", "-s", "use_sitemaps=true", "--max-pages", "4", seeds=site.seeds())
        assert run.returncode == 0, run.stderr
        pages = [key for key in site.stats()["fetches"] if not key.endswith(("robots.txt", "sitemap.xml"))]
    assert len(run.items()) == 4 and len(pages) == 4


def test_entities_are_not_expanded_and_bombs_are_refused() -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "' + b"x" * 1000
        + b'"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><urlset ' + NS.encode()
        + b'><url><loc>http://a.test/&c;</loc></url></urlset>'
    )
    _, pages = read_sitemap(laughs, 10_000_000)
    assert all(len(url) < 100 for url in pages)
    local = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY f SYSTEM "file:///etc/passwd">]><urlset><url><loc>http://a.test/&f;</loc></url></urlset>'
    _, pages = read_sitemap(local, 10_000_000)
    assert not any("root:" in url for url in pages)
    bomb = gzip.compress(b"<urlset>" + b" " * 5_000_000 + b"</urlset>")
    with pytest.raises(SitemapError, match="over max_body"):
        read_sitemap(bomb, 1_000_000)
    with pytest.raises(SitemapError, match="not <urlset>"):
        read_sitemap(b"<html><body>soft 404</body></html>", 1000)
    assert read_sitemap(index(["http://a.test/s1.xml"]), 1000) == (["http://a.test/s1.xml"], [])
