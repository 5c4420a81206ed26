"""Admission: the way into the frontier, for links, start requests and a resumed crawl's backlog.

Candidates (a page's links as (fingerprint, request), the start requests) go through the
seen-URL store, then the journal, then the robots.txt gate, and so into the frontier; start
requests are first normalised by ``urlnorm.UrlNormalizer``, as the parsers' normalize stage
does links::

    PageDone/Links candidates --+
    start requests (batches) ---+--> seen store (one add_many a batch) --> journal --> RobotsGate --> frontier
    journal's pending (resume) -------------------------------------------------------^

In a recrawl, a known page that a sitemap lists again with a ``lastmod`` is not a duplicate
like the others: the journal decides from its last fetch whether to revisit it (``JobDir.relist``).

It works a batch per pass of the engine's loop, so that a page of 600,000 links or a seeds
file of a million lines never holds up dispatch to other hosts or the progress display. A page's
lease is finished only once every candidate received up to its PageDone is queued (see
``Frontier.done``). Runs in the engine's process, on a ``CrawlBackend``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from crawlkit.backends.base import CrawlBackend, Entry
from crawlkit.core.start import start_objects
from crawlkit.extensions.robots import RobotsGate
from crawlkit.extensions.signals import Signals
from crawlkit.extensions.sitemaps import seed_sitemaps
from crawlkit.http import Request
from crawlkit.settings import Settings
from crawlkit.spider import CallbackCheck, Spider, check_spider
from crawlkit.stats import Stats
from crawlkit.urlnorm import UrlNormalizer
from crawlkit.urls import Fingerprinter

log = logging.getLogger("crawlkit.admission")

SEED_BATCH = 1_000  # start requests queued per pass of the loop (about 20 ms of checks and fingerprints)
ADMIT_BATCH = 4_000  # candidates deduplicated and queued per pass of the loop (one seen-store call)
PENDING_MAX = 4 * ADMIT_BATCH  # candidates waiting for admission above which parsers are not read
RESUME_BATCH = 2_000  # pending requests read from the journal at a time (fewer with a smaller frontier_memory)


class Admission:
    """Candidates -> seen store -> journal -> robots.txt gate -> frontier; seeding and resuming the same way."""

    def __init__(self, backend: CrawlBackend, gate: RobotsGate, spider: Spider, settings: Settings,
                 stats: Stats, signals: Signals | None = None) -> None:
        check_spider(spider)
        self.backend, self.gate, self.spider, self.settings, self.stats = backend, gate, spider, settings, stats
        self.signals = signals  # request_scheduled and request_dropped go to the extensions, if any
        self.callbacks = CallbackCheck(spider)
        # Start requests are normalised as the parsers' normalize stage does links (urlnorm.py).
        self.normalizer = UrlNormalizer(settings.strip_query_params, settings.url_rewrites)
        self.candidates: list[tuple[int | None, Request]] = []  # from PageDones, deduplicated per batch
        # Leases of pages whose candidates are not all queued yet, each with the number of
        # candidates received up to its PageDone: it is finished once that many are admitted.
        self.finished: list[tuple[int, int]] = []
        self.received = 0  # candidates received since the start
        self.admitted = 0  # candidates admitted (deduplicated, then queued or dropped) since the start
        self.resuming: Iterator[list[Entry]] | None = None  # the journal's pending requests not queued yet
        self.starting: Iterator[Any] | None = None  # the spider's start requests not queued yet
        self.started = 0  # start requests queued so far

    # ---------------------------------------------------------------- what the engine hands in

    def offer(self, candidates: list[tuple[int | None, Request]]) -> None:
        """Candidates of a page (or a chunk of them), to admit on the next passes."""
        self.candidates.extend(candidates)
        self.received += len(candidates)

    def finish(self, lease: int) -> None:
        """A page is done (or dropped): finish its lease once the candidates received so far are queued."""
        self.finished.append((self.received, lease))

    def full(self) -> bool:
        """Whether so many candidates wait that the engine should stop reading the parsers."""
        return len(self.candidates) >= PENDING_MAX

    def all_queued(self) -> bool:
        """Whether every finished page's candidates are in the frontier (the journal may commit)."""
        return not self.finished

    def idle(self) -> bool:
        """Nothing left to admit: no candidate, no start or resumed request, none waiting for robots.txt."""
        return not self.gate.waiting and self.resuming is None and self.starting is None and not self.candidates

    # ---------------------------------------------------------------- seeding and resuming

    def seed(self) -> None:
        """Start queueing the spider's start requests (or resume), a batch now and the rest as
        the frontier has room (``feed``): a seeds file of a million lines is neither read nor
        held whole before the first request."""
        journal = self.backend.journal
        if journal.resuming:
            self._resume()
            return
        self.starting = start_objects(self.spider)
        self.started = 0
        if not journal.durable:
            self._seed_more()
            return
        # A resume takes its requests from the journal alone, so all start requests go there first.
        while self.starting is not None:
            self._seed_more(room=True)
            self.admit()

    def feed(self) -> None:
        """Queue the next batch of resumed and start requests, if the frontier has room for them."""
        self._resume_more()
        self._seed_more()

    def _seed_more(self, room: bool = False) -> None:
        """Queue the next batch of start requests, deduplicated like any other request, if the
        frontier holds fewer than its limit (the rest wait in the seeds file) or ``room`` says
        to anyway."""
        if self.starting is None:
            return
        limit = self.backend.frontier_limit
        if not room and ((limit and len(self.backend.frontier) >= limit) or self.full()):
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
                    log.error("spider %s: a start request is a %s; start() and start_requests() yield "
                              "Requests only (items come from callbacks)", self.spider.name, type(request).__name__)
                    continue
                problem = self.callbacks.problem(request)
                if problem is not None:
                    self.stats.incr("error_spider_callback_missing")
                    log.error("spider %s: start %s; dropped", self.spider.name, problem)
                    continue
                normal = self.normalizer.normalize(request.url)
                if normal != request.url:
                    request.url = normal
                    self.stats.incr("urls_normalized")
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
            method = "start_requests" if type(self.spider).start is Spider.start else "start"
            log.error("spider %s %s raised %s: %s", self.spider.name, method, type(exc).__name__, exc)
            more = False
        if self.settings.use_sitemaps:
            # Per batch: a host's sitemap request met again is a duplicate to the seen store.
            for request in seed_sitemaps(r.url for r in seeds):
                batch.append((fingerprints.fingerprint(request.url), request))
        self.offer(batch)
        self.started += len(seeds)
        if not more:
            self.starting = None
            if not self.started and self.backend.needs_seeds:
                log.warning("no start requests: nothing to crawl")

    def _resume(self) -> None:
        """Refill the seen store and the frontier from the journal instead of the seeds.

        The seen store is refilled whole first (every new link is checked against it). The
        pending requests then come in by batches while the crawl runs (``feed``), whenever the
        frontier holds fewer than its limit: the crawl starts at once, and the backlog stays in
        the journal instead of being copied to the spill file.
        """
        journal, seen_store = self.backend.journal, self.backend.seen
        seen = sum(len(seen_store.add_many(batch)) for batch in journal.fingerprints())
        if self.gate.rules is not None:
            for host, status, body in journal.robots():
                self.gate.learn(host, status, body)
        log.info("resuming from %s: %d requests pending, %d URLs seen", self.settings.jobdir, journal.pending_count(),
                 seen)
        if self.settings.max_pages:
            done = self.stats.earlier_pages
            log.info("max_pages (%d) counts the pages of every run of this crawl: %d before this run, %d to go",
                     self.settings.max_pages, done, max(0, self.settings.max_pages - done))
        self.resuming = journal.pending(min(RESUME_BATCH, self.backend.frontier_limit or RESUME_BATCH))
        self._resume_more()

    def _resume_more(self) -> None:
        """Queue the next batch of the journal's pending requests if the frontier has room."""
        limit = self.backend.frontier_limit  # 0: no bound, take a batch each time
        if self.resuming is None or (limit and len(self.backend.frontier) >= limit):
            return
        batch = next(self.resuming, None)
        if batch is None:
            self.resuming = None
            return
        self.gate.admit(batch)

    # ---------------------------------------------------------------- admitting

    def admit(self) -> None:
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
        self.backend.frontier.done([lease for _, lease in finished])

    def _admit_new(self, batch: Iterable[tuple[int | None, Request]]) -> None:
        fresh: dict[int, Request] = {}
        admitted: list[tuple[int | None, Request]] = []
        signals = self.signals
        journal = self.backend.journal
        # Known pages a sitemap lists with a lastmod, for the journal to decide on (JobDir.relist).
        listed: list[tuple[int, Request]] | None = [] if journal.durable else None
        for fp, request in batch:
            if fp is None:
                admitted.append((None, request))
            elif fp in fresh:
                self.stats.incr("duplicates")
                if listed is not None and "sitemap_lastmod" in request.meta:
                    listed.append((fp, request))
                if signals is not None:
                    signals.request_dropped(request, "duplicate")
            else:
                fresh[fp] = request
        if fresh:
            new = self.backend.seen.add_many(list(fresh))
            self.stats.incr("duplicates", len(fresh) - len(new))
            admitted.extend((fp, fresh[fp]) for fp in new)
            if listed is not None and len(new) < len(fresh):
                known = fresh.keys() - set(new)
                listed += [(fp, fresh[fp]) for fp in known if "sitemap_lastmod" in fresh[fp].meta]
            if signals is not None and len(new) < len(fresh):
                kept = set(new)
                for fp, request in fresh.items():
                    if fp not in kept:
                        signals.request_dropped(request, "duplicate")
        if signals is not None:
            for _, request in admitted:
                signals.request_scheduled(request)
        self.gate.admit(journal.add(admitted))
        if listed:  # after add: a page of this very batch is known by now
            self.gate.admit(journal.relist(listed))
