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

The engine owns no fetching, parsing or dedup itself. It gives every dispatched request an id
and keeps it in ``inflight`` (with the fetch queue and parser it went to) until its PageDone
arrives; the crawl is over when the frontier is empty, no request waits for robots.txt, and
nothing is in flight. At most ``concurrency`` requests are being fetched at once: a fetcher
tells the engine (a notice Pipe) the moment an exchange is over, so the host's next request
starts while the page is still being parsed. Fetched pages waiting for a parser are bounded
too, by ``concurrency`` again, which bounds memory and gives the parsers back-pressure.
Candidates (a page's links, the start requests) are admitted a batch per pass of the loop,
so a page of 600,000 links or a seeds file of a million lines never holds up dispatch to
other hosts or the progress display; while many wait, the parsers are not read.
A task goes to the least loaded fetch queue, and only to one with a thread free, so none waits
in a fetcher behind slow exchanges while another fetcher idles (at the start, before every
fetcher is up, that could hold a request for a whole read timeout); a fetcher that claims its
queue says so with a notice too.
A fetcher or parser that dies is replaced and its requests are re-queued (``_check_processes``),
with what it held: per-host permits and send turns. A dead fetcher's queue is emptied of the
tasks it left and handed to a later fetcher, unless it died inside ``Queue.get`` (see
``fetcher.py``): a crawl survives any number of fetcher deaths. A fetcher that stops beating (its
watchdog writes a heartbeat into shared memory) or overruns a task's deadline by
``STALL_GRACE`` is killed to be replaced the same way. Each fetch thread and each parser marks
in shared memory the request it is working on, so a death is blamed on that request alone: one
that has been on hand at ``max_process_deaths`` deaths is dropped as poison. Processes of one
kind that keep dying with no page done in between stop the crawl (``CrashLoopError``), as does
a parser that cannot even build the spider.
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
from multiprocessing.connection import wait
from typing import Any

from crawlkit.backends.local.frontier import LocalFrontier
from crawlkit.backends.local.jobdir import JobDir
from crawlkit.backends.local.limiter import LocalLimiter, Wait
from crawlkit.backends.local.seen import SeenManager, serve_setup
from crawlkit.core.progress import TICK, Monitor
from crawlkit.errors import ConfigError, CrashLoopError, Interrupted, SharedCrawlError, SpiderError, WriteFailed
from crawlkit.extensions.components import check_components
from crawlkit.extensions.cookies import CookieJar
from crawlkit.extensions.middlewares import load_middlewares
from crawlkit.extensions.output import open_output
from crawlkit.extensions.pipelines import load_pipelines
from crawlkit.extensions.robots import ROBOTS_CALLBACK, RobotsGate, RobotsRules
from crawlkit.extensions.sitemaps import SITEMAP_CALLBACK, seed_sitemaps
from crawlkit.extensions.warc import check_warc_dir
from crawlkit.fetch.fetcher import CLOSED, JOINED, RETIRED, FetchChannels, FetcherConfig, check_proxy, worker_init
from crawlkit.http import Request
from crawlkit.messages import FetchTask, Links, PageDone, StartFailed
from crawlkit.parse.parser import ParserConfig, parser_main
from crawlkit.process import context, fetcher_processes, reserve_open_files
from crawlkit.settings import MAX_WORKERS, Settings
from crawlkit.spider import Spider
from crawlkit.stats import Stats
from crawlkit.urls import Fingerprinter

log = logging.getLogger("crawlkit.engine")

HEALTH_EVERY = 0.25  # seconds between checks for dead fetcher and parser processes
QUEUES_PER_WORKER = 4  # fetch queues made per fetcher process: the spares serve replacements
RECYCLE_WAIT = 5.0  # seconds to wait for the tasks put on a dead fetcher's queue, to drop them before reuse
SEED_BATCH = 1_000  # start requests queued per pass of the loop (about 20 ms of checks and fingerprints)
ADMIT_BATCH = 4_000  # candidates deduplicated and queued per pass of the loop (one seen-store call)
PENDING_MAX = 4 * ADMIT_BATCH  # candidates waiting for admission above which parsers are not read
STALL_GRACE = 10.0  # seconds a fetcher may miss its heartbeat, or a fetch thread overrun its task's deadline
# Seconds a host gets nothing new after a fetcher died in an exchange with it: the server goes on
# with a request whose client vanished until it answers, and the re-sent one must not overlap it.
DEAD_EXCHANGE_GRACE = 0.25
# Deaths of one process kind (fetchers, parsers, the seen store) with no page done in between
# that stop the crawl, if they come within RESPAWN_WINDOW seconds: a process that dies as soon
# as it starts would otherwise be replaced for ever.
RESPAWN_LIMIT = 5
RESPAWN_WINDOW = 60.0


@dataclass
class CrawlSpec:
    """Everything a crawl needs, resolved by the CLI (or a test) beforehand."""

    settings: Settings
    spider: Spider  # the engine's instance: start_requests and name
    spider_spec: str | None  # how parser processes load the same class
    spider_kwargs: dict[str, Any] = field(default_factory=dict)
    monitor: Monitor | None = None  # the live view, progress lines and stats file; none shown by default


@dataclass(slots=True)
class InFlight:
    """A dispatched request and everything needed to take it back if a process dies."""

    host: str
    request: Request
    lease: int  # the frontier's, finished once the page's new requests are queued
    slot: int
    ticket: int
    queue: int
    parser: int
    fetching: bool = True  # until the fetcher's notice (or the PageDone) says the exchange is over


class Engine:
    def __init__(self, spec: CrawlSpec) -> None:
        self.spec = spec
        s = self.settings = spec.settings
        cpus = os.cpu_count() or 1
        self.workers = fetcher_processes(s.workers, s.concurrency, cpus) if s.workers else min(cpus, MAX_WORKERS)
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
        self.inflight: dict[int, InFlight] = {}
        self.candidates: list[tuple[int | None, Request]] = []  # from PageDones, deduplicated per batch
        # Leases of pages whose candidates are not all queued yet, each with the number of
        # candidates received up to its PageDone: it is finished once that many are admitted.
        self.finished: list[tuple[int, int]] = []
        self.received = 0  # candidates received since the start
        self.admitted = 0  # candidates admitted (deduplicated, then queued or dropped) since the start
        self.shared_counts: dict[str, int] = {}  # the stats already added to the shared crawl's totals
        self.max_inflight = 2 * s.concurrency  # being fetched, plus fetched and waiting for a parser
        self.fetching = 0  # requests in flight whose exchange is not over
        self.tickets = list(range(self.max_inflight - 1, -1, -1))
        self.queue_load: dict[int, int] = {}  # live fetch queue -> requests dispatched to it
        self.sent: list[int] = []  # by fetch queue: tasks put on it since it was last claimed
        self.parser_load = [0] * s.parsers
        self.inflight_pages = 0
        self.next_id = 0
        self.deaths: dict[tuple[str, str], int] = {}  # (method, url) -> process deaths while it was on hand
        self.respawns: dict[str, list[float]] = {}  # process kind -> times of its last deaths since a page was done
        # fetcher pid killed for stalling -> the requests to blame, until it is seen dead
        self.killed: dict[int, set[int]] = {}
        self.stopping = 0  # 1 after the first Ctrl-C/SIGTERM, 2 after the second (or a refused write)
        self.failed: WriteFailed | None = None  # the first write the system refused
        # What run() starts; set here so that _shutdown can clean up after a start that failed half way.
        self.manager: Any = None
        self.pool: Any = None
        self.channels: FetchChannels | None = None
        self.parsers: list[Any] = []
        self.event_pipes: list[Any] = []
        self.notices: Any = None  # read end of the fetchers' notice Pipe
        self.working: Any = None  # RawArray('q') by parser: the request id it is handling, 0 none
        self.watched: list[tuple[int, float]] = [(0, 0.0)] * s.parsers  # by parser: (request id, first seen on it)
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
            queues = [ctx.Queue() for _ in range(self.workers * QUEUES_PER_WORKER)]
            self.sent = [0] * len(queues)
            self.notices, notices_writer = ctx.Pipe(duplex=False)
            self.channels = FetchChannels(
                queues=queues,
                ready=[ctx.Semaphore(0) for _ in queues],
                reads=ctx.RawArray("q", len(queues)),
                owners=ctx.Array("i", len(queues)),
                registrations=[ctx.Queue() for _ in range(s.parsers)],
                permits=self.limiter.permits,
                released=ctx.RawArray("b", self.max_inflight),
                notices=notices_writer,
                deadlines=ctx.RawArray("d", self.max_inflight),
                heartbeats=ctx.RawArray("d", len(queues)),
            )
            self.working = ctx.RawArray("q", s.parsers)
            self.parsers = [None] * s.parsers
            self.event_pipes = [None] * s.parsers
            for index in range(s.parsers):
                self._start_parser(ctx, index)
            self.pool = ctx.Pool(self.workers, initializer=worker_init,
                                 initargs=(self._fetcher_config(), self.channels))
            self.stats.crawl_started = time.monotonic()
            self._seed()
            self._loop(ctx)
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
            self._respawning("seen-URL store")
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

    def _start_parser(self, ctx: Any, index: int) -> None:
        assert self.channels is not None  # run() makes them before any process starts
        reader, writer = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=parser_main,
            args=(self._parser_config(), self.channels.registrations[index], writer, self.working, index),
            name=f"crawlkit-parser-{index}",
        )
        process.start()
        writer.close()  # the parser holds the only write end: its death reads as EOF here
        self.parsers[index] = process
        self.event_pipes[index] = reader

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
                signal.Signals(signum).name, len(self.inflight), self.settings.shutdown_timeout,
            )
            self.stop_deadline = time.monotonic() + self.settings.shutdown_timeout
        self.stats.reason = "interrupted"

    # ---------------------------------------------------------------- the loop

    def _loop(self, ctx: Any) -> None:
        next_tick = time.monotonic() + TICK
        next_health = 0.0
        next_beat = time.monotonic() + self.settings.lease_time / 4
        while True:
            now = time.monotonic()
            if now >= next_health or not self.queue_load:
                next_health = now + HEALTH_EVERY
                self._check_processes(ctx)
            if self.shared is not None and now >= next_beat:
                next_beat = now + self.settings.lease_time / 4
                self._heartbeat()
            self._resume_more()
            self._seed_more()
            if not self.stopping:
                self._schedule(now)
            if self._finished(now):
                while self.candidates and self.stopping < 2:  # a stop's last pages' links, for the jobdir
                    self._admit_candidates()
                self.stats.sample(now, len(self.frontier), self.fetching)  # the final figures
                return
            timeout = HEALTH_EVERY if self.queue_load else 0.01  # poll fast until fetchers are up
            if self.candidates:
                timeout = 0.0  # admit the next batch at once
            wake = self.frontier.next_time()
            if wake is not None:
                timeout = min(timeout, max(0.0, wake - now))
            pages = False
            for conn in wait([self.notices, *(c for c in self.event_pipes if c is not None)], timeout):
                if conn is self.notices:
                    if self._read_notices():
                        next_health = 0.0  # a fetcher joined: take its queue in at once
                else:
                    self._drain(conn)
                    pages = True
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
                fetching = [e.host for e in self.inflight.values() if e.fetching]
                self.monitor.tick(now, self.stats, len(self.frontier), fetching)

    def _drain(self, conn: Any) -> None:
        """Handle what one parser has sent, up to a batch, so scheduling is not starved; nothing
        while ``PENDING_MAX`` candidates wait (the parsers then wait on their Pipes)."""
        for _ in range(256):
            if len(self.candidates) >= PENDING_MAX:
                return
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):  # that parser died; _check_processes restarts it
                index = self.event_pipes.index(conn)
                self.event_pipes[index] = None
                conn.close()
                return
            self._handle(data)
            if not conn.poll():
                return

    def _read_notices(self) -> bool:
        """Take the request ids whose exchanges are over (8 bytes each, never split: see
        fetcher._notify); True if a fetcher announced it has joined."""
        data = os.read(self.notices.fileno(), 8 * 4096)
        inflight = self.inflight
        joined = False
        for start in range(0, len(data), 8):
            req_id = int.from_bytes(data[start:start + 8], "little")
            entry = inflight.get(req_id)
            if entry is not None:  # else its PageDone came first, or it was re-queued
                self._exchange_over(entry)
            joined |= req_id == JOINED
        return joined

    def _finished(self, now: float) -> bool:
        if self.stopping:
            if not self.inflight:
                return True
            if self.stopping > 1 or now > self.stop_deadline:
                log.warning("stopping with %d requests still in flight", len(self.inflight))
                return True
            return False
        if self.inflight:
            return False
        if self._page_budget_spent():
            self.stats.reason = "finished (max_pages reached)"
            return True
        if (not self.gate.waiting and self.resuming is None and self.starting is None and not self.candidates
                and self.frontier.idle()):
            self.stats.reason = "finished"
            return True
        return False

    def _page_budget_spent(self) -> bool:
        limit = self.settings.max_pages
        return bool(limit) and self.stats.counts["pages"] + self.inflight_pages >= limit

    def _schedule(self, now: float) -> None:
        """Dispatch requests while there is room in flight and a host that may start now."""
        limiter, frontier = self.limiter, self.frontier
        assert self.channels is not None  # made before the loop that schedules
        concurrency = self.settings.concurrency
        while (self.fetching < concurrency and len(self.inflight) < self.max_inflight and self.queue_load
               and not self._page_budget_spent()):
            queue = min(self.queue_load, key=self.queue_load.__getitem__)
            if self.queue_load[queue] >= self.threads:
                # Every live fetcher's threads are busy (the others are not up yet, or are being
                # replaced): a task queued now would wait behind slow exchanges, counted in flight.
                return
            host = frontier.next_host(now)
            if host is None:
                return
            grant = limiter.try_acquire(host, now)
            if isinstance(grant, Wait):
                frontier.park(host, grant.until)
                continue
            taken: tuple[int, Request] | None = frontier.take(host)
            if taken is None or not self.gate.may_start(host, *taken, now):
                limiter.release(host, grant)
                limiter.completed(host)
                continue
            lease, request = taken
            parser = min(range(len(self.parser_load)), key=self.parser_load.__getitem__)
            ticket = self.tickets.pop()
            self.channels.released[ticket] = 0
            self.channels.deadlines[ticket] = 0.0
            self.next_id += 1
            self.inflight[self.next_id] = InFlight(host, request, lease, grant, ticket, queue, parser)
            self.fetching += 1
            self.queue_load[queue] += 1
            self.parser_load[parser] += 1
            self.inflight_pages += _is_page(request)
            cookie = self.cookies.header_for(request.url) if self.cookies is not None else ""
            task = FetchTask(self.next_id, grant, ticket, parser, limiter.delay_of(host), request, cookie)
            self.channels.send(queue, task)
            self.sent[queue] += 1

    def _exchange_over(self, entry: InFlight) -> None:
        """Return what a request held while being fetched (its host's count, its fetch queue's load), once."""
        if not entry.fetching:
            return
        entry.fetching = False
        self.fetching -= 1
        self.limiter.completed(entry.host)
        self.frontier.unpark(entry.host)
        if entry.queue in self.queue_load:
            self.queue_load[entry.queue] -= 1

    def _settle(self, entry: InFlight) -> None:
        """Return what a request held while in flight (the above, its ticket and its parser's load)."""
        self._exchange_over(entry)
        self.tickets.append(entry.ticket)
        self.parser_load[entry.parser] -= 1
        self.inflight_pages -= _is_page(entry.request)

    def _handle(self, data: bytes) -> None:
        done: PageDone | Links | StartFailed = pickle.loads(data)
        if isinstance(done, StartFailed):
            raise SpiderError(done.message)
        self.candidates.extend(done.candidates)
        self.received += len(done.candidates)
        if isinstance(done, Links):
            return
        if self.respawns:
            self.respawns.clear()  # a page done: the processes that died so far were not dying at start
        entry = self.inflight.pop(done.req_id, None)
        if entry is None:
            # Re-queued after its fetcher died; the new copy counts. Its links are queued all
            # the same: the parser will not send them again (Router._admit).
            return
        self._settle(entry)
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

    def _check_processes(self, ctx: Any) -> None:
        """Take in newly started fetchers; replace stalled ones; re-queue the work of dead fetchers and parsers.

        The Pool's replacement of a dead fetcher claims a spare queue; the dead one's queue is
        emptied and freed for a later replacement, or retired if it died inside ``get`` (it may
        hold the queue's lock). Its requests go back to the frontier, and the
        per-host permits and send turns it never gave back are released here. A dead parser is
        restarted on the same registration queue, after what it sent before dying is read;
        requests whose results it had (fetch finished) are re-queued, those still being
        fetched go to its successor. Only the request a process was working on is blamed.
        """
        channels = self.channels
        assert channels is not None  # made before the loop that watches the processes
        owners = channels.owners
        with owners.get_lock():
            claimed = list(owners.get_obj())
        now = time.monotonic()
        self._kill_stalled(claimed, now)
        for index, pid in enumerate(claimed):
            if pid <= 0:
                continue
            if _alive(pid):
                self.queue_load.setdefault(index, 0)
                continue
            owners[index] = RETIRED
            claimed[index] = RETIRED
            self.queue_load.pop(index, None)
            lost = [i for i, e in self.inflight.items() if e.queue == index]
            working = self.killed.pop(pid, None)
            if working is None:  # it died by itself: blame every request a thread of it had taken
                released, deadlines = channels.released, channels.deadlines
                tickets = {i: self.inflight[i].ticket for i in lost}
                working = {i for i, ticket in tickets.items() if deadlines[ticket] and not released[ticket]}
            self._reclaim(lost, f"fetcher process {pid} died", working)
            if channels.recycle(index, self.sent[index], RECYCLE_WAIT):
                self.sent[index] = 0
                owners[index] = claimed[index] = 0
            else:
                log.warning("fetcher process %d died reading fetch queue %d; that queue is retired", pid, index)
            self._respawning("fetcher")
        if all(pid == RETIRED for pid in claimed):
            raise CrashLoopError(
                f"fetcher processes died {len(claimed)} times reading their fetch queues and no fetch queue is left; "
                "see the log for why they died"
            )
        self._kill_slow_parsers(now)
        for index, process in enumerate(self.parsers):
            if process.is_alive():
                continue
            log.error("parser process %s died (exit code %s); starting another", process.pid, process.exitcode)
            self.stats.incr("error_parser_died")
            culprit, self.working[index] = self.working[index], 0
            pipe = self.event_pipes[index]
            if pipe is not None and pipe.poll():
                self._drain(pipe)  # what it finished before dying counts (and why it could not start, if so)
            if self.event_pipes[index] is not None:
                self.event_pipes[index].close()
            released = channels.released
            lost = [i for i, e in self.inflight.items() if e.parser == index and released[e.ticket]]
            self._reclaim(lost, f"parser process {process.pid} died", {culprit})
            self._respawning("parser")
            self._start_parser(ctx, index)

    def _kill_stalled(self, claimed: list[int], now: float) -> None:
        """SIGKILL every fetcher that missed its heartbeat, or has a fetch thread past its task's
        deadline, by ``STALL_GRACE``: the Pool replaces it, and ``_check_processes`` takes back its work.

        Only the overdue requests are blamed for the death (a frozen process blames none): the
        others its threads had taken were merely there.
        """
        channels = self.channels
        assert channels is not None  # made before the loop that watches the processes
        stalled: dict[int, tuple[str, set[int]]] = {}
        for index, pid in enumerate(claimed):
            beat = channels.heartbeats[index]
            if pid > 0 and beat and now - beat > STALL_GRACE:
                stalled[pid] = (f"has not answered for {now - beat:.0f}s", set())
        deadlines, released = channels.deadlines, channels.released
        for req_id, entry in self.inflight.items():
            deadline = deadlines[entry.ticket]
            if entry.fetching and deadline and now - deadline > STALL_GRACE and not released[entry.ticket]:
                pid = claimed[entry.queue]
                if pid > 0:
                    late = f"is {now - deadline:.0f}s past the deadline of {entry.request.url}"
                    stalled.setdefault(pid, (late, set()))[1].add(req_id)
        for pid, (why, overdue) in stalled.items():
            if pid in self.killed:
                continue
            log.error("fetcher process %d %s; killing it (another takes its place)", pid, why)
            self.stats.incr("error_fetcher_stalled")
            self.killed[pid] = overdue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _kill_slow_parsers(self, now: float) -> None:
        """SIGKILL a parser seen on one page for more than ``callback_timeout`` seconds.

        A callback, hook or pipeline that never returns would otherwise hold its page, and so
        the end of the crawl, for ever. The death is then handled like any other: the page
        counts a process death (dropped as poison at ``max_process_deaths``), the parser's
        other pages are re-queued, and a new parser starts. Read from the ``working`` marks
        at each health check, so it costs nothing per page.
        """
        limit = self.settings.callback_timeout
        if not limit:
            return
        for index, process in enumerate(self.parsers):
            req_id = self.working[index]
            seen, since = self.watched[index]
            if not req_id or req_id != seen:
                self.watched[index] = (req_id, now)
                continue
            if now - since <= limit:
                continue
            entry = self.inflight.get(req_id)
            url = entry.request.url if entry is not None else f"request {req_id}"
            log.error("parser process %s has spent %.0fs on %s (callback_timeout %gs); killing it",
                      process.pid, now - since, url, limit)
            self.stats.incr("error_callback_timeout")
            self.watched[index] = (0, now)
            process.kill()
            process.join(5)  # dead before the caller looks, so it is replaced on this pass

    def _respawning(self, kind: str) -> None:
        """Count a death of ``kind``; stop the crawl if they come too fast with no page done in between."""
        now = time.monotonic()
        times = self.respawns.setdefault(kind, [])
        times.append(now)
        del times[:-RESPAWN_LIMIT]
        if len(times) == RESPAWN_LIMIT and now - times[0] <= RESPAWN_WINDOW:
            raise CrashLoopError(
                f"{kind} processes died {RESPAWN_LIMIT} times in {now - times[0]:.0f}s with no page done in between; "
                "stopping (see the log for why they died)"
            )

    def _reclaim(self, ids: list[int], why: str, working: set[int]) -> None:
        """Take back the requests of a dead process: re-queue them, except those it was working
        on that have now been on hand at ``max_process_deaths`` deaths (poison: dropped)."""
        assert self.channels is not None  # only processes started on them die
        released, deadlines = self.channels.released, self.channels.deadlines
        requeued = 0
        for req_id in ids:
            entry = self.inflight.pop(req_id)
            if not released[entry.ticket]:
                self.limiter.release(entry.host, entry.slot)
                self.limiter.recover_turn(entry.host, entry.slot, entry.ticket)
                if deadlines[entry.ticket]:  # a fetch thread had taken it: perhaps sent
                    self.limiter.pause(entry.host, time.monotonic() + DEAD_EXCHANGE_GRACE)
            self._settle(entry)
            if req_id in working and self._poisonous(entry.request):
                if self.journal is not None:
                    self.journal.done(entry.request)
                self.finished.append((self.received, entry.lease))
                self.respawns.clear()  # the crawl moves on past it
            else:
                self.frontier.reclaim(entry.lease, entry.request)
                requeued += 1
        if ids or why.startswith("fetcher"):
            log.warning("%s; re-queued its %d requests in flight", why, requeued)
        self.stats.incr("requeued", requeued)
        if why.startswith("fetcher"):
            self.stats.incr("error_fetcher_died")

    def _poisonous(self, request: Request) -> bool:
        """Count a process death on ``request``; True (logged and counted) when it reaches ``max_process_deaths``."""
        key = (request.method, request.url)
        deaths = self.deaths.get(key, 0) + 1
        if deaths < self.settings.max_process_deaths:
            self.deaths[key] = deaths
            return False
        self.deaths.pop(key, None)
        self.stats.incr("dropped_poison")
        log.error("%s %s dropped: a crawlkit process died while on it %d times (max_process_deaths)",
                  request.method, request.url, deaths)
        return True

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

    def _stop_pool(self, pool: Any, grace: float) -> None:
        """One STOP per fetch thread, then close; workers still busy after ``grace`` seconds are killed.

        ``Pool.terminate`` is not used: it takes the Pool's task-queue lock, which a worker
        killed while holding it never gives back.
        """
        workers = list(pool._pool)  # the Pool's own worker list; it has no public accessor
        pool.close()  # first, so that workers leaving on their STOPs are not replaced
        assert self.channels is not None  # the Pool is started on them
        owners = self.channels.owners
        with owners.get_lock():  # close the unclaimed queues, so a worker still starting up just leaves
            claimed = [i for i, pid in enumerate(owners) if pid > 0]
            for index, pid in enumerate(owners):
                if pid == 0:
                    owners[index] = CLOSED
        for index in claimed:
            for _ in range(self.threads):
                self.channels.send(index, None)
        deadline = time.monotonic() + grace
        for process in workers:
            # In slices, so that a second Ctrl-C while waiting ends the wait at once.
            while process.exitcode is None and self.stopping < 2 and time.monotonic() < deadline:
                process.join(min(0.1, max(0.0, deadline - time.monotonic())))
            if process.exitcode is None:
                process.kill()
        pool.join()

    def _shutdown(self) -> None:
        """Stop every process this crawl started, gently when it is idle, at once when it is not."""
        self.stats.finished = time.monotonic()
        idle = not self.inflight
        if self.pool is not None:
            self._stop_pool(self.pool, 30.0 if idle else 0.0 if self.stopping > 1 else 2.0)
        channels = self.channels
        if channels is not None:
            for registration, process in zip(channels.registrations, self.parsers):
                if process is None:
                    continue
                registration.put(None)
                process.join(timeout=5 if idle else 0.5)
                if process.is_alive():
                    process.kill()
                    process.join()
            for q in (*channels.queues, *channels.registrations):
                q.cancel_join_thread()
                q.close()
            channels.notices.close()
            self.notices.close()
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


def _is_page(request: Request) -> bool:
    """Whether a request counts against ``max_pages`` (robots.txt and sitemaps do not)."""
    return request.callback not in (ROBOTS_CALLBACK, SITEMAP_CALLBACK)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
