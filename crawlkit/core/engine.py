"""The engine: wires the stages, decides when to dispatch, knows when the crawl is over.

Data flow (one arrow, one channel)::

    start requests --> [RobotsGate] --> Frontier (per-host queues, in the engine)
        ^                                    | next_host + Limiter.try_acquire (Semaphore per host)
        |                                    v
        |          fetch queues (a multiprocessing.Queue per fetcher process) of FetchTask
        |                                    v
        |             fetcher Pool (N processes x T threads, requests sessions, process_request hooks)
        |                                    | FetchResult, a Pipe per fetcher and parser
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
is over when the frontier is empty, no request waits for robots.txt, and nothing is in flight.
Candidates (a page's links, the start requests) are admitted a batch per pass of the loop,
so a page of 600,000 links or a seeds file of a million lines never holds up dispatch to
other hosts or the progress display; while many wait, the parsers are not read. Processes of
one kind that keep dying with no page done in between stop the crawl (``CrashLoopError``), as
does a parser that cannot even build the spider.
The cookie jar lives here because every response passes through one engine but not through one
fetcher: each FetchTask carries the Cookie header its request should send (``cookies.py``).

With ``frontier: redis://...`` the frontier, seen store, limiter, robots.txt answers and stats
are shared by every node of the crawl (``crawlkit.backends.redis``); the engine only adds a
heartbeat, takes requests with leases it finishes after their pages' links are queued, and
checks robots.txt when it takes a request, since another node may have queued it.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import pickle
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from crawlkit.backends.local.frontier import LocalFrontier
from crawlkit.backends.local.jobdir import JobDir
from crawlkit.backends.local.limiter import LocalLimiter
from crawlkit.backends.local.seen import SeenManager, serve_setup
from crawlkit.core.dispatch import Dispatch, InFlight
from crawlkit.core.progress import TICK, Monitor
from crawlkit.core.supervision import CHECK_EVERY, QUEUES_PER_WORKER, Respawns, Supervisor, open_channels
from crawlkit.errors import ConfigError, Interrupted, SharedCrawlError, SpiderError, WriteFailed
from crawlkit.extensions.components import check_components
from crawlkit.extensions.cookies import CookieJar
from crawlkit.extensions.middlewares import load_middlewares
from crawlkit.extensions.output import open_output
from crawlkit.extensions.pipelines import load_pipelines
from crawlkit.extensions.robots import RobotsGate, RobotsRules
from crawlkit.extensions.sitemaps import seed_sitemaps
from crawlkit.extensions.warc import check_warc_dir
from crawlkit.fetch.fetcher import FetcherConfig, check_proxy
from crawlkit.http import Request
from crawlkit.messages import Links, PageDone, StartFailed
from crawlkit.parse.parser import ParserConfig
from crawlkit.process import context, reserve_open_files
from crawlkit.settings import MAX_WORKERS, Settings
from crawlkit.spider import Spider
from crawlkit.stats import Stats
from crawlkit.urls import Fingerprinter

log = logging.getLogger("crawlkit.engine")

SEED_BATCH = 1_000  # start requests queued per pass of the loop (about 20 ms of checks and fingerprints)
ADMIT_BATCH = 4_000  # candidates deduplicated and queued per pass of the loop (one seen-store call)
PENDING_MAX = 4 * ADMIT_BATCH  # candidates waiting for admission above which parsers are not read


@dataclass
class CrawlSpec:
    """Everything a crawl needs, resolved by the CLI (or a test) beforehand."""

    settings: Settings
    spider: Spider  # the engine's instance: start_requests and name
    spider_spec: str | None  # how parser processes load the same class
    spider_kwargs: dict[str, Any] = field(default_factory=dict)
    monitor: Monitor | None = None  # the live view, progress lines and stats file; none shown by default


class Engine:
    def __init__(self, spec: CrawlSpec) -> None:
        self.spec = spec
        s = self.settings = spec.settings
        self.workers = s.workers or min(os.cpu_count() or 1, MAX_WORKERS)
        self.threads = math.ceil(s.concurrency / self.workers)
        # Each process holds both ends of every fetch queue and parser channel (a fetcher gets
        # them all), a socket per fetch thread, and some for Python, logs and SQLite.
        reserve_open_files(2 * QUEUES_PER_WORKER * self.workers + 4 * s.parsers + self.workers + 2 * self.threads + 100,
                           f"workers {self.workers}, parsers {s.parsers} and concurrency {s.concurrency}")
        self.stats = Stats()
        self.monitor = spec.monitor or Monitor(s)
        self.shared: Any = None  # a RedisCrawl when the crawl is shared by several nodes
        if s.frontier:
            if s.jobdir:
                raise ConfigError(
                    f"jobdir {s.jobdir!r} and frontier {s.frontier!r} cannot be combined: Redis already keeps the "
                    "shared crawl's state (run the same command again to rejoin it); drop --jobdir"
                )
            from crawlkit.backends.redis import connect

            self.shared = connect(s.frontier, s.crawl_id or spec.spider.name, s.lease_time, count=self.stats.incr)
            self.frontier: Any = self.shared.frontier
        else:
            self.frontier = LocalFrontier(memory_limit=s.frontier_memory)
        self.candidates: list[tuple[int | None, Request]] = []  # from PageDones, deduplicated per batch
        # Leases of pages whose candidates are not all queued yet, each with the number of
        # candidates received up to its PageDone: it is finished once that many are admitted.
        self.finished: list[tuple[int, int]] = []
        self.received = 0  # candidates received since the start
        self.admitted = 0  # candidates admitted (deduplicated, then queued or dropped) since the start
        self.shared_counts: dict[str, int] = {}  # the stats already added to the shared crawl's totals
        self.max_inflight = 2 * s.concurrency  # being fetched, plus fetched and waiting for a parser
        self.respawns = Respawns()
        self.stopping = 0  # 1 after the first Ctrl-C/SIGTERM, 2 after the second (or a refused write)
        self.failed: WriteFailed | None = None  # the first write the system refused
        # What run() starts; set here so that _shutdown can clean up after a start that failed half way.
        self.manager: Any = None
        self.dispatch: Dispatch | None = None
        self.supervisor: Supervisor | None = None
        self.resuming: Iterator[list[Request]] | None = None  # the journal's pending requests not queued yet
        self.starting: Iterator[Any] | None = None  # the spider's start requests not queued yet
        self.started = 0  # start requests queued so far
        # User classes are checked here, in the main process, so a typo stops the crawl before it starts.
        check_components(load_pipelines(s.pipelines), "pipeline")
        check_components(load_middlewares(s.middlewares), "middleware")
        if s.warc:
            check_warc_dir(s.warc)
        check_proxy(s.proxy)
        self.cookies = CookieJar() if s.cookies else None
        self.journal = JobDir(s.jobdir, count=self.stats.incr) if s.jobdir else None
        resume_at = None
        if self.journal is not None:
            started_with = self.journal.meta("output")
            if self.journal.resuming and started_with is not None and started_with != (s.output or ""):
                raise ConfigError(
                    f"jobdir {s.jobdir!r} belongs to a crawl writing to {started_with or '(no output)'!r}; "
                    f"resume it with the same -o, or use a new --jobdir"
                )
            self.journal.set_meta("output", s.output or "")
            if self.journal.resuming:  # read (and checked) before any process starts
                resume_at = self.journal.output_bytes()
                self.stats.add(self.journal.counts())
        self.output = open_output(s.output, resume_at, list(s.export_fields) or None)

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
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            ctx = context()
            if self.shared is not None:
                self.limiter: Any = self.shared.limiter(s.per_host, s.delay)
                self.seen: Any = self.shared.seen
                self.shared.heartbeat()  # before taking any lease: only a known node's leases are reclaimed
                log.info("node %s joined crawl %r at %s", self.shared.node, self.shared.crawl_id, s.frontier)
            else:
                self.limiter = LocalLimiter(ctx, slots=s.concurrency, per_host=s.per_host, delay=s.delay,
                                            tickets=self.max_inflight)
                self._start_seen_store(ctx)
            # A shared crawl does not recheck: every node would run its own rechecks, and the
            # answer must be one for all nodes (the first one is kept in Redis).
            rules = RobotsRules(s.user_agent, 0 if self.shared is not None else s.robots_rechecks) if s.robots else None
            self.gate = RobotsGate(rules, self.frontier, self.limiter, self.stats, self.journal, self.shared,
                                   s.robots_recheck_after)
            channels, notices = open_channels(ctx, self.workers, s.parsers, self.limiter.permits, self.max_inflight)
            self.dispatch = Dispatch(channels, self.frontier, self.limiter, self.gate, self.cookies, self.stats,
                                     threads=self.threads, parsers=s.parsers, concurrency=s.concurrency,
                                     max_inflight=self.max_inflight, max_pages=s.max_pages,
                                     max_process_deaths=s.max_process_deaths)
            self.supervisor = Supervisor(ctx, channels, notices, self.dispatch, self.stats, self.respawns,
                                         workers=self.workers, callback_timeout=s.callback_timeout,
                                         drain=self._drain, drop=self._dropped)
            self.supervisor.start(self._fetcher_config(), self._parser_config())
            self.stats.crawl_started = time.monotonic()
            self._seed()
            self._loop()
        except WriteFailed as exc:
            self._write_failed(exc)
        finally:
            try:
                self._shutdown()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        if self.failed is not None:
            raise self.failed
        if self.stopping:
            raise Interrupted()
        return self.stats

    def _write_failed(self, exc: WriteFailed) -> None:
        """Stop now: nothing more can be written, and the journal commits nothing more."""
        if self.failed is None:
            exc.resumable = self.journal is not None
            self.failed = exc
        self.stopping = 2
        self.stats.reason = "stopped (a write failed)"

    def _start_seen_store(self, ctx: Any) -> None:
        self.manager = SeenManager(ctx=ctx)
        self.manager.start(serve_setup, (self.monitor.log,))
        self.seen = self.manager.FingerprintSet()

    def _add_seen(self, fingerprints: list[int]) -> list[int]:
        """The seen store's ``add_many``; a local store whose process died is started again first.

        The new store is refilled from the job directory, which holds every fingerprint
        admitted so far (committed or not: this is the connection that wrote them). Without
        one, what was seen before is gone: pages met again may be fetched again, and the log says so.
        """
        try:
            return self.seen.add_many(fingerprints)
        except (EOFError, OSError) as exc:  # the Manager's connection broke: its process is gone
            if self.manager is None:
                raise
            log.error("seen-URL store process died (%s); starting another", type(exc).__name__)
            self.stats.incr("error_seen_store_died")
            self.respawns.died("seen-URL store", time.monotonic())
            self.manager.shutdown()
            self._start_seen_store(context())
            if self.journal is not None:
                refilled = sum(len(self.seen.add_many(batch)) for batch in self.journal.fingerprints())
                log.warning("seen-URL store refilled from %s with %d fingerprints", self.journal.path, refilled)
            else:
                log.warning("without --jobdir the URLs seen so far are forgotten: pages met again may be fetched again")
            return self.seen.add_many(fingerprints)

    def _fetcher_config(self) -> FetcherConfig:
        spec = self.spec
        return FetcherConfig.from_settings(self.settings, self.threads, self.monitor.log, spec.spider_spec,
                                           spec.spider_kwargs)

    def _parser_config(self) -> ParserConfig:
        spec = self.spec
        return ParserConfig.from_settings(self.settings, spec.spider_spec, spec.spider_kwargs, self.monitor.log)

    def _seed(self) -> None:
        """Start queueing the spider's start requests (or resume), a batch now and the rest as
        the frontier has room (``_seed_more``): a seeds file of a million lines is neither read
        nor held whole before the first request."""
        if self.journal is not None and self.journal.resuming:
            self._resume()
            return
        self.starting = iter(self.spec.spider.start_requests())
        self.started = 0
        if self.journal is None:
            self._seed_more()
            return
        # A resume takes its requests from the journal alone, so all start requests go there first.
        while self.starting is not None:
            self._seed_more(room=True)
            self._admit_candidates()

    def _seed_more(self, room: bool = False) -> None:
        """Queue the next batch of start requests, deduplicated like any other request, if the
        frontier holds fewer than ``frontier_memory`` (the rest wait in the seeds file) or
        ``room`` says to anyway."""
        if self.starting is None:
            return
        limit = self.settings.frontier_memory if self.shared is None else 0  # a shared frontier is in Redis
        if not room and ((limit and len(self.frontier) >= limit) or len(self.candidates) >= PENDING_MAX):
            return
        fingerprints = Fingerprinter()
        seeds: list[Request] = []
        batch: list[tuple[int | None, Request]] = []
        taken = 0
        try:
            for request in itertools.islice(self.starting, SEED_BATCH):
                taken += 1
                if not isinstance(request, Request):
                    self.stats.incr("error_spider_output")
                    log.error("spider %s start_requests yielded a %s; yield Requests",
                              self.spec.spider.name, type(request).__name__)
                    continue
                try:
                    fp = fingerprints.fingerprint(request.url, request.method, request.body)
                except ValueError as exc:
                    self.stats.incr("dropped_invalid_url")
                    log.error("start request %r dropped: %s", request.url, exc)
                    continue
                batch.append((None if request.dont_filter else fp, request))
                seeds.append(request)
            more = taken == SEED_BATCH
        except Exception as exc:
            self.stats.incr("error_spider_exception")
            log.error("spider %s start_requests raised %s: %s", self.spec.spider.name, type(exc).__name__, exc)
            more = False
        if self.settings.use_sitemaps:
            # Per batch: a host's sitemap request met again is a duplicate to the seen store.
            for request in seed_sitemaps(r.url for r in seeds):
                batch.append((fingerprints.fingerprint(request.url), request))
        self.candidates.extend(batch)
        self.received += len(batch)
        self.started += len(seeds)
        if not more:
            self.starting = None
            if not self.started and self.shared is None:
                log.warning("no start requests: nothing to crawl")

    def _resume(self) -> None:
        """Refill the seen store and the frontier from the job directory instead of the seeds.

        The seen store is refilled whole first (every new link is checked against it). The
        pending requests then come in by batches while the crawl runs (``_resume_more``),
        whenever the frontier holds fewer than ``frontier_memory``: the crawl starts at once,
        and the backlog stays in the journal instead of being copied to the spill file.
        """
        journal = self.journal
        assert journal is not None  # only a job directory resumes
        seen = sum(len(self.seen.add_many(batch)) for batch in journal.fingerprints())
        if self.gate.rules is not None:
            for host, status, body in journal.robots():
                self.gate.learn(host, status, body)
        log.info("resuming from %s: %d requests pending, %d URLs seen", journal.path, journal.pending_count(), seen)
        self.resuming = journal.pending(min(2_000, self.settings.frontier_memory or 2_000))
        self._resume_more()

    def _resume_more(self) -> None:
        """Queue the next batch of the journal's pending requests if the frontier has room."""
        limit = self.settings.frontier_memory  # 0: no bound, take a batch each time
        if self.resuming is None or (limit and len(self.frontier) >= limit):
            return
        batch = next(self.resuming, None)
        if batch is None:
            self.resuming = None
            return
        self.gate.admit(batch)

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
        next_beat = time.monotonic() + self.settings.lease_time / 4
        while True:
            now = time.monotonic()
            if now >= next_check:
                next_check = now + CHECK_EVERY
                supervisor.check(now)
            if self.shared is not None and now >= next_beat:
                next_beat = now + self.settings.lease_time / 4
                self._heartbeat()
            self._resume_more()
            self._seed_more()
            if not self.stopping:
                dispatch.schedule(now)
            if self._finished(now):
                while self.candidates and self.stopping < 2:  # a stop's last pages' links, for the jobdir
                    self._admit_candidates()
                self.stats.sample(now, len(self.frontier), dispatch.fetching)  # the final figures
                return
            timeout = CHECK_EVERY  # a fetcher's JOINED notice, a page or a death wakes the loop at once
            if self.candidates:
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
                elif isinstance(conn, int):  # a process sentinel: that process has died
                    fired.append(conn)
                else:
                    self._drain(conn)  # type: ignore[arg-type]  # wait() gives back what it was given
                    pages = True
            if fired:  # after its Pipe: what a dead parser sent before dying is read first
                supervisor.bury(fired)
            admitting = bool(self.candidates)
            self._admit_candidates()
            if (pages or admitting) and self.journal is not None and not self.finished:
                # Commit after every batch (a WAL commit costs well under a millisecond), so a
                # SIGKILL undoes no more than the requests in flight; but not while a page is
                # marked done whose links are not all journaled yet.
                self._commit()
            elif pages and self.output is not None:
                self.output.flush()
            if pages and self.shared is not None:
                self._share_stats()
            if now >= next_tick:
                next_tick = now + TICK
                fetching = [e.host for e in dispatch.inflight.values() if e.fetching]
                self.monitor.tick(now, self.stats, len(self.frontier), fetching)

    def _drain(self, conn: Connection) -> None:
        """Handle what one parser has sent, up to a batch, so scheduling is not starved; nothing
        while ``PENDING_MAX`` candidates wait (the parsers then wait on their Pipes)."""
        for _ in range(256):
            if len(self.candidates) >= PENDING_MAX:
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
        if self.stopping:
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
        if (not self.gate.waiting and self.resuming is None and self.starting is None and not self.candidates
                and self.frontier.idle()):
            self.stats.reason = "finished"
            return True
        return False

    def _handle(self, data: bytes) -> None:
        done: PageDone | Links | StartFailed = pickle.loads(data)
        if isinstance(done, StartFailed):
            raise SpiderError(done.message)
        self.candidates.extend(done.candidates)
        self.received += len(done.candidates)
        if isinstance(done, Links):
            return
        self.respawns.page_done()
        dispatch = self.dispatch
        assert dispatch is not None  # made before any parser starts
        entry = dispatch.done(done.req_id)
        if entry is None:
            # Re-queued after its fetcher died; the new copy counts. Its links are queued all
            # the same: the parser will not send them again (Router._admit).
            return
        host = entry.host
        if done.retry is None and self.journal is not None:
            self.journal.done(entry.request)
        self.stats.page_done(host, done.counts, done.status, done.elapsed)
        if done.items and self.output is not None:
            failed = self.output.write(done.items)
            if failed:
                self.stats.incr("error_output", failed)
        if done.set_cookies and self.cookies is not None:
            for url, set_cookies in done.set_cookies:
                self.cookies.learn(url, set_cookies)
        if done.host_pause_until:
            self.limiter.pause(host, done.host_pause_until)
        if done.robots is not None:
            self.gate.answer(host, entry.request.url, *done.robots)
        if done.retry is not None:
            self.frontier.push([done.retry], not_before=done.retry_at)
        self.finished.append((self.received, entry.lease))

    def _admit_candidates(self) -> None:
        """Deduplicate up to ``ADMIT_BATCH`` pending candidates in one seen-store call, queue the
        new ones, then finish the leases of the pages whose candidates are all queued (in that
        order: see ``Frontier.done``).

        A batch a pass: a page of 600,000 links froze the loop (progress, dispatch to other
        hosts) for 28 s when admitted at once.
        """
        if len(self.candidates) <= ADMIT_BATCH:
            batch, self.candidates = self.candidates, []
        else:
            batch = self.candidates[:ADMIT_BATCH]
            del self.candidates[:ADMIT_BATCH]
        if batch:
            self._admit_new(batch)
            self.admitted += len(batch)
        finished = self.finished
        if finished and finished[-1][0] <= self.admitted:  # the usual case: every page's candidates are in
            self.finished = []
        else:
            ready = 0
            while ready < len(finished) and finished[ready][0] <= self.admitted:
                ready += 1
            finished, self.finished = finished[:ready], finished[ready:]
        self.frontier.done([lease for _, lease in finished])

    def _admit_new(self, batch: list[tuple[int | None, Request]]) -> None:
        fresh: dict[int, Request] = {}
        admitted: list[tuple[int | None, Request]] = []
        for fp, request in batch:
            if fp is None:
                admitted.append((None, request))
            elif fp in fresh:
                self.stats.incr("duplicates")
            else:
                fresh[fp] = request
        if fresh:
            new = self._add_seen(list(fresh))
            self.stats.incr("duplicates", len(fresh) - len(new))
            admitted.extend((fp, fresh[fp]) for fp in new)
        if self.journal is not None:
            self.journal.add(admitted)
        self.gate.admit(request for _, request in admitted)

    # ---------------------------------------------------------------- health and reporting

    def _dropped(self, entries: list[InFlight]) -> None:
        """Finish the requests dropped as poison (``Dispatch``): done in the journal, and their leases
        finished once the candidates received so far are queued."""
        for entry in entries:
            if self.journal is not None:
                self.journal.done(entry.request)
            self.finished.append((self.received, entry.lease))

    def _heartbeat(self) -> None:
        reclaimed = self.shared.heartbeat()
        if reclaimed:
            log.warning("took back %d requests of nodes whose lease expired", reclaimed)
            self.stats.incr("requeued_from_dead_nodes", reclaimed)

    def _share_stats(self) -> None:
        """Add what this node counted since last time to the crawl's totals (one round trip)."""
        counts, last = self.stats.counts, self.shared_counts
        deltas = {key: n - last.get(key, 0) for key, n in counts.items() if n != last.get(key, 0)}
        if deltas:
            self.shared.add_stats(deltas)
            self.shared_counts = dict(counts)

    def _commit(self) -> None:
        """Output first, then the state that says which pages it holds."""
        assert self.journal is not None  # called only with a job directory
        if self.output is not None:
            self.output.flush()
        self.journal.commit(self.output.size if self.output is not None else 0, dict(self.stats.counts))

    def _shutdown(self) -> None:
        """Stop every process this crawl started, gently when it is idle, at once when it is not."""
        self.stats.finished = time.monotonic()
        if self.supervisor is not None:
            self.supervisor.stop(self.dispatch is None or not self.dispatch.inflight, lambda: self.stopping > 1)
        if self.manager is not None:
            self.manager.shutdown()
        if self.shared is not None:
            try:
                self._share_stats()
                self.stats.crawl_totals = (self.shared.crawl_id, self.shared.totals())
            except SharedCrawlError as exc:
                log.error("the crawl's totals are not updated: %s", exc)
        self.frontier.close()
        try:
            if self.journal is not None and self.failed is None:
                self._commit()
        except WriteFailed as exc:
            self._write_failed(exc)
        if self.journal is not None:
            # After a refused write the transaction in progress is dropped: it marks done pages
            # whose items were not written.
            self.journal.close(commit=self.failed is None)
        try:
            if self.output is not None:
                self.output.close()  # a no-op for a writer whose write was refused
        except WriteFailed as exc:
            self._write_failed(exc)
