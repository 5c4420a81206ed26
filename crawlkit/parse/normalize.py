"""The normalise stage: each candidate request's URL rewritten by the URL normalisation rules before dedup.

It runs among the link stages (after ``scheme``, so only http(s) URLs are rewritten, and before
the filters that read the URL: length, offsite...), so every request a page, a redirect or a
sitemap makes is fingerprinted, deduplicated and fetched by its normal URL. The rules are
``urlnorm.UrlNormalizer``'s; the engine normalises the start requests with the same settings.
A rewritten URL is counted as ``urls_normalized``.
"""

from __future__ import annotations

from crawlkit.http import Request
from crawlkit.parse.stages import Page, StageSetup
from crawlkit.urlnorm import UrlNormalizer


class NormalizeStage:
    """Rewrites ``request.url`` by ``strip_query_params`` and ``url_rewrites``; active only when either is set."""

    def __init__(self, setup: StageSetup) -> None:
        settings = setup.config.settings
        self.normalizer = UrlNormalizer(settings.strip_query_params, settings.url_rewrites)
        self.active = bool(self.normalizer)
        self.every_url = bool(settings.url_rewrites)  # without rewrites only URLs with "?" or ";" can change

    def on_links(self, page: Page, requests: list[Request]) -> list[Request]:
        normalize = self.normalizer.normalize
        changeable = requests if self.every_url else [r for r in requests if "?" in r.url or ";" in r.url]
        rewritten = 0
        for request in changeable:
            normal = normalize(request.url)
            if normal != request.url:
                request.url = normal
                rewritten += 1
        if rewritten:
            page.counts["urls_normalized"] += rewritten
        return requests
