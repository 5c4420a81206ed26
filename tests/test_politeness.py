"""Per-site caps in the limiter and the adaptive politeness controller, fed exchanges directly (no process)."""

from __future__ import annotations

import multiprocessing
import socket
import time

import lxml.html
import pytest
from rich.console import Console

from crawlkit.backends.base import Wait
from crawlkit.backends.local.addresses import TTL, AddressCache
from crawlkit.backends.local.limiter import LocalLimiter
from crawlkit.core.liveview import LiveView
from crawlkit.core.politeness import RECHECK, SETTLE, Throttle
from crawlkit.fetch.cache import HITS
from crawlkit.sites import SiteRules, check_hosts
from crawlkit.stats import Stats
from crawlkit.tools.report import render_report

CTX = multiprocessing.get_context("spawn")


def limiter(per_host: int = 4, delay: float = 0.0, hosts: dict | None = None) -> LocalLimiter:
    return LocalLimiter(CTX, slots=4, per_host=per_host, delay=delay, tickets=16,
                        rules=SiteRules(check_hosts(hosts or {})))


class Feed:
    """Exchanges with one host, one after another on a clock of their own."""

    def __init__(self, throttle: Throttle, host: str = "a.test") -> None:
        self.throttle, self.host, self.now = throttle, host, 100.0
        self.paces: list[tuple[int, float]] = []

    def __call__(self, n: int, elapsed: float, status: int = 200, counts: dict[str, int] | None = None) -> None:
        for _ in range(n):
            self.now += elapsed
            self.throttle.observe(self.host, self.now, status, elapsed, counts or {})
            self.paces.append(self.throttle.limiter.pace(self.host))

    @property
    def pace(self) -> tuple[int, float]:
        return self.paces[-1]


def test_a_host_gets_its_rules_cap_and_delay_and_semaphores_fit_the_largest_cap() -> None:
    lim = limiter(per_host=2, hosts={"big.test": {"per_host": 5}, "slow.test": {"per_host": 1, "delay": 2.0}})
    assert lim.semaphores[0].get_value() == 5
    big = [lim.try_acquire("big.test", 0.0) for _ in range(6)]
    assert big[:5] == [big[0]] * 5 and big[5] == Wait(None)  # its own cap, 5, exactly
    other = [lim.try_acquire("other.test", 0.0) for _ in range(3)]
    assert isinstance(other[0], int) and other[2] == Wait(None)  # the crawl's cap, 2
    assert isinstance(lim.try_acquire("slow.test", 10.0), int)
    assert lim.delay_of("slow.test") == 2.0 and lim.delay_of("other.test") == 0.0
    assert lim.try_acquire("slow.test", 10.5) == Wait(12.0)  # its delay between starts
    lim.set_delay("slow.test", 3.0)  # a robots.txt Crawl-delay raises it
    assert lim.limits("slow.test") == (1, 3.0) and lim.delay_of("slow.test") == 3.0
    lim.set_delay("other.test", 0.5)
    assert lim.limits("other.test") == (2, 0.5)


def test_a_slot_reused_by_a_host_with_a_smaller_cap_holds_that_cap() -> None:
    lim = LocalLimiter(CTX, slots=1, per_host=1, delay=0.0, tickets=8,
                       rules=SiteRules(check_hosts({"a": {"per_host": 3}})))
    grants = [lim.try_acquire("a", 0.0) for _ in range(3)]
    for grant in grants:
        assert isinstance(grant, int)
        lim.release("a", grant)
        lim.completed("a")
    slot = lim.try_acquire("b", 0.0)
    assert isinstance(slot, int) and slot == grants[0]  # the same semaphore, sized for 3
    assert lim.try_acquire("b", 0.0) == Wait(None)  # but b's cap is 1


def test_rising_latency_lowers_concurrency_then_raises_the_delay() -> None:
    lim = limiter(per_host=4)
    feed = Feed(Throttle(lim, Stats(), max_delay=5.0))
    feed(20, 0.1)
    assert feed.pace == (4, 0.0)  # healthy: the configured pace
    feed(60, 0.5)
    caps = [cap for cap, _ in feed.paces]
    assert caps[20:] == sorted(caps[20:], reverse=True)  # only down while slow
    assert feed.pace[0] == 1 and 0.5 <= feed.pace[1] <= 5.0  # then the delay, to the latency at least


def test_a_little_slower_is_one_step_and_far_slower_is_in_proportion() -> None:
    def first_step(slower: float) -> tuple[int, float]:
        feed = Feed(Throttle(limiter(per_host=8), Stats(), max_delay=5.0))
        feed(10, 0.1)
        feed(20, slower)
        return next(pace for pace in feed.paces if pace != (8, 0.0))

    assert first_step(0.18) == (7, 0.0)  # 1.8 times the idle latency: one off
    cap, delay = first_step(0.6)  # 6 times: the smoothed latency passes 2 times, 8 * 1.5 / 2 = 6
    assert cap <= 6 and delay == 0.0


def test_a_healthy_host_recovers_stepwise_to_its_caps_and_never_past_them() -> None:
    lim = limiter(per_host=3, delay=0.2)
    feed = Feed(Throttle(lim, Stats(), max_delay=10.0))
    feed(5, 0.1)
    feed(80, 1.0)  # overloaded for a while: concurrency 1, delay raised
    assert feed.pace[0] == 1 and feed.pace[1] > 1.0
    feed(400, 0.1)
    assert feed.pace == (3, 0.2)  # back to the configured pace...
    recovery = feed.paces[85:]
    delays = [delay for _, delay in recovery]
    assert delays == sorted(delays, reverse=True)  # the delay comes down first...
    first_raise = next(i for i, (cap, _) in enumerate(recovery) if cap > 1)
    assert recovery[first_raise][1] == 0.2  # ...to the configured one, then the concurrency rises
    assert all(cap <= 3 and delay >= 0.2 for cap, delay in feed.paces)  # never past the caps


@pytest.mark.parametrize(("status", "counts"), [(429, {}), (503, {}), (0, {"error_read_timeout": 1})])
def test_429_503_and_timeouts_halve_the_concurrency_then_double_the_delay(status: int, counts: dict) -> None:
    lim = limiter(per_host=8)
    feed = Feed(Throttle(lim, Stats(), max_delay=60.0))
    feed(5, 0.05)
    feed(1, 0.05, status, counts)
    assert feed.pace == (4, 0.0)  # at once
    feed(SETTLE - 1, 0.05, status, counts)
    assert feed.pace == (4, 0.0)  # the answers to what was sent before the step do not count twice
    feed(1, 0.05, status, counts)
    assert feed.pace == (2, 0.0)
    feed(2 * SETTLE, 0.05, status, counts)
    assert feed.pace[0] == 1 and feed.pace[1] > 0
    delay = feed.pace[1]
    feed(SETTLE, delay, status, counts)
    assert feed.pace == (1, 2 * delay)


def test_a_connection_refused_is_not_taken_for_overload_nor_for_the_idle_latency() -> None:
    lim = limiter(per_host=4)
    feed = Feed(Throttle(lim, Stats(), max_delay=60.0))
    feed(5, 0.001, 0, {"error_connection_refused": 1})
    feed(20, 0.05)  # 50 times the refusals' time: the host's first answers, its idle latency
    feed(5, 0.001, 0, {"error_connection_refused": 1})
    assert set(feed.paces) == {(4, 0.0)}


def test_answers_from_the_http_cache_say_nothing_of_the_hosts_latency() -> None:
    lim = limiter(per_host=4)
    feed = Feed(Throttle(lim, Stats(), max_delay=60.0))
    feed(20, 0.0, 200, {HITS: 1})  # served from disk: no exchange, no time
    feed(30, 0.05)  # the host's own answers, as fast as they ever are
    assert set(feed.paces) == {(4, 0.0)}


def test_a_fast_local_host_is_not_throttled_by_the_crawlers_own_jitter() -> None:
    lim = limiter(per_host=4)
    feed = Feed(Throttle(lim, Stats(), max_delay=60.0))
    feed(5, 0.001)
    feed(50, 0.008)  # 8 times the idle latency, but 7 ms more: a fetcher thread waiting for the CPU
    assert feed.pace == (4, 0.0)


def test_a_host_rules_caps_bound_adaptation_and_the_stats_show_the_pace() -> None:
    lim = limiter(per_host=2, delay=0.0, hosts={"a.test": {"per_host": 6, "delay": 0.3}})
    stats = Stats()
    feed = Feed(Throttle(lim, stats, max_delay=60.0))
    feed(5, 0.1)
    assert feed.pace == (6, 0.3)
    feed(30, 0.6)
    assert feed.pace[0] < 6
    assert stats.full_dict()["hosts"]["a.test"]["per_host"] == feed.pace[0]
    lim.set_delay("a.test", 1.0)  # robots.txt's Crawl-delay: a floor adaptation keeps
    feed(400, 0.1)
    assert feed.pace == (6, 1.0)
    shown = stats.full_dict()["hosts"]["a.test"]
    assert (shown["per_host"], shown["delay_s"]) == (6, 1.0)


def test_the_report_and_the_live_view_show_the_pace_adaptive_politeness_left() -> None:
    stats = Stats()
    for host, per_host, delay in (("calm.test", 8, 0.0), ("tired.test", 2, 0.0), ("spent.test", 1, 1.5)):
        stats.page_done(host, {"pages": 1, "status_200": 1}, 200, 0.1)
        stats.paced(host, per_host, delay)
    page = lxml.html.fromstring(render_report(stats.full_dict(), "paced"))
    shown = [(g.get("data-host"), g.get("data-per-host"), g.get("data-delay-s"))
             for g in page.xpath("//*[@class='paced-host']")]
    assert shown == [("spent.test", "1", "1.5"), ("tired.test", "2", "0.0"), ("calm.test", "8", "0.0")]  # slowest first
    assert not lxml.html.fromstring(render_report(Stats().full_dict())).xpath("//*[@id='pace-chart']")  # off: none

    reader, writer = CTX.Pipe(duplex=False)
    view = LiveView("paced", reader, writer)
    console = Console(record=True, width=120)
    console.print(view.render(time.monotonic(), stats, ["spent.test", "tired.test"]))
    screen = console.export_text()
    assert "pace" in screen and "1 / 1.50s" in screen and "2 / 0.00s" in screen
    reader.close()
    writer.close()


def test_with_per_ip_hosts_at_one_address_share_its_cap_and_a_completion_wakes_the_others() -> None:
    lim = LocalLimiter(CTX, slots=4, per_host=2, delay=0.0, tickets=16, per_ip=True)
    a1, a2 = lim.try_acquire("127.0.0.2:8001", 0.0), lim.try_acquire("127.0.0.2:8001", 0.0)
    assert isinstance(a1, int) and a1 == a2
    assert lim.try_acquire("127.0.0.2:8002", 0.0) == Wait(None)  # the address has its 2
    other = lim.try_acquire("127.0.0.3:8002", 0.0)
    assert isinstance(other, int) and other != a1  # another address is not held up
    lim.release("127.0.0.2:8001", a1)
    assert set(lim.completed("127.0.0.2:8001")) == {"127.0.0.2:8002"}  # offered again
    assert lim.try_acquire("127.0.0.2:8002", 0.0) == a1  # the same slot: one count, one spacing
    assert lim.try_acquire("127.0.0.2:8002", 0.0) == Wait(None)
    lim.close()


def test_with_per_ip_a_delay_and_a_retry_after_hold_every_host_at_the_address() -> None:
    lim = LocalLimiter(CTX, slots=4, per_host=2, delay=0.5, tickets=16, per_ip=True)
    grant = lim.try_acquire("127.0.0.2:8001", 10.0)
    assert isinstance(grant, int)
    assert lim.try_acquire("127.0.0.2:8002", 10.1) == Wait(10.5)
    lim.release("127.0.0.2:8001", grant)
    lim.completed("127.0.0.2:8001")
    lim.pause("127.0.0.2:8001", 30.0)  # its Retry-After, after its exchange is over
    assert lim.try_acquire("127.0.0.2:8002", 11.0) == Wait(30.0)
    lim.close()


def test_a_name_is_resolved_off_the_callers_thread_and_kept_for_its_ttl() -> None:
    cache = AddressCache()
    try:
        assert cache.address("127.0.0.2:8001", 0.0) == "127.0.0.2"  # a literal: no lookup
        assert cache.address("[::1]:8001", 0.0) == "::1"
        assert cache.address("localhost:8001", 0.0) is None  # asked in a thread; the caller goes on
        cache._asking["localhost:8001"].result(timeout=10)  # the lookup is over (no polling)
        address = cache.address("localhost:8001", 1.0)
        assert address in ("127.0.0.1", "::1")
        assert cache.address("localhost:8001", 1.0 + TTL - 1) == address  # kept
        assert cache.address("localhost:8001", 1.0 + TTL + 1) == address  # stale: the old answer while asked again
    finally:
        cache.close()


def test_a_name_that_does_not_resolve_is_its_own_address(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)  # no lookup leaves the machine
    cache = AddressCache()
    try:
        assert cache.address("gone.example:80", 1.0) is None
        cache._asking["gone.example:80"].result(timeout=10)  # the lookup is over (no polling)
        assert cache.address("gone.example:80", 1.0) == "gone.example"  # its fetch fails as usual; it is paced alone
    finally:
        cache.close()


def test_nodes_step_one_shared_pace_and_a_pace_slowed_by_a_node_that_left_comes_back() -> None:
    shared = limiter(per_host=4)  # the pace in force, as a shared crawl keeps it for every node
    left, stays = Feed(Throttle(shared, Stats(), max_delay=5.0)), Feed(Throttle(shared, Stats(), max_delay=5.0))
    stays(10, 0.1)  # at full pace, as far as it knows
    left(10, 0.1)
    left(3, 0.1, 503)  # one node meets 503s and slows the host for all...
    assert shared.pace("a.test") == (2, 0.0)
    stays(RECHECK // 2, 0.1)
    assert shared.pace("a.test") == (2, 0.0)  # ...the other starts from it, without a round trip a page
    stays(RECHECK + 4 * SETTLE, 0.1)  # the first node left: the healthy one reads the shared pace and raises it
    assert shared.pace("a.test") == (4, 0.0)
