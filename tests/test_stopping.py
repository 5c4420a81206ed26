"""Stop conditions (max_items, max_errors, max_time, max_time_without_items, the memory cap).

Unit tests build the settings and stats directly and pass the clock in; the CLI tests run the
real command against a local site that would take far longer than the limit to crawl, and
assert what the server saw, what was written (items, the stats file, the report, the spider's
``closed(reason)``), and that the job directory resumes where the crawl stopped.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from crawlkit.core import stopping
from crawlkit.core.stopping import StopConditions, tree_memory
from crawlkit.errors import ConfigError
from crawlkit.settings import load_settings
from crawlkit.stats import Stats
from crawlkit.tools.site import Site, SiteSpec

CONCURRENCY = 4


def conditions(**values: object) -> tuple[StopConditions, Stats]:
    stats = Stats()
    limits = StopConditions.of(load_settings(None, None, values), stats, 100.0)
    assert limits is not None
    return limits, stats


# ---------------------------------------------------------------- unit tests


def test_no_stop_condition_costs_nothing() -> None:
    assert StopConditions.of(load_settings(), Stats(), 0.0) is None


def test_max_items_and_max_errors_count_the_crawl_with_its_earlier_runs() -> None:
    limits, stats = conditions(max_items=10, max_errors=3)
    stats.resume({"items": 8, "pages": 8})  # a resumed crawl's earlier runs count, as for max_pages
    assert limits.counted() is None
    stats.add({"items": 2})
    assert limits.counted() == "finished (max_items reached)"
    limits, stats = conditions(max_errors=3)
    stats.add({"error_read_timeout": 1, "error_spider_exception": 1, "status_404": 5})
    assert limits.counted() is None
    stats.add({"error_pipeline": 1})
    assert limits.counted() == "finished (max_errors reached)"


def test_max_time_counts_from_the_start_of_this_run() -> None:
    limits, _ = conditions(max_time=2.5)
    assert limits.timed(102.4) is None
    assert limits.timed(102.5) == "finished (max_time reached)"


def test_max_time_without_items_restarts_at_each_new_item() -> None:
    limits, stats = conditions(max_time_without_items=1.0)
    assert limits.timed(100.9) is None
    stats.add({"items": 1})
    assert limits.timed(100.95) is None  # an item came: the clock starts again
    assert limits.timed(101.9) is None
    assert limits.timed(101.95) == "finished (max_time_without_items reached)"


def test_memory_warns_once_then_stops_and_is_measured_only_every_interval(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    used = [150 << 20]
    measured: list[int] = []

    def fake_tree_memory(root: int) -> int:
        measured.append(root)
        return used[0]

    monkeypatch.setattr(stopping, "tree_memory", fake_tree_memory)
    limits, stats = conditions(memory_warning_mb=100, memory_limit_mb=200, memory_check_interval=5.0)
    assert limits.timed(100.0) is None
    assert [r.message for r in caplog.records] == [
        "the crawl's processes use 150 MB, over memory_warning_mb (100); memory_limit_mb stops the crawl at 200 MB"
    ]
    assert limits.timed(104.9) is None and len(measured) == 1  # not measured again before the interval
    assert limits.timed(105.0) is None and len(measured) == 2 and len(caplog.records) == 1  # warned once
    assert stats.counts["memory_warnings"] == 1
    used[0] = 200 << 20
    assert limits.timed(110.0) == "stopped (memory_limit_mb reached)"
    assert measured == [os.getpid()] * 3


def test_tree_memory_sums_this_process_tree() -> None:
    own = tree_memory(os.getpid())
    assert 1 << 20 < own < 4 << 30
    assert tree_memory(2 ** 22 + 1) == 0  # no such process (above the kernel's pid_max)


def test_scrapy_names_and_one_line_errors() -> None:
    s = load_settings(None, {"CLOSESPIDER_ITEMCOUNT": 5, "CLOSESPIDER_ERRORCOUNT": 2, "CLOSESPIDER_TIMEOUT": 60,
                             "CLOSESPIDER_TIMEOUT_NO_ITEM": 30, "MEMUSAGE_WARNING_MB": 512,
                             "MEMUSAGE_LIMIT_MB": 1024, "MEMUSAGE_CHECK_INTERVAL_SECONDS": 10})
    assert (s.max_items, s.max_errors, s.max_time, s.max_time_without_items) == (5, 2, 60.0, 30.0)
    assert (s.memory_warning_mb, s.memory_limit_mb, s.memory_check_interval) == (512, 1024, 10.0)
    with pytest.raises(ConfigError, match=r"^-s max_items=-1: 'max_items' must be an integer ≥ 0, got -1$"):
        load_settings(None, None, {"max_items": "-1"})
    with pytest.raises(ConfigError, match=r"'memory_check_interval' must be a finite number > 0 and ≤ 86,400, got 0"):
        load_settings(None, None, {"memory_check_interval": "0"})
    with pytest.raises(ConfigError, match="MEMUSAGE_ENABLED is not a crawlkit setting; memory is measured when"):
        load_settings(None, {"MEMUSAGE_ENABLED": True})


# ---------------------------------------------------------------- through the CLI

SPIDER = '''
from crawlkit import Spider

HELD = []


class Stopper(Spider):
    name = "stopper"
    mode = "items"

    def parse(self, response):
        if self.mode == "memory":
            HELD.append(b"x" * (8 << 20))  # 8 MB a page, held for the crawl's life
        if self.mode in ("items", "memory") or response.url.endswith(":{port}/"):
            yield {{"url": response.url}}
        yield from response.follow_all(css="a")
        if self.mode == "errors":  # after the links, which are followed all the same
            raise ValueError("failing on purpose")

    def closed(self, reason):
        with open("closed.txt", "a") as f:
            f.write(reason + "\\n")
'''


def fetched_pages(site: Site) -> Counter[str]:
    """Page -> times the server served it (robots.txt left out)."""
    return Counter({key: n for key, n in site.stats()["fetches"].items() if not key.endswith("/robots.txt")})


def long_site() -> Site:
    """One host of 300 pages, each answered after 50 ms: at 2 requests at once, 7 s or more to crawl."""
    return Site(SiteSpec(hosts=1, pages=300, page_size=2000, links=8, latency=0.05, extras=False))


def written(tmp_path: Path) -> tuple[dict, str, list[str]]:
    """The stats file, the report's reason and the reasons the spider's closed() was given."""
    stats = json.loads((tmp_path / "stats.json").read_text())
    found = re.search(r'id="reason" data-reason="([^"]*)"', (tmp_path / "report.html").read_text())
    assert found is not None
    return stats, found.group(1), (tmp_path / "closed.txt").read_text().splitlines()


@pytest.mark.parametrize(("mode", "settings", "reason"), [
    ("items", ["max_items=10"], "finished (max_items reached)"),
    ("errors", ["max_errors=5"], "finished (max_errors reached)"),
    ("items", ["max_time=1"], "finished (max_time reached)"),
    ("no_items", ["max_time_without_items=1"], "finished (max_time_without_items reached)"),
    ("memory", ["memory_warning_mb=1", "memory_limit_mb=300", "memory_check_interval=0.1"],
     "stopped (memory_limit_mb reached)"),
])
def test_a_stop_condition_ends_the_crawl_cleanly_and_the_jobdir_resumes_it(
        crawlkit, tmp_path: Path, mode: str, settings: list[str], reason: str) -> None:
    with long_site() as site:
        (tmp_path / "stopper.py").write_text(SPIDER.format(port=site.port))
        common = ["crawl", "--spider", "stopper.py:Stopper", "-a", f"mode={mode}", "--jobdir", str(tmp_path / "job"),
                  "--concurrency", str(CONCURRENCY), "--stats", "stats.json", "--report", "report.html"]
        run = crawlkit(*common, *[arg for s in settings for arg in ("-s", s)], seeds=site.seeds())
        assert run.returncode == 0, run.stderr  # a stop condition is a normal end, as in Scrapy
        first = fetched_pages(site)
        stats, report_reason, closed = written(tmp_path)
        assert f"crawl {reason} in" in run.stderr
        assert stats["reason"] == report_reason == reason and closed == [reason]
        # Stopped early, yet every page it fetched was handled: one item each (or an error each).
        assert len(first) < 100
        assert stats["pages"] == len(first) and max(first.values()) == 1
        items = run.items()
        if mode == "items":
            assert len(items) == len(first)
        if "max_items=10" in settings:
            # Dispatch stops at once: at most the requests in flight (fetching or waiting for
            # the parser, 2 x concurrency) are answered after the tenth item.
            assert 10 <= len(first) <= 10 + 2 * CONCURRENCY
        elif mode == "errors":
            assert len(items) == 1 and 5 <= stats["errors"]["spider_exception"] <= 5 + 2 * CONCURRENCY
            assert len(first) == stats["errors"]["spider_exception"]
        elif "max_time=1" in settings:
            arrivals = [t for times in site.stats()["arrivals"].values() for t in times]
            # The server was asked for nothing after the second (a margin for a loaded machine):
            # the whole site would have taken 7 s.
            assert stats["elapsed_s"] >= 1.0 and max(arrivals) - min(arrivals) < 1.0 + 1.0
        elif mode == "no_items":
            assert len(items) == 1 and stats["elapsed_s"] >= 1.0
        else:
            assert "over memory_warning_mb (1)" in run.stderr
            assert re.search(r"the crawl's processes use \d+ MB, memory_limit_mb is 300: stopping", run.stderr)

        # The same command, the condition lifted and 5 more pages allowed, goes on from the job directory.
        (tmp_path / "closed.txt").unlink()
        resumed = crawlkit(*common, "--max-pages", str(len(first) + 5), seeds=site.seeds())
        assert resumed.returncode == 0, resumed.stderr
        both = fetched_pages(site)
    assert "finished (max_pages reached)" in resumed.stderr
    assert sum(both.values()) == len(first) + 5 and max(both.values()) == 1  # nothing fetched twice
    if mode in ("items", "memory"):
        assert len(resumed.items()) == len(first) + 5


def test_max_items_counts_the_earlier_runs_of_a_resumed_crawl(crawlkit, tmp_path: Path) -> None:
    with long_site() as site:
        common = ["crawl", "--jobdir", str(tmp_path / "job"), "--concurrency", str(CONCURRENCY)]
        first = crawlkit(*common, "-s", "max_items=10", seeds=site.seeds())
        assert first.returncode == 0, first.stderr
        fetched = sum(fetched_pages(site).values())
        assert len(first.items()) == fetched >= 10
        again = crawlkit(*common, "-s", "max_items=10", seeds=site.seeds())  # reached already: nothing to do
        assert again.returncode == 0 and "crawl finished (max_items reached)" in again.stderr
        assert sum(fetched_pages(site).values()) == fetched
        raised = crawlkit(*common, "-s", "max_items=20", seeds=site.seeds())
        assert raised.returncode == 0 and "crawl finished (max_items reached)" in raised.stderr
        pages = fetched_pages(site)
    items = raised.items()
    assert 20 <= len(items) == sum(pages.values()) <= 20 + 2 * CONCURRENCY
    assert max(pages.values()) == 1 and len({item["url"] for item in items}) == len(items)
