"""The README stays true: its settings table is generated from crawlkit/default.yaml, and its spider runs."""

from __future__ import annotations

import re
from pathlib import Path

from hostile import HostileServer, page

from crawlkit.settings import scrapy_settings_table, settings_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_settings_table_is_the_one_settings_table_prints() -> None:
    text = README.read_text(encoding="utf-8")
    table = re.search(r"<!-- settings-table.*?-->\n(.*?)\n<!-- /settings-table -->", text, re.S)
    assert table, "README.md lost its settings table markers"
    regenerate = 'python -c "from crawlkit.settings import settings_table as t; print(t())"'
    assert table.group(1) == settings_table(), f"regenerate the README settings table: {regenerate}"


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
        (tmp_path / "quotes.py").write_text(spider)
        run = crawlkit("runspider", "quotes.py", output="quotes.jsonl", timeout=60)
        fetched = server.paths(site)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(item["text"] for item in run.items()) == ["One", "Three", "Two"]
    assert fetched["/"] == 1 and fetched["/page/2/"] == 1


def test_scrapy_settings_table_is_the_one_the_alias_table_prints() -> None:
    text = README.read_text(encoding="utf-8")
    table = re.search(r"<!-- scrapy-settings-table.*?-->\n(.*?)\n<!-- /scrapy-settings-table -->", text, re.S)
    assert table, "README.md lost its Scrapy settings table markers"
    regenerate = 'python -c "from crawlkit.settings import scrapy_settings_table as t; print(t())"'
    assert table.group(1) == scrapy_settings_table(), f"regenerate the README's Scrapy settings table: {regenerate}"


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
