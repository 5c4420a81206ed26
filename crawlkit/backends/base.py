"""The backend interface: where a crawl keeps its state, as the engine and the robots.txt gate see it.

A ``CrawlBackend`` holds the frontier, the seen-URL store, the per-host limiter, the robots.txt
answers, a stats sink and the journal. ``crawlkit.backends.open_backend`` picks one from the
settings: ``LocalBackend`` (this machine: memory and disk frontier, Semaphores, a Manager seen
store, the job directory) or ``RedisBackend`` (one crawl on many nodes). Every difference in
behaviour between them is a property or a method here, so no code outside ``crawlkit.backends``
asks which one it has.

Requests enter the frontier as *entries*, ``(job, request)``: ``job`` is the request's row in the
journal (0 when it has none). The frontier hands a request out with a *lease* and the engine
gives the lease back to ``Frontier.done`` and ``Journal.done``. A local frontier's lease is the
entry's job, so the journal row rides beside the request, never in its ``meta``; a shared
frontier makes leases of its own (it has no journal).

Everything here runs in the engine's process, except ``Permits``, which every fetcher inherits.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Protocol

from crawlkit.http import Request
from crawlkit.log import LogConfig
from crawlkit.messages import Validators

#: A request on its way into the frontier, with its journal row (0: not journaled).
Entry = tuple[int, Request]
#: The slot of a request dispatched without a permit (an http_cache hit): no fetcher releases it, no turn is taken.
NO_GRANT = -1


@dataclass(slots=True)
class Wait:
    until: float | None  # monotonic time to ask again, or None: after a completion of this host


class Frontier(Protocol):
    """Requests waiting for their turn, by host; handed out with leases."""

    def push(self, entries: Iterable[Entry], not_before: float = 0.0) -> None:
        """Queue requests, none to start before ``not_before`` (monotonic; 0: now)."""
        ...

    def next_host(self, now: float) -> str | None:
        """A host with queued requests that is not parked, in turn; None if there is none."""
        ...

    def take(self, host: str) -> tuple[int, Request] | None:
        """Lease the host's best request: (lease, request); None if the host has none left."""
        ...

    def done(self, leases: list[int]) -> None:
        """Finish leases. Call it only after the pages' new requests were pushed, so that an
        empty frontier with nothing in flight really means the crawl is over."""
        ...

    def reclaim(self, lease: int, request: Request) -> None:
        """Put a leased request back (its process died, or it cannot start after all)."""
        ...

    def idle(self) -> bool:
        """No request queued or (for a shared frontier) in flight on any other node."""
        ...

    def next_time(self) -> float | None:
        """The earliest moment a parked host or a delayed request becomes ready, if any."""
        ...

    def park(self, host: str, until: float | None) -> None:
        """Offer ``host`` no more until ``until`` (monotonic) or, with None, until ``unpark``."""
        ...

    def unpark(self, host: str) -> None: ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...


class Permits(Protocol):
    """The fetcher's side of a limiter: inherited (or unpickled) by every fetcher process."""

    def release(self, slot: int, host: str) -> None:
        """The exchange is over: free the host's permit (called by the fetch thread, never blocks)."""
        ...

    def turn(self, slot: int, host: str, delay: float, timeout: float, ticket: int) -> AbstractContextManager[None]:
        """Around sending request ``ticket`` to a host with a delay: spaces the sends as the server sees them."""
        ...


class Limiter(Protocol):
    """Per-host politeness in the engine: a cap on requests in flight and a delay between starts."""

    @property
    def permits(self) -> Permits: ...

    def try_acquire(self, host: str, now: float) -> int | Wait:
        """A slot number to send with the request, or when to try again. Never blocks."""
        ...

    def release(self, host: str, grant: int) -> None:
        """Free a permit that no fetcher will release (never sent, or its fetcher died)."""
        ...

    def completed(self, host: str) -> Collection[str]:
        """A request to ``host`` has finished everywhere (its permit was released by the fetcher);
        the other hosts that waited for it (``per_ip``: a completion at their address), to offer again."""
        ...

    def set_delay(self, host: str, seconds: float) -> None:
        """Raise the host's delay between request starts (robots.txt Crawl-delay)."""
        ...

    def pause(self, host: str, until: float) -> None:
        """Start nothing for ``host`` before ``until`` (Retry-After)."""
        ...

    def delay_of(self, host: str) -> float:
        """Seconds between request starts to ``host`` (the fetcher enforces it at send time)."""
        ...

    def limits(self, host: str) -> tuple[int, float]:
        """The host's configured (per_host, least delay): its rule's or the crawl's, the delay raised
        by its robots.txt Crawl-delay. Adaptive politeness stays within them."""
        ...

    def pace(self, host: str) -> tuple[int, float]:
        """The host's (per_host, delay) in force now, as every node of the crawl sees it."""
        ...

    def adapt(self, host: str, per_host: int, delay: float) -> None:
        """Put the host's cap and delay in force (within ``limits``), for every node of the crawl."""
        ...

    def recover_turn(self, host: str, grant: int, ticket: int) -> None:
        """Give back the send turn of ``host`` if the dead fetcher sending request ``ticket`` held it."""
        ...


class SeenStore(Protocol):
    """Which request fingerprints the crawl has met already."""

    def add_many(self, fingerprints: list[int]) -> list[int]:
        """Add all; return those that were not there before, in the given order (one atomic call)."""
        ...

    def claim(self, fingerprint: int) -> bool:
        """Mark one fingerprint seen, now, on every node; whether it was new (atomic: of two callers, one wins)."""
        ...

    def count(self) -> int: ...


class Journal(Protocol):
    """What a crawl writes down to be resumed after any stop: ``JobDir``, or ``NullJournal`` without one."""

    @property
    def durable(self) -> bool:
        """Whether it keeps anything: the engine then commits after every batch, and a refused
        write can be resumed from the last commit."""
        ...

    @property
    def resuming(self) -> bool:
        """Whether it holds a crawl to go on with (its pending requests replace the seeds)."""
        ...

    def begin(self, output: str) -> tuple[int, dict[str, int]] | None:
        """Start a run writing to ``output`` (a path, or "" for none): None for a new crawl; when
        resuming, the output bytes that belong to committed work and the stats to go on from (none
        for a new recrawl round of a finished crawl)."""
        ...

    def add(self, items: Iterable[tuple[int | None, Request]]) -> list[Entry]:
        """Journal newly admitted (fingerprint, request) pairs as pending; their frontier entries."""
        ...

    def done(self, job: int, status: int | None = None, validators: Validators | None = None) -> None:
        """Mark a journaled request finished (job 0, a request not journaled, is ignored), with the
        status and (ETag, Last-Modified) of its answer when it was fetched (what a recrawl revisits with)."""
        ...

    def commit(self, output_bytes: int, stats: dict[str, int]) -> None:
        """Make everything so far durable with the output length it corresponds to (flushed first)."""
        ...

    def relist(self, listed: list[tuple[int, Request]]) -> list[Entry]:
        """Known pages a sitemap lists again with a ``meta["sitemap_lastmod"]`` (fingerprint, request): in a
        recrawl, the frontier entries of those changed since their last fetch, made pending again as revisits."""
        ...

    def fingerprints(self) -> Iterator[list[int]]:
        """Every fingerprint ever admitted, in batches, to refill a seen-URL store."""
        ...

    def pending(self, batch: int) -> Iterator[list[Entry]]:
        """The requests left pending by the crawl being resumed, in batches of frontier entries."""
        ...

    def pending_count(self) -> int: ...

    def robots(self) -> Iterator[tuple[str, int, bytes]]:
        """The robots.txt answers kept: (host, status, body)."""
        ...

    def save_robots(self, host: str, status: int, body: bytes) -> None: ...

    def close(self, commit: bool = True) -> None: ...


class CrawlBackend(Protocol):
    """One crawl's state, as the engine (and ``RobotsGate``) is typed against it.

    Built by ``open_backend`` in the engine's process before any process starts; ``start`` is
    called once, before the first request is taken, and ``close`` once, after the last.
    """

    @property
    def frontier(self) -> Frontier: ...

    @property
    def seen(self) -> SeenStore: ...

    @property
    def limiter(self) -> Limiter: ...

    @property
    def journal(self) -> Journal: ...

    @property
    def frontier_limit(self) -> int:
        """Requests the frontier should hold before seeds and resumed requests wait (0: no bound)."""
        ...

    @property
    def robots_rechecks(self) -> int:
        """How many times an unavailable robots.txt is asked again."""
        ...

    @property
    def robots_checked_on_take(self) -> bool:
        """True when requests of a host whose robots.txt is not known yet are queued at once
        (so no node's death loses them) and checked when taken; False when they wait for the
        answer in this process."""
        ...

    @property
    def needs_seeds(self) -> bool:
        """Whether a crawl without start requests has nothing to do (a node may join a shared one without)."""
        ...

    def start(self, ctx: BaseContext, log_config: LogConfig, died: Callable[[str], None]) -> None:
        """Start what the backend runs (processes, a node's registration); ``died(kind)`` counts
        a death of one of its processes towards the crawl's crash-loop limit."""
        ...

    def robots_answer(self, host: str) -> tuple[int, bytes] | None:
        """The robots.txt answer (status, body) kept elsewhere for ``host`` (another node's), if any."""
        ...

    def save_robots(self, host: str, status: int, body: bytes) -> None:
        """Keep a host's final robots.txt answer (for a resume, or for the other nodes)."""
        ...

    def report(self, counts: dict[str, int]) -> None:
        """Add what the stats counted since the last report to the crawl's totals."""
        ...

    def totals(self) -> tuple[str, dict[str, int]] | None:
        """(crawl id, counts of all nodes) of a crawl shared with other nodes; None for one of this node alone."""
        ...

    def crawl_count(self, key: str) -> int:
        """Stats counter ``key`` (a host's ``pages_site:HOST``) for the whole crawl: this node's,
        plus, in a shared crawl, the other nodes' as last read (``tick`` reads them again)."""
        ...

    def tick(self, now: float) -> None:
        """Called on every pass of the engine's loop (monotonic ``now``); does its periodic work when due."""
        ...

    def close(self) -> None:
        """Stop what ``start`` started and give back what this node holds; the journal is closed by its owner."""
        ...
