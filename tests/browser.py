"""One headless Chromium for a test module, driven by Playwright's async API from an event loop of its own,
and a loopback site for it that records every exchange as it was sent.

Debian's chromium, never a downloaded browser. Without playwright or chromium a test is skipped,
but fails under CI (CI installs both). Playwright launches it with a fresh temporary profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from support import serve_http

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
T = TypeVar("T")


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class Chromium:
    """The browser and the loop it runs on; ``run`` drives one coroutine to its end, bounded."""

    def __init__(self, loop: asyncio.AbstractEventLoop, browser: Browser) -> None:
        self.loop = loop
        self.browser = browser

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    @contextlib.asynccontextmanager
    async def page(self) -> AsyncIterator[Page]:
        """A new page (its own context: no cache or cookies shared with other tests), closed at the end."""
        context = await self.browser.new_context()
        try:
            yield await context.new_page()
        finally:
            await context.close()


@contextlib.contextmanager
def chromium() -> Iterator[Chromium]:
    """Launch Chromium; closes it, Playwright's driver and the loop at the end."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]'); the renderer's page tests are not run")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        _missing("chromium is not installed (apt-get install -y chromium); the renderer's page tests are not run")
    assert executable is not None
    loop = asyncio.new_event_loop()
    driver = loop.run_until_complete(async_playwright().start())
    try:
        browser = loop.run_until_complete(driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS))
        try:
            yield Chromium(loop, browser)
        finally:
            loop.run_until_complete(browser.close())
    finally:
        loop.run_until_complete(driver.stop())
        loop.close()


#: What a route sends for (query string, request body): status, headers in order, body, byte for byte.
Answer = Callable[[str, bytes], tuple[int, list[tuple[str, str]], bytes]]


@dataclass
class Exchange:
    """One request the site received and what it sent back."""

    method: str
    target: str  # path and query
    headers: list[tuple[str, str]]
    body: bytes
    status: int
    sent_headers: list[tuple[str, str]]
    sent_body: bytes


def fixed(content_type: str, body: bytes, *headers: tuple[str, str]) -> Answer:
    """A route that always sends ``body`` with a 200, its Content-Type and Content-Length, then ``headers``."""
    return lambda query, received: (200, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                          *headers], body)


@contextlib.contextmanager
def site(routes: dict[str, Answer], ip: str = "127.0.0.1", held: str = "") -> Iterator[tuple[str, list[Exchange]]]:
    """Serve ``routes`` (by path; 404 elsewhere) on ``ip``; yields the base URL and the exchanges so far.

    The answer for path ``held`` stops after the body its route gives (send less than its
    Content-Length for an answer that never ends) until the block ends.
    """
    seen: list[Exchange] = []
    lock = threading.Lock()
    done = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self) -> None:
            path, _, query = self.path.partition("?")
            received = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            route = routes.get(path)
            status, headers, body = route(query, received) if route else (404, [("Content-Length", "0")], b"")
            with lock:  # before the answer goes, so a test that has the answer finds it here
                seen.append(Exchange(self.command, self.path, list(self.headers.items()), received, status,
                                     headers, body))
            self.send_response_only(status)
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            if path == held:
                self.wfile.flush()
                done.wait(60)
                self.close_connection = True

        do_GET = do_POST = answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serve_http(Handler, ip) as base:
        try:
            yield base, seen
        finally:
            done.set()
