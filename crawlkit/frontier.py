"""The frontier: requests waiting for their turn, grouped by host.

The engine asks for a host that may start now (``next_host``), pops that host's best request
(highest priority first, then first-come), and parks hosts that must wait: until a time
(delay, Retry-After, a retry's backoff) or until one of their requests completes (per-host cap
full). Parked hosts are skipped at no cost, so one slow host never delays the others.

Requests handed out travel on through the fetch queue (a ``multiprocessing.Queue``) to the
fetcher pool; the engine keeps each one in its in-flight table until the parser reports it done,
and puts it back here (``push``) if the process that held it died.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import Iterable, Protocol

from .http import Request
from .urls import host_of


_NOT_PARKED = object()


class Frontier(Protocol):
    """What the engine needs of a frontier (local, or Redis-backed for a shared crawl)."""

    def push(self, requests: Iterable[Request], not_before: float = 0.0) -> None: ...

    def next_host(self, now: float) -> str | None: ...

    def pop(self, host: str) -> Request: ...

    def park(self, host: str, until: float | None) -> None: ...

    def unpark(self, host: str) -> None: ...

    def __len__(self) -> int: ...


class LocalFrontier:
    """In-memory frontier: a heap of requests per host, a ring of hosts that may start now."""

    def __init__(self) -> None:
        self._queues: dict[str, list[tuple[int, int, Request]]] = {}
        self._ring: deque[str] = deque()  # hosts with requests, not parked (each at most once)
        self._in_ring: set[str] = set()
        self._parked: dict[str, float | None] = {}
        self._timers: list[tuple[float, int, str]] = []  # (until, seq, host) for timed parks
        self._later: list[tuple[float, int, Request]] = []  # requests not to start before a time
        self._seq = itertools.count()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, requests: Iterable[Request], not_before: float = 0.0) -> None:
        for request in requests:
            self._size += 1
            if not_before:
                heapq.heappush(self._later, (not_before, next(self._seq), request))
                continue
            self._enqueue(request)

    def _enqueue(self, request: Request) -> None:
        host = host_of(request.url)
        queue = self._queues.get(host)
        if queue is None:
            queue = self._queues[host] = []
        heapq.heappush(queue, (-request.priority, next(self._seq), request))
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
            self._enqueue(heapq.heappop(self._later)[2])
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
            if host in self._queues and host not in self._parked:
                ring.append(host)
                return host
            self._in_ring.discard(host)  # emptied or parked since it was offered: drop it lazily
        return None

    def pop(self, host: str) -> Request:
        queue = self._queues[host]
        request = heapq.heappop(queue)[2]
        self._size -= 1
        if not queue:
            del self._queues[host]
        return request

    def park(self, host: str, until: float | None) -> None:
        """Offer ``host`` no more until ``until`` (monotonic) or, with None, until ``unpark``."""
        self._parked[host] = until
        if until is not None:
            heapq.heappush(self._timers, (until, next(self._seq), host))

    def unpark(self, host: str) -> None:
        if self._parked.pop(host, _NOT_PARKED) is not _NOT_PARKED and host in self._queues:
            self._offer(host)

    def is_parked(self, host: str) -> bool:
        return host in self._parked
