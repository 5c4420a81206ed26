"""The engine: wires the stages, decides when to dispatch, knows when the crawl is over.

Data flow (one arrow, one channel)::

    start requests --> [RobotsGate] --> Frontier (per-host queues, in the engine)
        ^                                    | next_host + Limiter.try_acquire (Semaphore per host)
        |                                    v
        |          fetch queues (a multiprocessing.Queue per fetcher process) of FetchTask
        |                                    v
        |             fetcher Pool (N processes x T threads, requests sessions, process_request hooks)
        |             (a page to render: render queues -> renderer processes, a browser each, render/)
        |                                    | FetchResult (RenderResult), a Pipe per fetcher and parser
        |                                    v
        |          parser processes (WARC, process_response hooks, spider callbacks, item
        |                            pipelines, sitemaps, filters, fingerprints)
        |                                    | PageDone, a Pipe per parser
        |                                    v
        +-- engine: items -> output; Set-Cookie -> cookie jar; candidates -> seen store
                    (Manager, one call a batch)

The engine owns no fetching, parsing or dedup itself; its loop ties three parts together in one
``wait()`` on the fetchers' notice Pipe, the parsers' Pipes and every process's sentinel.
``Dispatch`` (``dispatch.py``) gives every dispatched request an id and keeps it in flight (with
the fetch queue and parser it went to, at most ``concurrency`` exchanges at once) until its
PageDone arrives; ``Supervisor`` (``supervision.py``) starts the Pool and the parsers, replaces
one that dies or stalls, and has Dispatch re-queue what it held (a request on hand at
``max_process_deaths`` deaths is dropped as poison); admission queues the candidates. The crawl
is over when the frontier is empty, no request waits for robots.txt, and nothing is in flight;
or sooner, when a stop condition is met (``stopping.py``: max_items, max_time, the memory
cap...; max_pages is Dispatch's): nothing more is dispatched and, once the requests in flight
are done, it ends as a finished crawl does, with the condition as its reason.
Candidates (a page's links, the start requests) are admitted a batch per pass of the loop,
so a page of 600,000 links or a seeds file of a million lines never holds up dispatch to
other hosts or the progress display; while many wait, the parsers are not read. Processes of
one kind that keep dying with no page done in between stop the crawl (``CrashLoopError``), as
does a parser that cannot even build the spider.
The cookie jar lives here because every response passes through one engine but not through one
fetcher: each FetchTask carries the Cookie header its request should send (``cookies.py``).

The frontier, seen store, limiter, robots.txt answers, stats totals and journal are the
backend's (``crawlkit.backends``: this machine's, or with ``frontier: redis://...`` one crawl
on many nodes); the engine is typed against ``CrawlBackend`` and never asks which it has. It
takes requests with leases it finishes after their pages' links are queued, calls the backend's
``tick`` on every pass (the Redis heartbeat), and lets ``Admission`` take candidates, start
requests and a resumed backlog through the seen store and the robots.txt gate into the frontier.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import pickle
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from crawlkit.backends import open_backend
from crawlkit.backends.base import CrawlBackend, Frontier, Journal, Limiter
from crawlkit.core.admission import Admission
from crawlkit.core.dispatch import Dispatch, InFlight, batch_tickets
from crawlkit.core.politeness import Throttle
from crawlkit.core.progress import TICK, Monitor
from crawlkit.core.stopping import StopConditions
from crawlkit.core.supervision import CHECK_EVERY, QUEUES_PER_WORKER, Respawns, Supervisor, open_channels
from crawlkit.errors import Interrupted, SharedCrawlError, SpiderError, WriteFailed
from crawlkit.extensions.components import check_components
from crawlkit.extensions.cookies import CookieJar
from crawlkit.extensions.middlewares import load_middlewares
from crawlkit.extensions.output import open_output
from crawlkit.extensions.pipelines import load_pipelines
from crawlkit.extensions.robots import RobotsGate, RobotsRules
from crawlkit.extensions.signals import Signals
from crawlkit.extensions.warc import prepare_warc_dir
from crawlkit.fetch.cache import HttpCache, StoredAnswers, check_cache_dir
from crawlkit.fetch.channels import FetcherConfig, check_proxy
from crawlkit.messages import Links, PageDone, StartFailed
from crawlkit.parse.order import ordered_stages
from crawlkit.parse.parser import ParserConfig
from crawlkit.process import context, fetcher_processes, reserve_open_files
from crawlkit.render.choose import RenderChoice
from crawlkit.render.pool import QUEUES_PER_RENDERER, RenderConfig, RenderProcesses
from crawlkit.render.screenshots import prepare_screenshot_dir
from crawlkit.settings import MAX_WORKERS, Settings
from crawlkit.sites import SiteRules
from crawlkit.spider import Spider, close_spider
from crawlkit.stats import Stats

log = logging.getLogger("crawlkit.engine")


@dataclass
class CrawlSpec:
    """Everything a crawl needs, resolved by the CLI (or a test) beforehand."""

    settings: Settings
    spider: Spider  # the engine's instance: start_requests and name
    spider_spec: str | None  # how parser processes load the same class
    spider_kwargs: dict[str, Any] = field(default_factory=dict)
    monitor: Monitor | None = None  # the live view, progress lines and stats file; none shown by default
    items: list[Any] | None = None  # where the items are collected as well, for crawlkit.crawl(items=True)


class Engine:
    def __init__(self, spec: CrawlSpec) -> None:
        self.spec = spec
        s = self.settings = spec.settings
        cpus = os.cpu_count() or 1
        self.workers = fetcher_processes(s.workers, s.concurrency, cpus) if s.workers else min(cpus, MAX_WORKERS)
        self.threads = math.ceil(s.concurrency / self.workers)
        # Each process holds both ends of every fetch queue (the renderers' too) and parser channel
        # (a fetcher gets them all), a socket per fetch thread, and some for Python, logs and SQLite.
        queues = QUEUES_PER_WORKER * self.workers + QUEUES_PER_RENDERER * s.render_processes
        reserve_open_files(2 * queues + 4 * s.parsers + self.workers + 2 * self.threads + 100,
                           f"workers {self.workers}, parsers {s.parsers} and concurrency {s.concurrency}")
        self.stats = Stats()
        self.monitor = spec.monitor or Monitor(s)
        self.max_inflight = 2 * s.concurrency  # being fetched, plus fetched and waiting for a parser
        self.respawns = Respawns()
        self.stopping = 0  # 1 after the first Ctrl-C/SIGTERM, 2 after the second (or a refused write)
        self.ending = False  # a stop condition was met: the requests in flight finish, nothing more starts
        self.stop_deadline = 0.0  # when a stop (Ctrl-C or a stop condition) stops waiting for them
        self.limits: StopConditions | None = None  # set once the processes are up; None: no stop condition
        self.failed: WriteFailed | None = None  # the first write the system refused
        # What run() starts; set here so that _shutdown can clean up after a start that failed half way.
        self.dispatch: Dispatch | None = None
        self.supervisor: Supervisor | None = None
        # User classes are checked here, in the main process, so a typo stops the crawl before it starts.
        check_components(load_pipelines(s.pipelines), "pipeline")
        check_components(load_middlewares(s.middlewares), "middleware")
        self.signals = Signals.of(s.extensions, spec.spider, self.stats)  # None: no extension, nothing to call
        ordered_stages(s.stages)
        if s.warc:
            prepare_warc_dir(s.warc, s.warc_revisits, s.warc_dedup)
        if s.http_cache:
            check_cache_dir(s.http_cache)
        if s.render_screenshots:
            prepare_screenshot_dir(s.render_screenshots)
        check_proxy(s.proxy)
        self.cookies = CookieJar() if s.cookies else None
        # A ticket for each request in flight, and for each revisit a revalidation batch may hold
        self.tickets = self.max_inflight + (batch_tickets(s.concurrency) if self._revalidates() else 0)
        backend: CrawlBackend = open_backend(s, self.stats, spec.spider.name, self.tickets)
        self.backend = backend
        self.frontier: Frontier = backend.frontier
        self.limiter: Limiter = backend.limiter
        self.journal: Journal = backend.journal
        self.sites = SiteRules(s.hosts)
        self.throttle = Throttle(self.limiter, self.stats, s.adaptive_max_delay) if s.adaptive else None
        rules = RobotsRules(s.user_agent, backend.robots_rechecks, self.sites) if s.robots else None
        self.gate = RobotsGate(rules, backend, self.stats, s.robots_recheck_after)
        self.admission = Admission(backend, self.gate, spec.spider, s, self.stats, self.signals)
        resume_at = None
        resumed = self.journal.begin(s.output or "")  # read (and checked) before any process starts
        if resumed is not None:
            resume_at, counts = resumed
            self.stats.resume(counts)
        self.output = open_output(s.output, resume_at, list(s.export_fields) or None, s.overwrite_output)

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> Stats:
        """Crawl to the end; raises Interrupted after a Ctrl-C (with the stats flushed), or
        WriteFailed when the system refused to write the output or the journal.

        The Ctrl-C/SIGTERM handler stays installed until every process is stopped and every
        file closed, so a second Ctrl-C during shutdown stops at once instead of cutting it short.
        A refused write stops the crawl at once (the pages being fetched could not be written
        either); the writer has cut its file back to its last complete record, and the journal
        keeps its last commit, which names only output that was written.
        """
        s = self.settings
        render = RenderChoice(s.render, self.sites)
        # When the settings render pages, a missing browser fails the crawl now; else at the first page to render.
        render_config = RenderConfig.from_settings(s, self.monitor.log) if render.by_settings or s.render_when else None
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        # What exists now (the modules, the settings, the spider) is no garbage: the collections during the crawl
        # skip it, given back at the end. A full collection walked all of it, 28 ms at the start of every recrawl.
        gc.freeze()
        try:
            ctx = context()
            self.backend.start(ctx, self.monitor.log, lambda kind: self.respawns.died(kind, time.monotonic()))
            channels, notices = open_channels(ctx, self.workers, s.parsers, self.limiter.permits, self.tickets,
                                              s.render_processes)
            renderers = RenderProcesses(ctx, channels, s, self.monitor.log,
                                        lambda kind: self.respawns.died(kind, time.monotonic()), render_config)
            self.dispatch = Dispatch(channels, self.frontier, self.limiter, self.gate, self.cookies, self.stats,
                                     threads=self.threads, parsers=s.parsers, concurrency=s.concurrency,
                                     max_inflight=self.max_inflight, max_pages=s.max_pages,
                                     max_process_deaths=s.max_process_deaths, sites=self.sites,
                                     crawl_count=self.backend.crawl_count, drop=self._drop_unsent,
                                     cached=self._stored_answers(), revalidate=self._revalidates(),
                                     render=render, start_renderers=renderers.start, render_pages=s.render_pages)
            self.supervisor = Supervisor(ctx, channels, notices, self.dispatch, self.stats, self.respawns,
                                         workers=self.workers, callback_timeout=s.callback_timeout,
                                         drain=self._drain, drop=self._dropped, renderers=renderers)
            self.supervisor.start(self._fetcher_config(), self._parser_config())
            self.stats.crawl_started = time.monotonic()
            self.limits = StopConditions.of(s, self.stats, self.stats.crawl_started)
            if self.signals is not None:
                self.signals.crawl_opened()
            self.admission.seed()
            if self.journal.durable:
                # Now, not with the first answers: a recrawl round just begun (its pages pending again) must
                # survive a kill before a revalidation batch, which reports its 304s at its end, is over.
                self._commit()
            self._loop()
        except WriteFailed as exc:
            self._write_failed(exc)
        finally:
            try:
                self._shutdown()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                gc.unfreeze()
            if self.signals is not None:
                self.signals.crawl_closed(self.stats.reason)
            close_spider(self.spec.spider, self.stats.reason)  # once the stats are final, its reason with them
        if self.failed is not None:
            raise self.failed
        if self.stopping:
            raise Interrupted()
        return self.stats

    def _write_failed(self, exc: WriteFailed) -> None:
        """Stop now: nothing more can be written, and the journal commits nothing more."""
        if self.failed is None:
            exc.resumable = self.journal.durable
            self.failed = exc
        self.stopping = 2
        self.stats.reason = "stopped (a write failed)"

    def _revalidates(self) -> bool:
        """Whether a recrawl's revisits go in revalidation batches (``dispatch.py``), whose 304s reach the
        engine alone: not when something else must see them (the spider, with ``recrawl_callbacks_on_304``;
        the WARC; middlewares' hooks; the HTTP cache) or time them (adaptive politeness)."""
        s = self.settings
        return bool(s.jobdir) and not (s.recrawl_callbacks_on_304 or s.warc or s.middlewares or s.http_cache
                                       or s.adaptive)

    def _unchanged(self, entries: list[InFlight]) -> None:
        """Finish the pages a revalidation batch found unchanged (a 304 with the validators stored), as the
        parser's recrawl stage and ``_handle`` finish a revisit's 304: counted, journaled, their leases done."""
        self.respawns.page_done()
        for entry in entries:
            counts = {"status_304": 1, "unchanged": 1}
            self.journal.done(entry.lease, 304)
            self.stats.page_done(entry.host, counts, 304, 0.0)
            if self.signals is not None:
                self.signals.page_done(entry.request, PageDone(0, entry.host, counts=counts, status=304))
            self.admission.finish(entry.lease)
        entries.clear()

    def _stored_answers(self) -> StoredAnswers | None:
        """With ``http_cache``, the answers stored now, which Dispatch sends as hits (``cache.py``)."""
        cache = HttpCache.from_settings(self.settings)
        return cache.stored_answers(time.time()) if cache is not None else None

    def _fetcher_config(self) -> FetcherConfig:
        spec = self.spec
        return FetcherConfig.from_settings(self.settings, self.threads, self.monitor.log, spec.spider_spec,
                                           spec.spider_kwargs)

    def _parser_config(self) -> ParserConfig:
        spec = self.spec
        return ParserConfig.from_settings(self.settings, spec.spider_spec, spec.spider_kwargs, self.monitor.log)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping += 1
        if self.stopping == 1:
            log.warning(
                "%s: finishing the %d requests in flight (up to %.0fs), then stopping; press Ctrl-C again to stop now",
                signal.Signals(signum).name, len(self.dispatch.inflight) if self.dispatch is not None else 0,
                self.settings.shutdown_timeout,
            )
            self.stop_deadline = time.monotonic() + self.settings.shutdown_timeout
        self.stats.reason = "interrupted"

    # ---------------------------------------------------------------- the loop

    def _loop(self) -> None:
        dispatch, supervisor = self.dispatch, self.supervisor
        assert dispatch is not None and supervisor is not None  # run() makes them before the loop
        notices = supervisor.notices
        next_tick = time.monotonic() + TICK
        next_check = 0.0
        admission, backend, limits = self.admission, self.backend, self.limits
        if limits is not None:  # a resumed crawl may have reached its max_items before this run
            self._stop_if(limits.counted(), time.monotonic())
        while True:
            now = time.monotonic()
            if now >= next_check:
                next_check = now + CHECK_EVERY
                supervisor.check(now)
                if limits is not None:
                    self._stop_if(limits.timed(now), now)
            backend.tick(now)
            admission.feed()
            if not (self.stopping or self.ending):
                dispatch.schedule(now)
            if self._finished(now):
                while admission.candidates and self.stopping < 2:  # a stop's last pages' links, for the jobdir
                    admission.admit()
                self.stats.sample(now, len(self.frontier), dispatch.fetching)  # the final figures
                return
            timeout = CHECK_EVERY  # a fetcher's JOINED notice, a page or a death wakes the loop at once
            if admission.candidates:
                timeout = 0.0  # admit the next batch at once
            wake = self.frontier.next_time()
            if wake is not None:
                timeout = min(timeout, max(0.0, wake - now))
            pages = False
            fired: list[int] = []
            for conn in wait([notices, *(c for c in supervisor.pipes if c is not None), *supervisor.sentinels],
                             timeout):
                if conn is notices:
                    if dispatch.read_notices(notices.fileno()):
                        supervisor.joined()  # take its queue in at once
                    if dispatch.unchanged:
                        self._unchanged(dispatch.unchanged)
                        pages = True
                elif isinstance(conn, int):  # a process sentinel: that process has died
                    fired.append(conn)
                else:
                    self._drain(conn)  # type: ignore[arg-type]  # wait() gives back what it was given
                    pages = True
            if fired:  # after its Pipe: what a dead parser sent before dying is read first
                supervisor.bury(fired)
            admitting = bool(admission.candidates)
            admission.admit()
            if (pages or admitting) and self.journal.durable and admission.all_queued():
                # Commit after every batch (a WAL commit costs well under a millisecond), so a
                # SIGKILL undoes no more than the requests in flight; but not while a page is
                # marked done whose links are not all journaled yet.
                self._commit()
            elif pages and self.output is not None:
                self.output.flush()
            if pages:
                backend.report(self.stats.counts)
                if limits is not None:
                    self._stop_if(limits.counted(), now)
            if now >= next_tick:
                next_tick = now + TICK
                fetching = [e.host for e in dispatch.inflight.values() if e.fetching]
                self.monitor.tick(now, self.stats, len(self.frontier), fetching)

    def _stop_if(self, reason: str | None, now: float) -> None:
        """End the crawl for ``reason`` (a stop condition met), once: nothing more is dispatched, and
        the requests in flight finish, up to ``shutdown_timeout``; what is queued stays in a job directory."""
        if reason is None or self.ending or self.stopping:
            return
        self.ending = True
        self.stats.reason = reason
        self.stop_deadline = now + self.settings.shutdown_timeout
        inflight = len(self.dispatch.inflight) if self.dispatch is not None else 0
        log.info("%s: finishing the %d requests in flight (up to %.0fs), then stopping",
                 reason, inflight, self.settings.shutdown_timeout)

    def _drain(self, conn: Connection) -> None:
        """Handle what one parser has sent, up to a batch, so scheduling is not starved; nothing
        while ``PENDING_MAX`` candidates wait (the parsers then wait on their Pipes)."""
        for _ in range(256):
            if self.admission.full():
                return
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):  # that parser died; its sentinel has it replaced
                assert self.supervisor is not None  # which started the parser
                self.supervisor.pipe_closed(conn)
                return
            self._handle(data)
            if not conn.poll():
                return

    def _finished(self, now: float) -> bool:
        dispatch = self.dispatch
        assert dispatch is not None  # made before the loop that asks
        inflight = dispatch.inflight
        if self.stopping or self.ending:
            if not inflight:
                return True
            if self.stopping > 1 or now > self.stop_deadline:
                log.warning("stopping with %d requests still in flight", len(inflight))
                return True
            return False
        if inflight:
            return False
        if dispatch.budget_spent():
            self.stats.reason = "finished (max_pages reached)"
            return True
        if self.admission.idle() and self.frontier.idle():
            self.stats.reason = "finished"
            return True
        return False

    def _handle(self, data: bytes) -> None:
        done: PageDone | Links | StartFailed = pickle.loads(data)
        if isinstance(done, StartFailed):
            raise SpiderError(done.message)
        if isinstance(done, Links):
            self.admission.offer(done.candidates)
            return
        self.respawns.page_done()
        dispatch = self.dispatch
        assert dispatch is not None  # made before any parser starts
        entry = dispatch.done(done.req_id)
        if entry is not None and done.canonical is not None:
            self._drop_if_duplicate(done)
        self.admission.offer(done.candidates)
        if entry is None:
            # Re-queued after its fetcher died; the new copy counts. Its links are queued all
            # the same: the parser will not send them again (Router._admit).
            return
        host = entry.host
        if done.retry is None:
            self.journal.done(entry.lease, done.status, done.validators)
            if "gone" in done.counts:  # a recrawl's revisit answered 404 or 410
                self.stats.went(entry.request.url)
        self.stats.page_done(host, done.counts, done.status, done.elapsed)
        dispatch.site_pages(host, done.counts.get("pages", 0))
        if self.throttle is not None:
            self.throttle.observe(host, time.monotonic(), done.status, done.elapsed, done.counts)
        if done.items and self.output is not None:
            failed = self.output.write(done.items)
            if failed:
                self.stats.incr("error_output", failed)
        if done.items and self.spec.items is not None:
            self.spec.items.extend(done.items)
        if done.set_cookies and self.cookies is not None:
            for url, set_cookies in done.set_cookies:
                self.cookies.learn(url, set_cookies)
        if done.host_pause_until:
            self.limiter.pause(host, done.host_pause_until)
        if done.robots is not None:
            self.gate.answer(host, entry.request.url, *done.robots)
        if done.retry is not None:
            self.frontier.push([(entry.lease, done.retry)], not_before=done.retry_at)
        if self.signals is not None:
            self.signals.page_done(entry.request, done)
            if done.retry is not None:
                self.signals.request_scheduled(done.retry)
        self.admission.finish(entry.lease)

    def _drop_if_duplicate(self, done: PageDone) -> None:
        """Drop the page's items and links (never sent ahead of it: ``Router.handle``), counted, when its
        canonical URL, another page's, was seen already (``skip_duplicate_canonical``). Otherwise that
        URL is now marked seen, in the store every node asks, so this page stands for it and it is not
        fetched as well. Decided here, once the page is known to count (not a dead fetcher's copy), by
        one atomic claim on the seen store.
        """
        assert done.canonical is not None
        if self.backend.seen.claim(done.canonical):
            return
        counts = done.counts
        counts["pages_duplicate_canonical"] = 1
        if done.items:
            counts["items"] = counts.get("items", 0) - len(done.items)
            counts["items_duplicate_canonical"] = len(done.items)
        if done.candidates:
            counts["dropped_duplicate_canonical"] = len(done.candidates)
        done.items, done.candidates = [], []

    # ---------------------------------------------------------------- health and reporting

    def _dropped(self, entries: list[InFlight]) -> None:
        """Finish the requests dropped as poison (``Dispatch``): done in the journal, and their leases
        finished once the candidates received so far are queued."""
        for entry in entries:
            self.journal.done(entry.lease)
            self.admission.finish(entry.lease)

    def _drop_unsent(self, lease: int) -> None:
        """Finish a request ``Dispatch`` dropped before sending it (its host's own max_pages reached)."""
        self.journal.done(lease)
        self.admission.finish(lease)

    def _commit(self) -> None:
        """Output first, then the state that says which pages it holds."""
        if self.output is not None:
            self.output.flush()
        self.journal.commit(self.output.size if self.output is not None else 0, dict(self.stats.counts))

    def _shutdown(self) -> None:
        """Stop every process this crawl started, gently when it is idle, at once when it is not."""
        self.stats.finished = time.monotonic()
        if self.supervisor is not None:
            self.supervisor.stop(self.dispatch is None or not self.dispatch.inflight, lambda: self.stopping > 1)
        try:
            self.backend.report(self.stats.counts)
            self.stats.crawl_totals = self.backend.totals()
        except SharedCrawlError as exc:
            log.error("the crawl's totals are not updated: %s", exc)
        self.backend.close()
        try:
            if self.journal.durable and self.failed is None:
                self._commit()
        except WriteFailed as exc:
            self._write_failed(exc)
        # After a refused write the transaction in progress is dropped: it marks done pages
        # whose items were not written.
        self.journal.close(commit=self.failed is None)
        try:
            if self.output is not None:
                self.output.close()  # a no-op for a writer whose write was refused
        except WriteFailed as exc:
            self._write_failed(exc)
