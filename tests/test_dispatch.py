"""Dispatch on its own: ids and tickets, which fetch queue a task goes to, settling, and what a dead
process's requests become. No process or server: the channels are in-process queues and arrays,
and the limiter a fake that records what it was given back."""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading

from crawlkit.backends.base import NO_GRANT, Wait
from crawlkit.backends.local.backend import LocalBackend
from crawlkit.backends.local.frontier import LocalFrontier
from crawlkit.backends.local.jobdir import NullJournal
from crawlkit.core.dispatch import BATCH, Dispatch, batch_tickets
from crawlkit.extensions.robots import ROBOTS_CALLBACK, RobotsGate
from crawlkit.extensions.sitemaps import SITEMAP_CALLBACK
from crawlkit.fetch.cache import StoredAnswers, key
from crawlkit.fetch.channels import JOINED, UNCHANGED, FetchChannels
from crawlkit.http import Request
from crawlkit.messages import FetchTask, RevalidateTask
from crawlkit.settings import load_settings
from crawlkit.sites import SiteRules
from crawlkit.stats import Stats


class FakeLimiter:
    """Up to ``per_host`` grants a host, one slot per host; records what is given back."""

    permits = None

    def __init__(self, per_host: int = 100) -> None:
        self.per_host = per_host
        self.held: dict[str, int] = {}
        self.slots: dict[str, int] = {}
        self.released: list[tuple[str, int]] = []
        self.recovered: list[tuple[str, int, int]] = []
        self.completions: list[str] = []
        self.paused: list[str] = []

    def try_acquire(self, host: str, now: float) -> int | Wait:
        if self.held.get(host, 0) >= self.per_host:
            return Wait(None)
        self.held[host] = self.held.get(host, 0) + 1
        return self.slots.setdefault(host, len(self.slots))

    def release(self, host: str, grant: int) -> None:
        self.released.append((host, grant))

    def completed(self, host: str) -> tuple[()]:
        self.completions.append(host)
        self.held[host] -= 1
        return ()

    def delay_of(self, host: str) -> float:
        return 0.0

    def recover_turn(self, host: str, grant: int, ticket: int) -> None:
        self.recovered.append((host, grant, ticket))

    def pause(self, host: str, until: float) -> None:
        self.paused.append(host)


def make(queues: int = 2, threads: int = 2, concurrency: int = 8, parsers: int = 2, max_pages: int = 0,
         max_process_deaths: int = 3, hosts: dict[str, dict[str, int]] | None = None,
         dropped: list[int] | None = None, cached: StoredAnswers | None = None, revalidate: bool = False,
         ) -> tuple[Dispatch, LocalFrontier, FakeLimiter, FetchChannels]:
    tickets = 2 * concurrency + (batch_tickets(concurrency) if revalidate else 0)
    channels = FetchChannels(
        queues=[queue.SimpleQueue() for _ in range(queues)], ready=[threading.Semaphore(0) for _ in range(queues)],
        reads=[0] * queues, owners=[0] * queues, registrations=[None] * parsers, permits=None,
        released=bytearray(tickets), notices=None, deadlines=[0.0] * tickets, heartbeats=[0.0] * queues,
    )
    stats = Stats()
    backend = LocalBackend(load_settings(), stats, NullJournal(), multiprocessing.get_context("spawn"), tickets)
    frontier, limiter = backend.frontier, FakeLimiter()
    backend.limiter = limiter  # type: ignore[assignment]  # a fake that records what it is given back
    gate = RobotsGate(None, backend, stats, 0.0)
    dispatch = Dispatch(channels, frontier, limiter, gate, None, stats, threads=threads, parsers=parsers,
                        concurrency=concurrency, max_inflight=2 * concurrency, max_pages=max_pages,
                        max_process_deaths=max_process_deaths, sites=SiteRules(hosts or {}),
                        crawl_count=backend.crawl_count, drop=(dropped if dropped is not None else []).append,
                        cached=cached, revalidate=revalidate)
    return dispatch, frontier, limiter, channels


def sent(channels: FetchChannels, index: int) -> list[FetchTask | RevalidateTask]:
    tasks = []
    while not channels.queues[index].empty():
        tasks.append(channels.queues[index].get())
    return tasks


def urls(n: int, host: str = "a.test") -> list[tuple[int, Request]]:
    """Frontier entries (no journal row) for ``n`` pages of ``host``."""
    return [(0, Request(f"http://{host}/{i}")) for i in range(n)]


def notify(dispatch: Dispatch, *req_ids: int) -> bool:
    """Fetchers' notices, as they arrive on the notice Pipe."""
    reader, writer = os.pipe()
    try:
        os.write(writer, b"".join(i.to_bytes(8, "little") for i in req_ids))
        return dispatch.read_notices(reader)
    finally:
        os.close(reader)
        os.close(writer)


def test_nothing_is_sent_before_a_fetcher_claims_a_queue() -> None:
    dispatch, frontier, _, channels = make()
    frontier.push(urls(3))
    dispatch.schedule(0.0)
    assert not dispatch.inflight and len(frontier) == 3
    assert notify(dispatch, JOINED)  # the engine then takes the queue in
    dispatch.queue_claimed(1)
    dispatch.schedule(0.0)
    assert [t.req_id for t in sent(channels, 1)] == [1, 2] and not sent(channels, 0)  # two threads: two tasks


def test_ids_are_new_and_tickets_come_back_when_a_page_is_done() -> None:
    dispatch, frontier, limiter, channels = make(queues=1, threads=4)
    dispatch.queue_claimed(0)
    frontier.push(urls(4))
    dispatch.schedule(0.0)
    tasks = sent(channels, 0)
    assert [t.req_id for t in tasks] == [1, 2, 3, 4]
    assert len({t.ticket for t in tasks}) == 4
    assert sorted(t.parser for t in tasks) == [0, 0, 1, 1]  # least loaded parser
    entry = dispatch.done(2)
    assert entry is not None and entry.request.url == tasks[1].request.url
    assert dispatch.done(2) is None  # settled once
    assert limiter.completions == ["a.test"] and dispatch.fetching == 3
    assert tasks[1].ticket in dispatch.tickets and sorted(dispatch.parser_load) == [1, 2]
    frontier.push(urls(1, "b.test"))
    dispatch.schedule(0.0)
    assert [t.req_id for t in sent(channels, 0)] == [5]  # ids are never reused


def test_tasks_go_to_the_least_loaded_queue_and_never_past_its_threads() -> None:
    dispatch, frontier, _, channels = make(queues=3, threads=2, concurrency=16)
    dispatch.queue_claimed(0)
    dispatch.queue_claimed(2)
    frontier.push(urls(10))
    dispatch.schedule(0.0)
    on_0, on_2 = sent(channels, 0), sent(channels, 2)
    assert len(on_0) == 2 and len(on_2) == 2  # every thread busy: the rest wait
    assert not sent(channels, 1) and len(frontier) == 6
    assert dispatch.queue_load == {0: 2, 2: 2}
    assert not notify(dispatch, on_2[0].req_id)  # that exchange is over: a thread is free on queue 2
    assert dispatch.queue_load == {0: 2, 2: 1} and dispatch.fetching == 3
    dispatch.schedule(0.0)
    assert [t.req_id for t in sent(channels, 2)] == [5] and not sent(channels, 0)
    assert dispatch.sent == [2, 0, 3]


def test_concurrency_and_the_page_budget_bound_what_is_sent() -> None:
    dispatch, frontier, _, channels = make(queues=1, threads=10, concurrency=3)
    dispatch.queue_claimed(0)
    frontier.push(urls(10))
    dispatch.schedule(0.0)
    assert len(sent(channels, 0)) == 3  # concurrency
    dispatch, frontier, _, channels = make(queues=1, threads=10, max_pages=2)
    dispatch.queue_claimed(0)
    frontier.push(urls(10))
    dispatch.schedule(0.0)
    assert len(sent(channels, 0)) == 2 and dispatch.budget_spent()


def test_a_dead_fetchers_requests_are_requeued_with_their_permits_and_turns() -> None:
    dispatch, frontier, limiter, channels = make(queues=2, threads=3)
    dispatch.queue_claimed(0)
    dispatch.queue_claimed(1)
    frontier.push(urls(6))
    dispatch.schedule(0.0)
    taken, finished, waiting = sent(channels, 0)
    channels.deadlines[taken.ticket] = 5.0  # a thread took it: the death is blamed on it
    channels.deadlines[finished.ticket] = 5.0
    channels.released[finished.ticket] = 1  # exchange over, permit released by the fetcher
    dropped = dispatch.fetcher_died(0, 1234, None)
    assert not dropped
    assert set(dispatch.inflight) == {2, 4, 6}  # queue 1's requests are untouched
    assert len(frontier) == 3 and 0 not in dispatch.queue_load
    # The permits and send turns the dead fetcher never gave back; not that of the finished one.
    assert sorted(t for _, _, t in limiter.recovered) == sorted([taken.ticket, waiting.ticket])
    assert len(limiter.released) == 2
    # The host of the one a thread had taken (perhaps sent) waits before the re-sent request goes.
    assert limiter.paused == ["a.test"]
    assert dispatch.deaths == {("GET", taken.request.url): 1}  # only the taken one is blamed
    assert dispatch.stats.counts["requeued"] == 3
    assert dispatch.sent[0] == 3
    dispatch.queue_freed(0)
    assert dispatch.sent[0] == 0


def test_a_request_on_hand_at_max_process_deaths_is_dropped_as_poison() -> None:
    dispatch, frontier, _, channels = make(queues=1, threads=1, max_process_deaths=2)
    dispatch.queue_claimed(0)
    frontier.push([(0, Request("http://a.test/poison"))])
    for death in range(2):
        dispatch.schedule(0.0)
        (task,) = sent(channels, 0)
        channels.deadlines[task.ticket] = 1.0
        dropped = dispatch.fetcher_died(0, 100 + death, {task.req_id})  # killed: blame the overdue one
        dispatch.queue_claimed(0)  # its replacement
    assert [e.request.url for e in dropped] == ["http://a.test/poison"]
    assert len(frontier) == 0 and not dispatch.inflight and dispatch.deaths == {}
    assert dispatch.stats.counts["dropped_poison"] == 1 and dispatch.stats.counts["requeued"] == 1
    assert len(dispatch.tickets) == dispatch.max_inflight and dispatch.fetching == 0


def test_a_dead_parser_gives_back_the_pages_it_had_and_blames_only_its_own() -> None:
    dispatch, frontier, limiter, channels = make(queues=1, threads=4, parsers=2, max_process_deaths=1)
    dispatch.queue_claimed(0)
    frontier.push(urls(4))
    dispatch.schedule(0.0)
    tasks = sent(channels, 0)
    to_0 = [t for t in tasks if t.parser == 0]
    fetched, fetching = to_0
    channels.released[fetched.ticket] = 1  # its result went down the dead parser's Pipe
    dropped = dispatch.parser_died(0, 4321, fetched.req_id)
    assert [e.request.url for e in dropped] == [fetched.request.url]  # max_process_deaths 1: poison at once
    assert fetching.req_id in dispatch.inflight  # still being fetched: its result goes to the next parser
    assert fetched.req_id not in dispatch.inflight and len(frontier) == 0
    assert not limiter.released  # the fetcher released that permit itself
    dropped = dispatch.parser_died(1, 4322, 0)  # died between pages: nothing blamed, nothing of its own fetched
    assert not dropped and len(dispatch.inflight) == 3


def test_a_host_with_its_own_max_pages_gets_that_many_and_its_other_pages_are_dropped() -> None:
    dropped: list[int] = []
    dispatch, frontier, _, channels = make(queues=1, threads=8, hosts={"a.test": {"max_pages": 3}}, dropped=dropped)
    dispatch.stats.resume({"pages": 1, "pages_site:a.test": 1})  # a resumed crawl: one page of a.test done before
    dispatch.queue_claimed(0)
    frontier.push([(job, Request(f"http://a.test/{job}")) for job in range(1, 6)] + urls(2, "b.test"))
    dispatch.schedule(0.0)
    tasks = {t.req_id: t.request.url for t in sent(channels, 0)}
    assert sorted(tasks.values()) == ["http://a.test/1", "http://a.test/2", "http://b.test/0", "http://b.test/1"]
    assert not dropped  # a.test waits: a page in flight may fail and leave room
    first, second = (i for i, url in tasks.items() if "a.test" in url)
    dispatch.done(first)  # failed: no page counted
    dispatch.schedule(0.0)
    assert [t.request.url for t in sent(channels, 0)] == ["http://a.test/3"]
    for req_id in (second, max(tasks) + 1):
        dispatch.done(req_id)
        dispatch.site_pages("a.test", 1)
    dispatch.schedule(0.0)
    assert dropped == [4, 5] and not sent(channels, 0)  # dropped unsent, by their journal rows
    assert dispatch.stats.counts["pages_site:a.test"] == 3 and dispatch.stats.counts["dropped_site_max_pages"] == 2
    assert "pages_site:b.test" not in dispatch.stats.counts and len(frontier) == 0


def test_a_cache_hit_goes_out_without_a_permit_and_once_only() -> None:
    # One grant a host: the two stored pages go out beside the one that is not, then the host is full.
    entries = urls(4)
    stored = StoredAnswers({key(entries[1][1]), key(entries[2][1])})
    dispatch, frontier, limiter, channels = make(queues=1, threads=8, cached=stored)
    limiter.per_host = 1
    dispatch.queue_claimed(0)
    frontier.push(entries)
    dispatch.schedule(0.0)
    tasks = {t.request.url: t for t in sent(channels, 0)}
    assert set(tasks) == {"http://a.test/0", "http://a.test/1", "http://a.test/2"}
    assert tasks["http://a.test/1"].slot == tasks["http://a.test/2"].slot == NO_GRANT
    assert tasks["http://a.test/1"].delay == 0.0 and tasks["http://a.test/0"].slot != NO_GRANT
    assert limiter.held == {"a.test": 1} and not stored.names  # each listed answer is taken once
    # A hit's end gives nothing back to the limiter; its own request, again, takes a permit.
    notify(dispatch, tasks["http://a.test/1"].req_id)
    assert dispatch.done(tasks["http://a.test/1"].req_id) is not None and not limiter.completions
    dispatch.done(tasks["http://a.test/0"].req_id)
    frontier.push([(0, Request("http://a.test/1"))])
    dispatch.schedule(0.0)
    assert {t.request.url: t.slot != NO_GRANT for t in sent(channels, 0)} == {"http://a.test/3": True}

class WakingLimiter(FakeLimiter):
    """A limiter whose completions at a.test's address wake b.test (what ``per_ip`` does for hosts of one server)."""

    def completed(self, host: str) -> tuple[str, ...]:
        super().completed(host)
        return ("b.test",) if host == "a.test" else ()


def test_a_page_dropped_over_its_hosts_budget_after_its_grant_still_wakes_the_hosts_waiting_at_its_address() -> None:
    dropped: list[int] = []
    dispatch, frontier, _, channels = make(queues=1, threads=8, hosts={"a.test": {"max_pages": 1}}, dropped=dropped)
    limiter = dispatch.limiter = WakingLimiter()
    dispatch.stats.resume({"pages": 1, "pages_site:a.test": 1})  # a.test's one page is done
    dispatch.queue_claimed(0)
    # The sitemap is taken first, given back behind the page, and the page then comes with the grant.
    frontier.push([(1, Request("http://a.test/sitemap.xml", callback=SITEMAP_CALLBACK)), (2, Request("http://a.test/p"))])
    frontier.push(urls(1, "b.test"))
    frontier.park("b.test", None)  # waiting for a completion at its address
    dispatch.schedule(0.0)
    assert dropped == [2] and limiter.completions == ["a.test"]
    assert sorted(t.request.url for t in sent(channels, 0)) == ["http://a.test/sitemap.xml", "http://b.test/0"]


# ------------------------------------------------------------------ revalidation batches (a recrawl round)


def revisit(path: str, host: str = "a.test", **headers: str) -> Request:
    """A recrawl's revisit of a known page, as the journal queues it (its validators as conditional headers)."""
    request = Request(f"http://{host}{path}", headers=headers or {"If-None-Match": '"v1"'})
    request.meta["revisit"] = True
    return request


def test_a_hosts_revisits_with_validators_go_in_one_batch_under_one_permit() -> None:
    dispatch, frontier, limiter, channels = make(revalidate=True)
    dispatch.queue_claimed(0)
    frontier.push([(0, revisit(f"/{i}")) for i in range(BATCH + 5)])
    frontier.push([(0, revisit("/modified", **{"If-Modified-Since": "Mon, 02 Nov 2026 10:00:00 GMT"}))])
    dispatch.schedule(0.0)
    first, second = sent(channels, 0)
    assert isinstance(first, RevalidateTask) and isinstance(second, RevalidateTask)
    assert len(first.entries) == BATCH and len(second.entries) == 6  # the rest: another permit, another batch
    assert limiter.held["a.test"] == 2 and dispatch.fetching == 2 and dispatch.queue_load[0] == 2
    ids = [req_id for req_id, _, _, _ in first.entries + second.entries]
    tickets = [ticket for _, ticket, _, _ in first.entries + second.entries]
    assert ids == list(range(1, BATCH + 7)) and len(set(tickets)) == len(tickets)  # an id and a ticket each
    assert len(dispatch.inflight) == BATCH + 6 and dispatch.inflight_pages == BATCH + 6 == dispatch.batched


def test_batches_of_many_hosts_go_out_at_once_beyond_the_bound_in_flight_of_other_requests() -> None:
    """Batched revisits have tickets of their own and do not count against ``2 * concurrency``: one batch
    does not hold up the other hosts, whose batches (and plain requests) go out beside it."""
    dispatch, frontier, _, channels = make(queues=1, threads=8, concurrency=4, revalidate=True)
    dispatch.queue_claimed(0)
    for host in ("a.test", "b.test", "c.test"):
        frontier.push([(0, revisit(f"/{i}", host=host)) for i in range(BATCH)])
    frontier.push(urls(20, host="d.test"))
    dispatch.schedule(0.0)
    tasks = sent(channels, 0)
    batches = [t for t in tasks if isinstance(t, RevalidateTask)]
    assert sorted(len(t.entries) for t in batches) == [BATCH] * 3 and len(tasks) == 4  # concurrency 4: one more
    assert len(dispatch.inflight) == 3 * BATCH + 1 and dispatch.fetching == 4


def test_only_revisits_that_a_304_can_end_go_in_a_batch() -> None:
    """Not a page without validators, a POST, a GET with a body, a first visit, robots.txt; nor any revisit
    when batches are off (``Engine._revalidates``: the WARC, recrawl_callbacks_on_304, middlewares...)."""
    def one(request: Request, revalidate: bool = True) -> FetchTask | RevalidateTask:
        dispatch, frontier, _, channels = make(revalidate=revalidate)
        dispatch.queue_claimed(0)
        frontier.push([(0, request), (0, revisit("/next"))])
        dispatch.schedule(0.0)
        return sent(channels, 0)[0]

    bare = Request("http://a.test/bare")
    bare.meta["revisit"] = True  # known, but it sent no ETag or Last-Modified: a 304 cannot come
    post = revisit("/post")
    post.method = "POST"
    body = revisit("/body")
    body.body = b"q=1"
    robots = revisit("/robots.txt")
    robots.callback = ROBOTS_CALLBACK
    for request in (bare, post, body, Request("http://a.test/new"), robots):
        assert isinstance(one(request), FetchTask), request
    assert isinstance(one(revisit("/a"), revalidate=False), FetchTask)
    batch = one(revisit("/a"))
    assert isinstance(batch, RevalidateTask) and [r.url for _, _, r, _ in batch.entries] == [
        "http://a.test/a", "http://a.test/next"]


def test_a_batch_stops_at_a_request_it_cannot_take_and_at_the_page_budgets() -> None:
    dispatch, frontier, _, channels = make(revalidate=True)
    dispatch.queue_claimed(0)
    first_visit = Request("http://a.test/z-new")
    frontier.push([(0, revisit("/a")), (0, revisit("/b")), (0, first_visit)])
    dispatch.schedule(0.0)
    batch, alone = sent(channels, 0)
    assert isinstance(batch, RevalidateTask) and len(batch.entries) == 2
    assert isinstance(alone, FetchTask) and alone.request is first_visit  # given back, sent on its own

    dispatch, frontier, _, channels = make(max_pages=3, revalidate=True)
    dispatch.queue_claimed(0)
    frontier.push([(0, revisit(f"/{i}")) for i in range(10)])
    dispatch.schedule(0.0)
    assert [len(t.entries) for t in sent(channels, 0)] == [3]  # type: ignore[union-attr]

    dispatch, frontier, _, channels = make(hosts={"a.test": {"max_pages": 2}}, revalidate=True)
    dispatch.queue_claimed(0)
    frontier.push([(0, revisit(f"/{i}")) for i in range(10)] + [(0, revisit("/0", host="b.test"))])
    dispatch.schedule(0.0)
    assert sorted(len(t.entries) for t in sent(channels, 0)) == [1, 2]  # type: ignore[union-attr]


def one_batch(pages: int) -> tuple[Dispatch, LocalFrontier, FakeLimiter, FetchChannels, RevalidateTask]:
    """A dispatch that sent revisits of ``pages`` pages of one host as one batch, its frontier, limiter,
    channels and the batch."""
    dispatch, frontier, limiter, channels = make(revalidate=True)
    dispatch.queue_claimed(0)
    frontier.push([(0, revisit(f"/{i}")) for i in range(pages)])
    dispatch.schedule(0.0)
    (task,) = sent(channels, 0)
    assert isinstance(task, RevalidateTask)
    return dispatch, frontier, limiter, channels, task

def test_a_batchs_304s_settle_their_entries_and_its_permit_is_over_with_its_notice() -> None:
    dispatch, _, limiter, channels, task = one_batch(4)
    ids = [req_id for req_id, _, _, _ in task.entries]
    # /2 changed: its FetchResult went to a parser, whose PageDone may come before the batch is over.
    assert dispatch.done(ids[2]) is not None
    assert dispatch.fetching == 1 and limiter.completions == []  # the batch is still sending
    for _, ticket, _, _ in task.entries:
        channels.released[ticket] = 1
    notify(dispatch, ids[3], *(UNCHANGED | i for i in (ids[0], ids[1], ids[3])))
    assert [e.request.url for e in dispatch.unchanged] == ["http://a.test/0", "http://a.test/1", "http://a.test/3"]
    assert dispatch.fetching == 0 and limiter.completions == ["a.test"]  # once for the batch
    assert not dispatch.inflight and dispatch.inflight_pages == 0 and dispatch.batched == 0
    assert sorted(dispatch.tickets) == list(range(len(channels.released)))
    notify(dispatch, UNCHANGED | ids[0])  # a 304 of an entry settled already (re-queued): nothing happens
    assert len(dispatch.unchanged) == 3


def test_a_fetcher_dead_mid_batch_gives_back_the_permit_once_and_requeues_the_entries_not_answered() -> None:
    dispatch, frontier, limiter, channels, task = one_batch(5)
    (_, t0, _, _), (id1, t1, _, _), (_, t2, _, _) = task.entries[:3]
    channels.released[t0] = 1  # /0 answered 304 (not reported yet: the batch's notices come at its end)
    channels.released[t1] = 1  # /1 changed: its PageDone came
    assert dispatch.done(id1) is not None
    channels.deadlines[t2] = 100.0  # /2 on hand when the fetcher died
    assert dispatch.fetcher_died(0, 1234, None) == []
    assert limiter.released == [("a.test", task.slot)]  # the batch's one permit, once
    assert [ticket for _, _, ticket in limiter.recovered] == [e[1] for e in task.entries[2:]]
    assert limiter.paused == ["a.test"]  # /2 may have been sent
    requeued = iter(lambda: frontier.take("a.test"), None)
    assert sorted(r.url for _, r in requeued) == [
        "http://a.test/0", "http://a.test/2", "http://a.test/3", "http://a.test/4"]  # /0 again: never reported
    assert not dispatch.inflight and dispatch.fetching == 0 and dispatch.stats.counts["requeued"] == 4
