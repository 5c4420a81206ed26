"""Per-host politeness: at most ``per_host`` requests in flight to a host, and ``delay`` between starts.

A host's ``per_host`` and ``delay`` are the crawl's, or its own from the ``hosts`` setting
(``crawlkit.sites``), lowered and raised within those by adaptive politeness (``adapt``; see
``crawlkit.core.politeness``). A robots.txt Crawl-delay raises a host's least delay.

The cap is held by ``multiprocessing`` Semaphores, one per *slot*. The engine gives each host
with work in flight a slot of its own and acquires it (without blocking) before it dispatches a
request; the fetcher process releases it the moment the HTTP exchange is over. So the count the
server sees is at most the count of acquired permits, whichever process holds them. A slot
serves one host at a time and hosts differ in their caps, so each semaphore is sized for the
largest cap, and the engine holds a host's own cap by its count of the host's requests in
flight: that count rises before a permit is acquired and falls only after the fetcher's notice
that the exchange is over, so it is never below the permits held.

Total in-flight never exceeds ``concurrency``, so no more than ``concurrency`` hosts hold a
slot at once: that many semaphores are made up front (semaphores reach other processes only by
inheritance) and a slot returns to the free list when its host has nothing in flight.

With ``per_ip``, what is counted and spaced is the host's *address* (``addresses.py``, resolved
off the engine's loop): the hosts of one server share a slot, so their requests in flight
together stay within each one's cap, and the delay spaces them all. A host that waits for a
request of another host at its address to complete is offered again by that completion
(``completed`` names it).

``delay`` is kept twice. The engine spaces its dispatches, so no request waits in a fetcher
for long; and the fetcher sends inside a ``Turn`` of the slot: it waits until ``delay`` after
the previous request to the host got its response headers (``starts``, shared memory) and holds
the slot's lock until its own headers arrive. So the spacing holds as the server sees it, even
when one request spent longer in a queue, or in connecting, than the next.

Fetchers see only ``permits`` (``SemaphorePermits`` here, ``RedisPermits`` for a shared crawl):
``release`` when the exchange is over, ``turn`` around sending to a host with a delay.

A fetcher process can die holding either. Its permits are found by ticket (the engine knows
which were never released). Its turn is found the same way: a ``Turn`` marks its request's
ticket in shared memory (``holders``) while it holds the slot's lock, so the engine's
dead-fetcher path gives back exactly the turns that process held (``recover_turn``). The
marker is written just after the lock is taken and cleared just before it is given up; a
death between those few instructions and the lock call leaves a lock no marker names, and
only then does the next sender wait out the ``timeout`` its ``Turn`` was given.

A host that cannot start now is told when to ask again: at a time (delay, Retry-After) or after
one of its requests completes (``None``). That lets the engine park it instead of polling, so a
busy host never holds up requests for other hosts.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from multiprocessing.context import BaseContext
from typing import Any

from crawlkit.backends.base import Wait
from crawlkit.backends.local.addresses import AddressCache
from crawlkit.sites import SiteRules

#: Seconds a host whose address is being resolved waits before it asks again.
RESOLVING = 0.02


class LocalLimiter:
    """Semaphore-backed limiter for one machine; lives in the engine, its semaphores in every fetcher.

    ``rules`` are the ``hosts`` setting's: a host's own ``per_host`` and ``delay`` replace the
    crawl's for it. ``per_ip``: hosts at one address share its count and spacing. The state of
    requests in flight (slot, count, next start) is kept by *key*: the host, or with ``per_ip``
    its address.
    """

    def __init__(self, ctx: BaseContext, slots: int, per_host: int, delay: float, tickets: int,
                 rules: SiteRules | None = None, per_ip: bool = False) -> None:
        self.rules = rules or SiteRules({})
        largest = max([per_host, *(rule.get("per_host", 0) for rule in self.rules.setting.values())])
        self.semaphores: list[Any] = [ctx.Semaphore(largest) for _ in range(slots)]
        self.starts = ctx.RawArray("d", slots)  # monotonic time the slot's last request got its headers
        self.turn_locks = [ctx.Lock() for _ in range(slots)]
        self.holders = ctx.RawArray("b", tickets)  # 1 while the request with that ticket holds its slot's turn
        self.permits = SemaphorePermits(self.semaphores, self.starts, self.turn_locks, self.holders)
        self._last_start: dict[str, float] = {}  # kept for hosts with a delay while they hold no slot
        self._per_host = per_host
        self._delay = delay
        self._free = list(range(slots - 1, -1, -1))
        self._slot: dict[str, int] = {}  # host -> slot, while the host has requests in flight
        self._inflight: dict[str, int] = {}
        self._next_start: dict[str, float] = {}
        self._host_delay: dict[str, float] = {}  # hosts whose delay now differs from the crawl's
        self._cap: dict[str, int] = {}  # hosts with a rule of their own or adapted: their cap now
        self._robots_delay: dict[str, float] = {}  # Crawl-delay of robots.txt, where it asks for one
        self._plain = not self.rules  # no host has a rule: a cap is the crawl's unless adapted
        self._addresses = AddressCache() if per_ip else None
        self._key: dict[str, str] = {}  # per_ip: host -> the address its requests in flight count at
        self._host_inflight: dict[str, int] = {}  # per_ip: by host
        self._waiting: dict[str, set[str]] = {}  # per_ip: address -> other hosts waiting for a completion there

    def try_acquire(self, host: str, now: float) -> int | Wait:
        key = host
        if self._addresses is not None:
            address = self._key.get(host) or self._addresses.address(host, now)
            if address is None:
                return Wait(now + RESOLVING)
            key = address
        not_before = self._next_start.get(key, 0.0)
        if now < not_before:
            return Wait(not_before)
        cap = self._cap.get(host, self._per_host) if self._plain else (self._cap.get(host) or self._first_sight(host))
        if self._inflight.get(key, 0) >= cap:
            if self._addresses is not None:
                self._waiting.setdefault(key, set()).add(host)
            return Wait(None)
        slot = self._slot.get(key)
        if slot is None:
            if not self._free:
                return Wait(None)
            slot = self._free.pop()
            self._slot[key] = slot
            self.starts[slot] = self._last_start.pop(key, 0.0)
        if not self.semaphores[slot].acquire(False):
            return Wait(None)
        self._inflight[key] = self._inflight.get(key, 0) + 1
        if key != host:
            self._key[host] = key
            self._host_inflight[host] = self._host_inflight.get(host, 0) + 1
        delay = self.delay_of(host)
        if delay > 0:
            self._next_start[key] = now + delay
        return slot

    def release(self, host: str, grant: int) -> None:
        self.semaphores[grant].release()

    def completed(self, host: str) -> Collection[str]:
        key = host
        woken: Collection[str] = ()
        if self._addresses is not None:
            if host in self._key:
                key = self._key[host]
                mine = self._host_inflight[host] - 1
                if mine:
                    self._host_inflight[host] = mine
                else:
                    del self._host_inflight[host], self._key[host]
            woken = self._waiting.pop(key, ())
        left = self._inflight[key] - 1
        if left:
            self._inflight[key] = left
            return woken
        del self._inflight[key]
        slot = self._slot.pop(key)
        if self.delay_of(host) > 0:
            self._last_start[key] = self.starts[slot]
        self._free.append(slot)
        return woken

    def close(self) -> None:
        """Stop the address resolver threads (``per_ip``)."""
        if self._addresses is not None:
            self._addresses.close()

    def _first_sight(self, host: str) -> int:
        """The cap of a host not capped yet: the crawl's, or its rule's (then kept, with its delay)."""
        if self._plain:
            return self._per_host
        per_host, delay = self.limits(host)
        self._cap[host] = per_host
        if delay != self._delay:
            self._host_delay[host] = delay
        return per_host

    def limits(self, host: str) -> tuple[int, float]:
        per_host, delay = self.rules.limits(host, self._per_host, self._delay)
        return per_host, max(delay, self._robots_delay.get(host, 0.0))

    def pace(self, host: str) -> tuple[int, float]:
        return self._cap.get(host) or self._first_sight(host), self.delay_of(host)

    def adapt(self, host: str, per_host: int, delay: float) -> None:
        self._cap[host] = per_host
        self._host_delay[host] = delay

    def delay_of(self, host: str) -> float:
        return self._host_delay.get(host, self._delay)

    def set_delay(self, host: str, seconds: float) -> None:
        self._robots_delay[host] = seconds
        self._host_delay[host] = max(self.delay_of(host), self.limits(host)[1])

    def pause(self, host: str, until: float) -> None:
        key = host
        if self._addresses is not None:  # the whole address waits, whether the host has requests in flight or not
            key = self._key.get(host) or self._addresses.address(host, time.monotonic()) or host
        self._next_start[key] = max(self._next_start.get(key, 0.0), until)

    def recover_turn(self, host: str, grant: int, ticket: int) -> None:
        if self.holders[ticket]:
            self.holders[ticket] = 0
            self.turn_locks[grant].release()


class SemaphorePermits:
    """The fetcher's side of ``LocalLimiter``: inherited by every fetcher process at its start."""

    def __init__(self, semaphores: list[Any], starts: Any, turn_locks: list[Any], holders: Any) -> None:
        self.semaphores, self.starts, self.turn_locks, self.holders = semaphores, starts, turn_locks, holders

    def release(self, slot: int, host: str) -> None:
        """The exchange is over: free the host's permit (called by the fetch thread, never blocks)."""
        self.semaphores[slot].release()

    def turn(self, slot: int, host: str, delay: float, timeout: float, ticket: int) -> Turn:
        """The context to send request ``ticket`` to a host with a delay in (see ``Turn``)."""
        return Turn(self, slot, delay, timeout, ticket)


class Turn:
    """In a fetcher, around sending a request to a host with a delay (see the module docstring).

    While it holds the slot's lock, ``holders[ticket]`` says so, for the engine to give the
    lock back if this process dies. Waiting for the lock is bounded by ``timeout`` (longer
    than any exchange can take), after which the turn is taken anyway: the last resort for
    a lock no marker names.
    """

    def __init__(self, permits: SemaphorePermits, slot: int, delay: float, timeout: float, ticket: int) -> None:
        self.starts, self.holders, self.lock = permits.starts, permits.holders, permits.turn_locks[slot]
        self.slot, self.delay, self.timeout, self.ticket = slot, delay, timeout, ticket
        self.locked = False

    def __enter__(self) -> None:
        self.locked = self.lock.acquire(timeout=self.timeout)
        if self.locked:
            self.holders[self.ticket] = 1
        wait = self.starts[self.slot] + self.delay - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def __exit__(self, *exc: object) -> None:
        self.starts[self.slot] = time.monotonic()
        if self.locked:
            self.holders[self.ticket] = 0
            self.lock.release()
