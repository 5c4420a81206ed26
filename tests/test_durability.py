"""Crashes and resumes: processes killed mid-crawl, the whole crawl SIGKILLed, Ctrl-C then resume."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support import CRAWLKIT, leftover_processes, wait_for

from crawlkit.tools.site import Site, SiteSpec


@contextlib.contextmanager
def start(tmp_path: Path, site: Site, *extra: str) -> Iterator[tuple[subprocess.Popen, Path, Path, str]]:
    """``crawlkit crawl`` of ``site`` in a process group of its own; killed, group and all, if still
    running at the end."""
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(site.seeds()))
    out, log = tmp_path / "out.jsonl", tmp_path / "crawl.log"
    marker = uuid.uuid4().hex
    proc = subprocess.Popen(
        [CRAWLKIT, "crawl", str(seeds), "-o", str(out), "--log-file", str(log), "--log-level", "DEBUG", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "CRAWLKIT_TEST_RUN": marker},
    )
    try:
        yield proc, out, log, marker
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


# The most requests in flight with the default concurrency of 16: 16 being fetched, and as
# many fetched and waiting for the parser.
IN_FLIGHT = 2 * 16


def lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def pids(log: Path, pattern: str) -> list[int]:
    return [int(p) for p in re.findall(pattern, log.read_text())] if log.exists() else []


def kill_logged(out: Path, log: Path, items: int, pattern: str) -> None:
    """Once ``out`` holds more than ``items`` items, SIGKILL the process whose pid ``pattern`` finds in the log."""
    wait_for(lambda: lines(out) > items and pids(log, pattern), 60, f"{items} items and a pid for {pattern!r}")
    os.kill(pids(log, pattern)[0], signal.SIGKILL)


def test_killed_fetcher_and_parser_are_replaced_and_nothing_is_lost(tmp_path: Path) -> None:
    spec = SiteSpec(hosts=2, pages=150, latency=0.02, extras=False)
    with Site(spec) as site:
        site.hold(after=220)  # of 304 requests: the crawl cannot end before both kills, however slow the machine
        with start(tmp_path, site, "--workers", "2", "--per-host", "4") as (proc, out, log, marker):
            kill_logged(out, log, 30, r"fetcher process (\d+) reads")
            kill_logged(out, log, 120, r"parser process (\d+) started")
            site.release()
            _, stderr = proc.communicate(timeout=120)
        fetches = site.stats()["fetches"]
    assert proc.returncode == 0, stderr
    assert "fetcher_died 1" in stderr and "parser_died 1" in stderr
    urls = [line for line in out.read_text().splitlines()]
    got = {re.search(r'"url": "([^"]+)"', line).group(1) for line in urls}
    assert got == site.expected_urls()
    assert len(urls) == len(got)  # no item twice
    refetched = sum(n - 1 for key, n in fetches.items() if n > 1 and not key.endswith("robots.txt"))
    assert refetched <= 2 * IN_FLIGHT  # at most what was in flight at each death
    assert not leftover_processes(marker)


def test_killed_seen_store_is_restarted_from_the_jobdir_and_no_page_is_fetched_twice(tmp_path: Path) -> None:
    spec = SiteSpec(hosts=2, pages=150, latency=0.02, extras=False)
    with Site(spec) as site:
        site.hold(after=150)  # the crawl cannot end before the kill
        with start(tmp_path, site, "--jobdir", str(tmp_path / "job")) as (proc, out, log, marker):
            kill_logged(out, log, 40, r"seen-URL store process (\d+) started")
            site.release()
            _, stderr = proc.communicate(timeout=120)
        fetches = site.stats()["fetches"]
    assert proc.returncode == 0, stderr
    assert "seen_store_died 1" in stderr
    assert "seen-URL store refilled from" in log.read_text()
    urls = [re.search(r'"url": "([^"]+)"', line).group(1) for line in out.read_text().splitlines()]
    assert set(urls) == site.expected_urls() and len(urls) == len(set(urls))
    assert max(n for key, n in fetches.items() if not key.endswith("robots.txt")) == 1  # nothing fetched twice
    assert not leftover_processes(marker)


def test_sigkill_of_whole_crawl_then_resume_loses_nothing(tmp_path: Path) -> None:
    spec = SiteSpec(hosts=2, pages=300, latency=0.01, extras=True)
    jobdir = tmp_path / "job"
    with Site(spec) as site:
        kills = 0
        for threshold in (20, 150, 330):
            with start(tmp_path, site, "--jobdir", str(jobdir)) as (proc, out, log, marker):
                wait_for(lambda n=threshold: lines(out) > n or proc.poll() is not None, 120, f"{threshold} items")
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    kills += 1
                proc.wait(30)
            for child in leftover_processes(marker):  # killed with the group; reap stragglers
                child.kill()
        assert kills >= 2
        with start(tmp_path, site, "--jobdir", str(jobdir)) as (proc, out, log, marker):
            _, stderr = proc.communicate(timeout=180)
        fetches = site.stats()["fetches"]
    assert proc.returncode == 0, stderr
    assert "resuming from" in log.read_text()
    text = out.read_text()
    assert text.endswith("\n")  # no truncated record
    urls = [re.search(r'"url": "([^"]+)"', line).group(1) for line in text.splitlines()]
    assert len(urls) == len(set(urls))  # nothing twice
    assert {u for u in urls} >= site.expected_urls()  # nothing lost
    refetched = sum(n - 1 for key, n in fetches.items() if n > 1 and not key.endswith("robots.txt"))
    assert refetched <= kills * IN_FLIGHT  # at most the requests in flight at each kill


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_then_resume_fetches_each_page_once(tmp_path: Path, stop: signal.Signals) -> None:
    spec = SiteSpec(hosts=2, pages=200, latency=0.02, extras=False)
    jobdir = tmp_path / "job"
    with Site(spec) as site:
        # A small frontier_memory: the backlog spills to disk, and the resume takes it back in many batches.
        small = ("-s", "frontier_memory=25")
        site.hold(after=120)  # of 402 requests: the first run cannot get them all before the signal
        with start(tmp_path, site, "--jobdir", str(jobdir), *small) as (proc, out, log, marker):
            wait_for(lambda: lines(out) > 50, 60, "50 items")
            os.killpg(proc.pid, stop)
            site.release()  # the requests in flight are answered; a stopping crawl sends no more
            _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        first = lines(out)
        with start(tmp_path, site, "--jobdir", str(jobdir), *small) as (proc, out, log, marker):
            _, stderr = proc.communicate(timeout=120)
        fetches = site.stats()["fetches"]
    assert proc.returncode == 0, stderr
    urls = [re.search(r'"url": "([^"]+)"', line).group(1) for line in out.read_text().splitlines()]
    assert first < len(urls) and len(urls) == len(set(urls))
    assert set(urls) == site.expected_urls()
    assert max(n for key, n in fetches.items() if not key.endswith("robots.txt")) == 1  # none fetched twice
    assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE


def test_a_dead_fetchers_requests_are_sent_again_while_the_other_fetchers_threads_are_busy(tmp_path: Path) -> None:
    """Every answer is held, so both fetchers' threads are busy; then one fetcher is killed.

    Its requests must reach the server again (through its successor) while the site still
    holds everything: queued behind the other fetcher's busy threads, they never would.
    """
    spec = SiteSpec(hosts=2, pages=30, extras=False)
    with Site(spec) as site:
        site.hold(after=8)  # robots.txt, the index and the two pages it links to, per host
        args = ("--workers", "2", "--concurrency", "4", "--per-host", "2")  # 2 threads per fetcher
        with start(tmp_path, site, *args) as (proc, out, log, marker):
            try:
                wait_for(lambda: site.stats()["total"] == 12, 60, "4 requests held, 2 per fetcher")
                kill_logged(out, log, 0, r"fetcher process (\d+) reads fetch queue 0")
                wait_for(lambda: site.stats()["total"] >= 14, 30, "the dead fetcher's 2 requests sent again")
            finally:
                site.release()
            _, stderr = proc.communicate(timeout=120)
        fetches = site.stats()["fetches"]
    assert proc.returncode == 0, stderr
    assert "fetcher_died 1" in stderr
    got = {re.search(r'"url": "([^"]+)"', line).group(1) for line in out.read_text().splitlines()}
    assert got == site.expected_urls()
    assert sum(n - 1 for n in fetches.values() if n > 1) == 2  # only the dead fetcher's two


META_SPIDER = '''
from crawlkit import Spider

START = {start!r}


class Meta(Spider):
    name = "meta"
    start_urls = START

    def parse(self, response):
        yield {{"url": response.url, "meta": sorted(response.meta)}}
        for a in response.css("a"):
            if a.attrib.get("href"):
                yield response.follow(a, meta={{"from": response.url}})
'''
# The keys crawlkit documents for a request's meta: whatever else a spider finds there, it put there itself.
DOCUMENTED_META = {"retry_times", "redirect_urls", "proxy", "max_body", "truncate", "follow_redirects"}


def test_a_spider_with_a_jobdir_sees_no_key_of_crawlkit_in_response_meta(crawlkit, tmp_path: Path) -> None:
    """The journal row of a request rides beside it, not in its meta: not on the first run, nor on a resume."""
    with Site(SiteSpec(hosts=1, pages=40, extras=True)) as site:
        spider = tmp_path / "meta.py"
        spider.write_text(META_SPIDER.format(start=site.seeds()))
        job = str(tmp_path / "job")
        first = crawlkit("runspider", str(spider), "--jobdir", job, "--max-pages", "10")
        assert first.returncode == 0, first.stderr
        before = len(first.items())
        resumed = crawlkit("runspider", str(spider), "--jobdir", job, "--log-level", "INFO")
        assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    items = resumed.items()  # both runs': the resume appends to the same output
    assert before <= 10 < len(items)
    assert {key for item in items for key in item["meta"]} - DOCUMENTED_META == {"from"}
