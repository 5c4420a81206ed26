"""The archive stages: what every HTTP answer is owed before anyone judges it, a cookie jar entry and a WARC record.

They come first, so a response a hook drops, a retried 503 and a redirect are archived and
their cookies kept, as a browser would. Both read the raw exchange (``page.result``: repeated
headers apart, the body as it came), not the Response a callback sees.
"""

from __future__ import annotations

import logging

from crawlkit.extensions.warc import WarcWriter
from crawlkit.fetch.cache import HITS, REVALIDATED
from crawlkit.http import Response
from crawlkit.loader import one_line
from crawlkit.messages import RenderResult
from crawlkit.parse.stages import Page, StageSetup

log = logging.getLogger("crawlkit.parser")


class CookieStage:
    """Passes an answer's Set-Cookie headers to the engine's jar (``cookies``; see ``crawlkit.extensions.cookies``)."""

    def __init__(self, setup: StageSetup) -> None:
        self.active = setup.config.cookies

    def on_response(self, page: Page, response: Response) -> Response | None:
        result = page.result
        set_cookies = [value for name, value in result.headers if name.lower() == "set-cookie"]
        if set_cookies:
            page.done.set_cookies.append((result.url, set_cookies))
        return response


class WarcStage:
    """Writes every answer to the WARC files (``warc``); a write that fails is counted, and the crawl goes on.

    A rendered page (a RenderResult) is written as the network responses its browser received
    (``resources``: the document, scripts, fetch() answers...), each a request and a response or
    revisit record, so a replay tool can rebuild it; its DOM, which no server sent, is not written.

    An answer the ``http_cache`` served (a hit, or a stored answer a 304 revalidated) did not come
    over the wire in this crawl: a record of it would claim a capture at a time nobody fetched it,
    with the body as the cache keeps it (decoded), not as it was sent. It is not written, but
    counted (``warc_skipped_http_cache``); the run that fetched it, if it had ``--warc``, holds its record.
    """

    def __init__(self, setup: StageSetup) -> None:
        config = setup.config
        self.writer = (WarcWriter(config.warc, config.warc_max_size, config.warc_info, config.warc_revisits)
                       if config.warc else None)
        self.active = self.writer is not None

    def on_response(self, page: Page, response: Response) -> Response | None:
        assert self.writer is not None  # an inactive stage is never called
        result = page.result
        if HITS in result.counts or REVALIDATED in result.counts:
            page.counts["warc_skipped_http_cache"] += 1
            return response
        for exchange in result.resources if isinstance(result, RenderResult) else (result,):
            try:
                self.writer.write(exchange)
            except Exception as exc:  # a full disk must not stop the crawl; the count shows the gap
                page.counts["error_warc"] += 1
                log.error("WARC record for %s not written: %s", exchange.url, one_line(exc))
        return response

    def close(self) -> None:
        """Close the current WARC file, at the end of the crawl (Ctrl-C included)."""
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError as exc:
                log.error("closing the WARC file failed: %s", exc)
