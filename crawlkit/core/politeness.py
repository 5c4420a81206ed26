"""Adaptive politeness: each host's concurrency and delay follow how it answers, within its configured caps.

Scrapy's AutoThrottle sets one delay from the latency; crawlkit adapts each host on its own and
moves its concurrency first. A host starts at its ``per_host`` and ``delay`` (its rule in the
``hosts`` setting, or the crawl's: ``Limiter.limits``), and from each finished exchange
(``observe``, in the engine, from the ``PageDone``'s status and exchange time: no message or
timing of its own; an answer the HTTP cache served is no exchange and is left out) it keeps
two figures: its *idle latency*, the lowest exchange time seen (which creeps up slowly, so a
host that became slower for good is not throttled for ever), and a smoothed latency. A step
waits for the last one to show: two smoothed latencies (the requests sent at the old pace are
over) and ``SETTLE`` exchanges after it (the smoothed latency has taken the new pace in):

- a 429 or 503 answer, or a timeout, halves the host's concurrency; at one, doubles its delay;
- a smoothed latency over ``SLOW`` times the idle one (and ``NOISE`` more) lowers its
  concurrency by one, or in proportion to how far the latency is over (a host answering in 4
  times its idle latency with 8 in flight gets 8 * 1.5 / 4 = 3: by Little's law the same
  throughput with fewer waiting); at one, it raises its delay (to the latency at least, as
  AutoThrottle does for a concurrency of one);
- a smoothed latency under ``HEALTHY`` times the idle one (and half ``NOISE`` more) is healthy:
  the delay comes back down (halved, to the configured one) and then the concurrency up, one at
  a time.

``NOISE`` keeps a host of a few milliseconds from being throttled by the crawler's own
scheduling: on a busy machine an exchange with a local server takes 1 ms or 10 ms as the
fetcher threads get the CPU, which says nothing about the server.

So a host never gets more than its configured ``per_host`` at once nor less than its configured
``delay`` between starts (robots.txt's Crawl-delay included), and its delay never goes past
``adaptive_max_delay``. The pace in force is the limiter's (``Limiter.pace``/``adapt``): the
engine's memory for one machine, Redis for a shared crawl, where every node reads the pace
all nodes set before it steps it (a round trip a step, not a page); each node keeps the
latencies it measured itself. A node that sees its host at full pace reads the shared pace
every ``RECHECK`` exchanges all the same, so a pace slowed by a node that left comes back up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from crawlkit.backends.base import Limiter
from crawlkit.fetch.cache import HITS
from crawlkit.stats import Stats

#: Smoothed over idle latency past which a host is taken for overloaded, and under which for healthy.
SLOW = 1.5
HEALTHY = 1.2
#: Seconds of latency that are the crawler's own noise as much as the server's (see above).
NOISE = 0.01
#: Weight of the newest exchange time in the smoothed latency.
SMOOTHING = 0.2
#: Share of the gap to a slower exchange by which the idle latency rises with each one.
BASELINE_CREEP = 0.001
#: Exchanges after a step before the next one (with the smoothing above, 2/3 of the change shows by then).
SETTLE = 5
#: Exchanges at full pace after which a node reads the shared pace again (another node may have slowed the host).
RECHECK = 100
#: Answers that ask a client to slow down.
OVERLOADED = frozenset({429, 503})
#: The delay a host's first raise for a 429, 503 or timeout starts from when it has none.
FIRST_DELAY = 0.1


@dataclass(slots=True)
class HostPace:
    """One host's adaptive state: its pace in force and what its latency has been."""

    per_host: int
    delay: float
    idle: float = math.inf  # the lowest exchange time, creeping up (inf until an answer came)
    latency: float = 0.0  # smoothed exchange time
    due: float = 0.0  # monotonic time before which no step is taken
    seen: int = SETTLE  # exchanges since the last step


class Throttle:
    """The engine's adaptive politeness: ``observe`` every finished exchange; puts the pace in the limiter."""

    def __init__(self, limiter: Limiter, stats: Stats, max_delay: float) -> None:
        self.limiter = limiter
        self.stats = stats
        self.max_delay = max_delay
        self.hosts: dict[str, HostPace] = {}

    def observe(self, host: str, now: float, status: int, elapsed: float, counts: dict[str, int]) -> None:
        """Take in one exchange with ``host``: its HTTP status (0: none), seconds, and its stats deltas."""
        if HITS in counts:  # served from the HTTP cache: no exchange, and its 0 s would become the idle latency
            return
        pace = self.hosts.get(host)
        if pace is None:
            per_host, delay = self.limiter.limits(host)  # where it starts (a shared pace is read at its first step)
            pace = self.hosts[host] = HostPace(per_host, delay)
            self.stats.paced(host, per_host, delay)
        overloaded = status in OVERLOADED or (not status and any(key.endswith("_timeout") for key in counts))
        if status and not overloaded:  # an answer: a failure's time (a refused connection's 1 ms) says nothing
            idle = pace.idle
            if idle == math.inf:
                pace.idle = pace.latency = elapsed
            else:
                pace.idle = elapsed if elapsed < idle else idle + (elapsed - idle) * BASELINE_CREEP
                pace.latency += (elapsed - pace.latency) * SMOOTHING
        pace.seen += 1
        if now < pace.due or pace.seen < SETTLE:
            return
        if overloaded:
            self._step(host, pace, now, down=True, halve=True)
        elif pace.latency > SLOW * pace.idle + NOISE:
            self._step(host, pace, now, down=True, halve=False)
        elif pace.latency < HEALTHY * pace.idle + NOISE / 2:
            self._step(host, pace, now, down=False, halve=False)

    def _step(self, host: str, pace: HostPace, now: float, *, down: bool, halve: bool) -> None:
        """Move the host's pace one step down (slower) or up (faster), within its limits."""
        most, least = self.limiter.limits(host)
        if not down and pace.per_host >= most and pace.delay <= least:
            if pace.seen < RECHECK:
                return  # at full pace, as far as this node knows (asking a shared crawl costs a round trip)
            pace.seen = 0  # now and then: a node that slowed the host may have left the crawl
        per_host, delay = self.limiter.pace(host)  # another node's step may have moved it
        per_host = min(per_host, most)
        delay = max(delay, least)
        if down:
            if per_host > 1:
                per_host = max(1, per_host // 2 if halve else
                               min(per_host - 1, int(per_host * SLOW * pace.idle / pace.latency)))
            else:
                delay = min(self.max_delay, max(delay * 2, least, FIRST_DELAY if halve else pace.latency))
        elif delay > least:
            delay = delay / 2 if delay / 2 > least + FIRST_DELAY / 2 else least
        elif per_host < most:
            per_host += 1
        if (per_host, delay) == (pace.per_host, pace.delay):
            return
        pace.per_host, pace.delay = per_host, delay
        pace.due, pace.seen = now + 2 * pace.latency, 0
        self.limiter.adapt(host, per_host, delay)
        self.stats.paced(host, per_host, delay)
