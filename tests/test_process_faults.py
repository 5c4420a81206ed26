"""Process faults must never stall or loop a crawl: what a dead or frozen process held comes back,
a page that kills its process is dropped, processes that keep dying stop the crawl, and no
exchange outlives ``download_timeout``. Through the real CLI, asserting on what the server saw.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hostile import HostileServer, drip_head, first_then, page, silence
from support import leftover_processes, redis_server, wait_for
from test_durability import lines, pids, start
from test_faults import assert_logged, run_cli, summary

from crawlkit.backends.local.limiter import LocalLimiter
from crawlkit.fetch.channels import FetchChannels, _Inbox
from crawlkit.http import Request
from crawlkit.messages import FetchTask
from crawlkit.tools.site import Site, SiteSpec

NO_ROBOTS = page(b"", status=404)


def links(*paths: str) -> bytes:
    return "".join(f'<a href="{p}">{p}</a>' for p in paths).encode()


# ------------------------------------------------------------------ locks and permits of a dead fetcher


def _hold_turn(permits: object, ticket: int, entered: object, forever: object) -> None:
    with permits.turn(0, "a.test", 0.0, 60.0, ticket):  # type: ignore[attr-defined]
        entered.set()  # type: ignore[attr-defined]
        forever.wait()  # type: ignore[attr-defined]


def test_the_turn_lock_of_a_killed_process_is_given_back() -> None:
    ctx = multiprocessing.get_context("forkserver")
    limiter = LocalLimiter(ctx, slots=2, per_host=2, delay=1.0, tickets=4)
    entered, forever = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_turn, args=(limiter.permits, 3, entered, forever))
    holder.start()
    try:
        assert entered.wait(30), "the child never took its turn"
        holder.kill()
        holder.join(30)
        assert not limiter.turn_locks[0].acquire(False)  # still held by the dead process
        limiter.recover_turn("a.test", 0, 2)  # another ticket: not the holder, nothing happens
        assert not limiter.turn_locks[0].acquire(False)
        limiter.recover_turn("a.test", 0, 3)
        assert limiter.turn_locks[0].acquire(False)
    finally:
        holder.kill()
        holder.join(30)


def _take_one(channels: FetchChannels, took: object, forever: object) -> None:
    took.send(_Inbox(channels, 0).get())  # type: ignore[attr-defined]  # a Pipe: no lock for a kill to leave held
    forever.wait()  # type: ignore[attr-defined]


def _task(req_id: int) -> FetchTask:
    return FetchTask(req_id, 0, req_id, 0, 0.0, Request(f"http://a.test/{req_id}"))


def test_a_dead_readers_fetch_queue_is_emptied_and_read_by_the_next() -> None:
    """A reader takes one of three tasks and is killed while busy with it; the queue is
    emptied of the two it left, and the next reader gets only what is sent after."""
    ctx = multiprocessing.get_context("forkserver")
    channels = FetchChannels(
        queues=[ctx.Queue()], ready=[ctx.Semaphore(0)], reads=ctx.RawArray("q", 1), owners=None, registrations=[],
        permits=None, released=None, notices=None, deadlines=None, heartbeats=ctx.RawArray("d", 1),
    )
    pipes, forever = [ctx.Pipe(duplex=False) for _ in range(2)], ctx.Event()
    readers = [ctx.Process(target=_take_one, args=(channels, writer, forever)) for _, writer in pipes]
    try:
        for req_id in (1, 2, 3):
            channels.send(0, _task(req_id))
        readers[0].start()
        assert pipes[0][0].poll(30) and pipes[0][0].recv().req_id == 1
        readers[0].kill()
        readers[0].join(30)
        assert channels.recycle(0, 3, 5.0)
        assert not channels.ready[0].acquire(False) and channels.queues[0].empty()
        readers[1].start()
        channels.send(0, _task(4))
        assert pipes[1][0].poll(30) and pipes[1][0].recv().req_id == 4
        channels.reads[0] = 1  # a reader that died inside get: the queue cannot be trusted
        assert not channels.recycle(0, 0, 5.0)
    finally:
        for reader in readers:
            if reader.pid is not None:
                reader.kill()
                reader.join(30)
        for conn in (end for pipe in pipes for end in pipe):
            conn.close()
        channels.queues[0].cancel_join_thread()
        channels.queues[0].close()


def test_a_dead_fetchers_send_turn_is_given_back_and_the_delay_crawl_goes_on(tmp_path: Path) -> None:
    """The only fetcher is killed while it holds the host's send turn (its request's headers are
    held by the server): the pages after it keep coming at the delay's pace, not after the
    turn's 40 s timeout."""
    pages = [f"/p{i}" for i in range(20)]
    ok = page(b"<title>ok</title>")
    with HostileServer() as server:
        routes = {"/": page(links("/slow", *pages)), "/slow": first_then(silence(), ok), "/robots.txt": NO_ROBOTS}
        site = server.site({**routes, **{p: ok for p in pages}})
        with start(tmp_path, SimpleNamespace(seeds=lambda: [site.url("/")]), "--workers", "1", "-s", "delay=0.2") as (
            proc, out, log, marker
        ):
            wait_for(lambda: server.count(site, "/slow") == 1 and pids(log, r"fetcher process (\d+) reads"), 60,
                     "/slow held")
            victim = pids(log, r"fetcher process (\d+) reads")[0]
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            _, stderr = proc.communicate(timeout=120)
        hits = [h for h in server.seen() if h.path in pages]
    assert proc.returncode == 0, stderr
    assert "fetcher_died 1" in stderr
    assert sorted(h.path for h in hits) == sorted(pages)  # each once
    assert server.count(site, "/slow") == 2
    # 20 pages at 0.2 s apart take 4 s; a lock left held would add the turn's 40 s timeout.
    assert max(h.time for h in hits) - killed_at < 25
    times = sorted(h.time for h in hits)
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.15  # and the delay still holds


def test_a_crawl_survives_more_fetcher_deaths_than_it_has_fetch_queues(tmp_path: Path) -> None:
    """The only fetcher is killed 7 times, pages being done between the kills: more deaths than
    the 4 fetch queues of one worker. A dead fetcher's queue is given to a later one, and the
    tasks it still held (already re-queued) are never run: no page is fetched more than twice,
    and the per-host cap holds as the server sees it.

    The kills come a few pages apart while every host has hundreds of pages queued (30 links a
    page), so a re-queued page, put back behind them, is not in flight at a later kill.
    """
    kills = 7
    spec = SiteSpec(hosts=2, pages=400, links=30, latency=0.02, extras=False)
    with Site(spec) as site:
        site.hold(after=500)  # of 804 requests: the crawl cannot end before the last kill
        with start(tmp_path, site, "--workers", "1", "--per-host", "2") as (proc, out, log, marker):
            killed: list[int] = []

            def fetchers() -> list[int]:
                return [pid for pid in pids(log, r"fetcher process (\d+) reads") if pid not in killed]

            try:
                for _ in range(kills):
                    done = lines(out)

                    def progressed(done: int = done) -> bool:
                        return proc.poll() is not None or (lines(out) >= done + 5 and bool(fetchers()))

                    wait_for(progressed, 60, f"5 more items and a new fetcher after {len(killed)} kills")
                    if proc.poll() is not None:
                        break
                    victim = fetchers()[-1]
                    os.kill(victim, signal.SIGKILL)
                    killed.append(victim)
            finally:
                site.release()
            _, stderr = proc.communicate(timeout=120)
        stats = site.stats()
    assert proc.returncode == 0, stderr[-3000:]
    assert len(killed) == kills and f"fetcher_died {kills}" in stderr
    got = [re.search(r'"url": "([^"]+)"', line).group(1) for line in out.read_text().splitlines()]
    # A page missing here is lost or dropped as poison (in flight at max_process_deaths kills): the stderr says which.
    missing = site.expected_urls() - set(got)
    assert not missing and len(got) == len(set(got)), (sorted(missing), stderr[-3000:])
    assert max(stats["fetches"].values()) <= 2
    assert max(stats["peak_inflight"].values()) <= 2
    assert not leftover_processes(marker)


@pytest.fixture()
def redis_url(tmp_path: Path) -> object:
    with redis_server("redis-server", tmp_path) as url:
        yield url


def test_a_dead_fetchers_turn_in_redis_is_ended_by_its_engine(redis_url: str) -> None:
    from crawlkit.backends.redis import connect

    limiter = connect(redis_url, "t" + uuid.uuid4().hex[:10], lease_time=30.0).limiter(per_host=2, delay=0.0)
    permits = limiter.permits
    dead = permits.turn(7, "a.test", 0.0, 60.0, 0)
    dead.__enter__()  # and its process dies: __exit__ never runs
    try_turn = lambda token: permits._enter(args=[permits.prefix, "a.test", token, 60_000, 0])  # noqa: E731
    assert try_turn("another") == -1  # held, for up to its 60 s expiry
    limiter.recover_turn("a.test", 8, 1)  # not its grant: nothing happens
    assert try_turn("another") == -1
    limiter.recover_turn("a.test", 7, 0)
    assert try_turn("another") >= 0


# ------------------------------------------------------------------ poison pages and crash loops

SPIDERS = '''
import os
import threading

from crawlkit import Request, Spider


class Poison(Spider):
    name = "poison"

    def parse(self, response):
        if response.url.endswith("/poison"):
            os._exit(3)
        yield {"url": response.url}
        for url in response.links():
            yield Request(url)


class Endless(Poison):
    name = "endless"

    def parse(self, response):
        if response.url.endswith("/poison"):
            while True:  # a callback that never returns
                pass
        yield from super().parse(response)


class ChildOnly(Poison):
    name = "child_only"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if os.getpid() != int(os.environ["ENGINE_PID"]):
            raise RuntimeError("the secrets file is readable by the engine alone")


PARENT = os.environ.setdefault("ENGINE_PID", str(os.getpid()))


class DiesInFetchers:
    """A middleware whose open() kills the fetcher process it runs in (and only that kind)."""

    def open(self, spider):
        if threading.current_thread().name.startswith("fetch-"):
            os._exit(4)

    def process_request(self, request, spider):
        return request


class DiesInParsers:
    """An item pipeline whose open() kills the parser process it runs in."""

    def open(self, spider):
        os._exit(5)

    def process_item(self, item, spider):
        return item


class HangsOnOne:
    """A middleware whose hook never returns (for a minute) on one URL, as a hung DNS lookup would."""

    def process_request(self, request, spider):
        if request.url.endswith("/hang"):
            threading.Event().wait(60)
        return request
'''


POISON_PAGES = [f"/p{i}" for i in range(10)]


def crawl_poison_site(tmp_path: Path, spider: str, *args: str) -> tuple[Any, Counter[str], Any, float]:
    """Crawl a site whose index links ten good pages and /poison with ``spiders.py:SPIDER``;
    the run, what the server saw, the site and the seconds the crawl took."""
    (tmp_path / "spiders.py").write_text(SPIDERS)
    pages = POISON_PAGES
    ok = page(b"<title>ok</title>")
    with HostileServer() as server:
        site = server.site({"/": page(links(*pages[:5], "/poison", *pages[5:])), "/poison": ok,
                            "/robots.txt": NO_ROBOTS, **{p: ok for p in pages}})
        (tmp_path / "seeds.txt").write_text(site.url("/") + "\n")
        started = time.monotonic()
        run = run_cli(tmp_path, "crawl", "seeds.txt", "-o", "out.jsonl", "--spider", f"spiders.py:{spider}", *args)
        elapsed = time.monotonic() - started
        seen = server.paths(site)
    assert run.returncode == 0, run.stderr[-3000:]
    assert seen["/poison"] == 2  # max_process_deaths, then dropped
    assert {item["url"] for item in run.items()} == {site.url(p) for p in ["/", *pages]}
    assert all(seen[p] <= 3 for p in pages)  # bystanders re-queued at each of the 2 deaths, never dropped
    return run, seen, site, elapsed


def test_a_page_that_kills_its_parser_is_dropped_after_max_process_deaths(tmp_path: Path) -> None:
    run, _, site, _ = crawl_poison_site(tmp_path, "Poison")
    c = summary(run.stderr)
    assert c["dropped_poison"] == 1 and c["error_parser_died"] == 2
    assert_logged(run.stderr, site.url("/poison"), "dropped", "max_process_deaths")


def test_a_callback_that_never_returns_is_stopped_at_callback_timeout_and_dropped_as_poison(tmp_path: Path) -> None:
    run, _, site, elapsed = crawl_poison_site(tmp_path, "Endless", "-s", "callback_timeout=2")
    assert elapsed < 60  # two timeouts of 2 s and the restarts; without the timeout it never ends
    c = summary(run.stderr)
    assert c["error_callback_timeout"] == 2 and c["dropped_poison"] == 1
    assert_logged(run.stderr, site.url("/poison"), "callback_timeout")


def test_a_spider_that_cannot_start_in_a_parser_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "spiders.py").write_text(SPIDERS)
    with HostileServer() as server:
        site = server.site({"/": page(b"<title>ok</title>"), "/robots.txt": NO_ROBOTS})
        (tmp_path / "seeds.txt").write_text(site.url("/") + "\n")
        run = run_cli(tmp_path, "crawl", "seeds.txt", "-o", "out.jsonl", "--spider", "spiders.py:ChildOnly")
        assert server.count(site, "/") <= 1
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr
    assert run.stderr.splitlines()[-1] == (
        "Error: spider spiders.py:ChildOnly could not be created in a parser process: RuntimeError: the secrets file "
        "is readable by the engine alone; its __init__ must also work in crawlkit's child processes"
    )


def test_fetchers_that_die_as_they_start_stop_the_crawl_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "spiders.py").write_text(SPIDERS)
    (tmp_path / "config.yaml").write_text("middlewares:\n  - spiders.py:DiesInFetchers\n")
    with HostileServer() as server:
        site = server.site({"/": page(b"<title>ok</title>"), "/robots.txt": NO_ROBOTS})
        (tmp_path / "seeds.txt").write_text(site.url("/") + "\n")
        run = run_cli(tmp_path, "crawl", "seeds.txt", "-o", "out.jsonl", "--config", "config.yaml", "--workers", "2")
        assert server.seen() == []
    assert run.returncode == 2, run.stderr[-3000:]
    last = run.stderr.splitlines()[-1]
    assert re.fullmatch(r"Error: fetcher processes died \d+ times .*\(see the log for why they died\)", last)
    assert "Traceback" not in run.stderr, run.stderr


def test_parsers_that_die_as_they_start_stop_the_crawl_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "spiders.py").write_text(SPIDERS)
    (tmp_path / "config.yaml").write_text("pipelines:\n  - spiders.py:DiesInParsers\n")
    with HostileServer() as server:
        site = server.site({"/": page(links(*[f"/p{i}" for i in range(5)])), "/robots.txt": NO_ROBOTS})
        (tmp_path / "seeds.txt").write_text(site.url("/") + "\n")
        run = run_cli(tmp_path, "crawl", "seeds.txt", "-o", "out.jsonl", "--config", "config.yaml")
        assert server.count(site, "/") <= 5  # each parser death re-queues it: no more than the deaths allowed
    assert run.returncode == 2, run.stderr[-3000:]
    last = run.stderr.splitlines()[-1]
    assert re.fullmatch(r"Error: parser processes died 5 times .*\(see the log for why they died\)", last)
    assert "Traceback" not in run.stderr, run.stderr


# ------------------------------------------------------------------ slow headers and frozen fetchers


def test_headers_dripped_a_byte_at_a_time_are_cut_at_download_timeout(tmp_path: Path) -> None:
    with HostileServer() as server:
        site = server.site({"/": page(links("/slow-head", "/fine")), "/slow-head": drip_head(0.1),
                            "/fine": page(b"<title>ok</title>"), "/robots.txt": NO_ROBOTS})
        (tmp_path / "seeds.txt").write_text(site.url("/") + "\n")
        run = run_cli(tmp_path, "crawl", "seeds.txt", "-o", "out.jsonl", "-s", "download_timeout=3", "-s", "retries=1",
                      "-s", "retry_backoff=0.05", "-s", "read_timeout=5")
        hits = [h.time for h in server.seen() if h.path == "/slow-head"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(hits) == 2, run.stderr  # the attempt and its one retry; each would take 200 s to the last header byte
    assert 2.5 < hits[1] - hits[0] < 15  # cut near download_timeout, then retried
    assert summary(run.stderr)["error_download_timeout"] == 2
    assert {item["url"] for item in run.items()} == {site.url("/"), site.url("/fine")}
    assert_logged(run.stderr, "download_timeout", site.url("/slow-head"))


def test_a_fetch_thread_stuck_past_its_deadline_is_replaced_and_its_request_dropped_as_poison(tmp_path: Path) -> None:
    (tmp_path / "spiders.py").write_text(SPIDERS)
    (tmp_path / "config.yaml").write_text("middlewares:\n  - spiders.py:HangsOnOne\n")
    pages = [f"/p{i}" for i in range(6)]
    ok = page(b"<title>ok</title>")
    with HostileServer() as server:
        site = server.site({"/": page(links("/hang", *pages)), "/robots.txt": NO_ROBOTS, **{p: ok for p in pages}})
        (tmp_path / "seeds.txt").write_text(site.url("/") + "\n")
        started = time.monotonic()
        run = run_cli(tmp_path, "crawl", "seeds.txt", "-o", "out.jsonl", "--config", "config.yaml", "--workers", "2",
                      "-s", "connect_timeout=1", "-s", "download_timeout=2")
        took = time.monotonic() - started
        seen = server.paths(site)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "/hang" not in seen and all(seen[p] == 1 for p in pages)
    c = summary(run.stderr)
    assert c["error_fetcher_stalled"] == 2 and c["dropped_poison"] == 1
    assert_logged(run.stderr, "past the deadline of", site.url("/hang"))
    assert took < 55  # two kills at 3 s + the 10 s grace each, well before the hook's 60 s


def test_a_stopped_fetcher_is_replaced_and_its_requests_sent_again(tmp_path: Path) -> None:
    """Every answer is held; one fetcher is SIGSTOPped, then the site answers. The stopped
    fetcher's requests can only come back if the engine sees it has stopped answering."""
    spec = SiteSpec(hosts=2, pages=30, extras=False)
    with Site(spec) as site:
        site.hold(after=8)  # robots.txt, the index and the two pages it links to, per host
        args = ("--workers", "2", "--concurrency", "4", "--per-host", "2")
        with start(tmp_path, site, *args) as (proc, out, log, marker):
            try:
                wait_for(lambda: site.stats()["total"] == 12, 60, "4 requests held, 2 per fetcher")
                wait_for(lambda: pids(log, r"fetcher process (\d+) reads fetch queue 0"), 30, "fetcher pid")
                stopped = pids(log, r"fetcher process (\d+) reads fetch queue 0")[0]
                os.kill(stopped, signal.SIGSTOP)
                # kill() returns before every thread has stopped: one still running would read the
                # answers released next, and the fetcher would hold other requests when it is killed.
                wait_for(lambda: all_threads_stopped(stopped), 30, "every thread of the fetcher stopped")
            finally:
                site.release()
            _, stderr = proc.communicate(timeout=120)
        fetches = site.stats()["fetches"]
    assert proc.returncode == 0, stderr
    assert "fetcher_stalled 1" in stderr and "fetcher_died 1" in stderr
    got = {re.search(r'"url": "([^"]+)"', line).group(1) for line in out.read_text().splitlines()}
    assert got == site.expected_urls() and lines(out) == len(got)
    assert sum(n - 1 for n in fetches.values() if n > 1) == 2  # only the stopped fetcher's two
    assert not leftover_processes(marker)


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is in the stopped state (``T`` in /proc)."""
    states = [(Path(f"/proc/{pid}/task") / tid / "stat").read_text().rsplit(")", 1)[1].split()[0]
              for tid in os.listdir(f"/proc/{pid}/task")]
    return all(state == "T" for state in states)
