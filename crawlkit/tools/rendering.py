"""A browser in this process, for the one-page tools (``crawlkit fetch``, ``parse``, ``shell``) to render a page.

The crawl renders in renderer processes (``render/pool.py``); a one-page tool renders its page
(each hop of a redirect) here, through the same ``Browser.render`` a renderer calls, so
``render_block``, ``render_timeout``, the render options and page actions, a host's headers and
user agent and the private-address rule hold the same way, and the result is the same
``RenderResult``. Playwright and the browser start at the first page to render (a tool that
renders nothing imports neither) and stop at ``close``; Playwright's async API runs on a private
event loop, only while a page is being rendered, so the tools stay synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from crawlkit.errors import ConfigError, FetchFailed
from crawlkit.http import Request
from crawlkit.loader import one_line
from crawlkit.log import LogConfig
from crawlkit.messages import RenderResult, RenderTask

if TYPE_CHECKING:
    from playwright.async_api import Playwright

    from crawlkit.render.browser import Browser

CLOSE_WAIT = 5.0  # seconds a browser has to close before it is killed


class PageBrowser:
    """One browser for the pages of one tool call: launched at the first ``render``, stopped by ``close``."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.loop: asyncio.AbstractEventLoop | None = None
        self.playwright: Playwright | None = None
        self.browser: Browser | None = None

    def render(self, request: Request, robots: bytes | None = None) -> RenderResult:
        """``request``'s page rendered (blocking); a failure is in ``RenderResult.error``, as in a crawl.

        ConfigError when Playwright or the browser is missing or the browser does not start;
        FetchFailed when it dies under the page. ``request`` is left as it is: the result's
        request is a copy, whose meta has ``rendered`` and what the page actions returned. ``robots``
        (``RobotsRules.rules_of``) are the page's host's rules, which its sub-resources there obey.
        """
        if self.browser is None:
            self._launch()
        assert self.loop is not None and self.browser is not None
        from crawlkit.render.browser import BrowserGone

        task = RenderTask(req_id=0, slot=0, ticket=0, parser=0, delay=0.0, request=request.replace(), robots=robots)
        try:
            return self.loop.run_until_complete(self.browser.render(task, None))
        except BrowserGone as exc:
            raise FetchFailed(f"the browser died rendering {request.url} ({exc})") from None

    def _launch(self) -> None:
        from crawlkit.render.pool import RenderConfig

        config = RenderConfig.from_settings(self.settings, LogConfig.from_settings(self.settings))
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright

        from crawlkit.render.browser import Browser

        self.loop = asyncio.new_event_loop()
        self.playwright = self.loop.run_until_complete(async_playwright().start())
        browser = Browser(self.playwright, config, exit_when_gone=False)
        try:
            self.loop.run_until_complete(browser.launch())
        except PlaywrightError as exc:
            raise ConfigError(f"the browser {config.executable} did not start ({one_line(exc)}); "
                              "set render_executable to a Chromium or Chrome that runs") from None
        self.browser = browser

    def close(self) -> None:
        """Stop the browser and Playwright, if they were started; idempotent."""
        loop, self.loop = self.loop, None
        if loop is None:
            return
        try:
            if self.browser is not None:  # a browser that does not close in CLOSE_WAIT is killed by Playwright's stop
                with contextlib.suppress(asyncio.TimeoutError):
                    loop.run_until_complete(asyncio.wait_for(self.browser.close(), CLOSE_WAIT))
            if self.playwright is not None:
                loop.run_until_complete(self.playwright.stop())
        finally:
            self.browser = self.playwright = None
            left = asyncio.all_tasks(loop)  # a stuck page's requests: ended here, as asyncio.run ends them
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.close()
