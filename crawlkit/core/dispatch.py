"""Dispatch: the in-flight table, where each request is sent, and taking requests back when a process dies.

Runs in the engine process, on the engine's frontier and limiter and the fetchers' channels.
Every dispatched request gets an id and an ``InFlight`` entry that names everything it holds
(the frontier's lease, the limiter's slot, a ticket into the shared ``released`` and
``deadlines`` arrays, its fetch queue and its parser) until its PageDone arrives (``done``)
or the process holding it dies (``fetcher_died``, ``parser_died``). Two bounds hold: at most
``concurrency`` exchanges at once (a fetcher's notice says when one is over, so the host's next
request starts while the page is still being parsed), and at most ``2 * concurrency`` requests
in flight (fetched pages waiting for a parser count), which gives the parsers back-pressure.

A page that ``RenderChoice`` (``render/choose.py``) says is to be rendered goes to a renderer's
queue instead (``render/pool.py``), the least loaded one with a page slot free, under the same
permit, ticket and in-flight entry as a fetched page, as a ``RenderTask`` that carries the host's
robots.txt for its sub-resources; the first such page starts the renderer
processes (``start_renderers``), and until one has claimed its queue, or while every browser's
pages are taken, the page goes back to its host, which waits ``RENDER_WAIT`` seconds. A page to
render is never put in a revalidation batch.

A task goes to the least loaded live fetch queue, and only to one with a thread free, so none
waits in a fetcher behind slow exchanges while another fetcher idles (at the start, before
every fetcher is up, that could hold a request for a whole read timeout). A request on hand at
``max_process_deaths`` deaths of the process working on it is dropped as poison; the others a
dead process held are re-queued.

A host with its own ``max_pages`` (the ``hosts`` setting) counts its pages done in the stats
counter ``pages_site:HOST``, which the journal keeps for a resume and a shared crawl adds up
over its nodes (``CrawlBackend.crawl_count``); once its pages done and in flight reach it, its
other pages are dropped as they come up (``dropped_site_max_pages``), after waiting for those
in flight, which may fail and leave room.

In a recrawl round (``revalidate``), a page revisited with its validators, a plain GET, goes
out in a revalidation batch (``RevalidateTask``): up to ``BATCH`` of its host's due revisits
under one permit, counted as one exchange (one request in flight for ``per_host`` and
``concurrency``: the fetcher sends them one at a time), each entry with its own id, ticket and
``InFlight``, the batch's ``Batch`` shared. Batched entries have tickets of their own
(``concurrency * BATCH`` more: ``batch_tickets``) and are not counted against ``2 * concurrency``,
which would otherwise let one batch hold up every other host; their changed pages, few in a
recrawl, reach the parsers without that back-pressure, at most ``concurrency * BATCH`` at once.
A 304 comes back as a notice and settles its entry at once (``unchanged``, for the engine to
finish); other answers come through a parser as usual.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from crawlkit.backends.base import NO_GRANT, Frontier, Limiter, Wait
from crawlkit.extensions.cookies import CookieJar
from crawlkit.extensions.robots import ROBOTS_CALLBACK, RobotsGate
from crawlkit.extensions.sitemaps import SITEMAP_CALLBACK
from crawlkit.fetch.cache import StoredAnswers
from crawlkit.fetch.channels import JOINED, UNCHANGED, FetchChannels
from crawlkit.http import Request
from crawlkit.messages import FetchTask, RenderTask, RevalidateTask
from crawlkit.render.choose import RenderChoice
from crawlkit.sites import SiteRules
from crawlkit.stats import Stats

log = logging.getLogger("crawlkit.engine")

# Seconds a host gets nothing new after a fetcher died in an exchange with it: the server goes on
# with a request whose client vanished until it answers, and the re-sent one must not overlap it.
DEAD_EXCHANGE_GRACE = 0.25
RENDER_WAIT = 0.05  # seconds a host with a page to render waits for a renderer to start or to free a page slot
# Revisits in one revalidation batch, at most: enough that a task, a notice and a fetch thread's
# wake-up are paid once for many 304s; few enough that a batch (one permit, sent one at a time)
# does not hold a host's turn for long, nor strand many pages in a fetcher that dies.
BATCH = 32


@dataclass(slots=True, eq=False)
class Batch:
    """What the entries of one revalidation batch hold together: one permit, one exchange at a time."""

    last: int = 0  # the ticket of its last entry: the fetcher marks it released once the permit is released
    members: int = 0  # entries not settled yet
    fetching: bool = True  # until the fetcher's notice (or its last entry's settling) says the batch is over
    permit: bool = True  # the permit is not given back yet (by the engine, for a dead fetcher)


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
    batch: Batch | None = None  # the revalidation batch it went in, which holds its permit and exchange


class Dispatch:
    """The in-flight table and its bounds; engine process, not thread-safe.

    ``threads`` is each fetcher's thread count (a queue with that many tasks out is full),
    ``max_inflight`` the bound on requests in flight but batched revisits; there is a ticket for
    each of those and each batched one (``channels.released`` has them all: ``tickets``). ``sites`` are
    the per-site rules (their ``max_pages``), counted by ``crawl_count(counter)`` (the backend's:
    all nodes of a shared crawl); ``drop(lease)`` finishes a request dropped unsent. ``cached``
    (``http_cache``) lists the requests whose answers are stored: those go out as hits, without
    a permit or the host's delay (``NO_GRANT``), as the server never sees them. ``revalidate``
    sends revisits in batches (see the module docstring); the engine turns it on only when nothing
    needs to see a 304 but the journal (``Engine._revalidates``). ``render`` chooses the pages to
    render (None: none), ``start_renderers()`` starts the renderer processes, each rendering
    ``render_pages`` pages at once.
    """

    def __init__(self, channels: FetchChannels, frontier: Frontier, limiter: Limiter, gate: RobotsGate,
                 cookies: CookieJar | None, stats: Stats, *, threads: int, parsers: int, concurrency: int,
                 max_inflight: int, max_pages: int, max_process_deaths: int, sites: SiteRules,
                 crawl_count: Callable[[str], int], drop: Callable[[int], None],
                 cached: StoredAnswers | None = None, revalidate: bool = False,
                 render: RenderChoice | None = None, start_renderers: Callable[[], None] | None = None,
                 render_pages: int = 0) -> None:
        self.channels = channels
        self.frontier = frontier
        self.limiter = limiter
        self.gate = gate
        self.cookies = cookies
        self.stats = stats
        self.threads = threads
        self.concurrency = concurrency
        self.max_inflight = max_inflight
        self.max_pages = max_pages
        self.max_process_deaths = max_process_deaths
        self.inflight: dict[int, InFlight] = {}
        self.fetching = 0  # requests in flight whose exchange is not over
        self.inflight_pages = 0  # requests in flight that count against max_pages
        self.tickets = list(range(len(channels.released) - 1, -1, -1))
        self.queue_load: dict[int, int] = {}  # live fetch queue -> requests dispatched to it
        self.sent = [0] * len(channels.queues)  # by fetch queue: tasks put on it since it was last claimed
        self.parser_load = [0] * parsers
        self.next_id = 0
        self.deaths: dict[tuple[str, str], int] = {}  # (method, url) -> process deaths while it was on hand
        self.sites = sites if any("max_pages" in rule for rule in sites.setting.values()) else None
        self.crawl_count = crawl_count
        self.drop = drop
        self.cached = cached  # http_cache: the requests to send as hits, without a permit
        self.site_caps: dict[str, tuple[int, str]] = {}  # host -> (its max_pages or 0, its stats counter)
        self.site_inflight: dict[str, int] = {}  # host with a max_pages -> its pages in flight
        self.revalidate = revalidate
        self.batched = 0  # entries of revalidation batches in flight: not counted against max_inflight
        self.unchanged: list[InFlight] = []  # settled by a 304 notice; the engine finishes them
        self.render = render
        self.start_renderers = start_renderers
        self.render_pages = render_pages
        self.first_render = len(channels.queues) - channels.renderers  # the render queues come last
        self.render_load: dict[int, int] = {}  # live render queue -> pages dispatched to it

    def budget_spent(self) -> bool:
        """Whether the pages done and in flight reach ``max_pages``: nothing more is dispatched."""
        return bool(self.max_pages) and self.stats.counts["pages"] + self.inflight_pages >= self.max_pages

    def schedule(self, now: float) -> None:
        """Dispatch requests while there is room in flight and a host that may start now."""
        limiter, frontier, queue_load = self.limiter, self.frontier, self.queue_load
        while (self.fetching < self.concurrency and len(self.inflight) - self.batched < self.max_inflight
               and queue_load and not self.budget_spent()):
            queue = min(queue_load, key=queue_load.__getitem__)
            if queue_load[queue] >= self.threads:
                # Every live fetcher's threads are busy (the others are not up yet, or are being
                # replaced): a task queued now would wait behind slow exchanges, counted in flight.
                return
            host = frontier.next_host(now)
            if host is None:
                return
            spent = self.sites is not None and self._site_spent(host)
            if spent:
                if self.site_inflight.get(host):
                    frontier.park(host, None)  # until one is done: it may fail and leave room
                    continue
                taken = frontier.take(host)
                if taken is None:
                    continue
                if _is_page(taken[1]):
                    self._drop_over_site_budget(*taken)
                    continue
                frontier.reclaim(*taken)  # robots.txt, a sitemap: sent as usual
            taken = None
            if self.cached is not None and not spent:
                taken = frontier.take(host)
                if taken is None:
                    continue
                if self.cached.take(taken[1]):  # a hit: no permit, no delay, not even the fetcher's turn
                    if self.gate.may_start(host, *taken, now):
                        self._send(host, *taken, NO_GRANT, queue)
                    continue
            grant = limiter.try_acquire(host, now)
            if isinstance(grant, Wait):
                if taken is not None:
                    frontier.reclaim(*taken)
                frontier.park(host, grant.until)
                continue
            if taken is None:
                taken = frontier.take(host)
            if taken is None or not self.gate.may_start(host, *taken, now):
                limiter.release(host, grant)
                for woken in limiter.completed(host):
                    frontier.unpark(woken)
                continue
            lease, request = taken
            if spent and _is_page(request):
                limiter.release(host, grant)
                for woken in limiter.completed(host):
                    frontier.unpark(woken)
                self._drop_over_site_budget(lease, request)
                continue
            if self.render is not None and _is_page(request) and self.render.wants(request, host):
                queue = self._render_queue()
                if queue < 0:
                    limiter.release(host, grant)
                    for woken in limiter.completed(host):
                        frontier.unpark(woken)
                    frontier.reclaim(lease, request)
                    frontier.park(host, now + RENDER_WAIT)
                    continue
                self._send(host, lease, request, grant, queue, render=True)
                continue
            elif self.revalidate and _revalidates(request):
                self._send_batch(host, lease, request, grant, queue, now)
                continue
            self._send(host, lease, request, grant, queue)

    def _render_queue(self) -> int:
        """The render queue for a page to render, or -1: no renderer is up yet (the first ask starts them),
        or every one has its ``render_pages`` pages."""
        load = self.render_load
        if not load:
            assert self.start_renderers is not None  # given with ``render``
            self.start_renderers()
            return -1
        queue = min(load, key=load.__getitem__)
        return queue if load[queue] < self.render_pages else -1

    def _send(self, host: str, lease: int, request: Request, grant: int, queue: int, render: bool = False) -> None:
        """Put ``request`` in flight on fetch queue ``queue`` with the limiter's ``grant`` (``NO_GRANT``: none);
        a page to ``render`` goes as a ``RenderTask``, with its host's robots.txt rules for its sub-resources."""
        channels = self.channels
        page = _is_page(request)
        parser = min(range(len(self.parser_load)), key=self.parser_load.__getitem__)
        ticket = self.tickets.pop()
        channels.released[ticket] = 0
        channels.deadlines[ticket] = 0.0
        self.next_id += 1
        self.inflight[self.next_id] = InFlight(host, request, lease, grant, ticket, queue, parser)
        self.fetching += 1
        (self.render_load if queue >= self.first_render else self.queue_load)[queue] += 1
        self.parser_load[parser] += 1
        self.inflight_pages += page
        if page and self.sites is not None and self.site_caps[host][0]:
            self.site_inflight[host] = self.site_inflight.get(host, 0) + 1
        cookie = self.cookies.header_for(request.url) if self.cookies is not None else ""
        delay = 0.0 if grant == NO_GRANT else self.limiter.delay_of(host)
        if not render:
            channels.send(queue, FetchTask(self.next_id, grant, ticket, parser, delay, request, cookie))
        else:
            channels.send(queue, RenderTask(self.next_id, grant, ticket, parser, delay, request, cookie,
                                            self.gate.rules_of(host)))
        self.sent[queue] += 1

    def _send_batch(self, host: str, lease: int, request: Request, grant: int, queue: int, now: float) -> None:
        """Put ``request`` in flight in a revalidation batch with the host's next revisits, up to ``BATCH``,
        within the bounds in flight, max_pages and the host's own max_pages; robots.txt checked for each."""
        channels, frontier, inflight = self.channels, self.frontier, self.inflight
        parser = min(range(len(self.parser_load)), key=self.parser_load.__getitem__)
        batch = Batch()
        entries: list[tuple[int, int, Request, str]] = []
        while True:
            ticket = self.tickets.pop()
            channels.released[ticket] = 0
            channels.deadlines[ticket] = 0.0
            self.next_id += 1
            inflight[self.next_id] = InFlight(host, request, lease, grant, ticket, queue, parser, False, batch)
            self.parser_load[parser] += 1
            self.inflight_pages += 1
            if self.sites is not None and self.site_caps[host][0]:
                self.site_inflight[host] = self.site_inflight.get(host, 0) + 1
            cookie = self.cookies.header_for(request.url) if self.cookies is not None else ""
            entries.append((self.next_id, ticket, request, cookie))
            if (len(entries) >= BATCH or not self.tickets or self.budget_spent()
                    or self.sites is not None and self._site_spent(host)):
                break
            taken = frontier.take(host)
            while taken is not None and _revalidates(taken[1]) and not self.gate.may_start(host, *taken, now):
                taken = frontier.take(host)  # that one waits for robots.txt, or was disallowed
            if taken is None:
                break
            if not _revalidates(taken[1]) or (self.render is not None and self.render.wants(taken[1], host)):
                frontier.reclaim(*taken)
                break
            lease, request = taken
        batch.last, batch.members = entries[-1][1], len(entries)
        self.batched += len(entries)
        self.fetching += 1
        self.queue_load[queue] += 1
        delay = self.limiter.delay_of(host)
        channels.send(queue, RevalidateTask(grant, parser, delay, entries))
        self.sent[queue] += 1

    def _site_spent(self, host: str) -> bool:
        """Whether ``host`` has its own max_pages and its pages done and in flight reach it."""
        assert self.sites is not None  # asked only with per-site page limits
        cap = self.site_caps.get(host)
        if cap is None:
            cap = self.site_caps[host] = (self.sites.for_host(host).max_pages or 0, "pages_site:" + host)
        return bool(cap[0]) and self.crawl_count(cap[1]) + self.site_inflight.get(host, 0) >= cap[0]

    def _drop_over_site_budget(self, lease: int, request: Request) -> None:
        self.stats.incr("dropped_site_max_pages")
        log.debug("%s dropped: its host reached its own max_pages", request.url)
        self.drop(lease)

    def site_pages(self, host: str, pages: int) -> None:
        """Count the pages of a done request of ``host`` towards its own max_pages, if it has one."""
        if pages and self.sites is not None:
            cap = self.site_caps.get(host)
            if cap is not None and cap[0]:
                self.stats.incr(cap[1], pages)

    def read_notices(self, fd: int) -> bool:
        """Take the request ids whose exchanges are over from the notice Pipe's read end (8 bytes
        each, never split: see channels._notify); True if a fetcher announced it has joined."""
        data = os.read(fd, 8 * 4096)
        inflight = self.inflight
        joined = False
        for start in range(0, len(data), 8):
            req_id = int.from_bytes(data[start:start + 8], "little")
            if req_id & UNCHANGED:  # a revalidation batch's 304: the page is done
                entry = inflight.pop(req_id ^ UNCHANGED, None)
                if entry is not None:  # else it was re-queued
                    self._settle(entry)
                    self.unchanged.append(entry)
                continue
            entry = inflight.get(req_id)
            if entry is not None:  # else its PageDone came first, or it was re-queued
                self._exchange_over(entry)
            joined |= req_id == JOINED
        return joined

    def done(self, req_id: int) -> InFlight | None:
        """Settle the request whose PageDone arrived; None if it was re-queued meanwhile (its new copy counts)."""
        entry = self.inflight.pop(req_id, None)
        if entry is not None:
            self._settle(entry)
        return entry

    def queue_claimed(self, index: int) -> None:
        """A fetcher (or a renderer, for a render queue) has claimed fetch queue ``index``: tasks may go to it."""
        (self.render_load if index >= self.first_render else self.queue_load).setdefault(index, 0)

    def fetcher_died(self, index: int, pid: int, blamed: set[int] | None) -> list[InFlight]:
        """Take back every request sent to fetch queue ``index``, whose reader ``pid`` died; the dropped ones.

        ``blamed`` are the requests its death is blamed on (the overdue ones, when it was killed
        for stalling); None: it died by itself, so every request a thread of it had taken and
        not finished is blamed.
        """
        self.queue_load.pop(index, None)
        self.render_load.pop(index, None)
        lost = [i for i, e in self.inflight.items() if e.queue == index]
        if blamed is None:
            released, deadlines = self.channels.released, self.channels.deadlines
            blamed = {i for i in lost if deadlines[self.inflight[i].ticket] and not released[self.inflight[i].ticket]}
        dropped, requeued = self._reclaim(lost, blamed)
        log.warning("%s process %d died; re-queued its %d requests in flight",
                    "renderer" if index >= self.first_render else "fetcher", pid, requeued)
        return dropped

    def queue_freed(self, index: int) -> None:
        """Fetch queue ``index`` was emptied for a later fetcher: nothing sent on it is left."""
        self.sent[index] = 0

    def parser_died(self, index: int, pid: int | None, culprit: int) -> list[InFlight]:
        """Take back the requests whose results went to parser ``index``, which died working on
        request ``culprit`` (0: none); the dropped ones. Those still being fetched go to its successor."""
        released = self.channels.released
        lost = [i for i, e in self.inflight.items() if e.parser == index and released[e.ticket]]
        dropped, requeued = self._reclaim(lost, {culprit})
        if lost:
            log.warning("parser process %s died; re-queued its %d requests in flight", pid, requeued)
        return dropped

    def _exchange_over(self, entry: InFlight) -> None:
        """Return what a request held while being fetched (its host's count, its fetch queue's load), once;
        for a batch's entry, what the batch held."""
        hold = entry if entry.batch is None else entry.batch
        if not hold.fetching:
            return
        hold.fetching = False
        self.fetching -= 1
        if entry.slot != NO_GRANT:
            for woken in self.limiter.completed(entry.host):  # hosts at its address, with per_ip
                self.frontier.unpark(woken)
        self.frontier.unpark(entry.host)
        if entry.queue in self.queue_load:
            self.queue_load[entry.queue] -= 1
        elif entry.queue in self.render_load:
            self.render_load[entry.queue] -= 1

    def _settle(self, entry: InFlight) -> None:
        """Return what a request held while in flight (the above, its ticket and its parser's load); a batch's
        exchange is over at the latest when its last entry is settled."""
        batch = entry.batch
        if batch is None:
            self._exchange_over(entry)
        else:
            batch.members -= 1
            self.batched -= 1
            if not batch.members:
                self._exchange_over(entry)
        self.tickets.append(entry.ticket)
        self.parser_load[entry.parser] -= 1
        if _is_page(entry.request):
            self.inflight_pages -= 1
            left = self.site_inflight.get(entry.host)
            if left is not None:
                if left > 1:
                    self.site_inflight[entry.host] = left - 1
                else:
                    del self.site_inflight[entry.host]
                self.frontier.unpark(entry.host)  # parked while its budget waited for this one

    def _reclaim(self, ids: list[int], blamed: set[int]) -> tuple[list[InFlight], int]:
        """Take back the requests of a dead process: re-queue them, except the ``blamed`` ones that
        have now been on hand at ``max_process_deaths`` deaths (poison); those dropped, and how many re-queued.

        The per-host permits and send turns a request's fetcher never gave back are released here
        (a batch's permit once, with its first entry not released).
        """
        released, deadlines = self.channels.released, self.channels.deadlines
        dropped: list[InFlight] = []
        for req_id in ids:
            entry = self.inflight.pop(req_id)
            if not released[entry.ticket] and entry.slot != NO_GRANT:
                if entry.batch is None or entry.batch.permit:
                    self.limiter.release(entry.host, entry.slot)
                    if entry.batch is not None:
                        entry.batch.permit = False
                self.limiter.recover_turn(entry.host, entry.slot, entry.ticket)
                if deadlines[entry.ticket]:  # a fetch thread had taken it: perhaps sent
                    self.limiter.pause(entry.host, time.monotonic() + DEAD_EXCHANGE_GRACE)
            self._settle(entry)
            if req_id in blamed and self._poisonous(entry.request):
                dropped.append(entry)
            else:
                self.frontier.reclaim(entry.lease, entry.request)
        requeued = len(ids) - len(dropped)
        self.stats.incr("requeued", requeued)
        return dropped, requeued

    def _poisonous(self, request: Request) -> bool:
        """Count a process death on ``request``; True (logged and counted) when it reaches ``max_process_deaths``."""
        key = (request.method, request.url)
        deaths = self.deaths.get(key, 0) + 1
        if deaths < self.max_process_deaths:
            self.deaths[key] = deaths
            return False
        self.deaths.pop(key, None)
        self.stats.incr("dropped_poison")
        log.error("%s %s dropped: a crawlkit process died while on it %d times (max_process_deaths)",
                  request.method, request.url, deaths)
        return True


def batch_tickets(concurrency: int) -> int:
    """The tickets revalidation batches need besides the ``2 * concurrency`` of the other requests."""
    return concurrency * BATCH


def _revalidates(request: Request) -> bool:
    """Whether ``request`` may go in a revalidation batch: a page's revisit with validators, a GET without a body."""
    headers = request.headers
    return (bool(request.meta.get("revisit")) and request.method == "GET" and not request.body
            and ("If-None-Match" in headers or "If-Modified-Since" in headers) and _is_page(request))


def _is_page(request: Request) -> bool:
    """Whether a request counts against ``max_pages`` (robots.txt and sitemaps do not)."""
    return request.callback not in (ROBOTS_CALLBACK, SITEMAP_CALLBACK)
