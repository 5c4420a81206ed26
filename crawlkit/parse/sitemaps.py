"""The sitemaps stage: a sitemap fetch becomes requests, for more sitemaps (an index) and for pages.

Reading a sitemap (XML, text, gzip, bounded in size) is ``crawlkit.extensions.sitemaps``; this
stage routes the answers to the requests that module made (``SITEMAP_CALLBACK``). With
``sitemap_since`` the entries whose ``lastmod`` is older are left out. With a job directory the
page requests carry their entry's ``lastmod``, for a recrawl (``dated_request``).
"""

from __future__ import annotations

import logging

from crawlkit.extensions.sitemaps import (
    SITEMAP_CALLBACK,
    SitemapError,
    changed_since,
    dated_request,
    parse_lastmod,
    read_entries,
    read_sitemap,
    sitemap_request,
)
from crawlkit.http import Request, Response
from crawlkit.parse.stages import Page, StageSetup

log = logging.getLogger("crawlkit.parser")


class SitemapStage:
    """Turns a sitemap into requests: more sitemaps from an index, pages from a urlset (depth 0, like seeds)."""

    def __init__(self, setup: StageSetup) -> None:
        self.max_body = setup.config.max_body
        since = setup.config.settings.sitemap_since
        self.since = parse_lastmod(since) if since is not None else None  # sitemap_since: only entries changed since
        self.dated = bool(setup.config.settings.jobdir)  # pages carry their lastmod, for a recrawl

    def _dated(self, body: bytes) -> tuple[list[str], list[Request]]:
        """(sitemap URLs, page requests with their lastmod) listed in ``body``, as ``read_sitemap`` reads them."""
        kind, entries = read_entries(body, self.max_body)
        if self.since is not None:
            entries = list(changed_since(entries, self.since))
        if kind == "sitemapindex":
            return [entry["loc"] for entry in entries], []
        return [], [dated_request(entry) for entry in entries]

    def on_response(self, page: Page, response: Response) -> Response | None:
        if response.request.callback != SITEMAP_CALLBACK:
            return response
        if not 200 <= response.status < 300:
            log.info("no sitemap at %s (HTTP %s)", response.url, response.status)
            return None
        try:
            if self.dated:
                sitemaps, pages = self._dated(response.body)
            else:
                sitemaps, urls = read_sitemap(response.body, self.max_body, self.since)
                pages = [Request(url) for url in urls]
        except SitemapError as exc:
            page.counts["error_sitemap"] += 1
            log.warning("sitemap %s cannot be read: %s", response.url, exc)
            return None
        page.counts["sitemaps"] += 1
        page.counts["sitemap_urls"] += len(pages)
        log.info("sitemap %s lists %d sitemaps and %d pages", response.url, len(sitemaps), len(pages))
        requests = [sitemap_request(url) for url in sitemaps] + pages
        for request in requests:
            request.depth = response.request.depth
            request.referer = response.url
        page.candidates = requests
        return None
