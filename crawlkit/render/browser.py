"""One browser in a renderer process: Chromium driven by Playwright's async API, and the pages it renders.

Pages are rendered in tabs (``_Tab``): a browser context each (downloads refused, service
workers blocked, a popup closed as it opens) whose page renders one page after another, its
cookies cleared and its page blanked in between (a context per page would cost twice the CPU:
each starts a renderer process); a tab that fails a page is closed. Every request a page makes
goes through ``_route``, which is where the crawl's rules hold:

- only http(s) URLs, and none of the resource types ``render_block`` lists;
- a sub-resource of the page's own host only if the host's robots.txt allows it, read as the
  engine reads it: the engine sends its parsed rules with the page (``RenderTask.robots``, a
  render task only, pickled and unpickled once per host; refused ones are counted as
  ``render_robots_denied``). Other hosts'
  robots.txt is not asked for a sub-resource (a CDN's script is not crawled, only loaded);
- with ``allow_private_addresses: false``, no request to a name that resolves to (or an
  address that is) not public (``destinations.public_addresses``; the name is resolved again
  by Playwright's HTTP client that sends it: a DNS answer that changes in between is not seen;
  through a proxy, as on the plain path, only an address written in the URL is checked);
- a host's ``user_agent`` (the ``hosts`` rules) is set on the requests to that host, its
  ``headers`` on those of its own pages only (credentials, often: another host's page could
  have its scripts fetch that host with them, read the answer and send it on), the request's
  own headers and the engine's cookie on the main document only;
- the requests are sent through the proxy the plain path would use for the page (``Proxy``: a
  browser context has one, so tabs are kept per proxy), the proxy resolving the names;
- the requests are sent by Playwright itself (``route.fetch``, redirects not followed, so a
  redirect is a new request through here) one at a time per page, each to the page's own host
  in a send turn of that host (``delay``). The engine gave the page one permit of its host, so
  the page has at most one request in flight at the server: the per-host cap holds there with
  sub-resources counted. A sub-resource of another host (a CDN's script) goes under the page's
  permit, not one of that host's, and without that host's delay; within one renderer process,
  that host's ``per_host`` holds for them (``_OtherHosts``), so it sees at most
  ``render_processes × per_host`` of them in flight at once (besides its own pages', which
  the engine's permits hold apart);
- a body over ``max_body`` does not reach the browser: a sub-resource's is refused to the page
  (``render_too_large``), the main document's fails the page (``body_too_large``, unless
  ``meta["truncate"]``, which renders it whole). Playwright's driver reads a body whole
  before ``route.fetch`` returns, so ``max_body`` bounds what reaches the browser, not what
  the driver holds for a moment.

The main document's redirect is not followed in the browser: the 3xx goes to the parser as the
plain path's does, whose redirect stage queues the target through dedup, robots.txt and the
limiter (with the request's render options). A browser that dies under its pages takes the
renderer process with it (``os._exit``): the engine re-queues the pages, blaming them as it
blames a dead fetcher's (``max_process_deaths``), and starts another renderer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import pickle
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, urlsplit

from playwright.async_api import Browser as PlaywrightBrowser
from playwright.async_api import BrowserContext, Page, Playwright, Route
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Request as PlaywrightRequest
from playwright.async_api import TimeoutError as PlaywrightTimeout

from crawlkit.errors import FetchErrorKind
from crawlkit.fetch.destinations import DestinationBlocked, check_host, public_addresses
from crawlkit.fetch.fetcher import _environment_proxy, _origin
from crawlkit.http import Request
from crawlkit.messages import FetchTask, RenderResult, RenderTask
from crawlkit.render.actions import run_actions
from crawlkit.render.capture import NetworkCapture
from crawlkit.render.choose import options_for
from crawlkit.sites import SiteRules
from crawlkit.urls import host_of

if TYPE_CHECKING:
    from playwright.async_api import APIResponse, ProxySettings
    from protego import Protego

    from crawlkit.render.pool import RenderConfig

log = logging.getLogger("crawlkit.renderer")

# As root, Chromium needs --no-sandbox; the others keep it off the network except for the pages'
# own requests (no update checks, sync, field trials), which a closed network refuses anyway.
LAUNCH_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage")
EXIT_BROWSER_GONE = 3  # a renderer's exit code when its browser died under it
ROBOTS_KEPT = 256  # hosts whose unpickled robots.txt rules a renderer keeps
MEMORY_EVERY = 1.0  # seconds between two checks of the browser's memory (render_recycle_mb), at least
SETTLE_POLL = 0.005  # seconds between looks at a settling page's requests in progress
SETTLE_QUIET = 0.05  # seconds of a page's time with no request started before its DOM is read (see _settle)
SETTLE_IDLE = 1.0  # seconds of a page's time _settle waits at most for its event loop to be idle, after the quiet
# Resolves after SETTLE_QUIET seconds of the page's time and then at its next idle time (SETTLE_IDLE at most).
_QUIET = (f"() => new Promise(resolve => setTimeout(() => requestIdleCallback(resolve, "
          f"{{timeout: {SETTLE_IDLE * 1000:g}}}), {SETTLE_QUIET * 1000:g}))")
Turns = Callable[[], AbstractContextManager[Any]]  # makes a send turn of the page's host (Permits.turn)
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_DROPPED_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})  # of the DOM, not the bytes


class BrowserGone(Exception):
    """The browser died (killed, crashed) or was closed under a page."""


class _Visit:
    """One page's render: its task, the main document's answer, and the lock that sends its requests one at a time."""

    __slots__ = ("task", "host", "turn", "deadline", "proxied", "robots", "agent", "lock", "main", "sent", "error",
                 "redirect", "blocked", "too_large", "robots_denied", "pending", "started", "unfinished")

    def __init__(self, task: FetchTask, turn: Turns | None, deadline: float, proxied: bool) -> None:
        self.task = task
        self.proxied = proxied  # sent through a proxy
        self.robots: Protego | None = None  # the rules of the page's host, which its sub-resources there obey
        self.agent = ""  # the product token those rules are matched for
        self.host = host_of(task.request.url)
        self.turn = turn
        self.deadline = deadline
        self.lock = asyncio.Lock()
        self.main: APIResponse | None = None  # the main document's answer
        self.sent: dict[str, str] = {}  # the main document's request headers
        self.error: tuple[FetchErrorKind, str] | None = None  # why the main document has no answer
        self.redirect = False  # the main document answered a redirect: the parser follows it
        self.blocked = 0  # requests refused (render_block, a scheme, a private address)
        self.too_large = 0  # sub-resources refused to the page, their body over max_body
        self.robots_denied = 0  # sub-resources of the page's host that its robots.txt disallows
        self.pending = 0  # requests of the page being sent now (or waiting for their turn)
        self.started = 0  # requests of the page sent so far
        # Requests of the page that reached _route and that the browser has not finished receiving (or given up):
        # an answer handed to Playwright (route.fulfill) still has to reach the page (see _settle).
        self.unfinished: set[PlaywrightRequest] = set()

    def over(self, request: PlaywrightRequest) -> None:
        """The browser has received the whole answer to ``request`` (``requestfinished``) or failed it."""
        self.unfinished.discard(request)


class Proxy(NamedTuple):
    """The proxy a page and all its requests go through: the one the plain path (``fetcher.fetch``) would
    use for the page, its request's ``meta["proxy"]``, else the ``proxy`` setting, else the one
    HTTP_PROXY/HTTPS_PROXY name for its URL (then the hosts of NO_PROXY bypass it, as they do there)."""

    url: str
    bypass: str | None

    @classmethod
    def of(cls, request: Request, configured: str | None) -> Proxy | None:
        """The proxy of page ``request`` (None: direct); ``configured`` is the ``proxy`` setting."""
        own = request.meta.get("proxy") or configured
        if own:
            return cls(own, None)
        found = _environment_proxy(_origin(request.url))
        if not found:
            return None
        return cls(found, os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or None)

    def settings(self) -> ProxySettings:
        """The proxy for ``new_context``: its credentials apart, which Playwright sends to the proxy only
        (Proxy-Authorization), never in a page's request headers. ValueError (which does not show the URL,
        nor its password) when the URL has no host or a bad port: Playwright would take it for another."""
        parts = urlsplit(self.url if "://" in self.url else "http://" + self.url)  # HTTP_PROXY=host:port, as requests
        if not parts.hostname or any(char in parts.hostname for char in " \t/\\"):
            raise ValueError(f"its host name is {'empty' if not parts.hostname else 'not one'}")
        if parts.port == 0:  # and a port that is not a number or out of range raises here
            raise ValueError("its port is 0")
        settings: ProxySettings = {"server": f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"}
        if parts.username is not None:
            settings["username"] = unquote(parts.username)
            settings["password"] = unquote(parts.password or "")
        if self.bypass:
            settings["bypass"] = self.bypass
        return settings


class _Tab:
    """A browser context and its page, rendering one page after another (a context costs a renderer
    process start: twice the CPU of the page); ``visit`` is the page being rendered, None between two.
    A context has one proxy for good: a page is given a tab of its own proxy."""

    __slots__ = ("context", "page", "visit", "proxy")

    def __init__(self, context: BrowserContext, proxy: Proxy | None) -> None:
        self.context = context
        self.page: Page
        self.visit: _Visit | None = None
        self.proxy = proxy


class _OtherHosts:
    """The sub-resources of other hosts' pages (a CDN's scripts) in flight from this renderer, each host held to
    its ``per_host`` (its ``hosts`` rule's, else the crawl's): a semaphore per host while it has some."""

    def __init__(self, per_host: int, sites: SiteRules | None) -> None:
        self.per_host = per_host
        self.sites = sites
        self.held: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}  # host -> its semaphore, [requests using it]

    @contextlib.asynccontextmanager
    async def slot(self, host: str, deadline: float) -> AsyncIterator[None]:
        """Hold one of ``host``'s ``per_host`` slots while the block runs, waiting for one until ``deadline``
        (``time.monotonic``; the page's render_timeout) at most: asyncio.TimeoutError then. A host that never
        answers holds its slots until their pages' deadlines only, and its waiters do not pile up behind them."""
        entry = self.held.get(host)
        if entry is None:
            cap = self.sites.limits(host, self.per_host, 0.0)[0] if self.sites is not None else self.per_host
            entry = self.held[host] = (asyncio.Semaphore(cap), [0])
        semaphore, users = entry
        users[0] += 1
        try:
            await asyncio.wait_for(semaphore.acquire(), deadline - time.monotonic())
            try:
                yield
            finally:
                semaphore.release()
        finally:
            users[0] -= 1
            if not users[0]:
                del self.held[host]


class Browser:
    """A Chromium of this renderer process: launch, render a page, recycle when due, close.

    A renderer process ends (``EXIT_BROWSER_GONE``) the moment its browser dies, for the engine to
    re-queue its pages; with ``exit_when_gone`` false (a one-page tool's browser, ``tools/rendering.py``)
    the page being rendered raises BrowserGone instead, and the command goes on.
    """

    def __init__(self, playwright: Playwright, config: RenderConfig, exit_when_gone: bool = True) -> None:
        self.playwright = playwright
        self.config = config
        self.exit_when_gone = exit_when_gone
        self.browser: PlaywrightBrowser | None = None
        self.rendered = 0  # pages since the launch
        self.memory_checked = -math.inf  # when render_recycle_mb was last checked (time.monotonic)
        self.recycle: str | None = None  # why the browser is due to be recycled, once it is
        self.closing = False
        self.free: list[_Tab] = []  # tabs between two pages
        self.other_hosts = _OtherHosts(config.per_host, config.sites)
        self.robots: dict[str, tuple[bytes, Protego, str]] = {}  # host -> its rules as sent, unpickled, and agent

    async def launch(self) -> None:
        self.browser = await self.playwright.chromium.launch(
            executable_path=self.config.executable, args=list(LAUNCH_ARGS), timeout=60_000,
        )
        self.browser.on("disconnected", self._disconnected)
        self.rendered = 0
        self.memory_checked = -math.inf
        self.recycle = None

    def _disconnected(self, _: PlaywrightBrowser) -> None:
        if not self.closing and self.exit_when_gone:
            log.error("renderer %d: the browser died; its pages are re-queued by the engine", os.getpid())
            os._exit(EXIT_BROWSER_GONE)

    async def close(self) -> None:
        self.free.clear()
        if self.browser is not None:
            self.closing = True
            await self.browser.close()
            self.browser = None
            self.closing = False

    def due(self) -> str | None:
        """Why the browser is to be recycled (it has rendered ``render_recycle_pages`` pages, or grown past
        ``render_recycle_mb``), or None; once due, it stays due until launched again.

        The memory is looked at after a page, at most every ``MEMORY_EVERY`` seconds: a walk of
        /proc of a few milliseconds (``browser_memory``), in the renderer's loop.
        """
        config = self.config
        if self.recycle is None and config.recycle_pages and self.rendered >= config.recycle_pages:
            self.recycle = f"{self.rendered} pages rendered (render_recycle_pages: {config.recycle_pages})"
        elif self.recycle is None and config.recycle_mb and self.rendered:
            now = time.monotonic()
            if now >= self.memory_checked + MEMORY_EVERY:
                self.memory_checked = now
                used = browser_memory(os.getpid()) >> 20
                if used > config.recycle_mb:
                    self.recycle = (f"its processes hold {used} MB of anonymous memory "
                                    f"(render_recycle_mb: {config.recycle_mb})")
        return self.recycle

    async def render(self, task: FetchTask, turn: Turns | None) -> RenderResult:
        """Render the page of ``task``; never raises but BrowserGone: failures come back as ``RenderResult.error``.

        ``turn`` makes the send turns of the page's host, when it has a delay.
        """
        request = task.request
        started = time.monotonic()
        result = RenderResult(req_id=task.req_id, request=request, url=request.url)
        try:
            options = options_for(request, self.config.sites, self.config.crawl)
        except ValueError as exc:
            result.error, result.message = FetchErrorKind.RENDER_OPTIONS.value, str(exc)
            return result
        proxy = Proxy.of(request, self.config.proxy)
        visit = _Visit(task, turn, started + self.config.timeout, proxy is not None)
        if isinstance(task, RenderTask) and task.robots is not None:
            visit.robots, visit.agent = self._robots_of(visit.host, task.robots)
        self.rendered += 1
        try:
            tab = await self._tab(proxy)
        except PlaywrightError as exc:  # a live browser refusing a context refuses its proxy (socks5 with a password)
            if self.browser is None or not self.browser.is_connected():
                raise BrowserGone(_one_line(exc)) from None
            result.error, result.message = FetchErrorKind.RENDER_ERROR.value, _one_line(exc)
            return result
        except ValueError as exc:  # Proxy.settings: as the plain path fails a proxy it cannot parse
            result.error, result.message = FetchErrorKind.INVALID_URL.value, f"the proxy's URL is not valid: {exc}"
            return result
        tab.visit = visit
        # With warc on, every response the page receives in this visit, for the WARC stage (a tab is reused:
        # the capture is the visit's, and stops listening when finished).
        capture = NetworkCapture(tab.page) if self.config.archive else None
        try:
            await asyncio.wait_for(self._visit(tab.page, visit, options, result), self.config.timeout + 5)
            if capture is not None:
                result.resources = await capture.finish()
                if capture.skipped:
                    result.counts["render_capture_skipped"] = capture.skipped
                capture = None
        except asyncio.TimeoutError:
            result.error = FetchErrorKind.DOWNLOAD_TIMEOUT.value
            result.message = f"not rendered within render_timeout ({self.config.timeout:g}s)"
        except PlaywrightError as exc:
            if self.browser is None or not self.browser.is_connected():
                raise BrowserGone(_one_line(exc)) from None
            result.error, result.message = FetchErrorKind.RENDER_ERROR.value, _one_line(exc)
        if capture is not None:  # the visit failed: what came is not kept, and the page is listened to no more
            capture.stop()
        tab.visit = None  # what the page still asks for is refused
        while visit.pending and time.monotonic() < visit.deadline:  # the page's permit is held until they end
            await asyncio.sleep(SETTLE_POLL)
        try:
            if result.error is None:
                await asyncio.wait_for(self._release(tab), 5)
            else:  # a tab that failed a page is not trusted with another
                await asyncio.wait_for(tab.context.close(), 5)
        except (PlaywrightError, asyncio.TimeoutError):
            pass  # the browser is gone or stuck: the next page or the engine's stall check finds out
        if visit.blocked:
            result.counts["render_blocked"] = visit.blocked
        if visit.robots_denied:
            result.counts["render_robots_denied"] = visit.robots_denied
        if visit.too_large:
            result.counts["render_too_large"] = visit.too_large
            log.warning("%d sub-resources of %s refused to the page: their bodies are over max_body (%d bytes)",
                        visit.too_large, request.url, self.config.max_body)
        result.elapsed = time.monotonic() - started
        return result

    def _robots_of(self, host: str, blob: bytes) -> tuple[Protego, str]:
        """The rules and agent the engine pickled for ``host`` (``RobotsRules.rules_of``), unpickled once per
        host and version (a robots.txt of thousands of rules takes a few hundred ms), ``ROBOTS_KEPT`` hosts kept."""
        kept = self.robots.pop(host, None)
        if kept is None or kept[0] != blob:
            rules, agent = pickle.loads(blob)  # the engine's own message, as every task is
            kept = (blob, rules, agent)
        self.robots[host] = kept  # the most recent last
        if len(self.robots) > ROBOTS_KEPT:
            del self.robots[next(iter(self.robots))]
        return kept[1], kept[2]

    async def _tab(self, proxy: Proxy | None) -> _Tab:
        """A free tab of ``proxy``, or a new one: its own browser context, with every request of its page through
        ``_route``, sent through ``proxy`` (by ``route.fetch``, which uses the context's proxy); PlaywrightError
        when the browser refuses the context (or is gone)."""
        for index in range(len(self.free) - 1, -1, -1):
            if self.free[index].proxy == proxy:
                return self.free.pop(index)
        assert self.browser is not None  # launched before the first task
        context = await self.browser.new_context(
            user_agent=self.config.user_agent, accept_downloads=False, service_workers="block",
            proxy=proxy.settings() if proxy is not None else None,
        )
        tab = _Tab(context, proxy)
        try:
            await context.route("**/*", lambda route: self._route(route, tab.visit))

            def over(request: PlaywrightRequest) -> None:  # the browser is done with a request: _settle's look
                if tab.visit is not None:  # of a page being rendered (its own: a request of another is not in it)
                    tab.visit.over(request)

            context.on("requestfinished", over)
            context.on("requestfailed", over)
            tab.page = await context.new_page()
        except PlaywrightError:
            with contextlib.suppress(PlaywrightError):
                await context.close()
            raise
        context.on("page", _close_popup)  # any page after this one
        return tab

    async def _release(self, tab: _Tab) -> None:
        """Make a tab that rendered a page fit for the next (its page blank, its cookies gone) and free it."""
        await tab.page.goto("about:blank")
        await tab.context.clear_cookies()
        self.free.append(tab)
        if len(self.free) > self.config.pages:  # tabs kept for other proxies: the one free the longest goes
            await self.free.pop(0).context.close()

    async def _visit(self, page: Page, visit: _Visit, options: dict[str, Any], result: RenderResult) -> None:
        """Navigate, run the page actions, read the DOM into ``result``."""
        request = visit.task.request
        settled = True
        try:
            await page.goto(request.url, wait_until=options.get("wait_until", "load"),
                            timeout=max(1.0, visit.deadline - time.monotonic()) * 1000)
        except PlaywrightTimeout:
            if visit.main is None:
                result.error = (visit.error or (FetchErrorKind.DOWNLOAD_TIMEOUT, ""))[0].value
                result.message = f"no answer within render_timeout ({self.config.timeout:g}s)"
                return
            settled = False  # the document came, its load event did not: the DOM is what there is
        except PlaywrightError as exc:
            if visit.main is None or not visit.redirect:
                kind, message = visit.error or (FetchErrorKind.RENDER_ERROR, _one_line(exc))
                result.error, result.message = kind.value, message
                return
        main = visit.main
        assert main is not None  # goto succeeded or the main document answered a redirect
        result.url = main.url
        result.status = main.status
        result.status_line = f"HTTP/1.1 {main.status} {main.status_text}".rstrip()
        result.request_headers = list(visit.sent.items())
        if visit.redirect:
            result.headers = [(h["name"], h["value"]) for h in main.headers_array]
            return
        if settled and options.get("wait_until", "load") == "load":
            settled = await _settle(page, visit)
        if not settled:  # its scripts may not have written what the spider looks for
            result.counts["render_unsettled"] = 1
            log.warning("%s: read as it stood at render_timeout (%gs), before its page was done loading or its "
                        "requests were over; raise render_timeout if its content is missing", request.url,
                        self.config.timeout)
        meta = await run_actions(page, options, visit.deadline, request.url)
        body = await page.content()
        result.headers = [(h["name"], h["value"]) for h in main.headers_array
                          if h["name"].lower() not in _DROPPED_HEADERS and h["name"].lower() != "content-type"]
        result.headers.append(("Content-Type", "text/html; charset=utf-8"))  # the DOM, serialised by us
        result.body = body.encode("utf-8")
        result.meta = meta
        result.counts["rendered"] = 1
        # The renderer's own copy of the request, pickled to the parser: response.meta sees these.
        request.meta["rendered"] = True
        request.meta.update(meta)

    async def _route(self, route: Route, visit: _Visit | None) -> None:
        """Send one request of the page under the crawl's rules (see the module docstring), or refuse it."""
        if visit is None:  # a request of a page already rendered
            await _abort(route)
            return
        sent = route.request
        url = sent.url
        main = visit.main is None and sent.is_navigation_request()
        if not main and (sent.resource_type in self.config.block or sent.is_navigation_request()):
            visit.blocked += 1  # a blocked type, or another navigation (a script's, a frame's): not this page
            await _abort(route)
            return
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            visit.blocked += 1
            await _abort(route)
            return
        if (visit.robots is not None and not main and host_of(url) == visit.host
                and not visit.robots.can_fetch(url, visit.agent)):
            visit.robots_denied += 1
            await _abort(route)
            return
        headers = await sent.all_headers()
        if self.config.sites is not None:
            host = host_of(url)
            rule = self.config.sites.for_host(host)
            if host == visit.host:  # not a script of another host's page: it could read the answer and send it on
                for name, value in rule.headers:
                    headers.setdefault(name.lower(), value)
            if rule.user_agent is not None:
                headers["user-agent"] = rule.user_agent
        loop = asyncio.get_running_loop()
        if main:
            for name, value in visit.task.request.headers.items():
                headers[name.lower()] = value
            if visit.task.cookie and "cookie" not in headers:
                headers["cookie"] = visit.task.cookie
            visit.sent = headers
        if not self.config.allow_private_addresses:
            try:
                if visit.proxied:  # the proxy resolves the name, as on the plain path: only an address is checked
                    check_host(parts.hostname)
                else:
                    await loop.run_in_executor(None, public_addresses, parts.hostname, parts.port or 443)
            except DestinationBlocked as exc:
                visit.blocked += 1
                if main:
                    visit.error = (FetchErrorKind.DESTINATION_BLOCKED, str(exc))
                await _abort(route)
                return
            except OSError:
                pass  # a name that does not resolve: the browser's own attempt fails the same way
        visit.pending += 1
        visit.started += 1
        visit.unfinished.add(sent)
        try:
            response = await self._send(route, visit, main, headers)
        finally:
            visit.pending -= 1
        if response is None:
            return
        if main:
            meta = visit.task.request.meta
            limit = meta.get("max_body") or self.config.max_body
            if not meta.get("truncate") and await _too_large(response, limit):  # as the plain path refuses it
                visit.error = (FetchErrorKind.BODY_TOO_LARGE, f"body over max_body {limit} bytes")
                await _abort(route)
                return
            visit.main = response
            if 300 <= response.status < 400 and "location" in response.headers:
                visit.redirect = True  # the parser's redirect stage queues the target, under the crawl's rules
                await _abort(route)
                return
        elif await _too_large(response, self.config.max_body):
            visit.too_large += 1
            await _abort(route)
            return
        try:
            await route.fulfill(response=response)
        except PlaywrightError:
            visit.unfinished.discard(sent)  # the page was closed meanwhile

    async def _send(self, route: Route, visit: _Visit, main: bool, headers: dict[str, str]) -> APIResponse | None:
        """Send one request of the page, after its others are over (the main document in its host's turn);
        None when it failed (the route is aborted, the main document's failure kept in ``visit``)."""
        loop = asyncio.get_running_loop()
        async with visit.lock:  # one request of this page at the server at a time
            timeout = max(0.5, visit.deadline - time.monotonic()) * 1000
            host = visit.host if main else host_of(route.request.url)
            try:
                if host != visit.host:  # under the page's permit, not one of its host's: see _OtherHosts
                    async with self.other_hosts.slot(host, visit.deadline):
                        timeout = max(0.5, visit.deadline - time.monotonic()) * 1000  # what the wait left
                        response = await route.fetch(headers=headers, max_redirects=0, timeout=timeout)
                elif visit.turn is not None:
                    turn = visit.turn()  # the host's delay spaces its sub-resources too
                    await loop.run_in_executor(None, turn.__enter__)
                    try:
                        response = await route.fetch(headers=headers, max_redirects=0, timeout=timeout)
                    finally:
                        turn.__exit__(None, None, None)
                else:
                    response = await route.fetch(headers=headers, max_redirects=0, timeout=timeout)
            except PlaywrightError as exc:
                if main:
                    visit.error = classify(exc)
                await _abort(route)
                return None
            except asyncio.TimeoutError:  # no slot of the other host before the page's deadline
                await _abort(route)
                return None
        return response


async def _too_large(response: APIResponse, limit: int) -> bool:
    """Whether an answer's body is over ``limit`` bytes: by its Content-Length, or, without one or when
    Playwright decoded it (gzip, br), by the body itself. Either way the driver has read it whole."""
    headers = response.headers
    length = headers.get("content-length", "")
    if length.isdigit() and (int(length) > limit or "content-encoding" not in headers):
        return int(length) > limit
    try:
        return len(await response.body()) > limit
    except PlaywrightError:
        return False  # the page was closed meanwhile: fulfilling it fails the same way


async def _abort(route: Route) -> None:
    try:
        await route.abort("blockedbyclient")
    except PlaywrightError:
        pass  # the page was closed meanwhile


async def _settle(page: Page, visit: _Visit) -> bool:
    """After the load event, wait until the page has received the answers to all its requests, then for
    ``SETTLE_QUIET`` seconds of its own time with no other started and for its event loop to be idle (at
    most ``SETTLE_IDLE`` seconds more), up to the page's deadline: so the script that ``fetch()``es
    a JSON and writes it into the DOM has run when the DOM is read, even on a loaded machine.

    A request is over when the browser has its whole answer (``requestfinished``) or gave it up
    (``requestfailed``), not when ``_route`` hands the answer to Playwright (``route.fulfill``
    returns): the browser still has to bring it to the page's process, which may take longer than
    the quiet time under load. The quiet time, counted from the last request over, is for a
    request the page made that has not reached ``_route`` yet; the idle wait
    (``requestIdleCallback``) for the tasks that read an answer and write it into the DOM. Not
    waited for: what a script does later by a timer of its own (a ``setTimeout`` after the answer,
    a poll every second) or on an event no request brings: a page action's ``wait_for`` of the
    element it writes waits for that. Playwright's ``networkidle`` waits for half a second.
    False when the deadline came first (the page is read as it stands, and counted ``render_unsettled``).
    """
    while time.monotonic() < visit.deadline:
        if visit.unfinished:
            await asyncio.sleep(SETTLE_POLL)
            continue
        started = visit.started
        await page.evaluate(_QUIET)
        await asyncio.sleep(0)  # a route call that came with the answer is counted before the look
        if not visit.unfinished and visit.started == started:
            return True
    return False


def _close_popup(page: Page) -> None:
    """A page the rendered page opened (window.open, target=_blank): closed unseen."""
    asyncio.ensure_future(page.close())


def classify(exc: PlaywrightError) -> tuple[FetchErrorKind, str]:
    """The kind of a failed request of the browser, from Playwright's message (it has no types for these)."""
    text = _one_line(exc)
    for marks, kind in (
        (("ECONNREFUSED", "ERR_CONNECTION_REFUSED"), FetchErrorKind.CONNECTION_REFUSED),
        (("ENOTFOUND", "EAI_AGAIN", "ERR_NAME_NOT_RESOLVED"), FetchErrorKind.UNRESOLVABLE_HOST),
        (("ECONNRESET", "ERR_CONNECTION_RESET", "socket hang up"), FetchErrorKind.CONNECTION_RESET),
        (("Timeout", "ETIMEDOUT", "timed out"), FetchErrorKind.DOWNLOAD_TIMEOUT),
    ):
        if any(mark in text for mark in marks):
            return kind, text
    return FetchErrorKind.CONNECTION_ERROR, text


def _one_line(exc: BaseException) -> str:
    """``exc``'s message in one line, without the call log Playwright appends: it lists the request's headers,
    a host's Authorization and the engine's Cookie among them, which no log line, error or report may show."""
    return " ".join(str(exc).partition("Call log:")[0].split())[:300]


def browser_memory(renderer: int) -> int:
    """Bytes of anonymous memory (heaps, ``RssAnon``) the browser processes of renderer process ``renderer``
    hold, summed: what a browser's leaks grow.

    The browser is a child of Playwright's driver, the renderer's child, and its processes are
    in a session of its own (Playwright starts it detached): every Chromium process whose session
    is such a browser's. One read of each process's /proc/PID/stat (its parent, session and name)
    finds them, a tenth of the time psutil's walk of the tree takes; their /proc/PID/statm gives
    resident less file-backed pages. Neither their shared libraries (which a sum of resident sets
    counts once per process) nor PSS: ``smaps_rollup`` walks each Chromium process's huge
    reserved address space, a tenth of a second for a browser.
    """
    processes: list[tuple[int, int, int, bool]] = []  # pid, ppid, session, a chromium
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                data = stat.read()
        except OSError:
            continue  # gone meanwhile
        name_end = data.rfind(b")")  # the name, in parentheses, may hold spaces and parentheses
        fields = data[name_end + 2:].split()  # state, ppid, pgrp, session, ...: stat's fields 3 and on
        processes.append((int(entry.name), int(fields[1]), int(fields[3]), b"chrom" in data[:name_end]))
    drivers = {pid for pid, ppid, _, _ in processes if ppid == renderer}
    browsers = {pid for pid, ppid, _, chromium in processes if chromium and ppid in drivers}
    pages = 0
    for pid, _, session, chromium in processes:
        if chromium and session in browsers:
            try:
                with open(f"/proc/{pid}/statm", "rb") as statm:
                    _, resident, shared = statm.read().split()[:3]
            except OSError:
                continue
            pages += int(resident) - int(shared)
    return pages * _PAGE_SIZE
