"""What a new user tripped on (issue 13), each pinned down: feeds appended or overwritten,
rates after a resume, exchange times without the politeness wait, quiet soup on XHTML, ``parse``
with meta, spider paths, allowed_domains spellings, the generated spider, the demo's figures,
DEBUG request lines and the report's labels."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from support import Run

from crawlkit import Request, Response
from crawlkit.errors import SpiderError
from crawlkit.loader import load_spider
from crawlkit.parse.links import AllowedDomains
from crawlkit.stats import Stats
from crawlkit.tools.site import Site, SiteSpec

XHTML = (b'<?xml version="1.0" encoding="utf-8"?>\n'
         b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
         b'"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
         b'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>PostgreSQL: Documentation</title></head>'
         b'<body><p>SELECT</p>')  # cut short (max_body): no </html>, so bs4 takes it for XML


def page_fetches(site: Site) -> dict[str, int]:
    return {key: n for key, n in site.stats()["fetches"].items() if not key.endswith("/robots.txt")}


def test_soup_of_an_xhtml_page_warns_nothing() -> None:
    url = "http://docs.test/docs/current/sql-select.html"
    response = Response(url, 200, {"Content-Type": "text/html; charset=utf-8"}, XHTML, Request(url))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        title = response.soup.title.string
    assert title == "PostgreSQL: Documentation"
    assert [str(w.message) for w in caught] == []


def test_a_spider_path_without_py_is_a_one_line_error_naming_the_accepted_forms(tmp_path: Path) -> None:
    (tmp_path / "shop.py").write_text("from crawlkit import Spider\n\nclass Shop(Spider):\n    pass\n")
    for spec in (str(tmp_path / "shop"), "./shop", "spiders/shop:Shop"):
        with pytest.raises(SpiderError) as caught:
            load_spider(spec)
        assert "neither a .py file nor a module name" in str(caught.value)
        assert "path/to/file.py:Class or package.module:Class" in str(caught.value)
    with pytest.raises(SpiderError, match=r"did you mean .*shop\.py\?"):
        load_spider(str(tmp_path / "shop"))
    assert load_spider(str(tmp_path / "shop.py")).__name__ == "Shop"


def test_allowed_domains_written_as_urls_or_host_port_mean_those_sites() -> None:
    allowed = AllowedDomains(
        ["https://Example.com/", "http://127.0.0.2:8001/start", "docs.test/guide", "127.0.0.3:8002"]
    )
    assert allowed.allows("https://example.com/a") and allowed.allows("http://www.example.com:8080/")
    assert allowed.allows("http://127.0.0.2:8001/x") and not allowed.allows("http://127.0.0.2:8002/x")
    assert allowed.allows("http://docs.test/other") and not allowed.allows("http://other.test/guide")
    assert allowed.allows("http://127.0.0.3:8002/") and not allowed.allows("http://127.0.0.3:8003/")
    assert AllowedDomains(["http://[::1]:8080/"]).allows("http://[::1]:8080/a")


def test_the_generated_spider_follows_the_seeds_hosts_of_a_seeds_file(crawlkit: Callable[..., Run],
                                                                      tmp_path: Path) -> None:
    assert crawlkit("new", "books", output=None).returncode == 0
    with Site(SiteSpec(hosts=2, pages=20)) as site:
        run = crawlkit("crawl", "--spider", "books.py", seeds=[site.seeds()[0]])
        fetched = page_fetches(site)
    assert run.returncode == 0, run.stderr
    host0, host1 = (url.split("//")[1] for url in site.urls[:2])
    assert {item["url"] for item in run.items()} == site.expected_urls(hosts=[0])
    assert len([key for key in fetched if key.startswith(host0)]) > 1
    assert not [key for key in fetched if key.startswith(host1)]


def test_pages_per_second_after_a_resume_is_this_runs_pages_over_this_runs_time() -> None:
    stats = Stats()
    stats.resume({"pages": 800, "items": 800})
    stats.add({"pages": 200, "items": 200})
    stats.finished = stats.started + 10.0
    figures = stats.as_dict()
    assert (figures["pages"], figures["pages_this_run"], figures["pages_per_s"]) == (1000, 200, 20.0)
    assert "1000 pages (200 this run, 20.0/s)" in stats.summary()
    fresh = Stats()
    fresh.add({"pages": 50})
    fresh.finished = fresh.started + 10.0
    assert "50 pages (5.0/s)" in fresh.summary()


def test_max_pages_on_a_resume_counts_the_earlier_runs_and_says_so(crawlkit: Callable[..., Run]) -> None:
    with Site(SiteSpec(hosts=1, pages=60, extras=False, robots=False)) as site:
        seeds = site.seeds()
        first = crawlkit("crawl", "--jobdir", "job", "--max-pages", "10", "--workers", "1", seeds=seeds)
        assert first.returncode == 0, first.stderr
        assert sum(page_fetches(site).values()) == 10
        second = crawlkit("crawl", "--jobdir", "job", "--max-pages", "25", "--workers", "1", seeds=seeds)
        fetched = page_fetches(site)
    assert second.returncode == 0, second.stderr
    assert sum(fetched.values()) == 25 and max(fetched.values()) == 1  # 15 more, none twice
    assert "max_pages (25) counts the pages of every run of this crawl: 10 before this run, 15 to go" in second.stderr
    assert "25 pages (15 this run, " in second.stderr
    assert len(second.items()) == 25
