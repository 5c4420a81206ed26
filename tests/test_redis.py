"""A crawl shared by several nodes through Redis: real redis-server, real CLI nodes, the local site.

The fixture starts its own ``redis-server`` on a free loopback port (no persistence, a temp
dir) and stops it. Without redis-server these tests skip, unless the CI variable is set: CI
installs it, so there a missing server is a failure.
"""

from __future__ import annotations

import datetime
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import CRAWLKIT, leftover_processes, redis_server, route_canonical_pages, wait_for

from crawlkit.backends import redis as backend
from crawlkit.backends.local.limiter import Wait
from crawlkit.backends.redis import connect
from crawlkit.http import Request
from crawlkit.sites import SiteRules, check_hosts
from crawlkit.tools.site import Site, SiteSpec
from crawlkit.urls import fingerprint


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = shutil.which("redis-server")
    message = None
    if server is None:
        message = "redis-server is not installed: apt-get install redis-server"
    elif backend.redis is None:
        message = "the Redis client is not installed: pip install -e '.[test,redis]'"
    if message is not None:
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the Redis tests)")
        pytest.skip(message)
    with redis_server(server, tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture()
def crawl_id() -> str:
    return "t" + uuid.uuid4().hex[:10]


# --------------------------------------------------------------------------- the pieces


def test_seen_store_answers_exactly_in_one_round_trip_and_stays_compact(redis_url: str, crawl_id: str) -> None:
    crawl = connect(redis_url, crawl_id)
    seen = crawl.seen
    fps = [1, 2**63, 2**64 - 1, 12345678901234567, 2**63 - 1]  # both halves of the unsigned range
    assert seen.add_many(fps) == fps
    calls_before = _calls(crawl.client, "evalsha")
    assert seen.add_many([7, 1, 2**64 - 1, 8, 2**63]) == [7, 8]  # the new ones, in order
    assert _calls(crawl.client, "evalsha") == calls_before + 1  # a batch is one script call
    assert seen.add_many([]) == []
    assert seen.count() == 7
    many = [(i * 0x9E3779B97F4A7C15) % 2**64 for i in range(1, 20_001)]
    assert seen.add_many(many) == many
    assert seen.add_many(many[::7]) == []
    keys = list(crawl.client.scan_iter(f"crawlkit:{crawl_id}:s:*"))
    assert keys and all(crawl.client.object("encoding", k) == b"intset" for k in keys)


def test_limiter_cap_and_delay_hold_across_nodes_and_a_dead_nodes_slot_frees_itself(
    redis_url: str, crawl_id: str
) -> None:
    a = connect(redis_url, crawl_id, lease_time=1.0).limiter(per_host=2, delay=0.0)
    b = connect(redis_url, crawl_id, lease_time=1.0).limiter(per_host=2, delay=0.0)
    g1, g2 = a.try_acquire("h", 0.0), b.try_acquire("h", 0.0)
    assert isinstance(g1, int) and isinstance(g2, int)
    assert isinstance(b.try_acquire("h", 0.0), Wait)  # two slots in use, across nodes
    assert isinstance(a.try_acquire("other", 0.0), int)  # another host is not held up
    permits = pickle.loads(pickle.dumps(b.permits))  # as a fetcher process gets it
    permits.release(g2, "h")  # b's fetcher: the exchange is over
    b.completed("h")
    g3 = b.try_acquire("h", 0.0)
    assert isinstance(g3, int)
    assert isinstance(b.try_acquire("h", 0.0), Wait)
    # a dies holding g1 (no release, no renewal): its slot comes back after lease_time
    wait_for(lambda: isinstance(b.try_acquire("h", 0.0), int), 10, "a dead node's slot to free itself")

    slow = connect(redis_url, crawl_id, lease_time=30.0).limiter(per_host=4, delay=5.0)
    now = time.monotonic()
    assert isinstance(slow.try_acquire("d", now), int)
    wait = slow.try_acquire("d", now)
    assert isinstance(wait, Wait) and wait.until is not None and wait.until > now + 4  # the delay, in Redis time
    other = connect(redis_url, crawl_id, lease_time=30.0).limiter(per_host=4, delay=0.0)
    other.set_delay("e", 5.0)  # a robots.txt Crawl-delay learned by one node...
    assert isinstance(slow.try_acquire("e", now), int)
    assert isinstance(slow.try_acquire("e", now), Wait)  # ...holds for another
    other.pause("f", time.monotonic() + 5.0)  # a Retry-After seen by one node...
    assert isinstance(slow.try_acquire("f", now), Wait)  # ...holds for another


def test_frontier_leases_and_a_dead_nodes_requests_come_back(redis_url: str, crawl_id: str) -> None:
    a = connect(redis_url, crawl_id, lease_time=1.0)
    b = connect(redis_url, crawl_id, lease_time=30.0)
    a.heartbeat()
    b.heartbeat()
    a.frontier.push([Request("http://h.test/1"), Request("http://h.test/2"), Request("http://h.test/0", priority=1)])
    assert a.frontier.next_host(time.monotonic()) == "h.test"
    lease, first = a.frontier.take("h.test")
    assert first.url == "http://h.test/0"  # priority first
    assert not b.frontier.idle()
    a.frontier.push([Request("http://h.test/3")])  # a page's new links go in before its lease ends
    a.frontier.done([lease])
    taken = [a.frontier.take("h.test"), b.frontier.take("h.test")]
    assert [r.url for _, r in taken] == ["http://h.test/1", "http://h.test/2"]
    b.frontier.reclaim(taken[1][0], taken[1][1])
    assert b.frontier.take("h.test")[1].url == "http://h.test/2"  # given back to the front
    # a stops (no heartbeat) holding http://h.test/1: after its lease, b's heartbeat takes it back
    wait_for(lambda: b.heartbeat() == 1, 10, "a's lease to expire")
    urls = {b.frontier.take("h.test")[1].url, b.frontier.take("h.test")[1].url}
    assert urls == {"http://h.test/1", "http://h.test/3"}
    assert b.frontier.take("h.test") is None
    assert not b.frontier.idle()  # b still holds leases
    b.frontier.close()  # gives them back
    assert not b.frontier.idle()
    c = connect(redis_url, crawl_id)
    c.heartbeat()
    for _ in range(3):
        lease, _request = c.frontier.take("h.test")
        c.frontier.done([lease])
    assert c.frontier.idle()


def test_depth_first_takes_a_hosts_last_request_first(redis_url: str, crawl_id: str) -> None:
    node = connect(redis_url, crawl_id)
    node.heartbeat()
    node.frontier.depth_first = True  # order: depth-first (RedisBackend sets it from the settings)
    node.frontier.push([Request("http://h.test/1", depth=1), Request("http://h.test/2", depth=1)])
    lease, first = node.frontier.take("h.test")
    assert first.url == "http://h.test/2"
    node.frontier.push([Request("http://h.test/21", depth=2)])  # its links, before its lease ends
    node.frontier.done([lease])
    urls = []
    while (taken := node.frontier.take("h.test")) is not None:
        urls.append(taken[1].url)
        node.frontier.done([taken[0]])
    assert urls == ["http://h.test/21", "http://h.test/1"]  # down the branch first
    assert node.frontier.idle()


def _slots(crawl: Any, host: str) -> set[str]:
    return {m.decode() for m in crawl.client.zrange(f"{crawl.prefix}l:{host}", 0, -1)}


def test_a_url_is_marked_seen_in_the_script_that_queues_it_and_queued_once_by_racing_nodes(
    redis_url: str, crawl_id: str
) -> None:
    """Admission asks which URLs are unseen without marking them; the push marks and queues in one
    script. A node killed between the two leaves nothing seen-but-unqueued, and two nodes that
    both found a URL unseen queue it once."""
    first, second = connect(redis_url, crawl_id), connect(redis_url, crawl_id)
    request = Request("http://h.test/a")
    fp = fingerprint(request.url)
    assert first.seen.unseen([fp]) == [fp] and second.seen.unseen([fp]) == [fp]  # both asked: nothing marked
    assert first.seen.count() == 0 and first.client.llen(f"{first.prefix}q:h.test") == 0  # a death here loses nothing
    first.frontier.push([request], mark_seen=True)
    second.frontier.push([Request("http://h.test/a")], mark_seen=True)  # the race: second finds it seen now
    assert first.client.llen(f"{first.prefix}q:h.test") == 1 and first.seen.count() == 1
    assert second.seen.unseen([fp]) == []
    again = Request("http://h.test/a", dont_filter=True)  # dont_filter: queued whatever was seen
    second.frontier.push([again], mark_seen=True)
    assert first.client.llen(f"{first.prefix}q:h.test") == 2


def test_a_grant_leases_the_hosts_next_requests_with_their_slots_in_one_round_trip(
    redis_url: str, crawl_id: str
) -> None:
    crawl = connect(redis_url, crawl_id)
    crawl.heartbeat()
    limiter, frontier = crawl.limiter(per_host=3, delay=0.0), crawl.frontier
    frontier.push([Request(f"http://h.test/{i}") for i in range(5)])
    assert frontier.next_host(time.monotonic()) == "h.test"
    client, before = crawl.client, _calls(crawl.client, "evalsha")
    first = limiter.try_acquire("h.test", 0.0)
    assert isinstance(first, int)
    assert _calls(client, "evalsha") == before + 1  # the slot and the request, in one script
    assert len(_slots(crawl, "h.test")) == 3  # as many as the cap allows, each request with its slot
    assert client.hlen(f"{crawl.prefix}lease:{crawl.node}") == 3
    started = [frontier.take("h.test")]
    for _ in range(2):  # the ones leased ahead start without a word to Redis
        assert isinstance(limiter.try_acquire("h.test", 0.0), int)
        started.append(frontier.take("h.test"))
    assert _calls(client, "evalsha") == before + 1
    assert [request.url for _, request in started] == [f"http://h.test/{i}" for i in range(3)]
    assert isinstance(limiter.try_acquire("h.test", 0.0), Wait)  # the cap holds
    # An exchange over and a page done: nothing is sent until the node's next call...
    limiter.completed("h.test")
    frontier.done([started[0][0]])
    calls = _calls(client, "evalsha")
    assert len(_slots(crawl, "h.test")) == 3 and _calls(client, "evalsha") == calls
    # ...which carries them, in the same round trip: the slot is free again, the lease finished.
    assert isinstance(limiter.try_acquire("h.test", 0.0), int)
    assert client.hlen(f"{crawl.prefix}lease:{crawl.node}") == 3
    assert frontier.take("h.test")[1].url == "http://h.test/3"


def test_a_slot_released_before_its_exchange_ended_is_freed_once(redis_url: str, crawl_id: str) -> None:
    crawl = connect(redis_url, crawl_id)
    crawl.heartbeat()
    limiter = crawl.limiter(per_host=2, delay=0.0)
    grants = [limiter.try_acquire("h", 0.0), limiter.try_acquire("h", 0.0)]  # an empty queue: slots alone
    assert all(isinstance(g, int) for g in grants)
    assert _slots(crawl, "h") == {f"{crawl.node}:{g}" for g in grants}
    limiter.release("h", grants[0])  # its fetcher died, or it was not sent; the engine then counts it over
    limiter.completed("h")
    crawl.flush()
    assert _slots(crawl, "h") == {f"{crawl.node}:{grants[1]}"}  # the other request's slot stays held
    limiter.completed("h")
    crawl.flush()
    assert _slots(crawl, "h") == set()
    grants = [limiter.try_acquire("h", 0.0), limiter.try_acquire("h", 0.0)]
    limiter.completed("h")  # the first exchange is over: which slot goes does not matter...
    limiter.release("h", grants[1])  # ...nor which one the second, whose fetcher died, still holds
    limiter.completed("h")
    crawl.flush()
    assert _slots(crawl, "h") == set()


def test_with_a_delay_a_grant_leases_one_and_close_gives_back_what_was_leased_ahead(
    redis_url: str, crawl_id: str
) -> None:
    crawl = connect(redis_url, crawl_id)
    crawl.heartbeat()
    crawl.frontier.push([Request(f"http://d.test/{i}") for i in range(3)] + [Request(f"http://h.test/{i}")
                                                                            for i in range(3)])
    assert isinstance(crawl.limiter(per_host=4, delay=5.0).try_acquire("d.test", 0.0), int)
    assert len(_slots(crawl, "d.test")) == 1  # one start per delay, whatever the cap
    ahead = crawl.limiter(per_host=4, delay=0.0)
    assert isinstance(ahead.try_acquire("h.test", 0.0), int)
    assert len(_slots(crawl, "h.test")) == 3
    crawl.frontier.take("h.test")
    crawl.frontier.close()  # the node stops: what it leased ahead goes back, with its slots
    assert _slots(crawl, "h.test") == {f"{crawl.node}:1"}  # the started one's slot ends with its exchange
    other = connect(redis_url, crawl_id)
    assert sorted(other.frontier.take("h.test")[1].url for _ in range(3)) == [f"http://h.test/{i}" for i in range(3)]


def test_waiting_writes_survive_a_redis_that_forgot_its_scripts(redis_url: str, crawl_id: str) -> None:
    crawl = connect(redis_url, crawl_id)
    crawl.heartbeat()
    crawl.frontier.push([Request("http://h.test/1")])
    lease, _request = crawl.frontier.take("h.test")
    crawl.frontier.done([lease])
    crawl.add_stats({"pages": 1})
    crawl.client.script_flush()  # as after a restart that kept the data
    assert crawl.frontier.idle()  # the waiting writes went first: no request is left in flight
    assert crawl.totals() == {"pages": 1}


class _RunsCode:
    """What an attacker with write access to Redis would store: a pickle that runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


class _UserObject:
    pass


def test_what_is_read_from_redis_cannot_run_code_and_only_plain_data_is_queued(
    redis_url: str, crawl_id: str, tmp_path: Path
) -> None:
    problems: list[str] = []
    node = connect(redis_url, crawl_id, count=problems.append)
    node.heartbeat()
    marker = tmp_path / "ran"
    # An entry crawlkit did not write, ahead of a real request in the same host's queue.
    node.call("push", 0, "h.test", 1, "", "", pickle.dumps(_RunsCode(marker)))
    node.frontier.push([Request("http://h.test/ok")])
    assert node.frontier.next_host(time.monotonic()) == "h.test"
    lease, request = node.frontier.take("h.test")
    assert request.url == "http://h.test/ok"
    assert problems == ["error_unreadable_redis_data"]
    node.client.hset(node.prefix + "robots", "h.test", pickle.dumps(_RunsCode(marker)))
    assert node.robots("h.test") is None  # the node asks the host itself
    assert not marker.exists()
    # A request must carry plain data to cross to other nodes; anything else stays out, counted.
    when = datetime.datetime(2026, 11, 26, tzinfo=datetime.timezone.utc)
    node.frontier.push([Request("http://h.test/plain", meta={"when": when, "tags": {"a"}, "n": 1}),
                        Request("http://h.test/object", meta={"obj": _UserObject()})])
    assert problems[-1] == "error_unshareable_request"
    node.frontier.done([lease])
    lease, request = node.frontier.take("h.test")
    assert (request.url, request.meta) == ("http://h.test/plain", {"when": when, "tags": {"a"}, "n": 1})
    node.frontier.done([lease])
    assert node.frontier.take("h.test") is None
    node.frontier.close()


def test_an_entry_that_would_allocate_gigabytes_is_dropped_and_counted(redis_url: str, crawl_id: str) -> None:
    """A 30-byte queue entry once made a node allocate gigabytes (an allowed ``bytearray`` called with a huge
    int). 1 GiB here: an amount the old code could allocate (lazily) on any test machine, so it shows."""
    problems: list[str] = []
    node = connect(redis_url, crawl_id, count=problems.append)
    node.heartbeat()
    bombs = [b"\x80\x02cbuiltins\nbytearray\nJ\x00\x00\x00\x40\x85R.",  # bytearray(2**30)
             b"\x80\x05\x8e" + (1 << 30).to_bytes(8, "little") + b"abc."]  # BINBYTES8 declaring 1 GiB
    for bomb in bombs:
        node.call("push", 0, "h.test", 1, "", "", bomb)
    node.frontier.push([Request("http://h.test/ok")])
    node.client.hset(node.prefix + "robots", "h.test", pickle.dumps((200, 1 << 30)))  # bytes(2**30) if converted
    tracemalloc.start()
    try:
        assert node.frontier.next_host(time.monotonic()) == "h.test"
        lease, request = node.frontier.take("h.test")
        assert node.robots("h.test") is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert request.url == "http://h.test/ok"
    assert peak < 10_000_000
    assert problems == ["error_unreadable_redis_data"] * 3
    node.frontier.done([lease])
    assert node.frontier.take("h.test") is None
    assert node.client.llen(node.prefix + "q:h.test") == 0 and int(node.client.get(node.prefix + "inflight") or 0) == 0
    node.frontier.close()


def test_totals_and_host_names_crawlkit_did_not_write_are_read_without_failing(redis_url: str, crawl_id: str) -> None:
    node = connect(redis_url, crawl_id)
    node.heartbeat()
    node.add_stats({"pages": 3})
    node.client.hset(node.prefix + "stats", "junk", "1e999")  # HINCRBY never writes such a value
    node.client.sadd(node.prefix + "hosts", b"\xff\xfe.test")  # not UTF-8
    assert node.totals() == {"pages": 3}
    assert node.frontier.poll() == (0, 0)
    node.frontier.close()


# --------------------------------------------------------------------------- nodes through the CLI


class Node:
    """One ``crawlkit crawl`` process of a shared crawl, in its own session (so it can be killed whole)."""

    def __init__(self, tmp_path: Path, name: str, args: list[str]) -> None:
        self.out, self.log = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.log"
        self.marker = uuid.uuid4().hex
        self.proc = subprocess.Popen(
            [CRAWLKIT, *args, "-o", str(self.out), "--log-file", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, "CRAWLKIT_TEST_RUN": self.marker}, cwd=tmp_path,
        )
        self.stderr = ""

    def wait(self, timeout: float = 90) -> int:
        _, self.stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        wait_for(lambda: not leftover_processes(self.marker), 30, "the killed node's processes to go")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        for p in leftover_processes(self.marker):
            p.kill()

    def items(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.read_text().splitlines()] if self.out.exists() else []


def _nodes(tmp_path: Path, count: int, seeds: Path | None, redis_url: str, crawl_id: str, *extra: str) -> list[Node]:
    args = ["crawl", *([str(seeds)] if seeds else []), "--frontier", redis_url, "--crawl-id", crawl_id,
            "--workers", "1", *extra]
    return [Node(tmp_path, f"node{i}", args) for i in range(count)]


def _seeds(tmp_path: Path, urls: list[str]) -> Path:
    path = tmp_path / "seeds.txt"
    path.write_text("\n".join(urls) + "\n")
    return path


def _pages(items: list[dict[str, Any]]) -> list[str]:
    return [item["url"] for item in items if item["status"] == 200]


def test_a_hosts_own_max_pages_counts_the_pages_of_every_node(tmp_path: Path, redis_url: str, crawl_id: str) -> None:
    with Site(SiteSpec(hosts=1, pages=40, extras=False)) as site:
        host = site.urls[0].removeprefix("http://")
        config = tmp_path / "crawl.yaml"
        config.write_text(json.dumps({"hosts": {host: {"max_pages": 10}}}))
        # A delay between starts (held across nodes) longer than a node's reads of the others' counts.
        nodes = _nodes(tmp_path, 2, _seeds(tmp_path, site.seeds()), redis_url, crawl_id,
                       "--config", str(config), "--delay", "0.6")
        try:
            codes = [node.wait() for node in nodes]
        finally:
            for node in nodes:
                node.stop()
        fetched = [k for k in site.stats()["fetches"] if not k.endswith("/robots.txt")]
    assert codes == [0, 0], [n.stderr for n in nodes]
    assert all(n.items() for n in nodes)  # both nodes took part
    pages = _pages([item for n in nodes for item in n.items()])
    assert len(pages) == len(fetched) == 10  # the crawl's ten, not ten a node


def test_three_nodes_crawl_every_page_once_within_the_per_host_cap(
    tmp_path: Path, redis_url: str, crawl_id: str
) -> None:
    spec = SiteSpec(hosts=4, pages=150, latency=0.05)
    with Site(spec) as site:
        # Each node may have 2 requests out, the hosts 8 together: no node can hold every slot, so
        # the others must take part. (With a node's concurrency at the hosts' total, one node that
        # frees and takes a slot in one round trip may rightly do all the work.)
        nodes = _nodes(tmp_path, 3, _seeds(tmp_path, site.seeds()), redis_url, crawl_id,
                       "--per-host", "2", "--concurrency", "2")
        try:
            codes = [node.wait() for node in nodes]
        finally:
            for node in nodes:
                node.stop()
        stats = site.stats()
    assert codes == [0, 0, 0], [n.stderr for n in nodes]
    per_node = [n.items() for n in nodes]
    urls = [item["url"] for items in per_node for item in items]
    assert len(urls) == len(set(urls))  # no item twice across nodes
    assert set(_pages([i for items in per_node for i in items])) == site.expected_urls()
    assert all(per_node)  # the crawl really was shared: every node crawled
    twice = {k: n for k, n in stats["fetches"].items() if n > 1 and not k.endswith("/robots.txt")}
    assert not twice
    assert max(stats["peak_inflight"].values()) <= 2  # the cap held for all nodes together
    # The node that read the shared totals last saw every node's final counts.
    assert max(int(n.stderr.split("all nodes: ")[1].split(" pages")[0]) for n in nodes) == len(urls)


def test_a_page_whose_canonical_url_any_node_saw_is_skipped(tmp_path: Path, redis_url: str, crawl_id: str) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False, robots=False)) as site:
        route_canonical_pages(site)
        nodes = _nodes(tmp_path, 2, _seeds(tmp_path, site.seeds()), redis_url, crawl_id,
                       "-s", "skip_duplicate_canonical=true")
        try:
            codes = [node.wait() for node in nodes]
        finally:
            for node in nodes:
                node.stop()
        fetched = site.stats()["fetches"]
    assert codes == [0, 0], [n.stderr for n in nodes]
    base = site.urls[0]
    pages = {"/", "/p1", "/p2", "/p", "/q1", "/q2"}
    # The canonical URLs are claimed in the shared seen store: /p and /q were seen by every node.
    assert {key.removeprefix(base.split("//")[1]) for key in fetched} == pages | {"/from-q", "/robots.txt"}
    assert all(n == 1 for key, n in fetched.items() if not key.endswith("/robots.txt"))
    urls = [item["url"].removeprefix(base) for node in nodes for item in node.items()]
    assert len(urls) == len(set(urls)) and set(urls) - {"/q1", "/q2"} == {"/", "/p", "/from-q"}
    assert len(set(urls) & {"/q1", "/q2"}) == 1


def test_a_node_killed_mid_crawl_loses_nothing_and_the_others_finish(
    tmp_path: Path, redis_url: str, crawl_id: str
) -> None:
    """SIGKILL a node while it holds requests the server has received but not answered.

    The site answers 60 requests, then holds the rest, so the crawl stops mid-way in a known
    state whatever the machine's speed: the node with leased requests is the victim.
    """
    spec = SiteSpec(hosts=3, pages=120, latency=0.05, extras=False)
    with Site(spec) as site:
        site.hold(after=60)
        nodes = _nodes(tmp_path, 2, _seeds(tmp_path, site.seeds()), redis_url, crawl_id,
                       "--per-host", "2", "-s", "lease_time=2")
        try:
            wait_for(lambda: all(n.log.exists() and "joined crawl" in n.log.read_text() for n in nodes), 60,
                     "both nodes to join")
            ids = [re.search(r"node (\S+) joined crawl", n.log.read_text()).group(1) for n in nodes]
            client = backend.redis.Redis.from_url(redis_url)
            leases = [f"crawlkit:{crawl_id}:lease:{node_id}" for node_id in ids]
            wait_for(lambda: site.stats()["total"] > 60 and any(client.hlen(key) for key in leases), 60,
                     "requests held mid-crawl")
            victim = next(i for i, key in enumerate(leases) if client.hlen(key))
            survivor = nodes[1 - victim]
            nodes[victim].kill()
            site.release()
            assert survivor.wait() == 0, survivor.stderr
            assert "took back" in survivor.log.read_text()  # the dead node's leases, after lease_time
        finally:
            site.release()
            for node in nodes:
                node.stop()
        stats = site.stats()
    pages = _pages(nodes[0].items()) + _pages(nodes[1].items())
    assert set(pages) == site.expected_urls()
    assert max(stats["peak_inflight"].values()) <= 2
    assert "crawl finished" in survivor.stderr


def test_crawlkit_seed_adds_seeds_to_a_future_and_a_running_crawl(
    tmp_path: Path, redis_url: str, crawl_id: str
) -> None:
    spec = SiteSpec(hosts=2, pages=200, latency=0.04, extras=False)
    with Site(spec) as site:
        first, second = site.seeds()

        def seed(*urls: str) -> subprocess.CompletedProcess:
            path = tmp_path / f"add-{uuid.uuid4().hex[:6]}.txt"
            path.write_text("\n".join(urls) + "\n")
            return subprocess.run(
                [CRAWLKIT, "seed", "--frontier", redis_url, "--crawl-id", crawl_id, str(path)],
                capture_output=True, text=True, timeout=60,
            )

        added = seed(first)  # before any node runs
        assert added.returncode == 0 and "1 new seed(s)" in added.stderr, added.stderr
        domains = ["--allow-domain", "127.0.0.2", "--allow-domain", "127.0.0.3"]
        site.hold(after=5)  # the node cannot finish the first host before the second is seeded
        # It joins with no seeds of its own.
        [node] = _nodes(tmp_path, 1, None, redis_url, crawl_id, "--per-host", "2", *domains)
        try:
            wait_for(lambda: site.stats()["total"] > 5, 60, "the crawl to start")
            added = seed(first, second)  # while it runs: the first is known already
            site.release()
            assert added.returncode == 0 and "1 new seed(s)" in added.stderr and "1 already seen" in added.stderr
            assert node.wait() == 0, node.stderr
        finally:
            node.stop()
        stats = site.stats()
    pages = _pages(node.items())
    assert sorted(pages) == sorted(site.expected_urls())  # both hosts, each page once
    assert not {k: n for k, n in stats["fetches"].items() if n > 1}


def test_bad_frontier_settings_are_one_line_errors(crawlkit: Any, tmp_path: Path, redis_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    seeds = ["http://127.0.0.2:9/"]
    run = crawlkit("crawl", "--frontier", f"redis://127.0.0.1:{closed}/0", seeds=seeds)
    assert run.returncode == 2 and "cannot reach Redis" in run.stderr and "Traceback" not in run.stderr
    run = crawlkit("crawl", "--frontier", "http://127.0.0.1:6379", seeds=seeds)
    assert run.returncode == 2 and "is not a Redis URL" in run.stderr
    run = crawlkit("crawl", "--frontier", redis_url, "--jobdir", str(tmp_path / "job"), seeds=seeds)
    assert run.returncode == 2 and "cannot be combined" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    run = crawlkit("seed", "--frontier", f"redis://127.0.0.1:{closed}/0", str(_seeds(tmp_path, seeds)), output=None)
    assert run.returncode == 2 and "cannot reach Redis" in run.stderr
    run = crawlkit("crawl", "--frontier", redis_url, output=None)  # no seeds, so no hosts to stay within
    assert run.returncode == 2 and "needs --allow-domain" in run.stderr


def _calls(client: Any, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_redis_going_away_mid_crawl_stops_the_node_with_one_line(
    tmp_path: Path, redis_url: str, crawl_id: str
) -> None:
    # redis_url: skips (or fails in CI) like the others; this test needs its own server.
    server = shutil.which("redis-server")
    spec = SiteSpec(hosts=2, pages=200, latency=0.05, extras=False)
    with Site(spec) as site, redis_server(server, tmp_path) as own_url:
        site.hold(after=20)  # the crawl cannot end before Redis goes
        [node] = _nodes(tmp_path, 1, _seeds(tmp_path, site.seeds()), own_url, crawl_id)
        try:
            wait_for(lambda: site.stats()["total"] > 20, 60, "the crawl to get going")
            backend.redis.Redis.from_url(own_url).shutdown(nosave=True)
            site.release()
            assert node.wait() == 2
        finally:
            node.stop()
    assert node.stderr.strip().splitlines()[-1].startswith(f"Error: Redis at {own_url} failed")
    assert "Traceback" not in node.stderr and not leftover_processes(node.marker)


def test_delay_holds_across_nodes_as_the_server_sees_it(tmp_path: Path, redis_url: str, crawl_id: str) -> None:
    with Site(SiteSpec(hosts=1, pages=30, extras=False, robots=False)) as site:
        seeds = _seeds(tmp_path, site.seeds())
        nodes = _nodes(tmp_path, 2, seeds, redis_url, crawl_id, "--per-host", "4", "--delay", "0.15", "--no-robots")
        try:
            assert [node.wait() for node in nodes] == [0, 0], [n.stderr for n in nodes]
        finally:
            for node in nodes:
                node.stop()
        arrivals = next(iter(site.stats()["arrivals"].values()))
    assert len(arrivals) == 31
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert min(gaps) >= 0.15, gaps


def test_a_hosts_own_cap_and_delay_and_the_adapted_pace_hold_across_nodes(redis_url: str, crawl_id: str) -> None:
    rules = SiteRules(check_hosts({"big": {"per_host": 3}, "slow": {"delay": 5.0}}))
    node_a, node_b = (connect(redis_url, crawl_id, lease_time=30.0) for _ in range(2))
    a = node_a.limiter(per_host=1, delay=0.0, rules=rules)
    b = node_b.limiter(per_host=1, delay=0.0, rules=rules)
    now = time.monotonic()
    grants = [a.try_acquire("big", now), a.try_acquire("big", now), b.try_acquire("big", now)]
    assert all(isinstance(g, int) for g in grants)
    assert isinstance(b.try_acquire("big", now), Wait) and isinstance(a.try_acquire("big", now), Wait)  # its 3
    assert isinstance(a.try_acquire("slow", now), int)
    wait = b.try_acquire("slow", now)
    assert isinstance(wait, Wait) and wait.until is not None and wait.until > now + 4  # its own delay, on b too
    assert (a.limits("big"), a.limits("slow"), a.limits("other")) == ((3, 0.0), (1, 5.0), (1, 0.0))

    a.adapt("big", 1, 0.0)  # adaptive politeness on node a slows the host down...
    assert b.pace("big") == (1, 0.0)  # ...for node b as well
    for grant in grants[:2]:
        a.release("big", grant)
        a.completed("big")
    assert isinstance(b.try_acquire("big", now), Wait)  # b still holds one: the adapted cap is 1
    b.release("big", grants[2])
    b.completed("big")
    node_b.flush()  # the frees ride with a node's next call
    assert isinstance(a.try_acquire("big", time.monotonic()), int)
    a.adapt("big", 2, 1.5)
    assert b.pace("big") == (2, 1.5) and b.delay_of("big") == 1.5


def test_a_hosts_own_cap_and_delay_hold_across_nodes_as_the_server_sees_them(
    tmp_path: Path, redis_url: str, crawl_id: str
) -> None:
    with Site(SiteSpec(hosts=2, pages=15, latency=0.02, extras=False, robots=False)) as site:
        narrow, wide = (url.split("//", 1)[1] for url in site.urls)
        config = tmp_path / "hosts.yaml"
        config.write_text('hosts:\n  "127.0.0.2": {per_host: 1, delay: 0.1}\n')
        nodes = _nodes(tmp_path, 2, _seeds(tmp_path, site.seeds()), redis_url, crawl_id, "--per-host", "4",
                       "--config", str(config), "--no-robots")
        try:
            assert [node.wait() for node in nodes] == [0, 0], [n.stderr for n in nodes]
        finally:
            for node in nodes:
                node.stop()
        stats = site.stats()
    assert stats["peak_inflight"][narrow] == 1 and stats["peak_inflight"][wide] <= 4
    arrivals = stats["arrivals"][narrow]
    assert len(arrivals) == 16 and min(b - a for a, b in zip(arrivals, arrivals[1:])) >= 0.1
