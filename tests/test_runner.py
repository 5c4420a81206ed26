"""``crawlkit.crawl()``: a crawl run from code returns its stats and items, takes spider arguments and
settings (Scrapy's names too), raises crawlkit's errors instead of exiting, and finds a spider class of
a test module or of a script in the parser processes; asserting what the server saw."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

import crawlkit
from crawlkit import ConfigError, Request, Response, SeedsError, Spider, SpiderError
from crawlkit.loader import load_spider, spider_spec
from crawlkit.runner import Crawl
from crawlkit.tools.site import Site, SiteRequest, SiteSpec, respond

FAST = {"workers": 1, "parsers": 1, "robots": False, "retries": 0, "progress_interval": 0}


class Pages(Spider):
    """An item per page of the site, following its links; ``tag`` is a spider argument."""

    name = "pages"
    tag = "none"

    def parse(self, response: Response) -> Iterable[Any]:
        yield {"url": response.url, "title": response.css("title::text").get(), "tag": self.tag}
        yield from response.follow_all(response.css("a::attr(href)").getall())


class Agent(Spider):
    """One request to /agent, whose handler records the User-Agent the server received."""

    name = "agent"

    async def start(self) -> Any:
        yield Request(self.base + "/agent")

    def parse(self, response: Response) -> Iterable[Any]:
        yield {"status": response.status}


class Broken(Spider):
    name = "broken"
    start_urls = ["http://127.0.0.1:9/"]

    def __init__(self, **kwargs: Any) -> None:
        raise RuntimeError("no database")


def test_crawl_returns_the_stats_and_the_items_and_passes_spider_arguments() -> None:
    with Site(SiteSpec(hosts=1, pages=6, extras=False, robots=False)) as site:
        result = crawlkit.crawl(Pages, FAST, items=True, start_urls=site.seeds(), tag="api")
        fetched = site.stats()["fetches"]
        expected = site.expected_urls()
    assert result.items is not None
    assert {item["url"] for item in result.items} == expected
    assert {item["tag"] for item in result.items} == {"api"}
    assert result.stats.counts["pages"] == len(expected) and result.stats.reason == "finished"
    assert sorted(fetched.values()) == [1] * len(expected)  # each page fetched once


def test_settings_under_scrapy_names_reach_the_server_and_output_is_written(tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False, robots=False)) as site:
        seen: list[str] = []
        page = respond(200, b"<html><title>a</title></html>", {"Content-Type": "text/html"})

        async def record(request: SiteRequest, writer: Any) -> None:
            seen.append(request.headers["user-agent"])
            await page(request, writer)

        site.route("/agent", record)
        out = tmp_path / "out.jsonl"
        result = crawlkit.crawl(Agent, {**FAST, "USER_AGENT": "ported/1.0"}, output=str(out), base=site.urls[0])
    assert seen == ["ported/1.0"]
    assert result.items is None  # not asked for
    assert [json.loads(line) for line in out.read_text().splitlines()] == [{"status": 200}]


def test_errors_are_raised_not_exits() -> None:
    with pytest.raises(ConfigError, match="TELNETCONSOLE_ENABLED is not a crawlkit setting"):
        crawlkit.crawl(Pages, {"TELNETCONSOLE_ENABLED": True}, start_urls=["http://127.0.0.1:9/"])
    with pytest.raises(SeedsError, match="^no seeds"):
        crawlkit.crawl(Pages, FAST)
    with pytest.raises(SpiderError, match="^spider Broken could not be created: RuntimeError: no database"):
        crawlkit.crawl(Broken, FAST)
    with pytest.raises(ConfigError, match="^'follow' is the built-in spider's link rules, and Pages follows"):
        Crawl(Pages, {"follow": {"allow": ["/docs/"]}})  # a spider of its own would ignore them


def test_a_spider_class_travels_by_an_importable_name() -> None:
    assert spider_spec(Pages) == f"{__name__}:Pages"
    assert load_spider(spider_spec(Pages)) is Pages

    class Local(Spider):
        name = "local"

    with pytest.raises(SpiderError, match="defined inside a function or class; .* top level"):
        spider_spec(Local)


def test_a_spider_loaded_from_a_file_travels_by_its_path(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text("from crawlkit import Spider\n\nclass Mine(Spider):\n    name = 'mine'\n")
    cls = load_spider(str(tmp_path / "mine.py"))
    assert spider_spec(cls) == f"{tmp_path / 'mine.py'}:Mine"


SCRIPT = '''
import json
import sys

import crawlkit


class Script(crawlkit.Spider):
    name = "script"

    def parse(self, response):
        yield {"url": response.url}


if __name__ == "__main__":
    result = crawlkit.crawl(Script, {"workers": 1, "robots": False, "progress_interval": 0}, items=True,
                            start_urls=[sys.argv[1]])
    print(json.dumps({"items": result.items, "pages": result.stats.counts["pages"]}))
'''


def test_a_spider_class_of_a_script_runs_in_the_parsers(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    with Site(SiteSpec(hosts=1, pages=1, extras=False, robots=False)) as site:
        seed = site.seeds()[0]
        run = subprocess.run([sys.executable, "script.py", seed], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
        fetched = site.stats()["fetches"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.splitlines()[-1]) == {"items": [{"url": seed}], "pages": 1}
    assert list(fetched.values()) == [1]


def test_a_config_file_may_name_the_spider_whose_custom_settings_sit_below_the_top_layer(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text("from crawlkit import Spider\n\nclass Mine(Spider):\n    name = 'mine'\n"
                                      "    custom_settings = {'CONCURRENT_REQUESTS_PER_DOMAIN': 5, 'delay': 3}\n")
    (tmp_path / "crawl.yaml").write_text(f"spider: {tmp_path / 'mine.py'}\nDOWNLOAD_DELAY: 1\nper_host: 1\n")
    crawl = Crawl(settings={"DOWNLOAD_DELAY": "2"}, config_file=tmp_path / "crawl.yaml", spider_args={"x": "1"})
    assert crawl.spider_cls.__name__ == "Mine" and crawl.spider_spec == str(tmp_path / "mine.py")
    assert (crawl.settings.per_host, crawl.settings.delay) == (5, 2.0)  # spider over file, top layer over spider
    assert (crawl.spider.x, crawl.spider.settings) == ("1", crawl.settings)
