"""One crawl on many machines: the frontier, seen store, limiter, robots answers and stats in Redis.

Every ``crawlkit crawl --frontier redis://...`` process is a *node* of the crawl named by its
crawl id; nodes share nothing but these keys (``P`` is ``crawlkit:<crawl id>:``)::

    P q:<host>     LIST   pickled requests of a host (positive priority, depth-first and given back at the front)
    P hosts        SET    hosts whose queue is not empty
    P delayed      ZSET   retries not to start before a time: "<id>\\n<host>\\n<request>" by due ms
    P queued       STRING requests in the queues and ``delayed``
    P lease:<node> HASH   lease id -> "<host>\\n<request>": what a node took and has not finished
    P inflight     STRING leases of all nodes together
    P nodes        ZSET   node -> ms after which it counts as dead (its heartbeat pushes it on)
    P l:<host>     ZSET   per-host slots: "<node>:<grant>" -> ms the slot frees itself
    P next / delay HASH   per host: earliest next start (ms), delay between starts (ms)
    P cap          HASH   per host: its per_host now, where adaptive politeness changed it
    P turn         HASH   per host: when the last response's headers arrived (µs), for ``delay``
    P tl:<host>    STRING the host's send turn: held by one fetch from its send to its headers
    P s:<shard>    SET    seen fingerprints, as integers (an intset, 8 bytes each)
    P robots       HASH   host -> pickled (status, body) of its robots.txt
    P stats        HASH   the crawl's counters, all nodes together

Whatever changes shared state is one Lua script (a ``.lua`` file in this package, read by
``scripts.py``: atomic), and every time is Redis' ``TIME``, so clocks of the machines need not
agree. Round trips, not Redis, are what a node spends its CPU on (the engine's process is the
busiest of a crawl), so a node makes few: a start takes the host's slot and leases its next
request in one script; what only writes and need not be seen at once (finished leases, freed
slots, the stats) waits in the node and rides with its next call, in one pipeline.

A node takes a request with a lease and gives it back with ``done`` (after the page's new
links were pushed) or ``reclaim``; a node whose heartbeat stops for ``lease_time`` is dead,
and the next heartbeat of any live node puts its leases back in the queues. Its per-host slots
free themselves the same way. So the crawl is over exactly when ``queued`` and ``inflight``
are both zero, read together.

Requests and robots.txt answers are pickles, read back by ``safepickle``, which builds nothing
but ``Request`` and plain data and nothing bigger than a small multiple of the entry: whoever
can write to the Redis cannot make the nodes run code or run out of memory. An entry it
refuses is dropped and counted (``error_unreadable_redis_data``). A request whose ``meta``
holds objects of other classes is therefore not queued; the node that made it logs and counts
it (``error_unshareable_request``).

Needs one Redis server (not a cluster: keys are made inside the scripts). The engine's
process talks to Redis through ``RedisCrawl``; each fetcher process builds its own client for
``RedisPermits`` after it starts.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import os
import pickle
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from crawlkit import safepickle
from crawlkit.backends.local.limiter import Wait
from crawlkit.backends.redis.scripts import SCRIPTS, TURN_ENTER, TURN_EXIT
from crawlkit.errors import ConfigError, SharedCrawlError
from crawlkit.extensions.robots import ROBOTS_CALLBACK
from crawlkit.http import Request
from crawlkit.sites import SiteRules
from crawlkit.urls import fingerprint, host_of

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.exceptions import NoScriptError
    from redis.retry import Retry
except ImportError:  # an optional extra; ``connect`` says how to install it
    redis = None  # type: ignore[assignment]

log = logging.getLogger("crawlkit.redis")

POLL_EVERY = 0.05  # seconds between looks at the shared queues while this node has nothing to start
CAP_POLL = (0.02, 0.32)  # seconds before asking again for a host whose slots other nodes hold: first, most
TURN_POLL = 0.005  # seconds between tries for a host's send turn another fetch holds
HOST_SAMPLE = 256  # hosts fetched from Redis per look
PUSH_BATCH = 1000  # requests per push script call
TAKE_BATCH = 8  # requests a slot's grant may lease at once, each with a slot of its own, while the cap allows
SEEN_SHARD_BITS = 16  # 65536 sets: each stays an intset (<= 512 members) up to ~25 million URLs

_WRITES = ("done", "reclaim", "free", "stats")  # what RedisCrawl.later holds back, in the order of writes.lua

F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    """Turn a Redis failure in the engine's process into a one-line SharedCrawlError."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except redis.RedisError as exc:
            raise SharedCrawlError(
                f"Redis at {self.url} failed ({type(exc).__name__}: {exc}); the shared crawl's state is kept "
                "there: run the same command again to rejoin once it answers"
            ) from None

    return call  # type: ignore[return-value]


def connect(
    url: str, crawl_id: str, lease_time: float = 30.0, count: Callable[[str], None] | None = None
) -> RedisCrawl:
    """Open the shared crawl ``crawl_id`` on the Redis at ``url``; ConfigError if that cannot work.

    ``lease_time`` (seconds) matters only to a node that takes requests: see ``RedisCrawl``.
    ``count`` adds one to a stats counter of the node (entries refused, see ``safepickle``).
    """
    if redis is None:
        raise ConfigError("frontier: the Redis client is not installed; pip install 'crawlkit[redis]'")
    client = _client(url)
    try:
        pipe = client.pipeline(transaction=False)
        for text in SCRIPTS.values():  # so that a pipeline (RedisCrawl._send) finds them all
            pipe.script_load(text)
        pipe.execute()
    except redis.RedisError as exc:
        raise ConfigError(
            f"frontier: cannot reach Redis at {url} ({exc}); start redis-server there or fix --frontier"
        ) from None
    return RedisCrawl(client, url, crawl_id, lease_time, count)


def add_seeds(url: str, crawl_id: str, urls: list[str]) -> int:
    """Queue the URLs the shared crawl has not seen yet (for ``crawlkit seed``); returns how many."""
    crawl = connect(url, crawl_id)
    requests = {fingerprint(u): Request(u) for u in urls}
    new = crawl.seen.add_many(list(requests))
    crawl.frontier.push(requests[fp] for fp in new)
    crawl.flush()
    return len(new)


def _client(url: str) -> Any:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"frontier: {url!r} is not a Redis URL; write redis://host:port/db, e.g. redis://localhost:6379/0")
    try:
        # No retries: a script whose reply was lost must not run twice (a second ``take``
        # would strand a lease that no node finishes). A failure ends the node instead.
        return redis.Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30, retry=Retry(NoBackoff(), 0)
        )
    except ValueError as exc:
        raise ConfigError(f"frontier: {url!r} is not a usable Redis URL ({exc}); write redis://host:port/db") from None


class RedisCrawl:
    """This node's handle on a shared crawl: builds the shared frontier, seen store and limiter.

    Lives in the engine's process. ``node`` names this process for leases and heartbeats.
    """

    def __init__(self, client: Any, url: str, crawl_id: str, lease_time: float,
                 count: Callable[[str], None] | None = None) -> None:
        self.client, self.url, self.crawl_id = client, url, crawl_id
        self.count = count or (lambda key: None)
        self.prefix = f"crawlkit:{crawl_id}:"
        self.node = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_ms = max(1, int(lease_time * 1000))
        self.scripts = {name: client.register_script(text) for name, text in SCRIPTS.items()}
        # This node's own connection, used as is: the client's pool would check it, lock and
        # count it (several system calls) on every call.
        self._conn = client.connection_pool.get_connection()
        self._later: dict[str, list[Any]] = {}  # one of _WRITES -> its items waiting for the next call
        self.frontier = RedisFrontier(self)
        self.seen = RedisSeen(self)
        self._limiter: RedisLimiter | None = None

    @_guarded
    def call(self, script: str, *args: Any) -> Any:
        """Run a script and return its answer; the writes waiting in ``later`` go first, in the same round trip."""
        return self._send((script, args))[-1]

    def later(self, kind: str, *items: Any) -> None:
        """Write with this node's next call (or ``flush``), in one script (``writes.lua``) with all that
        waits: ``done`` and ``reclaim`` (leases of this node to finish or give back), ``free``
        (host, slot member pairs) and ``stats`` (counter, delta pairs).

        For writes no one needs at once and whose order among themselves does not matter: a
        finished lease (its page's links were pushed before, so a node that dies first only
        leaves the page to be fetched again), a lease given back, a freed slot (held a moment
        longer), the stats. Every read of this node (``poll``, ``idle``, ``take``, ``totals``)
        sends them first, so the node sees its own writes.
        """
        self._later.setdefault(kind, []).extend(items)

    @_guarded
    def flush(self) -> None:
        """Send the writes waiting in ``later`` now."""
        if self._later:
            self._send()

    def _send(self, *calls: tuple[str, tuple[Any, ...]]) -> list[Any]:
        """Run the waiting writes, then ``calls``, in one pipeline (one round trip), in order; their answers.

        ``connect`` loaded every script, so one Redis does not know only if it restarted (or its
        script cache was flushed) since: those did not run, and run now, in order. No other is
        ever run twice.
        """
        commands = list(calls)
        if self._later:
            writes: list[Any] = [self.node]
            for kind in _WRITES:
                items = self._later.get(kind, [])
                writes += [len(items), *items]
            commands.insert(0, ("writes", tuple(writes)))
            self._later = {}
        answers = self._pipeline([("EVALSHA", self.scripts[script].sha, *args) for script, args in commands])
        missing = [i for i, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
        if missing:
            again = self._pipeline([("EVAL", self.scripts[commands[i][0]].script, *commands[i][1]) for i in missing])
            for i, answer in zip(missing, again):
                answers[i] = answer
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return answers

    def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``(EVALSHA or EVAL, sha or text, args...)`` commands at once; their answers, errors among them."""
        conn = self._conn
        conn.send_packed_command(conn.pack_commands([(name, body, 0, self.prefix, *args)
                                                     for name, body, *args in commands]))
        answers: list[Any] = []
        for _ in commands:
            try:
                answers.append(conn.read_response())
            except redis.ResponseError as exc:  # that script's error; the connection is still in step
                answers.append(exc)
        return answers

    def free(self, host: str, grant: int) -> None:
        """Free this node's slot ``grant`` of ``host``, with the next call."""
        self.later("free", host, f"{self.node}:{grant}")

    def limiter(self, per_host: int, delay: float, rules: SiteRules | None = None) -> RedisLimiter:
        self._limiter = RedisLimiter(self, per_host, delay, rules or SiteRules({}))
        return self._limiter

    def heartbeat(self) -> int:
        """Tell the others this node lives; give back dead nodes' leases (returns how many)."""
        if self._limiter is not None:
            self._limiter.renew()
        return self.call("beat", self.node, self.lease_ms)

    @_guarded
    def save_robots(self, host: str, status: int, body: bytes) -> None:
        self.client.hset(self.prefix + "robots", host, safepickle.dumps((status, body)))

    @_guarded
    def robots(self, host: str) -> tuple[int, bytes] | None:
        """The robots.txt answer another node got for ``host``, if any."""
        blob = self.client.hget(self.prefix + "robots", host)
        if blob is None:
            return None
        try:
            answer = safepickle.loads(blob)
            # Exact types, nothing converted: bytes(10**10) would be 10 GB.
            if not (type(answer) is tuple and len(answer) == 2 and type(answer[0]) is int and type(answer[1]) is bytes):
                raise pickle.UnpicklingError(f"it is a {type(answer).__name__}, not a status and bytes")
            return answer
        except pickle.UnpicklingError as exc:
            log.error("the robots.txt answer for %s in Redis is not one crawlkit wrote (%s); asking the host itself",
                      host, exc)
            self.count("error_unreadable_redis_data")
            return None

    def add_stats(self, deltas: dict[str, int]) -> None:
        """Add this node's counter deltas to the crawl's totals, with the node's next call."""
        self.later("stats", *itertools.chain.from_iterable(deltas.items()))

    @_guarded
    def totals(self) -> dict[str, int]:
        self.flush()
        totals: dict[str, int] = {}
        for key, value in self.client.hgetall(self.prefix + "stats").items():
            try:  # HINCRBY keeps them integers; anything else was written by someone else and is left out
                totals[key.decode("utf-8", "replace")] = int(value)
            except ValueError:
                log.error("the crawl's total %.100r in Redis is not a number (%.40r); left out", key, value)
        return totals

    @_guarded
    def counts(self, keys: list[str]) -> list[int]:
        """The crawl's totals of counters ``keys`` (0 for one not counted yet), after this node's waiting writes."""
        self.flush()
        counts = []
        for value in self.client.hmget(self.prefix + "stats", keys):
            try:
                counts.append(int(value or 0))
            except ValueError:  # not written by crawlkit: as if not counted
                counts.append(0)
        return counts

    def leave(self) -> int:
        """Give back what this node still holds and deregister it (at shutdown)."""
        return self.call("leave", self.node)


class RedisFrontier:
    """The shared queues, seen from one node: which hosts have work, with local parking.

    Runs in the engine. ``next_host`` offers hosts sampled from Redis (refreshed every
    ``POLL_EVERY`` seconds) that this node has not parked; ``take`` leases the host's next
    request, or hands over the one the limiter's grant of a slot for the host leased with it
    (``RedisLimiter.try_acquire``: the engine takes right after a grant). Order within a host
    is first-come (breadth-first in effect), or last-come with ``depth_first`` (the ``order``
    setting); requests with a positive priority and requests given back go to the front.
    Priorities are not sorted beyond that (a list per host, not a sorted set, keeps a push and
    a take O(1)); hosts take turns as every node samples hosts with work at random.

    robots.txt requests stay with the node that needs the answer (lease 0, never in Redis):
    each node keeps its own rules, the answers are shared through ``RedisCrawl.robots``, and a
    node that dies loses nothing another node needs.
    """

    def __init__(self, crawl: RedisCrawl) -> None:
        self._crawl = crawl
        self._own: dict[str, list[Request]] = {}  # this node's robots.txt requests, by host
        self._ring: deque[str] = deque()
        self._parked: dict[str, float | None] = {}
        self._timers: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._next_poll = 0.0
        self._queued = 0
        self._wake: float | None = None  # when the next delayed request is due (monotonic)
        # The host of the last slot granted with a lease, and what it leased: (lease, pickle), or None (queue empty).
        self._handed: tuple[str, tuple[int, bytes] | None] | None = None
        # Host -> (grant, lease, pickle) leased ahead, each with its slot, by a grant that leased several.
        self._ready: dict[str, deque[tuple[int, int, bytes]]] = {}
        self.depth_first = False  # the order setting: every new request goes to the front of its host's queue

    def __len__(self) -> int:
        """Requests queued crawl-wide, as of the last look (for progress lines)."""
        return self._queued

    def push(self, requests: Iterable[Request], not_before: float = 0.0, mark_seen: bool = False) -> None:
        """Queue ``requests`` (retries: not before ``not_before``). With ``mark_seen``, each request
        but a ``dont_filter`` one is marked seen as it is queued, and queued only if no node saw it
        first (see ``RedisSeen.unseen``)."""
        delay_ms = max(1, int((not_before - time.monotonic()) * 1000)) if not_before else 0
        args: list[Any] = []
        hosts: set[str] = set()
        for request in requests:
            host = host_of(request.url)
            if request.callback == ROBOTS_CALLBACK:
                self._own.setdefault(host, []).append(request)
                if host not in self._ring:
                    self._ring.appendleft(host)
                if not_before:  # a retry: the host has nothing else to start before its answer
                    self.park(host, not_before)
                continue
            try:
                blob = safepickle.dumps(request)
            except pickle.UnpicklingError as exc:
                log.error("not queued: %s: %s; the nodes of a shared crawl accept only plain data in a request's meta "
                          "(str, numbers, bytes, lists, dicts, sets, dates)", request.url, exc)
                self._crawl.count("error_unshareable_request")
                continue
            if mark_seen and not request.dont_filter:
                shard, member = _seen_member(fingerprint(request.url, request.method, request.body))
                args += [host, int(request.priority > 0 or self.depth_first), shard, member, blob]
            else:
                args += [host, int(request.priority > 0 or self.depth_first), "", "", blob]
            hosts.add(host)
            if len(args) >= 5 * PUSH_BATCH:
                self._crawl.call("push", delay_ms, *args)
                args = []
        if args:
            self._crawl.call("push", delay_ms, *args)
        if not_before:  # the next look after they are due moves them into their queues
            self._next_poll = min(self._next_poll, not_before)
        elif hosts:  # offered at once, without a look (a round trip) at the shared queues
            hosts.difference_update(self._ring)
            self._ring.extend(hosts)

    def poll(self) -> tuple[int, int]:
        """(queued, in flight) crawl-wide, read together; refreshes the hosts offered."""
        queued, inflight, wake, *hosts = self._crawl.call("poll", HOST_SAMPLE)
        now = time.monotonic()
        self._queued = queued
        self._wake = now + wake / 1000 if wake >= 0 else None
        self._next_poll = now + POLL_EVERY
        offered = set(self._ring)
        for raw in hosts:
            host = raw.decode("utf-8", "replace")  # a name crawlkit did not write is offered, then found empty
            if host not in offered:
                self._ring.append(host)
        return queued, inflight

    def idle(self) -> bool:
        """True when no request is queued or in flight on any node of the crawl."""
        return not self._own and self.poll() == (0, 0)

    def next_time(self) -> float | None:
        times = [self._next_poll]
        if self._timers:
            times.append(self._timers[0][0])
        if self._wake is not None:
            times.append(self._wake)
        return min(times)

    def next_host(self, now: float) -> str | None:
        while self._timers and self._timers[0][0] <= now:
            until, _, host = heapq.heappop(self._timers)
            if self._parked.get(host, -1.0) == until:
                del self._parked[host]
        if now >= self._next_poll:
            self.poll()
        for host in self._ready:  # leased ahead with their slots: start them first
            if host not in self._parked:
                return host
        for _ in range(len(self._ring)):
            host = self._ring[0]
            self._ring.rotate(-1)
            if host not in self._parked:
                return host
        return None

    def take(self, host: str) -> tuple[int, Request] | None:
        """Lease the host's next request; None (and the host is no longer offered) if it has none."""
        own = self._own.get(host)
        if own:
            request = own.pop()
            if not own:
                del self._own[host]
            return 0, request
        handed, self._handed = self._handed, None
        if handed is not None and handed[0] != host:  # not taken after its grant: back to the front
            self._give_back(handed[1])
        elif handed is not None:
            got = handed[1]
            if got is None:
                self._ring.remove(host)
                return None
            taken = self._load(host, *got)
            if taken is not None:
                return taken
        while True:
            got = self._crawl.call("take", self._crawl.node, host)
            if not got:
                self._ring.remove(host)
                return None
            taken = self._load(host, int(got[0]), got[1])
            if taken is not None:
                return taken

    def _load(self, host: str, lease: int, blob: bytes) -> tuple[int, Request] | None:
        """The leased request; None (its lease finished) if crawlkit did not write it."""
        try:
            return lease, safepickle.load_request(blob)
        except pickle.UnpicklingError as exc:
            # Not written by a crawlkit node: dropped (its lease finished), never run.
            log.error("dropped an entry of %s's queue in Redis that crawlkit did not write (%s)", host, exc)
        self._crawl.count("error_unreadable_redis_data")
        self._crawl.later("done", lease)
        return None

    def _takes_along(self, host: str) -> bool:
        """Whether a slot granted for ``host`` should lease its next request too (not when a
        robots.txt request of this node's own goes first)."""
        return host not in self._own

    def _hand(self, host: str, grant: int, got: list[Any]) -> None:
        """Keep what slot ``grant`` of ``host`` leased with it (``got``: lease, pickle, ...: none if
        the queue was empty) for the ``take`` that follows; the others, with the slots granted
        after ``grant``, wait in ``_ready`` for the host's next grants."""
        if self._handed is not None:
            self._give_back(self._handed[1])
        self._handed = (host, (int(got[0]), got[1]) if got else None)
        if len(got) > 2:
            ready = self._ready.setdefault(host, deque())
            for i in range(2, len(got), 2):
                ready.append((grant + i // 2, int(got[i]), got[i + 1]))

    def _ready_grant(self, host: str) -> int | None:
        """A slot of ``host`` leased ahead, its request handed to the ``take`` that follows; None if none."""
        ready = self._ready.get(host)
        if not ready:
            return None
        grant, lease, blob = ready.popleft()
        if not ready:
            del self._ready[host]
        if self._handed is not None:
            self._give_back(self._handed[1])
        self._handed = (host, (lease, blob))
        return grant

    def _give_back(self, got: tuple[int, bytes] | None) -> None:
        if got is not None:
            self._crawl.later("reclaim", got[0])

    def done(self, leases: list[int]) -> None:
        """Finish leases (with this node's next call); call only after the pages' new requests were pushed."""
        leases = [lease for lease in leases if lease]
        if leases:
            self._crawl.later("done", *leases)

    def reclaim(self, lease: int, request: Request) -> None:
        """Put a leased request back at the front of its host's queue."""
        if lease:
            self._crawl.call("reclaim", self._crawl.node, lease)
        else:
            self.push([request])

    def park(self, host: str, until: float | None) -> None:
        self._parked[host] = until
        if until is not None:
            heapq.heappush(self._timers, (until, next(self._seq), host))

    def unpark(self, host: str) -> None:
        self._parked.pop(host, None)

    def close(self) -> None:
        for host, ready in self._ready.items():  # their leases go back with the node's (leave)
            for grant, _lease, _blob in ready:
                self._crawl.free(host, grant)
        self._ready.clear()
        try:
            given = self._crawl.leave()
        except SharedCrawlError as exc:
            log.error("%s; this node's requests go back to the others after lease_time", exc)
            return
        if given:
            log.warning("gave %d unfinished requests back to the shared frontier", given)


def _seen_member(fp: int) -> tuple[str, int]:
    """The seen set (shard) a 64-bit fingerprint goes in, and its member there (signed, as Redis integers are)."""
    return format(fp >> (64 - SEEN_SHARD_BITS), "x"), fp - (1 << 64) if fp >> 63 else fp


class RedisSeen:
    """The shared seen-URL store: 64-bit fingerprints spread over 2**14 small integer sets.

    A set holding only integers, at most ``set-max-intset-entries`` (512) of them, is an
    intset: a sorted array of 8-byte values. ``add_many`` sends a whole batch in one script
    call (with the node's waiting writes: ``RedisCrawl.later``); SADD's answer says which were
    new, so no two nodes can both think a URL is new.
    """

    def __init__(self, crawl: RedisCrawl) -> None:
        self._crawl, self.url, self._prefix = crawl, crawl.url, crawl.prefix

    @_guarded
    def add_many(self, fingerprints: list[int]) -> list[int]:
        """Add all; return the new ones (``crawlkit seed``, which queues them right after)."""
        return self._batches("seen_add", fingerprints)

    @_guarded
    def unseen(self, fingerprints: list[int]) -> list[int]:
        """Those not seen yet, marking none: a crawling node marks a URL seen in the same script
        that queues it (``RedisFrontier.push`` with ``mark_seen``), so its death between the two
        steps cannot leave a URL seen but never queued; a URL two nodes both find unseen is
        queued by the first push alone."""
        return self._batches("seen_check", fingerprints)

    def _batches(self, script: str, fingerprints: list[int]) -> list[int]:
        """``script``'s answer for every fingerprint: one call per ``PUSH_BATCH * 10`` of them, so a
        huge seeds file does not hold Redis up for long."""
        new: list[int] = []
        step = PUSH_BATCH * 10
        for start in range(0, len(fingerprints), step):
            chunk = fingerprints[start:start + step]
            args: list[Any] = []
            for fp in chunk:
                args += _seen_member(fp)
            new += [chunk[i - 1] for i in self._crawl.call(script, *args)]
        return new

    @_guarded
    def count(self) -> int:
        return int(self._crawl.client.get(self._prefix + "seen") or 0)


class RedisLimiter:
    """Per-host cap and delay for all nodes together: slots are leases in a ZSET per host.

    Runs in the engine, which frees the slots too: it hears of every exchange that is over
    (``completed``), and the frees ride with its next call (``RedisCrawl.later``), where a
    fetcher would spend a round trip on each. A slot of a node that died frees itself after
    ``lease_time``; a live node's slots are renewed by its heartbeat.

    A host's own ``per_host`` and ``delay`` (``rules``, the ``hosts`` setting) go with each
    acquire; what adaptive politeness puts in force (``adapt``) is in ``P cap`` and ``P delay``,
    which the acquire script reads first, so every node holds it.
    """

    def __init__(self, crawl: RedisCrawl, per_host: int, delay: float, rules: SiteRules) -> None:
        self._crawl = crawl
        self.url = crawl.url
        self.rules = rules
        self._per_host = per_host
        self._delay = delay
        self._host_delay: dict[str, float] = {}
        self._robots_delay: dict[str, float] = {}
        self._inflight: dict[str, int] = {}
        self._held: dict[str, list[int]] = {}  # host -> grants whose slots are held in Redis
        self._released: dict[str, int] = {}  # host -> grants released before their ``completed``
        self._full: dict[str, float] = {}  # host -> next wait for slots other nodes hold (doubles, up to a bound)
        self._next_grant = 1
        self.permits = RedisPermits(crawl.url, crawl.prefix, crawl.node)

    def try_acquire(self, host: str, now: float) -> int | Wait:
        """A slot for ``host``; granted, it leases the host's next request in the same call, for
        the frontier's ``take`` that follows (see ``RedisFrontier``)."""
        crawl = self._crawl
        frontier = crawl.frontier
        ready = frontier._ready_grant(host)
        if ready is not None:
            return self._granted(host, ready)
        grant = self._next_grant
        along = frontier._takes_along(host)
        per_host, delay = self.limits(host) if self.rules else (self._per_host, self._delay)
        ok, wait_ms, *got = crawl.call(
            "acquire", host, crawl.node, grant, per_host, crawl.lease_ms, int(delay * 1000),
            TAKE_BATCH if along else 0,
        )
        if ok:
            self._next_grant += max(1, len(got) // 2)
            self._full.pop(host, None)
            if along:
                frontier._hand(host, grant, got)
            return self._granted(host, grant)
        if wait_ms >= 0:
            return Wait(now + wait_ms / 1000)
        if self._inflight.get(host):
            return Wait(None)  # one of ours completes first, or soon enough
        # The slots are other nodes', whose completions we do not see: poll, less often as it lasts.
        wait = self._full.get(host, CAP_POLL[0])
        self._full[host] = min(2 * wait, CAP_POLL[1])
        return Wait(now + wait)

    def _granted(self, host: str, grant: int) -> int:
        self._inflight[host] = self._inflight.get(host, 0) + 1
        self._held.setdefault(host, []).append(grant)
        return grant

    def release(self, host: str, grant: int) -> None:
        """Free the slot of a request that was not sent, or whose fetcher died; its ``completed`` follows.

        Its own slot if still held, else another of the host (``completed`` frees any: they are alike).
        """
        held = self._held[host]
        if grant in held:
            held.remove(grant)
        else:
            grant = held.pop()
        if not held:
            del self._held[host]
        self._released[host] = self._released.get(host, 0) + 1
        self._free(host, grant)

    def completed(self, host: str) -> tuple[()]:
        """An exchange with ``host`` is over: free a slot of the host, unless ``release`` freed its own.

        Which one does not matter: the slots of a host are alike, and each request holds one.
        No other host waits for it (a shared crawl has no ``per_ip``).
        """
        left = self._inflight[host] - 1
        if left:
            self._inflight[host] = left
        else:
            del self._inflight[host]
        early = self._released.get(host, 0)
        if early:
            if early > 1:
                self._released[host] = early - 1
            else:
                del self._released[host]
            return ()
        held = self._held[host]
        grant = held.pop()
        if not held:
            del self._held[host]
        self._free(host, grant)
        return ()

    def _free(self, host: str, grant: int) -> None:
        self._crawl.free(host, grant)

    def delay_of(self, host: str) -> float:
        return self._host_delay.get(host, self.limits(host)[1] if self.rules else self._delay)

    def limits(self, host: str) -> tuple[int, float]:
        per_host, delay = self.rules.limits(host, self._per_host, self._delay)
        return per_host, max(delay, self._robots_delay.get(host, 0.0))

    @_guarded
    def pace(self, host: str) -> tuple[int, float]:
        prefix = self._crawl.prefix
        with self._crawl.client.pipeline(transaction=False) as pipe:
            cap, delay_ms = pipe.hget(prefix + "cap", host).hget(prefix + "delay", host).execute()
        per_host, delay = self.limits(host)
        if delay_ms is not None:
            delay = self._host_delay[host] = max(delay, int(delay_ms) / 1000)
        return (per_host if cap is None else min(per_host, int(cap))), delay

    @_guarded
    def adapt(self, host: str, per_host: int, delay: float) -> None:
        self._host_delay[host] = delay
        prefix = self._crawl.prefix
        with self._crawl.client.pipeline(transaction=False) as pipe:
            pipe.hset(prefix + "cap", host, per_host).hset(prefix + "delay", host, int(delay * 1000)).execute()

    @_guarded
    def set_delay(self, host: str, seconds: float) -> None:
        self._robots_delay[host] = seconds
        self._host_delay[host] = max(self.delay_of(host), self.limits(host)[1])
        self._crawl.client.hset(self._crawl.prefix + "delay", host, int(self._host_delay[host] * 1000))

    def pause(self, host: str, until: float) -> None:
        self._crawl.call("pause", host, max(0, int((until - time.monotonic()) * 1000)))

    def recover_turn(self, host: str, grant: int, ticket: int) -> None:
        self.permits.end_turn(host, grant)

    def renew(self) -> None:
        hosts = {*self._inflight, *self._crawl.frontier._ready}  # the slots in use and those leased ahead
        if hosts:
            self._crawl.call("renew", self._crawl.node + ":", self._crawl.lease_ms, *hosts)


class RedisPermits:
    """What a fetcher process holds to space sends to a host (the engine frees the slots).

    Pickled to every fetcher; each process builds its own Redis client when it unpickles it
    (it connects on the first send to a host with a delay). Never raises: if Redis cannot be
    reached, a turn ends by itself after its timeout.
    """

    def __init__(self, url: str, prefix: str, node: str) -> None:
        self.url, self.prefix, self.node = url, prefix, node
        self._connect()

    def _connect(self) -> None:
        self._client = _client(self.url)
        self._enter = self._client.register_script(TURN_ENTER)
        self._exit = self._client.register_script(TURN_EXIT)

    def __getstate__(self) -> tuple[str, str, str]:
        return (self.url, self.prefix, self.node)

    def __setstate__(self, state: tuple[str, str, str]) -> None:
        self.url, self.prefix, self.node = state
        self._connect()

    def release(self, slot: int, host: str) -> None:
        """Nothing to do here: the engine frees the slot when it hears the exchange is over
        (``RedisLimiter.completed``), in a batch, saving the fetcher a round trip a request."""

    def turn(self, slot: int, host: str, delay: float, timeout: float, ticket: int) -> _RedisTurn:
        return _RedisTurn(self, host, delay, timeout, f"{self.node}:{slot}")

    def end_turn(self, host: str, slot: int) -> None:
        """Give up the host's turn if the request with grant ``slot`` holds it (a no-op otherwise).

        The turn's token names the node and grant, so the engine can end the turn of a fetch
        thread that died in it at once, instead of after its expiry.
        """
        try:
            self._exit(args=[self.prefix, host, f"{self.node}:{slot}"])
        except redis.RedisError as exc:
            log.warning("could not end the turn of %s in Redis (%s); it ends by itself", host, exc)


class _RedisTurn:
    """Around one send to a host with a delay, on every node at once: ``limiter.Turn`` in Redis.

    Takes the host's turn (a lock with an expiry of ``timeout``, so a node that dies holding
    it delays the others by that much at most; a fetcher process that dies is seen by its
    engine, which ends the turn at once by its token, ``RedisPermits.end_turn``), waits until
    ``delay`` after the previous response's headers arrived, and gives the turn up when its
    own headers arrive. So two requests reach the server at least ``delay`` apart, whichever
    nodes send them.
    """

    def __init__(self, permits: RedisPermits, host: str, delay: float, timeout: float, token: str) -> None:
        self.permits, self.host, self.delay, self.timeout, self.token = permits, host, delay, timeout, token

    def __enter__(self) -> None:
        p = self.permits
        deadline = time.monotonic() + self.timeout
        try:
            args = [p.prefix, self.host, self.token, int(self.timeout * 1000), int(self.delay * 1e6)]
            while (wait_us := p._enter(args=args)) < 0:
                if time.monotonic() > deadline:
                    return
                time.sleep(TURN_POLL)
        except redis.RedisError as exc:
            log.warning("could not take the turn of %s in Redis (%s); sending now", self.host, exc)
            return
        time.sleep(wait_us / 1e6)

    def __exit__(self, *exc: object) -> None:
        p = self.permits
        try:
            p._exit(args=[p.prefix, self.host, self.token])
        except redis.RedisError as exc:
            log.warning("could not end the turn of %s in Redis (%s); it ends after %.0fs", self.host, exc, self.timeout)
