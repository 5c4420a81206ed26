"""The retry stage: fetch again what another attempt may fix, with exponential backoff and Retry-After.

The decision is the pure ``next_attempt`` (as Scrapy keeps ``get_retry_request`` apart from its
middleware), so it is tested on a Request alone; ``RetryPolicy.retry`` writes it into the page
for any stage that asks for another fetch (this one, and the middlewares' ``RetryRequest``).
The budget travels with the request (``meta["retry_times"]``), so every parser process agrees
on it without sharing anything.
"""

from __future__ import annotations

import email.utils
import logging
import time
from dataclasses import dataclass

from crawlkit.errors import FetchErrorKind
from crawlkit.http import Headers, Request, Response
from crawlkit.parse.stages import Page, StageSetup

log = logging.getLogger("crawlkit.parser")


@dataclass(frozen=True, slots=True)
class Attempt:
    """The next fetch of a request: when, and how long its whole host should wait (Retry-After)."""

    request: Request  # the same request, its retry_times one higher
    delay: float  # seconds from now
    host_pause: float | None  # seconds the host is asked to wait; None when the server did not say


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The ``retries``, ``retry_backoff`` and ``retry_after_max`` settings."""

    retries: int
    backoff: float  # seconds before the first retry, doubled for each further one
    after_max: float  # the most a Retry-After is obeyed for

    def next_attempt(self, request: Request, asked: float | None) -> Attempt | None:
        """The retry of ``request``, or None when its retries are used up.

        ``asked`` is the server's Retry-After in seconds: it lengthens the wait (never
        shortens it below the backoff), capped at ``after_max``, and pauses the whole host.
        """
        attempt = request.meta.get("retry_times", 0) + 1
        if attempt > self.retries:
            return None
        delay = self.backoff * 2 ** (attempt - 1)
        if asked is not None:
            asked = min(asked, self.after_max)
            delay = max(delay, asked)
        return Attempt(request.replace(meta={**request.meta, "retry_times": attempt}), delay, asked)

    def retry(self, page: Page, request: Request, headers: Headers | None) -> bool:
        """Put the retry of ``request`` into ``page`` and count it; False (counted) when the budget is spent."""
        value = headers.get("Retry-After") if headers else None
        asked = retry_after(value, time.time())
        attempt = self.next_attempt(request, asked)
        if attempt is None:
            page.counts["retries_exhausted"] += 1
            return False
        now = time.monotonic()
        if attempt.host_pause is not None:
            page.done.host_pause_until = now + attempt.host_pause
        page.done.retry = attempt.request
        page.done.retry_at = now + attempt.delay
        page.counts["retries"] += 1
        return True


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date, ``now`` being the epoch
    time); None when absent or unreadable, 0 for a date in the past."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class RetryStage:
    """Retries a retryable fetch error, or an answer whose status is in ``retry_http_codes``."""

    def __init__(self, setup: StageSetup) -> None:
        self.policy = setup.retry
        self.codes = frozenset(setup.config.retry_http_codes)

    def on_failure(self, page: Page, kind: FetchErrorKind) -> bool:
        result = page.result
        if kind is FetchErrorKind.CACHE_EVICTED:  # never sent: again at once, with the host's turn, no attempt spent
            page.done.retry = result.request
            return True
        if kind.retryable and self.policy.retry(page, result.request, None):
            log.info("retrying %s after %s: %s", result.request.url, result.error, result.message)
            return True
        return False

    def on_response(self, page: Page, response: Response) -> Response | None:
        if response.status in self.codes and self.policy.retry(page, response.request, response.headers):
            log.info("retrying %s after HTTP %s", response.request.url, response.status)
            return None
        return response
