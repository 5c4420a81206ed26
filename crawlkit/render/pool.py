"""The renderer processes: beside the fetcher Pool, each with one browser rendering ``render_pages`` pages at once.

A renderer is a fetcher of another kind, and is handled as one wherever it can be: it claims
one of the fetch queues kept for renderers (the last ``channels.renderers`` of them; the Pool's
workers never claim those), reads ``FetchTask`` s from it through the fetchers' ``_Inbox``,
beats and keeps each task's deadline in the same shared arrays, releases the host's permit and
notifies the engine when a page is done, and sends a ``RenderResult`` down the same Pipes to
the parsers (``_Outbox``). So the engine's dispatch, stall checks and death handling
(re-queueing, ``max_process_deaths``) apply to it unchanged; the supervisor starts one
(``RenderProcesses``) at the first page to render and replaces one that dies.

Inside, an asyncio loop runs the async Playwright API (``browser.py``): one coroutine per page
slot takes a task (``_Inbox.get`` in a thread, as it blocks), renders it and sends the result.
The sub-resources its pages ask of other hosts than their own are held to those hosts'
``per_host`` in this process only: across the renderers, a host may see ``render_processes ×
per_host`` of them at once (``browser._OtherHosts``).
Before a page the browser is recycled if it is due (``render_recycle_pages``,
``render_recycle_mb``: ``Browser.due``), once its pages in progress are done; logged, and
counted (``render_recycled``) in the next result sent.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from crawlkit.errors import ConfigError, FetchErrorKind
from crawlkit.fetch.channels import _WATCHDOG, CLOSED, JOINED, FetchChannels, _Inbox, _notify, _Outbox, claim
from crawlkit.loader import one_line
from crawlkit.log import LogConfig
from crawlkit.messages import FetchTask, RenderResult
from crawlkit.process import child_setup
from crawlkit.sites import SiteRules
from crawlkit.urls import host_of

if TYPE_CHECKING:
    from crawlkit.render.browser import Browser, Turns

log = logging.getLogger("crawlkit.renderer")

BROWSER_START_MB = 60  # anonymous memory of a browser that rendered one page: 60 to 240 MB seen (render_recycle_mb)
QUEUES_PER_RENDERER = 2  # render queues made per renderer process: the spare serves a replacement
INSTALL = "pip install 'crawlkit[render]'"


@dataclass(slots=True)
class RenderConfig:
    executable: str
    pages: int
    block: tuple[str, ...]
    timeout: float
    recycle_pages: int
    recycle_mb: int
    user_agent: str
    connect_timeout: float
    read_timeout: float
    allow_private_addresses: bool
    sites: SiteRules | None  # the ``hosts`` setting: a host's headers, user agent and render options
    crawl: bool | dict[str, Any]  # the ``render`` setting: its render options, if a dict
    log: LogConfig
    archive: bool  # ``warc`` is on: the page's network responses go into RenderResult.resources
    proxy: str | None  # the ``proxy`` setting (see browser.Proxy)
    max_body: int  # bytes of a sub-resource's body the page may have
    per_host: int  # a host's sub-resources of other hosts' pages in flight at once (its hosts rule's, else this)
    # This crawl's own prefix of its renderers' temporary directories (``scratch``): a process that carries
    # one of them in its TMPDIR is this crawl's (see bury), whatever other crawls run on the machine
    scratch: str

    @classmethod
    def from_settings(cls, s: Any, log_config: LogConfig) -> RenderConfig:
        """The renderers' part of the settings; ConfigError when Playwright or the browser is missing."""
        if 0 < s.render_recycle_mb < BROWSER_START_MB:
            log.warning("render_recycle_mb is %d, below the %d MB or more a browser holds once it rendered a "
                        "page: each will be started afresh after every page, at many times the page's CPU; "
                        "raise it or set 0", s.render_recycle_mb, BROWSER_START_MB)
        return cls(
            executable=find_browser(s.render_executable), pages=s.render_pages, block=tuple(s.render_block),
            timeout=s.render_timeout, recycle_pages=s.render_recycle_pages, recycle_mb=s.render_recycle_mb,
            user_agent=s.user_agent, connect_timeout=s.connect_timeout, read_timeout=s.read_timeout,
            allow_private_addresses=s.allow_private_addresses, sites=SiteRules(s.hosts) if s.hosts else None,
            crawl=s.render, log=log_config, archive=bool(s.warc), proxy=s.proxy,
            max_body=s.max_body, per_host=s.per_host,
            scratch=os.path.join(tempfile.gettempdir(), f"crawlkit-render-{uuid.uuid4().hex[:16]}"),
        )


def find_browser(executable: str | None) -> str:
    """The browser to start (``render_executable``, else chromium on PATH); ConfigError, in one line, when
    Playwright is not installed or no browser is found."""
    if importlib.util.find_spec("playwright") is None:
        raise ConfigError(f"rendering pages needs Playwright, which is not installed: {INSTALL}")
    if executable is not None:
        found = shutil.which(executable)
        if found is None:
            raise ConfigError(f"render_executable {executable!r} is not an executable file; install chromium or "
                              "set render_executable to a Chromium or Chrome executable")
        return found
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise ConfigError("rendering pages needs Chromium, and neither chromium nor chromium-browser is on PATH: "
                          "install chromium (apt-get install chromium) or set render_executable")
    return found


class RenderProcesses:
    """The engine's handle on the renderer processes: started at the first page to render, replaced when one dies.

    A renderer's death is seen twice: by the supervisor, through its claimed queue (its pages are
    re-queued there), and here, at the next ``start``, which counts it with ``died`` (the
    engine's ``Respawns``) and starts another; one that dies before claiming a queue is seen here only.

    ``config`` is made at the first ``start`` unless given (the engine makes it before the crawl
    starts when the settings render pages), so a crawl whose spider asks for rendering without
    Playwright or a browser fails there, in one line.
    """

    def __init__(self, ctx: BaseContext, channels: FetchChannels, settings: Any, log_config: LogConfig,
                 died: Callable[[str], None], config: RenderConfig | None = None) -> None:
        self.ctx = ctx
        self.died = died
        self.channels = channels
        self.settings = settings
        self.log_config = log_config
        self.config = config
        self.processes: list[BaseProcess] = []
        # Renderers that died: their files are removed again at the end, as a browser killed with its group
        # may still be writing its profile when ``bury`` removes it.
        self.dead: list[int] = []

    @property
    def first(self) -> int:
        """The index of the first render queue in ``channels.queues``."""
        return len(self.channels.queues) - self.channels.renderers

    def start(self) -> None:
        """Have ``render_processes`` renderers running: the first page to render asks, and asks again while
        no renderer has claimed a queue; a dead one's death counts (``died``: a crash loop stops the crawl).

        ConfigError when rendering cannot work (no Playwright, no browser).
        """
        if self.config is None:
            self.config = RenderConfig.from_settings(self.settings, self.log_config)
        alive = []
        for process in self.processes:
            if process.is_alive():  # which reaps the dead
                alive.append(process)
            else:
                self.died("renderer")
                if process.pid is not None:
                    self.dead.append(process.pid)
        self.processes = alive
        while len(self.processes) < self.settings.render_processes:
            self._start_one()

    def _start_one(self) -> None:
        process = self.ctx.Process(  # type: ignore[attr-defined]  # typeshed puts Process on each concrete context only
            target=renderer_main, args=(self.config, self.channels), name="crawlkit-renderer",
        )
        process.start()
        self.processes.append(process)

    def join(self, timeout: float) -> None:
        """After the STOPs (the supervisor's): wait for the renderers to close their browsers, kill the late ones."""
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.pid is not None:
                self.bury(process.pid)
            process.join()
        self.processes.clear()
        for pid in self.dead:
            self.remove(pid)
        self.dead.clear()

    def bury(self, pid: int) -> None:
        """``bury`` renderer ``pid``, one of these."""
        assert self.config is not None  # made before the first renderer started
        bury(self.config.scratch, pid)

    def remove(self, pid: int) -> None:
        """Remove dead renderer ``pid``'s temporary files, again: see ``dead``."""
        assert self.config is not None  # made before the first renderer started
        shutil.rmtree(scratch(self.config.scratch, pid), ignore_errors=True)


def bury(root: str, pid: int) -> None:
    """SIGKILL what is left of renderer ``pid`` (its process group: itself and Playwright's driver; its
    browser's processes) and remove its temporary files; ``root`` is its crawl's ``RenderConfig.scratch``.

    A renderer killed outright leaves its driver and browser behind for as long as they take to
    notice (a frozen browser, for good), and their files (a browser profile: megabytes) for good;
    this ends them at once. Called as soon as the renderer is known dead, before another is
    started; processes already gone are no error.
    """
    for pidfd in browser_processes(root, pid):
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass  # gone meanwhile
        finally:
            os.close(pidfd)
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    shutil.rmtree(scratch(root, pid), ignore_errors=True)


def browser_processes(root: str, pid: int) -> list[int]:
    """Pidfds of renderer ``pid``'s browser processes, that ``root`` is the crawl's ``RenderConfig.scratch`` of.

    Playwright starts a browser in a session of its own, so the renderer's group does not hold
    it, and once the renderer and its driver are dead its parent is no longer theirs; but every
    process of it has the TMPDIR the renderer set (``scratch``), in /proc/PID/environ, unique to
    the crawl and the renderer. Each process is opened (a pidfd) before its environment is read:
    a pid reused meanwhile leaves the pidfd on the process that is gone, so no process is killed
    but one whose environment has the mark. A process whose environment cannot be read (another
    user's) is not one of them.
    """
    mark = f"\0TMPDIR={scratch(root, pid)}\0".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or entry.name == str(pid):
            continue  # the renderer's own group is killed as a group
        try:
            pidfd = os.pidfd_open(int(entry.name))
        except OSError:
            continue  # gone meanwhile
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as environ:
                if mark in b"\0" + environ.read():
                    found.append(pidfd)
                    continue
        except OSError:
            pass  # gone meanwhile, or another user's
        os.close(pidfd)
    return found


def renderer_main(config: RenderConfig, channels: FetchChannels) -> None:
    """A renderer process's whole life: claim a render queue, connect to every parser, render until STOP."""
    child_setup(config.log, "renderer")
    os.setpgid(0, 0)  # a group of its own, with Playwright's driver: see bury
    pid = os.getpid()
    index = claim(channels, len(channels.queues) - channels.renderers, len(channels.queues), pid)
    if index is None:
        if CLOSED not in channels.owners[:]:
            log.error("renderer %d: no render queue left to claim (too many renderer processes died)", pid)
        raise SystemExit(0)
    inbox = _Inbox(channels, index)
    _WATCHDOG.start((channels.heartbeats, index))
    os.set_blocking(channels.notices.fileno(), False)
    _notify(channels.notices.fileno(), JOINED)
    outboxes = [_Outbox(registration) for registration in channels.registrations]
    log.debug("renderer process %d reads render queue %d", pid, index)
    os.makedirs(scratch(config.scratch, pid), exist_ok=True)
    os.environ["TMPDIR"] = scratch(config.scratch, pid)  # the driver's and the browser's temporary files: see bury
    asyncio.run(_Renderer(config, channels, inbox, outboxes).run())
    shutil.rmtree(scratch(config.scratch, pid), ignore_errors=True)
    raise SystemExit(0)


def scratch(root: str, pid: int) -> str:
    """The directory of renderer ``pid``'s driver and browser temporary files (the browser's profile among them),
    ``root`` its crawl's ``RenderConfig.scratch``."""
    return f"{root}-{pid}"


class _Renderer:
    """The page slots of one renderer process around its browser."""

    def __init__(self, config: RenderConfig, channels: FetchChannels, inbox: _Inbox, outboxes: list[_Outbox]) -> None:
        self.config = config
        self.channels = channels
        self.inbox = inbox
        self.outboxes = outboxes
        self.rendering = 0  # pages in progress
        self.idle = asyncio.Event()  # set when no page is in progress: a due browser may be recycled
        self.idle.set()
        self.recycling = asyncio.Lock()
        self.recycled = 0  # browsers recycled since the last result sent (its stats carry them)
        self.threads = ThreadPoolExecutor(config.pages, thread_name_prefix="render-inbox")

    async def run(self) -> None:
        from playwright.async_api import async_playwright

        from crawlkit.render.browser import Browser

        async with async_playwright() as playwright:
            browser = Browser(playwright, self.config)
            await browser.launch()
            await asyncio.gather(*(self._slot(browser) for _ in range(self.config.pages)))
            await browser.close()
        self.threads.shutdown()

    async def _slot(self, browser: Browser) -> None:
        from crawlkit.render.browser import EXIT_BROWSER_GONE, BrowserGone

        loop = asyncio.get_running_loop()
        channels = self.channels
        notices = channels.notices.fileno()
        while True:
            task = await loop.run_in_executor(self.threads, self.inbox.get)
            if task is None:  # one STOP per slot
                return
            assert isinstance(task, FetchTask)  # a render queue is sent no revalidation batch (dispatch.py)
            host = host_of(task.request.url)
            turn: Turns | None = None
            budget = self.config.timeout + 10
            if task.delay:
                limit = self.config.connect_timeout + self.config.read_timeout + task.delay
                turn = functools.partial(channels.permits.turn, task.slot, host, task.delay, limit, task.ticket)
                budget += limit + task.delay
            try:
                async with self.recycling:  # one slot recycles, the others wait for the new browser
                    while (why := browser.due()) is not None:
                        if self.rendering:
                            self.idle.clear()
                            await self.idle.wait()
                        else:
                            log.info("renderer %d: the browser is started afresh: %s", os.getpid(), why)
                            await browser.close()
                            await browser.launch()
                            self.recycled += 1
                # From now on (not while a recycle was waited for), a death of this process blames this page.
                channels.deadlines[task.ticket] = time.monotonic() + budget
                self.rendering += 1
                try:
                    result = await browser.render(task, turn)
                except BrowserGone as exc:
                    log.error("renderer %d: the browser died rendering %s (%s)", os.getpid(), task.request.url, exc)
                    os._exit(EXIT_BROWSER_GONE)
                except Exception as exc:  # a bug of ours must not lose the page, nor stop the other slots
                    log.exception("renderer %d: internal error rendering %s", os.getpid(), task.request.url)
                    result = RenderResult(task.req_id, task.request, task.request.url,
                                          error=FetchErrorKind.RENDER_ERROR.value, message=one_line(exc))
                finally:
                    self.rendering -= 1
                    if not self.rendering:
                        self.idle.set()
            finally:
                channels.permits.release(task.slot, host)
                channels.released[task.ticket] = 1
                _notify(notices, task.req_id)
            if self.recycled:
                result.counts["render_recycled"] = self.recycled
                self.recycled = 0
            try:
                self.outboxes[task.parser].send(result)
            except OSError as exc:
                log.error("could not hand %s to parser %d: %s", task.request.url, task.parser, exc)
