"""The README stays true: its settings table is generated from crawlkit/default.yaml, and its spider, pipeline,
hook and stage examples run as printed."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile import HostileServer, first_then, page

from crawlkit.settings import scrapy_settings_table, settings_table

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize(("marker", "table"), [("settings-table", settings_table),
                                              ("scrapy-settings-table", scrapy_settings_table)])
def test_each_settings_table_is_the_one_its_function_prints(marker: str, table: Callable[[], str]) -> None:
    """The settings table (from default.yaml) and the Scrapy names table (from the alias table)."""
    text = README.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {marker}.*?-->\n(.*?)\n<!-- /{marker} -->", text, re.S)
    assert found, f"README.md lost its {marker} markers"
    regenerate = f'python -c "from crawlkit.settings import {table.__name__} as t; print(t())"'
    assert found.group(1) == table(), f"regenerate the README's {marker}: {regenerate}"


def test_quick_start_commands_are_present() -> None:
    text = README.read_text(encoding="utf-8")
    assert 'pip install -e ".[test]" && crawlkit demo -o demo.jsonl' in text
    assert "python -m pytest -q" in text


QUOTES = b"""<html><body>
<div class="quote"><span class="text">One</span></div><div class="quote"><span class="text">Two</span></div>
<ul><li class="next"><a href="/page/2/">next</a></li></ul></body></html>"""


def test_the_readme_spider_yields_its_items(crawlkit, tmp_path: Path) -> None:
    """The spider of "Writing a spider", as printed, pointed at a local copy of its site."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Writing a spider"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code and "class Quotes(Spider)" in code.group(1)
    with HostileServer() as server:
        site = server.site({"/": page(QUOTES), "/page/2/": page(b'<div class="quote"><span class="text">Three</span>'),
                            "/robots.txt": page(b"", status=404)})
        host = site.url("/").split("//")[1].split(":")[0]
        spider = code.group(1).replace("https://quotes.toscrape.com/", site.url("/"))
        spider = spider.replace("quotes.toscrape.com", host)
        assert "toscrape" not in spider  # nothing of the public site is left for the crawl to reach
        (tmp_path / "quotes.py").write_text(spider)
        run = crawlkit("runspider", "quotes.py", output="quotes.jsonl", timeout=60)
        fetched = server.paths(site)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(item["text"] for item in run.items()) == ["One", "Three", "Two"]
    assert fetched["/"] == 1 and fetched["/page/2/"] == 1


def test_the_readme_callback_tests_pass() -> None:
    """The example of testing callbacks without a server: its spider and its test functions, run here."""
    text = README.read_text(encoding="utf-8")
    code = re.search(r"<!-- callback-test-example -->\n```python\n(.*?)```", text, re.S)
    assert code, "README.md lost its callback-test example"
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    tests = [value for name, value in namespace.items() if name.startswith("test_") and callable(value)]
    assert len(tests) == 2
    for test in tests:
        test()


def readme_file(name: str) -> str:
    """The README's code block that starts with ``# name``."""
    found = re.search(rf"```python\n(# {re.escape(name)}\n.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert found, f"README.md has no {name} example"
    return found.group(1)


EXTENDED = """
from crawlkit import Spider

class Titles(Spider):
    name = "titles"
    start_urls = [START]
    custom_settings = {"pipelines": ["pipes.py:Clean", "pipes.py:Store"], "middlewares": ["hooks.py:Captcha"],
                       "stages": {"rules.py:SkipLogin": 650}, "retry_backoff": 0}

    def parse(self, response):
        yield {"url": response.url, "title": response.css("title::text").get()}
        yield from response.follow_all(css="a")
"""


def test_the_readme_pipeline_hook_and_stage_examples_work_as_printed(crawlkit, tmp_path: Path) -> None:
    """pipes.py (Clean, Store), hooks.py's Captcha and rules.py's SkipLogin, as printed, in one crawl.

    hooks.py's Auth is left out: it sends every request through a proxy at proxy.local."""
    for name in ("pipes.py", "hooks.py", "rules.py"):
        (tmp_path / name).write_text(readme_file(name))
    links = b'<a href="/a">a</a><a href="/untitled">u</a><a href="/login">l</a><a href="/list?sort=asc">s</a>'
    with HostileServer() as server:
        site = server.site({
            "/": page(b"<title> Home </title>" + links), "/a": page(b"<title>A</title>"),
            "/untitled": page(b"<p>no title</p>"), "/login": page(b"<title>Login</title>"),
            "/captcha": first_then(page(b"<title>Check</title> captcha"), page(b"<title>Human</title>")),
            "/robots.txt": page(b"", status=404),
        })
        (tmp_path / "titles.py").write_text(EXTENDED.replace("START", repr(site.url("/")))
                                            .replace('css="a")', 'css="a")\n        yield response.follow("/captcha")'))
        run = crawlkit("runspider", "titles.py", "--stats", "stats.json", output="out.jsonl", timeout=60)
        fetched = server.paths(site)
    assert run.returncode == 0, run.stderr[-3000:]
    titles = sorted(item["title"] for item in run.items())
    assert titles == ["A", "Home", "Human"]  # stripped by Clean; /untitled dropped by it; /login ended by SkipLogin
    with sqlite3.connect(tmp_path / "titles-titles.sqlite") as db:
        assert sorted(title for (title,) in db.execute("SELECT title FROM t")) == titles
    assert fetched["/captcha"] == 2 and fetched["/login"] == 1  # the captcha page fetched again by RetryRequest
    assert not any(path.startswith("/list") for path in fetched)  # ?sort= links filtered by on_links
    counts = json.loads((tmp_path / "stats.json").read_text())["counts"]
    assert counts["dropped_login"] == 1 and counts["items_dropped"] == 1
