"""The engine: wires the stages, decides when to dispatch, knows when the crawl is over.

Data flow (one arrow, one channel)::

    start requests --> [robots gate] --> Frontier (per-host queues, in the engine)
        ^                                    | next_host + Limiter.try_acquire (Semaphore per host)
        |                                    v
        |                fetch queue (multiprocessing.Queue of FetchTask)
        |                                    v
        |             fetcher Pool (N processes x T threads, requests sessions)
        |                                    | FetchResult, one Pipe per fetcher and parser
        |                                    v
        |       parser processes (Response, spider callbacks, dedup via the Manager seen store)
        |                                    | PageDone (events queue)
        +---- engine: items -> output, new requests -> robots gate, stats

The engine owns no fetching, parsing or dedup itself. It gives every dispatched request an id
and keeps it in ``inflight`` until its PageDone arrives; the crawl is over when the frontier is
empty, no request waits for robots.txt, and nothing is in flight. Total in flight (fetching or
waiting to be parsed) never exceeds ``concurrency``, which bounds memory and gives the parsers
back-pressure over the fetchers.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import queue
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from .fetcher import FetcherConfig, worker_init
from .frontier import LocalFrontier
from .http import Request
from .limiter import LocalLimiter, Wait
from .messages import FetchTask, PageDone
from .output import open_output
from .parser import ParserConfig, parser_main
from .process import child_setup, context
from .robots import ROBOTS_CALLBACK, RobotsRules
from .seen import SeenManager
from .settings import Settings
from .spider import Spider
from .stats import Stats
from .urls import Fingerprinter, host_of

log = logging.getLogger("crawlkit.engine")

PROGRESS_EVERY = 10.0  # seconds between progress lines


@dataclass
class CrawlSpec:
    """Everything a crawl needs, resolved by the CLI (or a test) beforehand."""

    settings: Settings
    spider: Spider  # the engine's instance: start_requests and name
    spider_spec: str | None  # how parser processes load the same class
    spider_kwargs: dict[str, Any] = field(default_factory=dict)


class Interrupted(Exception):
    """The crawl was stopped by Ctrl-C or SIGTERM; the CLI exits 130."""


class Engine:
    def __init__(self, spec: CrawlSpec) -> None:
        self.spec = spec
        s = self.settings = spec.settings
        self.workers = s.workers or os.cpu_count() or 1
        self.threads = math.ceil(s.concurrency / self.workers)
        self.stats = Stats()
        self.frontier = LocalFrontier()
        self.robots = RobotsRules(s.user_agent) if s.robots else None
        self.waiting_robots: dict[str, list[Request]] = defaultdict(list)
        self.inflight: dict[int, tuple[str, Request]] = {}
        self.inflight_pages = 0
        self.next_id = 0
        self.stopping = 0  # 1 after the first Ctrl-C/SIGTERM, 2 after the second
        self.output = open_output(s.output)

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> Stats:
        """Crawl to the end; raises Interrupted after a Ctrl-C (with the stats flushed)."""
        s = self.settings
        ctx = context()
        self.limiter = LocalLimiter(ctx, slots=s.concurrency, per_host=s.per_host, delay=s.delay)
        self.manager = SeenManager(ctx=ctx)
        self.manager.start(child_setup, (s.log_level, s.log_file))
        self.seen = self.manager.FingerprintSet()
        self.fetch_queue = ctx.Queue()
        self.events = ctx.Queue()
        self.registrations = [ctx.Queue() for _ in range(s.parsers)]
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._start_parsers(ctx)
            self.pool = ctx.Pool(
                self.workers,
                initializer=worker_init,
                initargs=(self._fetcher_config(), self.fetch_queue, self.registrations, self.limiter.semaphores),
            )
            self._seed()
            self._loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._shutdown()
        if self.stopping:
            raise Interrupted()
        return self.stats

    def _fetcher_config(self) -> FetcherConfig:
        s = self.settings
        return FetcherConfig(
            threads=self.threads, user_agent=s.user_agent, connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout, download_timeout=s.download_timeout, max_body=s.max_body,
            max_redirects=s.max_redirects, log_level=s.log_level, log_file=s.log_file,
        )

    def _start_parsers(self, ctx: Any) -> None:
        s = self.settings
        config = ParserConfig(
            spider=self.spec.spider_spec, spider_kwargs=self.spec.spider_kwargs, allowed_domains=list(s.allowed_domains),
            max_depth=s.max_depth, max_url_length=s.max_url_length, max_redirects=s.max_redirects, retries=s.retries,
            retry_http_codes=list(s.retry_http_codes), retry_backoff=s.retry_backoff, retry_after_max=s.retry_after_max,
            log_level=s.log_level, log_file=s.log_file,
        )
        self.parsers = []
        for index, registration in enumerate(self.registrations):
            process = ctx.Process(
                target=parser_main, args=(config, registration, self.events, self.seen), name=f"crawlkit-parser-{index}"
            )
            process.start()
            self.parsers.append(process)

    def _seed(self) -> None:
        """Queue the spider's start requests, deduplicated like any other request."""
        fingerprints = Fingerprinter()
        fresh: dict[int, Request] = {}
        unfiltered: list[Request] = []
        try:
            for request in self.spec.spider.start_requests():
                if not isinstance(request, Request):
                    self.stats.incr("error_spider_output")
                    log.error("spider %s start_requests yielded a %s; yield Requests", self.spec.spider.name, type(request).__name__)
                    continue
                try:
                    fp = fingerprints.fingerprint(request.url, request.method, request.body)
                except ValueError as exc:
                    self.stats.incr("dropped_invalid_url")
                    log.error("start request %r dropped: %s", request.url, exc)
                    continue
                if request.dont_filter:
                    unfiltered.append(request)
                else:
                    fresh.setdefault(fp, request)
        except Exception as exc:
            self.stats.incr("error_spider_exception")
            log.error("spider %s start_requests raised %s: %s", self.spec.spider.name, type(exc).__name__, exc)
        new = self.seen.add_many(list(fresh))
        self._admit(unfiltered + [fresh[fp] for fp in new])
        if not self.frontier and not self.waiting_robots:
            log.warning("no start requests: nothing to crawl")

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

    def _loop(self) -> None:
        next_progress = time.monotonic() + PROGRESS_EVERY
        while True:
            now = time.monotonic()
            if not self.stopping:
                self._schedule(now)
            if self._finished(now):
                return
            self._check_children()
            timeout = 0.2
            wake = self.frontier.next_time()
            if wake is not None:
                timeout = min(timeout, max(0.0, wake - now))
            try:
                self._handle(self.events.get(timeout=timeout))
                while True:  # drain what has arrived before scheduling again
                    self._handle(self.events.get_nowait())
            except queue.Empty:
                pass
            if now >= next_progress:
                next_progress = now + PROGRESS_EVERY
                self._progress()

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
        if len(self.frontier) == 0 and not self.waiting_robots:
            self.stats.reason = "finished"
            return True
        return False

    def _page_budget_spent(self) -> bool:
        limit = self.settings.max_pages
        return bool(limit) and self.stats.counts["pages"] + self.inflight_pages >= limit

    def _schedule(self, now: float) -> None:
        """Dispatch requests while there is room in flight and a host that may start now."""
        limiter, frontier = self.limiter, self.frontier
        while len(self.inflight) < self.settings.concurrency and not self._page_budget_spent():
            host = frontier.next_host(now)
            if host is None:
                return
            grant = limiter.try_acquire(host, now)
            if isinstance(grant, Wait):
                frontier.park(host, grant.until)
                continue
            request = frontier.pop(host)
            self.next_id += 1
            self.inflight[self.next_id] = (host, request)
            self.inflight_pages += request.callback != ROBOTS_CALLBACK
            self.fetch_queue.put(FetchTask(self.next_id, grant, request))

    def _handle(self, data: bytes) -> None:
        done: PageDone = pickle.loads(data)
        entry = self.inflight.pop(done.req_id, None)
        if entry is None:
            return
        host, request = entry
        self.inflight_pages -= request.callback != ROBOTS_CALLBACK
        self.limiter.completed(host)
        self.frontier.unpark(host)
        self.stats.add(done.counts)
        if done.items and self.output is not None:
            self.output.write(done.items)
        if done.host_pause_until:
            self.limiter.pause(host, done.host_pause_until)
        if done.robots is not None:
            self._learn_robots(host, *done.robots)
        if done.retry is not None:
            self.frontier.push([done.retry], not_before=done.retry_at)
        if done.requests:
            self._admit(done.requests)

    # ---------------------------------------------------------------- robots gate

    def _admit(self, requests: Iterable[Request]) -> None:
        """Queue new requests, holding those of hosts whose robots.txt is not known yet."""
        robots = self.robots
        if robots is None:
            self.frontier.push(requests)
            return
        allowed = []
        for request in requests:
            host = host_of(request.url)
            if robots.known(host):
                if robots.allowed(request.url):
                    allowed.append(request)
                else:
                    self._drop_disallowed(host, request)
                continue
            self.waiting_robots[host].append(request)
            robots_request = robots.request_for(request.url)
            if robots_request is not None:
                allowed.append(robots_request)
        self.frontier.push(allowed)

    def _learn_robots(self, host: str, status: int, body: bytes) -> None:
        delay = self.robots.learn(host, status, body)
        if delay:
            log.info("robots.txt of %s asks for Crawl-delay %.2fs", host, delay)
            self.limiter.set_delay(host, delay)
        self._admit(self.waiting_robots.pop(host, []))

    def _drop_disallowed(self, host: str, request: Request) -> None:
        if self.robots.unavailable(host):
            self.stats.incr("robots_unavailable")
        else:
            self.stats.incr("robots_disallowed")
            log.debug("robots.txt disallows %s", request.url)

    # ---------------------------------------------------------------- health and reporting

    def _check_children(self) -> None:
        for process in self.parsers:
            if not process.is_alive():
                raise RuntimeError(f"parser process {process.pid} died (exit code {process.exitcode}); see the log above")

    def _progress(self) -> None:
        c = self.stats.counts
        elapsed = self.stats.elapsed
        log.info(
            "%d pages (%.1f/s), %d items, %d queued, %d in flight, %d errors",
            c["pages"], c["pages"] / elapsed if elapsed else 0.0, c["items"], len(self.frontier), len(self.inflight),
            sum(self.stats.errors().values()),
        )

    def _stop_pool(self, pool: Any, grace: float) -> None:
        """One STOP per fetch thread, then close; workers still busy after ``grace`` seconds are killed.

        ``Pool.terminate`` is not used: it takes the task queue's lock, which a worker blocked
        on that queue (or killed while holding it) never gives back.
        """
        for _ in range(self.workers * self.threads):
            self.fetch_queue.put(None)
        workers = list(pool._pool)  # the Pool's own worker list; it has no public accessor
        pool.close()
        deadline = time.monotonic() + grace
        for process in workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                process.kill()
        pool.join()

    def _shutdown(self) -> None:
        """Stop every process this crawl started, gently when it is idle, at once when it is not."""
        self.stats.finished = time.monotonic()
        idle = not self.inflight
        pool = getattr(self, "pool", None)
        if pool is not None:
            self._stop_pool(pool, 30.0 if idle else 2.0)
        for registration, process in zip(self.registrations, getattr(self, "parsers", [])):
            registration.put(None)
            process.join(timeout=5 if idle else 0.5)
            if process.is_alive():
                process.terminate()
                process.join()
        self.manager.shutdown()
        for q in (self.fetch_queue, self.events, *self.registrations):
            q.cancel_join_thread()
            q.close()
        if self.output is not None:
            self.output.close()
