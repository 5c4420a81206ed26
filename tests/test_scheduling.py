"""Unit tests of the engine's scheduling pieces: frontier, limiter, seen-URL store."""

from __future__ import annotations

import multiprocessing
import random
from pathlib import Path

from crawlkit.backends.local.frontier import LocalFrontier
from crawlkit.backends.local.jobdir import JobDir
from crawlkit.backends.local.limiter import LocalLimiter, Wait
from crawlkit.backends.local.seen import FingerprintSet, SeenManager
from crawlkit.http import Request
from crawlkit.urls import host_of


def _url(taken: tuple[int, Request] | None) -> str:
    assert taken is not None
    return taken[1].url


def test_frontier_round_robin_and_priority() -> None:
    f = LocalFrontier()
    f.push([(0, Request("http://a.test/1")), (0, Request("http://a.test/2", priority=5)), (0, Request("http://b.test/1"))])
    assert len(f) == 3
    first = f.next_host(0.0)
    assert first == "a.test"
    assert _url(f.take(first)) == "http://a.test/2"  # higher priority first
    assert f.next_host(0.0) == "b.test"  # hosts take turns
    assert _url(f.take("b.test")) == "http://b.test/1"
    assert f.next_host(0.0) == "a.test"
    assert _url(f.take("a.test")) == "http://a.test/1"
    assert f.next_host(0.0) is None and len(f) == 0


def test_frontier_park_until_time_and_until_unpark() -> None:
    f = LocalFrontier()
    f.push([(0, Request("http://a.test/1")), (0, Request("http://b.test/1"))])
    f.park("a.test", 10.0)
    f.park("b.test", None)
    assert f.next_host(5.0) is None
    assert f.next_time() == 10.0
    assert f.next_host(10.0) == "a.test"
    f.unpark("b.test")
    hosts = {f.next_host(10.0), f.next_host(10.0)}
    assert hosts == {"a.test", "b.test"}


def test_frontier_delayed_push() -> None:
    f = LocalFrontier()
    f.push([(0, Request("http://a.test/retry"))], not_before=3.0)
    assert len(f) == 1
    assert f.next_host(1.0) is None
    assert f.next_time() == 3.0
    assert f.next_host(3.0) == "a.test"


def test_limiter_caps_per_host_and_frees_slots() -> None:
    ctx = multiprocessing.get_context("spawn")
    limiter = LocalLimiter(ctx, slots=3, per_host=2, delay=0.0, tickets=8)
    a1 = limiter.try_acquire("a", 0.0)
    a2 = limiter.try_acquire("a", 0.0)
    assert isinstance(a1, int) and a1 == a2
    assert limiter.try_acquire("a", 0.0) == Wait(None)  # cap of 2 held
    b = limiter.try_acquire("b", 0.0)
    assert isinstance(b, int) and b != a1  # another host is not held up
    limiter.semaphores[a1].release()  # the fetcher's side
    limiter.completed("a")
    assert limiter.try_acquire("a", 0.0) == a1


def test_limiter_delay_between_starts() -> None:
    ctx = multiprocessing.get_context("spawn")
    limiter = LocalLimiter(ctx, slots=2, per_host=4, delay=0.5, tickets=8)
    assert isinstance(limiter.try_acquire("a", 100.0), int)
    assert limiter.try_acquire("a", 100.2) == Wait(100.5)
    assert isinstance(limiter.try_acquire("a", 100.5), int)
    limiter.set_delay("a", 2.0)  # robots Crawl-delay raises it
    assert isinstance(limiter.try_acquire("a", 101.0), int)
    assert limiter.try_acquire("a", 102.0) == Wait(103.0)


def test_fingerprint_set_is_exact_through_growth() -> None:
    s = FingerprintSet(capacity=8)
    rng = random.Random(7)
    values = [rng.getrandbits(64) for _ in range(20_000)]
    assert s.add_many(values) == values
    assert s.add_many(values[:100]) == []
    assert s.count() == 20_000
    assert s.nbytes() / s.count() <= 24
    assert s.add_many([0, 0]) == [0]  # the empty marker still round-trips


def test_seen_store_served_by_manager_answers_in_one_call() -> None:
    manager = SeenManager(ctx=multiprocessing.get_context("spawn"))
    manager.start()
    try:
        seen = manager.FingerprintSet()
        assert seen.add_many([1, 2, 3]) == [1, 2, 3]
        assert seen.add_many([3, 4]) == [4]
        assert seen.count() == 4
    finally:
        manager.shutdown()


def test_frontier_spills_beyond_memory_limit_and_keeps_order() -> None:
    f = LocalFrontier(memory_limit=10)
    f.push([(i, Request(f"http://a.test/{i}")) for i in range(100)])
    assert len(f) == 100 and f.spilled == 90
    got = []
    while (host := f.next_host(0.0)) is not None:
        taken = f.take(host)
        assert taken is not None
        got.append(taken)
        assert f.spilled == 0 or len(f) - f.spilled <= 10  # never more than the bound in memory
    # In order, each with its journal row as its lease, through the spill file too.
    assert [(job, r.url) for job, r in got] == [(i, f"http://a.test/{i}") for i in range(100)]
    f.close()


def _crawl_tree(f: LocalFrontier, fan_out: int, depth: int) -> list[str]:
    """The order in which a frontier hands out the pages of a tree of one host: each page taken
    is "fetched" at once and its ``fan_out`` children pushed, ``depth`` levels below the root."""
    f.push([(0, Request("http://t.test/r"))])
    order = []
    while (host := f.next_host(0.0)) is not None:
        taken = f.take(host)
        assert taken is not None
        page = taken[1]
        order.append(page.url.rsplit("/", 1)[1])
        if page.depth < depth:
            f.push([(0, Request(f"{page.url}{i}", depth=page.depth + 1)) for i in range(fan_out)])
    f.close()
    return order


def test_frontier_breadth_first_by_default_and_depth_first_as_set() -> None:
    assert _crawl_tree(LocalFrontier(), 2, 2) == ["r", "r0", "r1", "r00", "r01", "r10", "r11"]
    # Depth-first: a branch down to its leaves before the next (the last pushed first, as Scrapy's LIFO queues).
    assert _crawl_tree(LocalFrontier(depth_first=True), 2, 2) == ["r", "r1", "r11", "r10", "r0", "r01", "r00"]


def test_frontier_order_holds_through_the_spill_file() -> None:
    for depth_first in (False, True):
        spilled = _crawl_tree(LocalFrontier(memory_limit=3, depth_first=depth_first), 3, 4)
        assert spilled == _crawl_tree(LocalFrontier(depth_first=depth_first), 3, 4)
        assert len(spilled) == 1 + 3 + 9 + 27 + 81


def test_frontier_keeps_priority_across_a_spill() -> None:
    f = LocalFrontier(memory_limit=5)
    f.push([(i, Request(f"http://a.test/low{i}")) for i in range(20)])
    f.push([(100 + i, Request(f"http://a.test/high{i}", priority=10 - i)) for i in range(3)])
    assert f.spilled == 18  # the high-priority ones too: memory was full
    got = [_url(f.take("a.test")) for _ in range(23)]
    assert got == ([f"http://a.test/high{i}" for i in range(3)] + [f"http://a.test/low{i}" for i in range(20)])
    assert f.take("a.test") is None and len(f) == 0
    f.close()


def test_a_small_host_is_not_starved_by_a_big_hosts_spilled_backlog() -> None:
    f = LocalFrontier(memory_limit=10)
    f.push([(0, Request(f"http://big.test/{i}")) for i in range(10_000)])
    f.push([(0, Request(f"http://small.test/{i}")) for i in range(5)])  # discovered later: straight to disk
    assert f.spilled == 10_000 - 10 + 5
    taken = []
    for _ in range(10):
        host = f.next_host(0.0)
        assert host is not None
        taken.append(_url(f.take(host)))
        assert len(f) - f.spilled <= 10  # memory stays within its bound
    # Hosts take turns: the small host's five come out within the first ten takes, in order.
    assert [u for u in taken if "small" in u] == [f"http://small.test/{i}" for i in range(5)]
    assert [u for u in taken if "big" in u] == [f"http://big.test/{i}" for i in range(5)]
    f.close()


def test_a_resumed_jobdirs_backlog_keeps_priority_and_depth(tmp_path: Path) -> None:
    journal = JobDir(tmp_path / "job")
    journal.begin("")
    journal.add([(i, Request(f"http://a.test/{i}", priority=i % 3, depth=i % 2)) for i in range(1, 13)])
    journal.commit(0, {})
    journal.close()
    resumed = JobDir(tmp_path / "job")
    assert resumed.resuming
    f = LocalFrontier(memory_limit=4)  # the backlog comes back in batches, through the spill file
    for batch in resumed.pending(5):
        f.push(batch)
    got = [_url(f.take("a.test")) for _ in range(12)]
    by_rank = sorted(range(1, 13), key=lambda i: (-(i % 3), i % 2, i))
    assert got == [f"http://a.test/{i}" for i in by_rank]
    resumed.close()
    f.close()


def test_the_frontier_groups_requests_by_host_as_host_of_does() -> None:
    f = LocalFrontier()
    urls = ["http://a.test:80/x", "http://a.test:808", "http://A.test/y", "http://a.test:8080?q=/z", "https://a.test/",
            "http://user@a.test/w", "http://a.test:8080/v"]
    f.push([(0, Request(url)) for url in urls])
    taken = []
    while (host := f.next_host(0.0)) is not None:
        taken.append((host, _url(f.take(host))))
    assert sorted(taken) == sorted((host_of(url), url) for url in urls)


def test_priorities_past_64_bits_spill_as_the_greatest() -> None:
    f = LocalFrontier(memory_limit=1)
    f.push([(0, Request("http://a.test/0")), (0, Request("http://a.test/huge", priority=10**30)),
            (0, Request("http://a.test/tiny", priority=-10**30))])
    assert f.spilled == 2
    assert [_url(f.take("a.test")) for _ in range(3)] == ["http://a.test/huge", "http://a.test/0", "http://a.test/tiny"]
    f.close()
