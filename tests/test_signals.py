"""Signals: extensions named in the ``extensions`` setting get the crawl's events, in the engine process.

The unit tests call ``Signals`` directly with requests, PageDones and a stand-in extension; the
CLI test runs the real command with an extension that records every event to a file, and checks
its counts against what the server saw and what the crawl wrote.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from crawlkit.errors import SpiderError
from crawlkit.extensions.signals import Signals
from crawlkit.http import Request
from crawlkit.messages import PageDone
from crawlkit.settings import load_settings
from crawlkit.spider import Spider
from crawlkit.stats import Stats
from crawlkit.tools.site import Site, SiteSpec

RECORDER = '''
import json
import os


class Recorder:
    """Counts every event; writes them to events.json when the crawl closes."""

    def __init__(self):
        self.events = {}
        self.pids = set()
        self.reasons = []

    def _count(self, event, n=1):
        self.events[event] = self.events.get(event, 0) + n
        self.pids.add(os.getpid())

    def crawl_opened(self, spider):
        self._count("crawl_opened")
        self.spider_name = spider.name

    def request_scheduled(self, request):
        self._count("request_scheduled")

    def request_dropped(self, request, reason):
        self._count("request_dropped:" + reason)

    def response_received(self, request, status):
        self._count("response_received")
        self._count("status_%d" % status)

    def item_scraped(self, item, request):
        assert item["url"]
        self._count("item_scraped")

    def item_dropped(self, request, count):
        self._count("item_dropped", count)

    def error(self, request, kind, count):
        self._count("error:" + kind, count)

    def crawl_closed(self, spider, reason):
        self._count("crawl_closed")
        with open("events.json", "w") as f:
            json.dump({"events": self.events, "pids": sorted(self.pids), "reason": reason,
                       "spider": self.spider_name, "engine": os.getpid()}, f)


class DropSome:
    """A pipeline that drops the items of pages whose number ends in 3."""

    def process_item(self, item, spider):
        from crawlkit import DropItem

        if item["url"].endswith("3.html"):
            raise DropItem("ends in 3")
        return item


class Broken:
    def item_scraped(self, item, request):
        raise RuntimeError("broken on purpose")
'''


class Recorder:
    """A stand-in extension for the unit tests: what each handler was called with."""

    calls: list[tuple[Any, ...]] = []

    def crawl_opened(self, spider: Spider) -> None:
        self.calls.append(("crawl_opened", spider.name))

    def crawl_closed(self, spider: Spider, reason: str) -> None:
        self.calls.append(("crawl_closed", reason))

    def request_scheduled(self, request: Request) -> None:
        self.calls.append(("request_scheduled", request.url))

    def response_received(self, request: Request, status: int) -> None:
        self.calls.append(("response_received", request.url, status))

    def item_scraped(self, item: dict[str, Any], request: Request) -> None:
        self.calls.append(("item_scraped", item["n"], request.url))

    def item_dropped(self, request: Request, count: int) -> None:
        self.calls.append(("item_dropped", request.url, count))

    def error(self, request: Request, kind: str, count: int) -> None:
        if kind == "boom":
            raise ValueError("a handler that fails")
        self.calls.append(("error", request.url, kind, count))


def test_no_extension_means_no_signals() -> None:
    assert Signals.of(load_settings().extensions, Spider(), Stats()) is None


def test_each_event_reaches_the_handlers_with_its_arguments() -> None:
    Recorder.calls = []
    stats = Stats()
    signals = Signals.of([f"{__name__}:Recorder"], Spider(), stats)
    assert signals is not None
    signals.crawl_closed("not opened")  # a crawl that never opened does not close
    signals.crawl_opened()
    request = Request("http://127.0.0.1/a")
    signals.request_scheduled(request)
    signals.request_dropped(request, "duplicate")  # Recorder has no handler for it: nothing happens
    signals.page_done(request, PageDone(1, "127.0.0.1", items=[{"n": 1}, {"n": 2}], status=200,
                                        counts={"pages": 1, "items_dropped": 3, "error_pipeline": 3, "error_boom": 1}))
    signals.page_done(request, PageDone(2, "127.0.0.1", counts={"error_read_timeout": 1}))  # no response: status 0
    signals.crawl_closed("finished")
    url = request.url
    assert Recorder.calls == [
        ("crawl_opened", "spider"), ("request_scheduled", url), ("response_received", url, 200),
        ("item_scraped", 1, url), ("item_scraped", 2, url), ("item_dropped", url, 3), ("error", url, "pipeline", 3),
        ("error", url, "read_timeout", 1), ("crawl_closed", "finished"),
    ]
    assert stats.counts["error_extension"] == 1  # the handler that raised is counted; the others ran


class Counted:
    """An extension that counts its instances: the crawl makes one."""

    made = 0

    def __init__(self) -> None:
        Counted.made += 1

    def crawl_opened(self, spider: Spider) -> None:
        return None


class Unmakeable:
    def __init__(self) -> None:
        raise RuntimeError("no config file")

    def crawl_opened(self, spider: Spider) -> None:
        return None


def test_an_extension_is_made_once_and_one_that_cannot_be_is_a_one_line_error() -> None:
    Counted.made = 0
    assert Signals.of([f"{__name__}:Counted"], Spider(), Stats()) is not None
    assert Counted.made == 1
    with pytest.raises(SpiderError, match=r"^extension '.*:Unmakeable' could not be created: .*no config file$"):
        Signals.of([f"{__name__}:Unmakeable"], Spider(), Stats())


def test_a_class_without_any_event_method_is_a_one_line_error() -> None:
    with pytest.raises(SpiderError, match=r"^extension 'crawlkit.stats:Stats' must name a class .* with a "
                                          r"crawl_opened\(\) or crawl_closed\(\)"):
        Signals.of(["crawlkit.stats:Stats"], Spider(), Stats())


def test_scrapy_extensions_setting_is_read_in_order() -> None:
    scrapy = {"b.py:B": 20, "a.py:A": 10, "scrapy.extensions.telnet.TelnetConsole": None}
    s = load_settings(None, {"EXTENSIONS": scrapy})
    assert s.extensions == ("a.py:A", "b.py:B")


def test_an_extension_sees_every_event_of_a_crawl_in_the_engine_process(crawlkit, tmp_path: Path) -> None:
    (tmp_path / "ext.py").write_text(RECORDER)
    with Site(SiteSpec(hosts=1, pages=40, page_size=2000, links=6)) as site:
        run = crawlkit("crawl", "--parsers", "2", "--stats", "stats.json", "-s", "pipelines=[ext.py:DropSome]",
                       "-s", "extensions=[ext.py:Recorder, ext.py:Broken]", seeds=site.seeds())
        assert run.returncode == 0, run.stderr
        served = site.stats()
    record = json.loads((tmp_path / "events.json").read_text())
    events = Counter(record["events"])
    stats = json.loads((tmp_path / "stats.json").read_text())
    counts = stats["counts"]
    assert record["pids"] == [record["engine"]]  # every handler ran in one process: the engine
    assert record["reason"] == stats["reason"] == "finished" and record["spider"] == "crawlkit"
    assert events["crawl_opened"] == events["crawl_closed"] == 1
    # One response_received per response the server sent, robots.txt and redirects included.
    assert events["response_received"] == served["total"]
    assert {k: v for k, v in events.items() if k.startswith("status_")} == {
        f"status_{code}": n for code, n in stats["statuses"].items()}
    # What was written, and what the pipeline dropped.
    assert events["item_scraped"] == len(run.items()) == counts["items"]
    assert events["item_dropped"] == counts["items_dropped"] > 0
    # Scheduled: every page the server was asked for, and those robots.txt then kept from it.
    pages = served["total"] - sum(n for key, n in served["fetches"].items() if key.endswith("/robots.txt"))
    assert events["request_scheduled"] == pages + counts["robots_disallowed"]
    assert 0 < events["request_dropped:duplicate"] <= counts["duplicates"]
    # Errors as the stats count them, but the Broken extension's own, which are the engine's.
    assert {k[len("error:"):]: v for k, v in events.items() if k.startswith("error:")} == {
        kind: n for kind, n in stats["errors"].items() if kind != "extension"}
    assert stats["errors"]["extension"] == events["item_scraped"]
    assert "extension ext.py:Broken: item_scraped() raised RuntimeError" in run.stderr
