"""What a new user tripped on (issue 13), each pinned down: feeds appended or overwritten,
rates after a resume, exchange times without the politeness wait, quiet soup on XHTML, ``parse``
with meta, spider paths, allowed_domains spellings, the generated spider, the demo's figures,
DEBUG request lines and the report's labels."""

from __future__ import annotations

import json
import re
import sqlite3
import warnings
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from support import Run

from crawlkit import Request, Response
from crawlkit.errors import ConfigError, SpiderError
from crawlkit.extensions.output import open_output
from crawlkit.loader import load_spider
from crawlkit.parse.links import AllowedDomains
from crawlkit.stats import Stats
from crawlkit.tools.report import render_report
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


def write_items(path: Path, items: list[dict[str, Any]], overwrite: bool = False) -> None:
    writer = open_output(str(path), overwrite=overwrite)
    assert writer is not None
    writer.write(items)
    writer.close()


def read_back(path: Path) -> list[tuple[int, str]]:
    """(n, tag) of every item in the file, in order; for CSV, checks that it has one header."""
    if path.suffix == ".json":
        return [(item["n"], item["tag"]) for item in json.loads(path.read_text())]
    if path.suffix == ".jsonl":
        return [(item["n"], item["tag"]) for item in map(json.loads, path.read_text().splitlines())]
    if path.suffix == ".csv":
        header, *lines = path.read_text().splitlines()
        assert header == "n,tag" and header not in lines
        return [(int(n), tag) for n, tag in (line.split(",") for line in lines)]
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT n, tag FROM items ORDER BY _rowid_").fetchall()


def test_output_appends_to_an_existing_file_and_a_json_array_stays_one_array(tmp_path: Path) -> None:
    for name in ("out.json", "out.jsonl", "out.csv", "out.sqlite"):
        path = tmp_path / name
        write_items(path, [{"n": 1, "tag": "a"}, {"n": 2, "tag": "b"}])
        write_items(path, [{"n": 3, "tag": "c"}])
        assert read_back(path) == [(1, "a"), (2, "b"), (3, "c")], name
        write_items(path, [{"n": 4, "tag": "d"}], overwrite=True)
        assert read_back(path) == [(4, "d")], name


def test_a_json_array_from_elsewhere_or_empty_is_appended_to_and_anything_else_is_refused(tmp_path: Path) -> None:
    scrapy_made = tmp_path / "scrapy.json"
    scrapy_made.write_text('[\n{"n": 1}\n]')  # Scrapy's feed: no newline at the end
    write_items(scrapy_made, [{"n": 2}])
    assert json.loads(scrapy_made.read_text()) == [{"n": 1}, {"n": 2}]
    for empty in ("[]", "[\n]\n", " [ ] \n", ""):
        path = tmp_path / "empty.json"
        path.write_text(empty)
        write_items(path, [{"n": 1}])
        assert json.loads(path.read_text()) == [{"n": 1}], empty
    not_array = tmp_path / "object.json"
    not_array.write_text('{"n": 1}\n')
    with pytest.raises(ConfigError, match="is not a JSON array.*use -O to overwrite it"):
        open_output(str(not_array))
    assert not_array.read_text() == '{"n": 1}\n'  # untouched


def test_dash_o_appends_and_dash_capital_o_overwrites_through_the_command(crawlkit: Callable[..., Run],
                                                                           tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=5, extras=False, robots=False)) as site:
        seeds = site.seeds()
        runs = [crawlkit("crawl", flag, "out.json", seeds=seeds, output=None) for flag in ("-o", "-o", "-O")]
        runs.append(crawlkit("crawl", "-o", "out.csv", seeds=seeds, output=None))
        runs.append(crawlkit("crawl", "--output", "out.csv", seeds=seeds, output=None))
        fetched = page_fetches(site)
        both = crawlkit("crawl", "-o", "a.jsonl", "-O", "b.jsonl", seeds=seeds, output=None)
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    pages = site.expected_urls()
    assert len(pages) == 6 and all(fetched[url.split("//")[1]] == 5 for url in pages)
    assert {item["url"] for item in json.loads((tmp_path / "out.json").read_text())} == pages  # the -O run's
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * len(pages) and lines.count(lines[0]) == 1
    assert "items are added to it (-O FILE replaces it)" in runs[4].stderr
    assert "items are added to it" not in runs[3].stderr  # a new file
    assert both.returncode == 2 and "give -o FILE (append) or -O FILE (overwrite), not both" in both.stderr


META_SPIDER = '''
from crawlkit import Spider

class Shelf(Spider):
    name = "shelf"

    def parse_book(self, response, **kwargs):
        yield {"url": response.url, "shelf": response.meta.get("shelf"), "kwargs": kwargs}
'''


def test_parse_gives_the_callback_meta_and_cb_kwargs(crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "shelf.py").write_text(META_SPIDER)
    with Site(SiteSpec(hosts=1, pages=5)) as site:
        url = site.urls[0] + "/page/2.html"
        run = crawlkit("parse", url, "--spider", "shelf.py", "--callback", "parse_book", "--meta", '{"shelf": 3}',
                       output=None)
        bad = crawlkit("parse", url, "--spider", "shelf.py", "--meta", "[3]", output=None)
        fetched = page_fetches(site)
    assert run.returncode == 0, run.stderr
    item = json.loads(run.stdout.split("\n", 1)[1].split("Requests")[0])
    assert item == {"url": url, "shelf": 3, "kwargs": {}} and fetched == {url.split("//")[1]: 1}
    assert bad.returncode == 2 and "--meta '[3]' is not a JSON object" in bad.stderr


def test_parse_passes_cbkwargs_as_keyword_arguments(crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "shelf.py").write_text(META_SPIDER)
    with Site(SiteSpec(hosts=1, pages=5)) as site:
        url = site.urls[0] + "/page/3.html"
        run = crawlkit("parse", url, "--spider", "shelf.py", "--callback", "parse_book",
                       "--cbkwargs", '{"row": 7, "tags": ["a"]}', output=None)
    assert run.returncode == 0, run.stderr
    item = json.loads(run.stdout.split("\n", 1)[1].split("Requests")[0])
    assert item == {"url": url, "shelf": None, "kwargs": {"row": 7, "tags": ["a"]}}


def test_demo_says_what_its_items_are_and_the_figures_add_up(crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "demo.jsonl").write_text('{"stale": true}\n')  # the demo replaces its output
    run = crawlkit("demo", "--hosts", "1", "--pages", "30", output=None)
    assert run.returncode == 0, run.stderr
    said = re.search(r"site has (\d+) reachable pages \(200\) and (\d+) broken links \(404\), (\d+) items", run.stderr)
    assert said, run.stderr
    pages, broken, total = map(int, said.groups())
    items = [json.loads(line) for line in (tmp_path / "demo.jsonl").read_text().splitlines()]
    statuses = Counter(item["status"] for item in items)
    assert statuses == {200: pages, 404: broken} and len(items) == total == pages + broken and broken > 0


def test_log_level_debug_gives_one_line_per_request_the_server_answered(crawlkit: Callable[..., Run],
                                                                       tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=12)) as site:
        debug = crawlkit("crawl", "--log-level", "DEBUG", "--log-file", "debug.log", seeds=site.seeds())
        fetched = site.stats()["fetches"]
        quiet = crawlkit("crawl", "--log-file", "info.log", seeds=site.seeds(), output="info.jsonl")
    assert debug.returncode == quiet.returncode == 0, debug.stderr + quiet.stderr
    lines = re.findall(r"Crawled \((\d+)\) <GET http://(\S+)> ([\d,]+) bytes in [\d.]+s",
                       (tmp_path / "debug.log").read_text())
    assert Counter(where for _, where, _ in lines) == fetched  # robots.txt, redirects and 404s included
    statuses = {where.rsplit("/", 2)[-2]: int(status) for status, where, _ in lines}
    assert statuses["missing"] == 404 and statuses["redirect"] == 301 and statuses["page"] == 200
    assert all(int(size.replace(",", "")) > 15_000 for _, where, size in lines if "/page/" in where)
    assert "Crawled (" not in (tmp_path / "info.log").read_text()


def test_report_sizes_in_mib_and_its_time_axis_from_the_crawls_start() -> None:
    stats = Stats()
    stats.reason = "finished"
    stats.add({"pages": 300, "bytes": 3 * 1024 * 1024})
    data = stats.full_dict()
    data["series"]["rows"] = [[4.0, 0, 0, 0, 0], [6.0, 100, 0, 0, 0], [8.0, 300, 0, 0, 0]]  # sampled late
    page = lxml.html.fromstring(render_report(data))
    assert page.xpath("string(//div[@data-key='bytes']//div[@class='value'])") == "3.0 MiB"
    axis = [text.text for text in page.xpath("//*[@id='rate-chart']//*[local-name()='text'][@text-anchor='middle']")]
    assert axis[0] == "0 s" and axis[-1] == "8 s"


def test_report_says_which_spider_seeds_and_settings_produced_it(crawlkit: Callable[..., Run],
                                                               tmp_path: Path) -> None:
    (tmp_path / "polite.yaml").write_text("delay: 0.01\n")
    with Site(SiteSpec(hosts=1, pages=10)) as site:
        run = crawlkit("crawl", "--report", "report.html", "--per-host", "3", "--config", "polite.yaml",
                       "-s", "retries=1", seeds=site.seeds())
        peak = site.stats()["peak_inflight"]
    assert run.returncode == 0, run.stderr
    page = lxml.html.fromstring((tmp_path / "report.html").read_text())
    rows = {row.get("data-key"): [cell.text_content() for cell in row.xpath("td")]
            for row in page.xpath("//table[@id='run']/tr[@data-key]")}
    assert rows["spider"][1] == "crawlkit (built-in)"
    assert rows["seeds"][1] == f"seeds file {tmp_path / 'seeds.txt'}"
    assert rows["per_host"][1:] == ["3", "command line"] and rows["retries"][1:] == ["1", "command line"]
    assert rows["delay"][1:] == ["0.01", "config file polite.yaml"]
    assert "workers" not in rows  # defaults are the README's; only what differs is listed
    assert max(peak.values()) <= 3  # the settings it names are the ones the server felt
    assert page.xpath("string(//div[@data-key='pages']/@data-value)") == str(len(run.items()))


@pytest.mark.parametrize("spelling", ["{host}", "http://{host}/"], ids=["host-port", "url"])
def test_allow_domain_host_port_or_url_follows_that_site(crawlkit: Callable[..., Run], spelling: str) -> None:
    with Site(SiteSpec(hosts=2, pages=20)) as site:
        other = site.urls[1].split("//")[1]
        run = crawlkit("crawl", "--allow-domain", spelling.format(host=other), seeds=[site.seeds()[0]])
        fetched = page_fetches(site)
    assert run.returncode == 0, run.stderr
    assert [key for key in fetched if key.startswith(other + "/page/")]  # the cross-host links were followed


def test_a_csv_file_is_appended_to_only_under_its_own_header(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_items(path, [{"n": 1, "tag": "a"}])
    with pytest.raises(ConfigError, match=r"has the columns \['n', 'tag'\], not export_fields \['tag', 'n'\]"):
        open_output(str(path), fields=["tag", "n"])
    writer = open_output(str(path), fields=["n", "tag"])
    assert writer is not None
    writer.write([{"tag": "b", "n": 2}])
    writer.close()
    assert read_back(path) == [(1, "a"), (2, "b")]
