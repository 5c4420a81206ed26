"""When a rendered page's DOM is read (``browser._settle``): once the browser has received every answer
its requests got, not when crawlkit handed them to Playwright; then after a quiet time with no new one.

No browser here: a ``_Visit`` built directly and a stand-in page whose quiet time (``evaluate``)
ends when the test says, so what ``_settle`` waits for is seen step by step, whatever the load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast

import pytest
from playwright.async_api import Page
from playwright.async_api import Request as PlaywrightRequest

from crawlkit.http import Request
from crawlkit.messages import FetchTask
from crawlkit.render import browser
from crawlkit.render.browser import _settle, _Visit


class QuietPage:
    """A page whose quiet times are counted, each running ``during`` (the page's doing meanwhile) first."""

    def __init__(self, during: Callable[[int], None] = lambda n: None) -> None:
        self.quiet_times = 0
        self.during = during

    async def evaluate(self, script: str) -> Any:
        assert "requestIdleCallback" in script  # the quiet time ends when the page's event loop is idle
        self.quiet_times += 1
        self.during(self.quiet_times)
        return None


def visit(seconds: float = 30.0) -> _Visit:
    task = FetchTask(req_id=1, slot=0, ticket=0, parser=0, delay=0.0, request=Request("http://127.0.0.1/"))
    return _Visit(task, None, time.monotonic() + seconds, proxied=False)


def answered(page_visit: _Visit) -> PlaywrightRequest:
    """A request of the page that went through ``_route`` and was answered (``route.fulfill``)."""
    request = cast(PlaywrightRequest, object())
    page_visit.started += 1
    page_visit.unfinished.add(request)
    return request


async def turns(settling: asyncio.Task[bool], count: int = 20) -> None:
    for _ in range(count):
        await asyncio.sleep(0)
        assert not settling.done()


@pytest.fixture(autouse=True)
def _poll_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "SETTLE_POLL", 0)


def test_the_dom_waits_for_the_browser_to_receive_an_answer_not_for_crawlkit_to_hand_it_over() -> None:
    async def main() -> None:
        page, settling_visit = QuietPage(), visit()
        request = answered(settling_visit)
        settling = asyncio.ensure_future(_settle(cast(Page, page), settling_visit))
        await turns(settling)  # route.fulfill has returned (pending is 0), the browser has not finished it
        settling_visit.over(cast(PlaywrightRequest, object()))  # a request of the tab's previous page ends
        await turns(settling)
        assert page.quiet_times == 0
        settling_visit.over(request)  # requestfinished (or requestfailed)
        assert await asyncio.wait_for(settling, 5)  # settled
        assert page.quiet_times == 1  # then one quiet time, counted from the answer received

    asyncio.run(main())


def test_a_request_started_in_the_quiet_time_is_waited_for_and_another_quiet_time_follows() -> None:
    async def main() -> None:
        settling_visit = visit()
        started: list[PlaywrightRequest] = []
        page = QuietPage(lambda n: started.append(answered(settling_visit)) if n == 1 else None)
        settling = asyncio.ensure_future(_settle(cast(Page, page), settling_visit))
        await turns(settling)
        assert page.quiet_times == 1 and settling_visit.unfinished == set(started)
        settling_visit.over(started[0])
        await asyncio.wait_for(settling, 5)
        assert page.quiet_times == 2

    asyncio.run(main())


def test_an_answer_the_browser_never_finishes_is_waited_for_until_the_pages_deadline_only() -> None:
    async def main() -> None:
        page, late = QuietPage(), visit(seconds=0.0)
        answered(late)
        assert not await asyncio.wait_for(_settle(cast(Page, page), late), 5)  # not settled: counted unsettled
        assert page.quiet_times == 0  # the DOM is read as it stands

    asyncio.run(main())
