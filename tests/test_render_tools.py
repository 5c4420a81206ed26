"""``crawlkit fetch``, ``parse`` and ``shell`` render a page when the crawl would, through the real CLI.

The site (``render_site.py``) writes its content and links with scripts; what is asserted is
what the server saw (a browser's requests carry ``Sec-CH-UA``, ``requests``' do not): one
navigation per page rendered, its sub-resources, robots.txt fetched plainly first. These need
Playwright and Chromium (skipped without them, as ``test_render_crawl.py`` is); the choice of
what to render is unit-tested in ``test_debugging_render.py`` without a browser.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.support import CRAWLKIT, Run, leftover_processes, wait_for
from tests.test_render_crawl import _browser as _browser
from tests.test_render_crawl import browsers, site

SPIDER = '''
from crawlkit import Request, Spider


class Home(Spider):
    name = "home"

    async def start(self):
        yield Request({start!r}, render=True)

    def parse(self, response):
        yield {{"title": response.css("title::text").get(), "rendered": response.meta.get("rendered")}}
        for href in response.css("#links a::attr(href)").getall():
            yield response.follow(href, self.parse_page)

    def parse_page(self, response):
        yield {{"title": response.css("#t::text").get()}}
'''

SHELL_APP = '<div id="app"></div>'  # what /shell/N holds before its script runs (then it holds an <h1>)


def test_parse_renders_the_page_the_spiders_own_request_renders(crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    with site() as (base, seen):
        (tmp_path / "home.py").write_text(SPIDER.format(start=base + "/"))
        run = crawlkit("parse", base + "/", "--spider", "home.py", output=None)
        assert run.returncode == 0, run.stderr
        assert seen.paths(browser=False) == ["/robots.txt"]  # robots.txt first, plainly
        assert seen.paths(browser=True) == ["/", "/api/more.json"]  # one navigation and its script's fetch()
    out = run.stdout
    assert json.dumps({"title": "home", "rendered": True}, indent=2) in out
    # The links its script wrote, and those it wrote from the fetch()ed JSON.
    assert [line for line in out.splitlines() if line.startswith("  GET ")] == [
        f"  GET {base}/p/{n} -> parse_page" for n in range(1, 7)]
    assert f"200 {base}/ (rendered, " in run.stderr


def test_fetch_prints_the_rendered_dom_with_render_set_and_the_shell_with_no_render(
        crawlkit: Callable[..., Run]) -> None:
    with site() as (base, seen):
        run = crawlkit("fetch", base + "/p/1", "-s", "render=true", output=None)
        assert run.returncode == 0, run.stderr
        assert '<h1 id="t">Title 1</h1>' in run.stdout  # written by the script from /api/1.json
        assert run.stdout.startswith(f"200 {base}/p/1 (rendered, ")
        assert seen.paths(browser=False) == ["/robots.txt"]
        # One navigation, its stylesheet, script and fetch(); the image is blocked (render_block).
        assert sorted(seen.paths(browser=True)) == ["/api/1.json", "/app.js", "/p/1", "/s.css"]
    with site() as (base, seen):
        run = crawlkit("fetch", base + "/shell/1", "-s", "render=true", "--no-render", output=None)
        assert run.returncode == 0, run.stderr
        assert SHELL_APP in run.stdout  # the page as served: its script has not run
        assert "rendered" not in run.stdout.splitlines()[0]
        assert seen.paths(browser=False) == ["/robots.txt", "/shell/1"]
        assert seen.paths(browser=True) == []


def test_a_rendered_pages_sub_resources_obey_its_hosts_robots_txt_in_the_tools_too(
        crawlkit: Callable[..., Run]) -> None:
    with site() as (base, seen):
        seen.robots = "User-agent: crawlkit\nDisallow: /app.js\n"
        run = crawlkit("fetch", base + "/p/1", "--render", output=None)
        assert run.returncode == 0, run.stderr
        assert seen.paths(browser=False) == ["/robots.txt"]
        assert sorted(seen.paths(browser=True)) == ["/api/1.json", "/p/1", "/s.css"]  # /app.js disallowed

def test_each_hop_of_a_redirect_is_rendered_and_a_plain_page_failing_render_when_is_rendered(
        crawlkit: Callable[..., Run]) -> None:
    with site() as (base, seen):
        run = crawlkit("fetch", base + "/to/shell/2", "--render", output=None)
        assert run.returncode == 0, run.stderr
        assert f"302 {base}/to/shell/2 -> {base}/shell/2" in run.stderr
        assert '<div id="app"><h1 id="t">Shell 2</h1>' in run.stdout
        assert seen.paths(browser=False) == ["/robots.txt"]
        assert seen.paths(browser=True) == ["/to/shell/2", "/shell/2"]
    with site() as (base, seen):
        run = crawlkit("parse", base + "/shell/1", "-s", 'render_when={missing: "#t"}', output=None)
        assert run.returncode == 0, run.stderr
        assert f"200 {base}/shell/1 (rendered: the plain page failed the adaptive check, " in run.stderr
        assert f"  GET {base}/shell/2 -> parse" in run.stdout  # the link its script wrote
        assert seen.paths(browser=False) == ["/robots.txt", "/shell/1"]
        assert seen.paths(browser=True) == ["/shell/1"]


def test_the_shell_holds_the_rendered_page_and_says_so(tmp_path: Path) -> None:
    with site() as (base, seen):
        marker = uuid.uuid4().hex
        lines = ['print(response.css("#t::text").get(), response.meta["rendered"])',
                 f'fetch("{base}/shell/2")', 'print(response.css("#t::text").get(), "rendered" in response.meta)']
        run = subprocess.run([CRAWLKIT, "shell", base + "/shell/1", "--render"], input="\n".join(lines) + "\n",
                             capture_output=True, text=True, timeout=120, cwd=tmp_path,
                             env={**os.environ, "CRAWLKIT_TEST_RUN": marker})
        assert not leftover_processes(marker)
        assert run.returncode == 0, run.stderr
        assert run.stdout.splitlines() == ["Shell 1 True", "Shell 2 True"]  # --render holds for fetch() too
        assert "response was rendered by a browser" in run.stderr
        assert seen.paths(browser=True) == ["/shell/1", "/shell/2"]


def test_a_page_that_cannot_be_rendered_is_one_line_and_exit_code_1_a_missing_browser_2(
        crawlkit: Callable[..., Run]) -> None:
    with site() as (base, seen):
        run = crawlkit("parse", base + "/p/1", "--meta", '{"render": {"bogus": 1}}', output=None)
        assert run.returncode == 1, run.stderr
        assert run.stderr.strip().splitlines()[-1].startswith(
            f"Error: render_options: {base}/p/1 ('render' has no action 'bogus'")
        assert seen.paths(browser=True) == []
        run = crawlkit("fetch", base + "/p/1", "--render", "-s", "render_executable=/no/chromium", output=None)
        assert run.returncode == 2
        assert run.stderr.strip().splitlines()[-1] == (
            "Error: render_executable '/no/chromium' is not an executable file; install chromium or set "
            "render_executable to a Chromium or Chrome executable")
        assert seen.paths(browser=True) == []


def test_a_rendered_pages_failure_shows_neither_its_hosts_headers_nor_its_proxys_password(
        crawlkit: Callable[..., Run]) -> None:
    with site() as (base, seen):
        rule = json.dumps({base.split("//")[1]: {"headers": {"Authorization": "Bearer s3cret"}}})
        run = crawlkit("fetch", base + "/p/1", "--render", "-s", "robots=false", "-s", f"hosts={rule}",
                       "-s", "proxy=http://agent:s3cret@127.0.0.9:1", output=None)  # a proxy that refuses
        assert run.returncode == 1, run.stderr
        assert run.stderr.strip().splitlines()[-1] == (
            f"Error: connection refused: {base}/p/1 (Route.fetch: connect ECONNREFUSED 127.0.0.9:1)")
        assert "s3cret" not in run.stdout + run.stderr
        # A proxy the browser cannot use fails the page, in one line, and not as a browser that died.
        run = crawlkit("fetch", base + "/p/1", "--render", "-s", "robots=false",
                       "-s", "proxy=socks5://agent:s3cret@127.0.0.9:1", output=None)
        assert run.returncode == 1, run.stderr
        assert run.stderr.strip().splitlines()[-1] == (
            f"Error: render_error: {base}/p/1 (Browser.new_context: Browser does not support socks5 proxy "
            "authentication)")
        assert "s3cret" not in run.stdout + run.stderr
        # A proxy URL that does not parse fails the page as on the plain path, not the command with a traceback.
        run = crawlkit("fetch", base + "/p/1", "--render", "-s", "robots=false",
                       "-s", "proxy=http://agent:s3cret@[::1", output=None)
        assert run.returncode == 1, run.stderr
        assert run.stderr.strip().splitlines()[-1] == (
            f"Error: invalid_url: {base}/p/1 (the proxy's URL is not valid: Invalid IPv6 URL)")
        assert "s3cret" not in run.stdout + run.stderr
        assert seen.paths(browser=True) == [] and seen.paths(browser=False) == []


def test_a_browser_dying_under_a_tools_page_fails_that_page_and_the_shell_goes_on(tmp_path: Path) -> None:
    lines = ['fetch("{base}/p/3")', 'print("went on")', 'fetch("{base}/p/1")',
             'print(response.css("#t::text").get(), response.meta["rendered"])']
    with site() as (base, seen):
        seen.hold_path = "/p/3"  # held until its browser is killed, so the browser dies under the page
        marker = uuid.uuid4().hex
        script = tmp_path / "input.py"
        script.write_text("\n".join(line.format(base=base) for line in lines) + "\n")
        with script.open() as stdin:
            proc = subprocess.Popen([CRAWLKIT, "shell", base + "/p/2", "--render"], stdin=stdin,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env={**os.environ, "CRAWLKIT_TEST_RUN": marker})
        try:
            wait_for(lambda: seen.saw("/p/3"), 60, "the held page's request")
            for browser in browsers(marker):
                browser.kill()
            seen.release.set()
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert not leftover_processes(marker)
    assert proc.returncode == 0, stderr
    assert f": {base}/p/3 (Page.goto: Target page, context or browser has been closed)" in stderr
    assert stdout.splitlines() == ["went on", "Title 1 True"]  # the next page, in another browser


def test_a_hosts_headers_go_to_its_own_pages_requests_and_not_to_another_hosts_pages_scripts(
        crawlkit: Callable[..., Run]) -> None:
    with site("127.0.0.2") as (base, seen), site("127.0.0.3") as (private, kept):
        seen.cdn = private  # /cdn/1 of base loads its stylesheet and scripts from the private host
        rule = json.dumps({private.removeprefix("http://"): {"headers": {"Authorization": "Bearer s3cret"}}})
        for url in (private + "/p/1", base + "/cdn/1"):
            run = crawlkit("fetch", url, "--render", "-s", "robots=false", "-s", f"hosts={rule}", output=None)
            assert run.returncode == 0, run.stderr
        sent = [(r["path"].partition("?")[0], r["authorization"] or "") for r in kept.requests]
    own = [("/p/1", "Bearer s3cret"), ("/s.css", "Bearer s3cret"), ("/app.js", "Bearer s3cret"),
           ("/api/1.json", "Bearer s3cret")]
    other = [("/s.css", "")] + [("/app.js", "")] * 3  # asked by the other host's page
    assert sorted(sent) == sorted(own + other)
