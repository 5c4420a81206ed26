"""The middlewares stage: the users' ``process_response`` hooks (the ``middlewares`` setting), in their place.

The hooks see a full Response after it is archived and before retries, redirects and the
callback (see ``crawlkit.extensions.middlewares`` for the hooks themselves and why
``process_request`` runs in the fetcher instead). A hook that raises ``RetryRequest`` spends
the same retry budget as a 503.
"""

from __future__ import annotations

import logging

from crawlkit.errors import RetryRequest
from crawlkit.extensions.middlewares import ResponseHooks, load_middlewares
from crawlkit.http import Response
from crawlkit.parse.stages import Page, StageSetup

log = logging.getLogger("crawlkit.parser")


class MiddlewareStage:
    """Runs the ``process_response`` hooks; a drop, a failure or a RetryRequest ends the page."""

    def __init__(self, setup: StageSetup) -> None:
        self.hooks = ResponseHooks(load_middlewares(setup.config.middlewares), setup.spider)
        self.retry = setup.retry
        self.retries = setup.config.retries
        self.errors = self.hooks.errors  # open() failures, sent with the first page
        self.active = bool(self.hooks)

    def open(self) -> None:
        """The middlewares' ``open(spider)``."""
        self.hooks.open()

    def close(self) -> None:
        """The middlewares' ``close(spider)``."""
        self.hooks.close()

    def on_response(self, page: Page, response: Response) -> Response | None:
        if not self.hooks.stages:
            return response
        outcome = self.hooks.process(response, page.counts)
        if not isinstance(outcome, RetryRequest):
            return outcome
        reason = str(outcome) or "asked by a middleware"
        page.counts["retries_middleware"] += 1
        if self.retry.retry(page, response.request, None):
            log.info("retrying %s: %s", response.url, reason)
        else:
            log.warning("gave up on %s after %d retries: %s; response dropped", response.url, self.retries, reason)
        return None
