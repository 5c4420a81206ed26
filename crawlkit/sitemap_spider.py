"""SitemapSpider: a spider whose pages come from sitemaps, URL patterns choosing each page's callback.

Scrapy's ``SitemapSpider`` with the same attributes, so a Scrapy one runs after changing its
import line: ``sitemap_urls`` (sitemaps, sitemap indexes or robots.txt files whose ``Sitemap:``
lines name them), ``sitemap_rules`` (``(regex, callback)`` pairs, the first whose regex is found
in a page's URL chooses its callback), ``sitemap_follow`` (regexes an index's sitemaps must match
to be read), ``sitemap_alternate_links`` (also request an entry's other-language URLs) and
``sitemap_filter(entries)`` (a hook that sees each sitemap's entries, ``lastmod`` included,
and yields those to keep). The ``sitemap_since`` setting drops the entries changed before it
after the filter, as it does for ``use_sitemaps`` (``crawlkit.extensions.sitemaps``).

A sitemap is fetched as a request for the callback ``_parse_sitemap``, in the parser process
like any page: deduplicated, robots-checked and rate-limited as one, and counted as a page (as
in Scrapy); ``content_types`` never drops it, as it drops no sitemap. Sitemaps are read as
``use_sitemaps`` reads them: gzip, a text sitemap, ``max_body``. With a job directory a page's
request carries its entry's ``lastmod`` (``meta["sitemap_lastmod"]``), which decides in a recrawl
whether the page is fetched again (``crawlkit.extensions.sitemaps.dated_request``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from protego import Protego

from crawlkit.errors import SitemapError
from crawlkit.extensions.sitemaps import (
    SPIDER_SITEMAP_CALLBACK,
    changed_since,
    dated_request,
    parse_lastmod,
    read_entries,
)
from crawlkit.http import Callback, Request, Response
from crawlkit.spider import Spider

Pattern = str | re.Pattern[str]


def _regex(pattern: Pattern) -> re.Pattern[str]:
    return re.compile(pattern) if isinstance(pattern, str) else pattern


class SitemapSpider(Spider):
    """Subclass this: set ``sitemap_urls`` and ``sitemap_rules``, write the callbacks the rules name."""

    sitemap_urls: Iterable[str] = ()
    #: (regex, callback) pairs: a page goes to the callback of the first regex found in its URL; others are skipped.
    sitemap_rules: Iterable[tuple[Pattern, Callback]] = [("", "parse")]
    #: Regexes an index's sitemap URL must match to be read.
    sitemap_follow: Iterable[Pattern] = [""]
    #: Request an entry's alternate-language URLs (``xhtml:link rel="alternate"``) as well.
    sitemap_alternate_links: bool = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cbs = [(_regex(pattern), callback) for pattern, callback in self.sitemap_rules]
        self._follow = [_regex(pattern) for pattern in self.sitemap_follow]

    def start_requests(self) -> Iterable[Request]:
        for url in self.sitemap_urls:
            yield Request(url, callback=SPIDER_SITEMAP_CALLBACK)

    def sitemap_filter(self, entries: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        """The entries of a sitemap to use (each a dict: ``loc``, ``lastmod``...); override to choose."""
        yield from entries

    def _parse_sitemap(self, response: Response) -> Iterator[Request]:
        if response.url.endswith("/robots.txt"):
            for url in Protego.parse(response.text).sitemaps:
                yield Request(url, callback=SPIDER_SITEMAP_CALLBACK)
            return
        try:
            kind, entries = read_entries(response.body, self.settings.max_body)
        except SitemapError as exc:
            self.logger.warning("sitemap %s cannot be read: %s", response.url, exc)
            return
        chosen: Iterable[dict[str, Any]] = self.sitemap_filter(entries)
        if self.settings.sitemap_since is not None:
            since = parse_lastmod(self.settings.sitemap_since)
            assert since is not None  # check_since accepted it
            chosen = changed_since(chosen, since)
        if kind == "sitemapindex":
            for url in self._locations(chosen):
                if any(pattern.search(url) for pattern in self._follow):
                    yield Request(url, callback=SPIDER_SITEMAP_CALLBACK)
            return
        dated = bool(self.settings.jobdir)  # pages carry their lastmod, for a recrawl
        for entry in chosen:
            for url in self._locations([entry]):
                for pattern, callback in self._cbs:
                    if pattern.search(url):
                        yield (dated_request({**entry, "loc": url}, callback) if dated
                               else Request(url, callback=callback))
                        break

    def _locations(self, entries: Iterable[dict[str, Any]]) -> Iterator[str]:
        """Each entry's URL, then its alternates when ``sitemap_alternate_links`` asks for them."""
        for entry in entries:
            yield entry["loc"]
            if self.sitemap_alternate_links:
                yield from entry.get("alternate", ())
