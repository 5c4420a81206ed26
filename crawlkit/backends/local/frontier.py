"""The frontier: requests waiting for their turn, grouped by host.

The engine asks for a host that may start now (``next_host``), pops that host's best request
(``take``), and parks hosts that must wait: until a time (delay, Retry-After, a retry's
backoff) or until one of their requests completes (per-host cap full). Parked hosts are skipped
at no cost, so one slow host never delays the others.

A host's best request is the one of highest priority, then, breadth-first (the default), the
one of least depth, first come first; depth-first, the one of greatest depth, last come first
(the ``order`` setting). Hosts take turns (round-robin), whatever their backlog: a host with a
million requests waiting gets one turn a round, as does a host with ten.

Beyond ``memory_limit`` requests, newly pushed ones spill to a SQLite file, indexed by host and
by that same order (as do a host's new requests while it has some there, behind them), and each
host's best on disk is known in memory: ``take`` loads a batch of the host's best from disk when
its memory queue is empty or its best on disk comes first. So a crawl that discovers millions of
URLs holds a bounded number of them in RAM (``memory_limit``, and an eighth more for the
batches read back while memory is full), a spilled request
keeps its priority, and a small host whose requests were discovered after a big host's backlog
spilled takes its turns at once: hosts with requests only on disk are in the round too.

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
LOAD_MAX = 1_000  # requests of a host loaded from disk at once, at most (as many as memory has room for)
LOAD_MIN = 32  # requests of a host loaded from disk at once while memory may go an eighth past its bound
PRIORITY_BOUND = 2**62  # priorities beyond count as this: a spill row holds 64-bit integers
MAX_ORIGINS = 100_000  # URL starts whose host is remembered, at most (then forgotten, and remembered again)

#: A request's place in its host's queue, smallest first: (-priority, depth or -depth, seq or -seq).
Key = tuple[int, int, int]


def _bounded(priority: int) -> int:
    return max(-PRIORITY_BOUND, min(PRIORITY_BOUND, priority))


class _Spill:
    """Requests beyond the memory bound, by host and in their order, in a throw-away SQLite file."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="crawlkit-frontier-")
        self._db = sqlite3.connect(Path(self._dir.name) / "spill.sqlite", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE spill (host INTEGER NOT NULL, k1 INTEGER NOT NULL, k2 INTEGER NOT NULL, "
                         "k3 INTEGER NOT NULL, job INTEGER NOT NULL, request BLOB NOT NULL, "
                         "PRIMARY KEY (host, k1, k2, k3)) WITHOUT ROWID")
        self.size = 0

    def put(self, rows: list[tuple[int, int, int, int, int, bytes]]) -> None:
        """Store (host id, *key, job, pickled request) rows."""
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO spill (host, k1, k2, k3, job, request) VALUES (?, ?, ?, ?, ?, ?)", rows)
        self._db.execute("COMMIT")
        self.size += len(rows)

    def take(self, host: int, n: int) -> tuple[list[tuple[Key, int, Request]], Key | None]:
        """The host's ``n`` best rows as (key, job, request), removed; and the key of its best left, if any."""
        rows = self._db.execute("SELECT k1, k2, k3, job, request FROM spill WHERE host = ? "
                                "ORDER BY k1, k2, k3 LIMIT ?", (host, n + 1)).fetchall()
        taken, left = rows[:n], rows[n:]
        last = taken[-1]
        self._db.execute("DELETE FROM spill WHERE host = ? AND (k1, k2, k3) <= (?, ?, ?)", (host, *last[:3]))
        self.size -= len(taken)
        return ([((k1, k2, k3), job, pickle.loads(blob)) for k1, k2, k3, job, blob in taken],
                (left[0][0], left[0][1], left[0][2]) if left else None)

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()


class LocalFrontier:
    """A heap of requests per host and a ring of hosts that may start now; spills to disk past a bound."""

    def __init__(self, memory_limit: int = 0, depth_first: bool = False) -> None:
        self._queues: dict[str, list[tuple[int, int, int, int, Request]]] = {}  # host -> (*key, job, request)
        self._ring: deque[str] = deque()  # hosts with requests, not parked (each at most once)
        self._in_ring: set[str] = set()
        self._parked: dict[str, float | None] = {}
        self._timers: list[tuple[float, int, str]] = []  # (until, seq, host) for timed parks
        self._later: list[tuple[float, int, Entry]] = []  # entries not to start before a time
        self._seq = itertools.count()
        self._sign = -1 if depth_first else 1  # of depth and seq in a key
        self._size = 0
        self._in_memory = 0
        self._limit = memory_limit  # 0: no bound
        self._spill: _Spill | None = None
        self._host_ids: dict[str, int] = {}  # host -> its number in the spill file
        self._on_disk: dict[str, Key] = {}  # host with spilled requests -> the key of its best one
        self._hosts: dict[str, str] = {}  # a URL's start up to its path -> its host (host_of costs 1 us a URL)

    def __len__(self) -> int:
        return self._size

    @property
    def spilled(self) -> int:
        return self._spill.size if self._spill is not None else 0

    def push(self, entries: Iterable[Entry], not_before: float = 0.0) -> None:
        overflow: list[tuple[int, int, int, int, int, bytes]] = []  # rows of the spill file
        sign, seq, limit, on_disk, hosts = self._sign, self._seq, self._limit, self._on_disk, self._hosts
        for job, request in entries:
            self._size += 1
            if not_before:  # retries: few, and due soon
                heapq.heappush(self._later, (not_before, next(seq), (job, request)))
                continue
            url = request.url
            end = url.find("/", 8)  # the host is in what comes before the path: one look-up per origin
            host = hosts.get(url[:end]) if end > 0 else None
            if host is None:
                host = self._host_of(url, end)
            priority = request.priority
            if not -PRIORITY_BOUND <= priority <= PRIORITY_BOUND:
                priority = _bounded(priority)
            key = (-priority, sign * request.depth, sign * next(seq))
            best = on_disk.get(host) if limit else None
            if best is not None or (limit and self._in_memory >= limit):  # behind the host's requests on disk
                if best is None:
                    on_disk[host] = key
                    self._offer(host)
                elif key < best:
                    on_disk[host] = key
                overflow.append((self._host_ids.get(host) or self._host_id(host), *key, job,
                                 pickle.dumps(request, pickle.HIGHEST_PROTOCOL)))
            else:
                self._in_memory += 1
                self._enqueue(host, key, job, request)
        if overflow:
            if self._spill is None:
                self._spill = _Spill()
            self._spill.put(overflow)

    def _host_of(self, url: str, end: int) -> str:
        """``host_of(url)``, remembered for ``url[:end]`` (its scheme and netloc, and no ``/``:
        every URL that starts so has that host) when ``end`` is a path's first ``/``."""
        host = host_of(url)
        if end > 0:
            if len(self._hosts) >= MAX_ORIGINS:
                self._hosts.clear()
            self._hosts[url[:end]] = host
        return host

    def _key(self, request: Request) -> Key:
        sign = self._sign
        return -_bounded(request.priority), sign * request.depth, sign * next(self._seq)

    def _host_id(self, host: str) -> int:
        """The host's number in the spill file (from 1), given the first time it spills."""
        number = self._host_ids[host] = len(self._host_ids) + 1
        return number

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()

    def _enqueue(self, host: str, key: Key, job: int, request: Request) -> None:
        queue = self._queues.get(host)
        if queue is None:
            queue = self._queues[host] = []
        heapq.heappush(queue, (*key, job, request))
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
            job, request = heapq.heappop(self._later)[2]
            self._in_memory += 1  # retries: few, so memory takes them past its bound
            self._enqueue(host_of(request.url), self._key(request), job, request)
        while self._timers and self._timers[0][0] <= now:
            until, _, host = heapq.heappop(self._timers)
            if self._parked.get(host, _NOT_PARKED) == until:
                self.unpark(host)

    def next_host(self, now: float) -> str | None:
        """A host with queued requests that is not parked, in round-robin order; None if there is none."""
        self._wake(now)
        ring = self._ring
        while ring:
            host = ring.popleft()
            if (host in self._queues or host in self._on_disk) and host not in self._parked:
                ring.append(host)
                return host
            self._in_ring.discard(host)  # emptied or parked since it was offered: drop it lazily
        return None

    def take(self, host: str) -> tuple[int, Request] | None:
        """The host's best request, leased by its journal row: (job, request); None if it has none."""
        queue = self._queues.get(host)
        best = self._on_disk.get(host)
        if best is not None and (queue is None or best < queue[0][:3]):
            self._load(host)
            queue = self._queues[host]
        if queue is None:
            return None
        _, _, _, job, request = heapq.heappop(queue)
        self._size -= 1
        self._in_memory -= 1
        if not queue:
            del self._queues[host]
        return job, request

    def _load(self, host: str) -> None:
        """Move a batch of the host's best spilled requests into memory: as many as it has room for, and
        ``LOAD_MIN`` at least while memory is less than an eighth past its bound (a read for every
        request would cost more than the request), one at least."""
        assert self._spill is not None  # the host has requests on disk
        room, slack = self._limit - self._in_memory, self._limit + self._limit // 8 - self._in_memory
        rows, best = self._spill.take(self._host_ids[host], max(1, min(LOAD_MAX, max(room, min(LOAD_MIN, slack)))))
        if best is None:
            del self._on_disk[host]
        else:
            self._on_disk[host] = best
        self._in_memory += len(rows)
        for key, job, request in rows:
            self._enqueue(host, key, job, request)

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
        if self._parked.pop(host, _NOT_PARKED) is not _NOT_PARKED and (host in self._queues or host in self._on_disk):
            self._offer(host)
