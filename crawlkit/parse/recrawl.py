"""The recrawl stage: a page's validators for the job directory, and what a recrawl's revisit answered.

With a ``--jobdir``, every answer's ``ETag`` and ``Last-Modified`` go to the engine with its
PageDone (``validators``), which keeps them in the page's journal row, so a later round can
revisit the page with ``If-None-Match`` / ``If-Modified-Since`` (``crawlkit.recrawl``). On a
revisit (``meta["revisit"]``, set by the journal), a 304 is counted as ``unchanged`` and ends the
page (no callback: nothing on it is new), unless ``recrawl_callbacks_on_304`` asks for the
callback, which then sees ``response.meta["unchanged"]``; a 404 or 410 is counted as ``gone``,
logged, and listed in the stats file by the engine. A changed page (a 2xx) goes on as any page.

It comes after the archive stages (a 304 is archived, as a revisit record) and after redirect.
A recrawl's revisits that only a 304 can end go in revalidation batches (``core/dispatch.py``),
whose 304s never reach this stage: the engine counts them as this stage would (``unchanged``,
``status_304``) and the journal adapts their intervals with the same SQL (``Engine._unchanged``).
"""

from __future__ import annotations

import logging

from crawlkit.http import Response
from crawlkit.parse.stages import Page, StageSetup
from crawlkit.recrawl import GONE

log = logging.getLogger("crawlkit.parser")


class RecrawlStage:
    """Sends the validators of every answer to the job directory; counts a revisit's 304 and 404/410."""

    def __init__(self, setup: StageSetup) -> None:
        settings = setup.config.settings
        self.active = bool(settings.jobdir)
        self.callbacks_on_304 = bool(settings.recrawl_callbacks_on_304)

    def on_response(self, page: Page, response: Response) -> Response | None:
        headers = response.headers
        etag, modified = headers.get("ETag"), headers.get("Last-Modified")
        if etag is not None or modified is not None:
            page.done.validators = (etag, modified)
        status = response.status
        if (status == 304 or status in GONE) and response.meta.get("revisit"):
            if status == 304:
                page.counts["unchanged"] += 1
                if not self.callbacks_on_304:
                    return None
                response.meta["unchanged"] = True
            else:
                page.counts["gone"] += 1
                log.warning("gone: %s answered %d to a recrawl", response.url, status)
        return response
