"""The frontier: requests waiting for their turn, grouped by host.

The engine asks for a host that may start now (``next_host``), pops that host's best request
(highest priority first, then first-come), and parks hosts that must wait: until a time
(delay, Retry-After, a retry's backoff) or until one of their requests completes (per-host cap
full). Parked hosts are skipped at no cost, so one slow host never delays the others.

Beyond ``memory_limit`` requests, newly pushed ones spill to a SQLite file, first in first out,
and come back in batches as memory drains, so a crawl that discovers millions of URLs holds a
bounded number of them in RAM. Spilled requests keep their order but not their priority.

Requests are handed out with a lease (``take``) and finished with ``done`` or put back with
``reclaim``, so that a shared frontier (``crawlkit.backends.redis``) can return the work of a
dead machine. Here the lease is the entry's journal row (see ``crawlkit.backends.base``), kept
beside the request: the engine keeps each request in its in-flight table until the parser
reports it done, and reclaims it if the process that held it died.
"""

from __future__ import annotations

import heapq
import itertools
import pickle
import sqlite3
import tempfile
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from crawlkit.backends.base import Entry
from crawlkit.http import Request
from crawlkit.urls import host_of

_NOT_PARKED = object()


class _Spill:
    """Requests beyond the memory bound, in arrival order, in a throw-away SQLite file."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="crawlkit-frontier-")
        self._db = sqlite3.connect(Path(self._dir.name) / "spill.sqlite", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE spill (id INTEGER PRIMARY KEY, job INTEGER NOT NULL, request BLOB NOT NULL)")
        self.size = 0

    def put(self, entries: list[Entry]) -> None:
        self._db.execute("BEGIN")
        rows = ((job, pickle.dumps(r, pickle.HIGHEST_PROTOCOL)) for job, r in entries)
        self._db.executemany("INSERT INTO spill (job, request) VALUES (?, ?)", rows)
        self._db.execute("COMMIT")
        self.size += len(entries)

    def take(self, n: int) -> list[Entry]:
        rows = self._db.execute("SELECT id, job, request FROM spill ORDER BY id LIMIT ?", (n,)).fetchall()
        if rows:
            self._db.execute("DELETE FROM spill WHERE id <= ?", (rows[-1][0],))
        self.size -= len(rows)
        return [(job, pickle.loads(blob)) for _, job, blob in rows]

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()


class LocalFrontier:
    """A heap of requests per host and a ring of hosts that may start now; spills to disk past a bound."""

    def __init__(self, memory_limit: int = 0) -> None:
        self._queues: dict[str, list[tuple[int, int, int, Request]]] = {}  # host -> (-priority, seq, job, request)
        self._ring: deque[str] = deque()  # hosts with requests, not parked (each at most once)
        self._in_ring: set[str] = set()
        self._parked: dict[str, float | None] = {}
        self._timers: list[tuple[float, int, str]] = []  # (until, seq, host) for timed parks
        self._later: list[tuple[float, int, Entry]] = []  # entries not to start before a time
        self._seq = itertools.count()
        self._size = 0
        self._in_memory = 0
        self._limit = memory_limit  # 0: no bound
        self._spill: _Spill | None = None

    def __len__(self) -> int:
        return self._size

    @property
    def spilled(self) -> int:
        return self._spill.size if self._spill is not None else 0

    def push(self, entries: Iterable[Entry], not_before: float = 0.0) -> None:
        overflow: list[Entry] = []
        for entry in entries:
            self._size += 1
            if not_before:  # retries: few, and due soon
                heapq.heappush(self._later, (not_before, next(self._seq), entry))
            elif self._limit and (self._in_memory >= self._limit or self.spilled):
                overflow.append(entry)  # behind what is already on disk, to keep the order
            else:
                self._in_memory += 1
                self._enqueue(*entry)
        if overflow:
            if self._spill is None:
                self._spill = _Spill()
            self._spill.put(overflow)

    def _refill(self) -> None:
        spill = self._spill
        if spill is not None and spill.size and self._in_memory <= self._limit // 2:
            batch = spill.take(self._limit - self._in_memory)
            self._in_memory += len(batch)
            for job, request in batch:
                self._enqueue(job, request)

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()

    def _enqueue(self, job: int, request: Request) -> None:
        host = host_of(request.url)
        queue = self._queues.get(host)
        if queue is None:
            queue = self._queues[host] = []
        heapq.heappush(queue, (-request.priority, next(self._seq), job, request))
        self._offer(host)

    def _offer(self, host: str) -> None:
        if host not in self._in_ring and host not in self._parked:
            self._ring.append(host)
            self._in_ring.add(host)

    def next_time(self) -> float | None:
        """The earliest moment a parked host or a delayed request becomes ready, if any."""
        times = [heap[0][0] for heap in (self._timers, self._later) if heap]
        return min(times) if times else None

    def _wake(self, now: float) -> None:
        while self._later and self._later[0][0] <= now:
            self._in_memory += 1
            self._enqueue(*heapq.heappop(self._later)[2])
        while self._timers and self._timers[0][0] <= now:
            until, _, host = heapq.heappop(self._timers)
            if self._parked.get(host, _NOT_PARKED) == until:
                self.unpark(host)

    def next_host(self, now: float) -> str | None:
        """A host with queued requests that is not parked, in round-robin order; None if there is none."""
        self._wake(now)
        self._refill()
        ring = self._ring
        while ring:
            host = ring.popleft()
            if host in self._queues and host not in self._parked:
                ring.append(host)
                return host
            self._in_ring.discard(host)  # emptied or parked since it was offered: drop it lazily
        return None

    def take(self, host: str) -> tuple[int, Request] | None:
        """The host's best request, leased by its journal row: (job, request)."""
        queue = self._queues[host]
        _, _, job, request = heapq.heappop(queue)
        self._size -= 1
        self._in_memory -= 1
        if not queue:
            del self._queues[host]
        self._refill()
        return job, request

    def done(self, leases: list[int]) -> None:
        return None  # the engine's in-flight table is the lease; the journal marks rows done

    def reclaim(self, lease: int, request: Request) -> None:
        self.push([(lease, request)])

    def idle(self) -> bool:
        return self._size == 0

    def park(self, host: str, until: float | None) -> None:
        """Offer ``host`` no more until ``until`` (monotonic) or, with None, until ``unpark``."""
        self._parked[host] = until
        if until is not None:
            heapq.heappush(self._timers, (until, next(self._seq), host))

    def unpark(self, host: str) -> None:
        if self._parked.pop(host, _NOT_PARKED) is not _NOT_PARKED and host in self._queues:
            self._offer(host)
