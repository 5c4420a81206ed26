"""Commands for working on a spider: fetch, parse, new; and an example in every command's --help,
whose flags that set a setting say what default.yaml says of it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from crawlkit.cli import cli
from crawlkit.settings import load_settings, settings_doc
from crawlkit.tools.site import Site, SiteSpec, respond

SPIDER = '''
from crawlkit import Request, Spider

class Shop(Spider):
    name = "shop"
    allowed_domains = ["127.0.0.2"]
    custom_settings = {"user_agent": "shopbot/2.0"}

    def parse(self, response):
        yield {"title": response.css("title::text").get()}
        for url in response.links()[:3]:
            yield Request(url, callback=self.parse_page)

    def parse_page(self, response):
        yield {"page": response.url}
        raise ValueError("price missing on " + response.url)
'''


@pytest.fixture()
def spider_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop.py"
    path.write_text(SPIDER)
    return path


def page_fetches(site: Site) -> dict[str, int]:
    return {key: n for key, n in site.stats()["fetches"].items() if not key.endswith("/robots.txt")}


def test_fetch_prints_status_headers_and_body_following_redirects(crawlkit) -> None:
    with Site(SiteSpec(hosts=1, pages=10)) as site:
        base = site.urls[0]
        run = crawlkit("fetch", f"{base}/redirect/3", "--user-agent", "probe/1.0", output=None)
        stats = site.stats()
    assert run.returncode == 0, run.stderr
    head, body = run.stdout.split("\n\n", 1)
    lines = head.splitlines()
    assert re.fullmatch(rf"200 {re.escape(base)}/page/3\.html \([\d,]+ ms, [\d,]+ bytes\)", lines[0])
    assert "Content-Type: text/html; charset=utf-8" in lines
    assert body.startswith("<!DOCTYPE html>") and "<title>Host 0 page 3</title>" in body
    assert f"301 {base}/redirect/3 -> {base}/page/3.html" in run.stderr
    host = base.split("//")[1]
    assert stats["fetches"] == {f"{host}/robots.txt": 1, f"{host}/redirect/3": 1, f"{host}/page/3.html": 1}
    assert stats["user_agents"] == {"probe/1.0": 3}


def test_fetch_obeys_robots_and_fails_in_one_line(crawlkit) -> None:
    with Site(SiteSpec(hosts=1, pages=10)) as site:
        base = site.urls[0]
        run = crawlkit("fetch", f"{base}/private/2.html", output=None)
        assert run.returncode == 1
        assert run.stderr.strip().count("\n") == 0 and "robots.txt" in run.stderr and "disallows" in run.stderr
        assert page_fetches(site) == {}  # only robots.txt was asked
        run = crawlkit("fetch", f"{base}/private/2.html", "--no-robots", output=None)
        assert run.returncode == 0 and "private" in run.stdout
        assert page_fetches(site) == {f"{base.split('//')[1]}/private/2.html": 1}


def test_fetch_failure_is_one_line_and_exit_code_1(crawlkit) -> None:
    with Site(SiteSpec(hosts=1, pages=1)) as site:
        port = site.port
    run = crawlkit("fetch", f"http://127.0.0.2:{port}/", "--no-robots", output=None)  # the site is gone
    assert run.returncode == 1
    assert run.stderr.strip().count("\n") == 0 and run.stderr.startswith("Error: connection refused:")
    assert "Traceback" not in run.stderr
    run = crawlkit("fetch", "ftp://127.0.0.2/x", output=None)
    assert run.returncode == 1 and "not an http(s) URL" in run.stderr
    with Site(SiteSpec(hosts=1, pages=1)) as site:
        run = crawlkit("fetch", site.urls[0] + "/loop/a", output=None)
        assert run.returncode == 1
        assert f"Error: redirect loop: {site.urls[0]}/loop/b -> {site.urls[0]}/loop/a" in run.stderr
        assert sum(page_fetches(site).values()) == 2


def test_fetch_of_a_refused_host_says_so_not_that_robots_txt_is_unavailable(crawlkit) -> None:
    with Site(SiteSpec(hosts=1, pages=1)) as site:
        port = site.port
    run = crawlkit("fetch", f"http://127.0.0.2:{port}/page", output=None)  # robots.txt is asked first: refused
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().count("\n") == 0, run.stderr
    assert run.stderr.startswith(f"Error: connection refused: http://127.0.0.2:{port}/robots.txt (")
    assert "unavailable" not in run.stderr


def test_fetch_with_a_spider_uses_its_settings_and_prints_what_the_callback_yields(crawlkit, spider_file: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=10)) as site:
        run = crawlkit("fetch", site.urls[0] + "/", "--spider", f"{spider_file}:Shop", output=None)
        agents = site.stats()["user_agents"]
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("200 ") and "\n\nItems (1):\n" in run.stdout
    assert '"title": "Host 0 index"' in run.stdout and "Requests (3):" in run.stdout
    assert agents == {"shopbot/2.0": 2}  # the spider's custom_settings, for robots.txt and the page


def test_parse_shows_items_requests_with_callbacks_and_what_is_not_followed(crawlkit, spider_file: Path) -> None:
    with Site(SiteSpec(hosts=2, pages=30)) as site:
        base = site.urls[0]
        run = crawlkit("parse", f"{base}/page/0.html", "--spider", str(spider_file), output=None)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.startswith("Items (1):\n")
    assert json.loads(out.split("\n", 1)[1].split("Requests")[0]) == {"title": "Host 0 page 0"}
    requests = re.findall(r"^  GET (\S+) -> (\w+)$", out, re.M)
    assert [cb for _, cb in requests] == ["parse_page"] * 3 and all(url.startswith(base) for url, _ in requests)
    assert re.search(rf"200 {re.escape(base)}/page/0.html", run.stderr)


def test_parse_shows_a_callback_error_with_its_traceback_and_exits_1(crawlkit, spider_file: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=10)) as site:
        url = site.urls[0] + "/page/4.html"
        run = crawlkit("parse", url, "--spider", f"{spider_file}:Shop", "--callback", "parse_page", output=None)
    assert run.returncode == 1
    assert f'"page": "{url}"' in run.stdout  # what it yielded before raising
    assert "Traceback (most recent call last):" in run.stderr
    assert 'raise ValueError("price missing on " + response.url)' in run.stderr
    assert f"ValueError: price missing on {url}" in run.stderr


def test_parse_of_a_page_the_callback_would_not_see(crawlkit, spider_file: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=10)) as site:
        run = crawlkit("parse", site.urls[0] + "/missing/1.html", "--spider", str(spider_file), output=None)
        assert run.returncode == 1 and "HTTP 404" in run.stderr and "handle_error_statuses" in run.stderr
        run = crawlkit("parse", site.urls[0] + "/missing/1.html", output=None)  # the built-in spider lists 404s
        assert run.returncode == 0 and '"status": 404' in run.stdout


def test_parse_runs_the_callback_on_a_retryable_status_once(crawlkit, tmp_path: Path) -> None:
    spider = tmp_path / "errors.py"
    spider.write_text(
        "from crawlkit import Spider\n\nclass Errors(Spider):\n    handle_error_statuses = True\n\n"
        "    def parse(self, response):\n        yield {'status': response.status}\n"
    )
    with Site(SiteSpec(hosts=1, pages=1, robots=False)) as site:
        site.route("/busy", respond(503, b"busy"))
        run = crawlkit("parse", site.urls[0] + "/busy", "--spider", str(spider), output=None)
        fetches = page_fetches(site)
    assert run.returncode == 0, run.stderr
    assert '"status": 503' in run.stdout and sum(fetches.values()) == 1  # no retries in a debugging tool


def test_callback_without_spider_is_a_usage_error(crawlkit) -> None:
    run = crawlkit("parse", "http://127.0.0.2:9/", "--callback", "parse_page", output=None)
    assert run.returncode == 2 and "--callback needs --spider" in run.stderr


def test_new_writes_a_spider_and_config_that_crawl_a_site(crawlkit, tmp_path: Path) -> None:
    run = crawlkit("new", "my-books", output=None)
    assert run.returncode == 0, run.stderr
    spider, config = tmp_path / "my-books.py", tmp_path / "my-books.yaml"
    assert "class MyBooksSpider(Spider):" in spider.read_text()
    settings = load_settings(config)  # valid, and every value is the documented default but the output
    assert settings.output == "my-books.jsonl" and settings.origin("per_host") == f"config file {config}"
    with Site(SiteSpec(hosts=2, pages=25)) as site:
        spider.write_text(
            spider.read_text().replace('start_urls = ["https://example.com/"]', f'start_urls = ["{site.seeds()[0]}"]')
        )
        run = crawlkit("runspider", "my-books.py", "--config", "my-books.yaml", output=None)
        fetched = site.stats()["fetches"]
    assert run.returncode == 0, run.stderr
    items = [json.loads(line) for line in (tmp_path / "my-books.jsonl").read_text().splitlines()]
    assert {item["url"] for item in items} == site.expected_urls(hosts=[0])  # its own host only
    assert all(item["title"] and item["headings"] == [item["title"]] for item in items)
    assert not [key for key in fetched if key.startswith(site.urls[1].split("//")[1])]


def test_new_refuses_to_overwrite_and_to_take_a_bad_name(crawlkit, tmp_path: Path) -> None:
    (tmp_path / "books.yaml").write_text("mine: true\n")
    run = crawlkit("new", "books", output=None)
    assert run.returncode == 2 and "books.yaml already exists" in run.stderr
    assert (tmp_path / "books.yaml").read_text() == "mine: true\n" and not (tmp_path / "books.py").exists()
    run = crawlkit("new", "../evil", output=None)
    assert run.returncode == 2 and "is not a spider name" in run.stderr


def _commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found += _commands(command, path)
    return found


@pytest.mark.parametrize("path", [path for path, _ in _commands(cli, "crawlkit")])
def test_every_command_help_has_an_example(path: str) -> None:
    args = path.split()[1:]
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output, f"{path} --help has no example"
    example = result.output.split("Example:", 1)[1]
    assert f"{path} " in example or f"{path}\n" in example, f"{path} --help shows no example of itself"


def test_readme_documents_every_command_and_option() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for path, command in _commands(cli, "crawlkit"):
        assert f"`{path}" in readme, f"README's command table lacks {path}"
        if path in ("crawlkit crawl", "crawlkit runspider", "crawlkit fetch", "crawlkit parse"):
            for param in command.params:
                if isinstance(param, click.Option):
                    flag = max(param.opts, key=len)
                    assert f"`{flag}" in readme or f"/{flag}" in readme, f"README does not document {path} {flag}"


# The settings each command's flags set (-s/--set aside, which takes any).
SETTING_FLAGS = {
    "crawlkit crawl": {
        "spider", "workers", "concurrency", "per_host", "delay", "parsers", "output", "overwrite_output", "warc",
        "http_cache", "max_pages", "max_depth",
        "allowed_domains", "user_agent", "robots", "log_level", "log_file", "jobdir", "recrawl", "frontier", "crawl_id",
        "quiet", "stats_file", "report", "log_json",
    },
    "crawlkit fetch": {"user_agent", "robots"},
    "crawlkit demo": {"workers"},
    "crawlkit bench": {"workers", "concurrency", "per_host", "parsers"},
}
SETTING_FLAGS["crawlkit runspider"] = SETTING_FLAGS["crawlkit crawl"] - {"spider"}
SETTING_FLAGS["crawlkit parse"] = SETTING_FLAGS["crawlkit fetch"]


@pytest.mark.parametrize("path", sorted(SETTING_FLAGS))
def test_a_flag_that_sets_a_setting_shows_its_comment_and_default_from_default_yaml(path: str) -> None:
    command = dict(_commands(cli, "crawlkit"))[path]
    doc = {key: (default, re.sub(r"^\(.*?\) ", "", comment)) for key, default, comment in settings_doc()}
    named = {}
    for param in command.params:
        match = re.search(r"\[setting: (\w+)(?: = \w+)?; default: (.*)\]$", getattr(param, "help", None) or "")
        if match:
            key = named[match.group(1)] = match.group(1)
            default, comment = doc[key]
            assert match.group(2) == json.dumps(default) and comment in param.help, (path, param.name)
    assert set(named) == SETTING_FLAGS[path]
