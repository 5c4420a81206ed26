"""Crawls through the real CLI of local sites whose links and content exist only after JavaScript runs.

What is asserted is what the server saw (``render_site.py``): which pages a browser asked for
(Chromium sends ``Sec-CH-UA``, ``requests`` does not) and which were fetched plainly, the most
requests of a host in flight at once, navigations and sub-resources counted. They need
Playwright and Chromium: they skip without them, and fail under CI (``.ci/run`` installs both).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from base64 import b64encode
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import psutil
import pytest

from tests.forward_proxy import ForwardProxy
from tests.render_site import BIG, PAGES, Seen, handler
from tests.support import Run, leftover_processes, redis_server, start_crawl, stop_crawl, wait_for


@pytest.fixture(scope="module", autouse=True)
def _browser() -> None:
    message = None
    if importlib.util.find_spec("playwright") is None:
        message = "Playwright is not installed: pip install -e '.[test]'"
    elif shutil.which("chromium") is None:
        message = "chromium is not installed: apt-get install chromium"
    if message is not None:
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the rendering tests)")
        pytest.skip(message)


@contextlib.contextmanager
def site(ip: str = "127.0.0.1") -> Iterator[tuple[str, Seen]]:
    seen = Seen()
    server = ThreadingHTTPServer((ip, 0), handler(seen))
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{ip}:{server.server_address[1]}", seen
    finally:
        seen.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


SPIDER = '''
from crawlkit import Request, Spider


class Pages(Spider):
    name = "pages"
    seeds = {start!r}

    async def start(self):
        for url, render in self.seeds:
            yield Request(url, render=render)

    def parse(self, response):
        yield {{"url": response.url, "title": response.css("#t::text").get(),
                "rendered": bool(response.meta.get("rendered"))}}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href)
'''


def spider(tmp_path: Path, start: list[tuple[str, bool | None]]) -> str:
    """Write the spider starting from ``start`` ((URL, its render=) pairs); its file, for ``crawlkit runspider``."""
    (tmp_path / "pages.py").write_text(SPIDER.format(start=start))
    return "pages.py"


def items(run: Run) -> dict[str, tuple[str | None, bool]]:
    assert run.returncode == 0, run.stderr
    return {item["url"]: (item["title"], item["rendered"]) for item in run.items()}


def js_pages(base: str) -> dict[str, tuple[str | None, bool]]:
    """The items of the script-built site from ``/``: every page found, each with the title its script fetched."""
    return {f"{base}/": (None, True), **{f"{base}/p/{n}": (f"Title {n}", True) for n in range(1, PAGES + 1)}}


def test_a_rendered_crawl_finds_every_page_and_holds_the_per_host_cap_with_sub_resources_counted(
        crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    with site() as (base, seen):
        run = crawlkit("runspider", spider(tmp_path, [(base + "/", None)]), "-s", "render=true", "-s", "per_host=1",
                       "-s", "render_pages=4", "-s", "render_recycle_pages=4", "--stats", "stats.json")
        assert items(run) == js_pages(base)  # links written by a script and by fetch() of JSON, titles by fetch()
        # The fifth page waited for the first four to end, and a new browser: render_recycle_pages.
        assert f"  rendered: {PAGES + 1} pages (0 after a plain fetch failed render_when); browsers recycled 1, " \
            "crashed 0" in run.stderr.splitlines()
        pages = {"/", *(f"/p/{n}" for n in range(1, PAGES + 1))}
        assert set(seen.paths(browser=True)) >= pages | {"/api/more.json", "/s.css", "/app.js"}
        assert not [p for p in seen.paths() if p.startswith("/img/")]  # render_block: images are never asked for
        assert set(seen.paths(browser=False)) == {"/robots.txt"}  # robots.txt stays plain
        assert seen.peak == {base.removeprefix("http://"): 1}  # per_host 1, 4 pages at once, css, js and fetch()
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["counts"]["rendered"] == PAGES + 1, stats
    assert stats["counts"]["render_blocked"] >= PAGES, stats


def test_per_request_per_host_and_adaptive_rendering_each_go_their_own_way(
        crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    with site("127.0.0.2") as (rule_base, by_rule), site("127.0.0.3") as (auto_base, adaptive), \
            site("127.0.0.4") as (plain_base, plain):
        start: list[tuple[str, bool | None]] = [
            (rule_base + "/", None), (rule_base + "/plain/3", False),  # the host rule renders, the request says no
            (auto_base + "/shell/1", None),  # render_when: the plain page has no #t, so it is rendered
            (plain_base + "/plain/1", None), (plain_base + "/p/1", True),  # only the request asks
        ]
        hosts = json.dumps({rule_base.removeprefix("http://"): {"render": True}})
        run = crawlkit("runspider", spider(tmp_path, start), "-s", f"hosts={hosts}",
                       "-s", 'render_when={missing: "#t"}', "--stats", "stats.json")
        found = items(run)
        assert {url: found[url] for url in js_pages(rule_base)} == js_pages(rule_base)
        assert found[rule_base + "/plain/3"] == ("Plain 3", False)
        assert "/plain/3" in by_rule.paths(browser=False) and "/plain/3" not in by_rule.paths(browser=True)
        # Adaptive: shell 1 fetched plainly once, then by the browser; its host's later pages straight to the browser.
        assert {url: found[url] for url in found if url.startswith(auto_base)} == {
            f"{auto_base}/shell/{n}": (f"Shell {n}", True) for n in (1, 2, 3)}
        assert adaptive.paths(browser=False) == ["/robots.txt", "/shell/1"]
        assert adaptive.paths(browser=True) == ["/shell/1", "/shell/2", "/shell/3"]
        # A host without a rule: plain pages stay plain (they pass the check); the page a request asks for is rendered.
        expected = {f"{plain_base}/plain/{n}": (f"Plain {n}", False) for n in (1, 2, 3)}
        expected[plain_base + "/p/1"] = ("Title 1", True)
        assert {url: found[url] for url in found if url.startswith(plain_base)} == expected
        assert sorted(plain.paths(browser=True)) == ["/api/1.json", "/app.js", "/p/1", "/s.css"]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["counts"]["render_adaptive"] == 1, stats


def browsers(marker: str) -> list[psutil.Process]:
    """The crawl's browsers: its chromium processes whose parent is not a chromium (Playwright's driver is)."""
    found = []
    for process in leftover_processes(marker):
        with contextlib.suppress(psutil.Error):
            if process.name() == "chromium" and process.parent().name() != "chromium":
                found.append(process)
    return found


def renderers(marker: str) -> list[psutil.Process]:
    found = []
    for process in leftover_processes(marker):
        with contextlib.suppress(psutil.Error):
            if process.name() == "crawlkit-render":
                found.append(process)
    return found


@pytest.mark.parametrize("victim", ["browser", "renderer", "frozen browser"])
def test_a_killed_or_frozen_browser_or_a_killed_renderer_loses_nothing(tmp_path: Path, victim: str) -> None:
    """A browser killed, its renderer killed, or a browser that stops answering (SIGSTOP: it holds its page
    past ``render_timeout``, and the engine's stall check kills its renderer): another renderer takes over,
    every page is rendered, the held one once more, and the crawl ends by itself, leaving no process or file."""
    with site() as (base, seen):
        seen.hold_path = "/p/3"  # held until its renderer is hit, so it is in flight then
        out = tmp_path / "out.jsonl"
        proc, marker = start_crawl(tmp_path, [base + "/"], out, "-s", "render=true", "-s", "spider=pages.py:Pages",
                                   # Short, for the stall check to see the frozen page soon; yet every other page
                                   # gets it: on a loaded machine (load average 20) a page's load event alone
                                   # came 9 s after its render began, and a page out of time is read as it stands.
                                   *(("-s", "render_timeout=15") if victim == "frozen browser" else ()),
                                   "--stats", "stats.json")
        spider(tmp_path, [(base + "/", None)])
        frozen: list[psutil.Process] = []
        try:
            wait_for(lambda: seen.saw("/p/3"), 60, "the held page's request")
            [renderer] = renderers(marker)
            [browser] = browsers(marker)
            if victim == "frozen browser":
                frozen = [browser, *browser.children(recursive=True)]
                for process in frozen:
                    process.suspend()
            else:
                (browser if victim == "browser" else renderer).send_signal(signal.SIGKILL)
            seen.hold_path = None
            seen.release.set()
            stderr = proc.communicate(timeout=150)[1]
        finally:
            if proc.poll() is None:
                stop_crawl(proc, marker, signal.SIGKILL)
        try:
            assert proc.returncode == 0, stderr
            # The frozen browser too: the engine killed its group, as it killed its renderer.
            wait_for(lambda: not leftover_processes(marker), 10, "every process of the crawl to end")
        finally:
            for process in frozen:  # suspended by the test: not left behind if the engine failed to kill them
                with contextlib.suppress(psutil.Error):
                    process.kill()
        assert not list(Path(tempfile.gettempdir()).glob(f"crawlkit-render-*-{renderer.pid}"))  # its browser's files
        found = {item["url"]: (item["title"], item["rendered"])
                 for item in map(json.loads, out.read_text().splitlines())}
        assert found == js_pages(base)
        assert seen.paths().count("/p/3") == 2  # sent again by the renderer that took the dead one's place
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["counts"]["render_crashed"] == 1, stats
    assert stats["counts"]["requeued"] >= 1, stats


def test_a_shared_redis_crawl_renders_as_one_node_does(crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    """The render options travel in the request's meta through Redis; the renderers are the node's own."""
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed: apt-get install redis-server (CI must run this test)")
        pytest.skip("redis-server is not installed: apt-get install redis-server")
    (tmp_path / "redis").mkdir()
    with redis_server(server, tmp_path / "redis") as url, site() as (base, seen):
        start: list[tuple[str, bool | None]] = [(base + "/p/1", True), (base + "/plain/1", None)]
        run = crawlkit("runspider", spider(tmp_path, start), "--frontier", url, "--crawl-id", "render-redis")
        assert items(run) == {base + "/p/1": ("Title 1", True),
                              **{f"{base}/plain/{n}": (f"Plain {n}", False) for n in (1, 2, 3)}}
        assert sorted(seen.paths(browser=True)) == ["/api/1.json", "/app.js", "/p/1", "/s.css"]


def test_a_hosts_delay_spaces_a_rendered_pages_requests_sub_resources_included(
        crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    with site() as (base, seen):
        run = crawlkit("runspider", spider(tmp_path, [(base + "/p/1", True)]), "-s", "delay=0.2")
        assert items(run) == {base + "/p/1": ("Title 1", True)}
        arrivals = [r["at"] for r in seen.requests]
    paths = [r["path"] for r in seen.requests]
    assert paths[:2] == ["/robots.txt", "/p/1"] and sorted(paths[2:]) == ["/api/1.json", "/app.js", "/s.css"]
    assert min(b - a for a, b in zip(arrivals, arrivals[1:])) >= 0.2, arrivals  # as the server saw them


def test_a_page_gets_render_timeout_seconds(crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    with site() as (base, seen):
        seen.hold_path = "/p/3"  # its main document never comes (until the test ends)
        run = crawlkit("runspider", spider(tmp_path, [(base + "/", None)]), "-s", "render=true",
                       "-s", "render_timeout=2", "-s", "retries=0", "--stats", "stats.json")
        found = items(run)
        assert found == {url: item for url, item in js_pages(base).items() if not url.endswith("/p/3")}
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["errors"] == {"download_timeout": 1}, stats


def test_with_allow_private_addresses_false_the_browser_reaches_no_private_address(
        crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    with site() as (base, seen):
        run = crawlkit("runspider", spider(tmp_path, [(base + "/", True)]), "-s", "allow_private_addresses=false",
                       "-s", "retries=0", "--stats", "stats.json")
        assert run.returncode == 0, run.stderr
        assert seen.paths() == []
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["errors"] == {"destination_blocked": 2}, stats  # robots.txt, fetched plainly, and the page


def test_without_a_browser_a_crawl_that_renders_fails_at_start_in_one_line(
        crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    with site() as (base, seen):
        run = crawlkit("crawl", "-s", "render=true", "-s", "render_executable=/no/chromium", seeds=[base + "/"])
        assert run.returncode == 2
        assert run.stderr.strip().splitlines()[-1] == (
            "Error: render_executable '/no/chromium' is not an executable file; install chromium or set "
            "render_executable to a Chromium or Chrome executable")
        assert seen.paths() == []
        # Only the spider asks: the crawl fails at its first page to render.
        run = crawlkit("runspider", spider(tmp_path, [(base + "/", True)]), "-s", "render_executable=/no/chromium")
        assert run.returncode == 2
        assert run.stderr.strip().splitlines()[-1].startswith("Error: render_executable '/no/chromium'")


def test_the_benchmark_renders_its_site_with_render(crawlkit: Callable[..., Run]) -> None:
    run = crawlkit("bench", "--render", "--hosts", "1", "--pages", "12", "--per-host", "2", "--json", output=None)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["settings"]["render"] is True
    assert result["items"] == result["expected_pages"] > 0
    assert 1 <= result["server"]["peak_inflight_per_host"] <= 2
    assert result["cpu_s_by_role"]["renderer"] > 0


def test_a_rendered_crawl_archives_every_response_the_browser_received_and_runs_the_page_actions(
        crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    """The built-in spider, rendering with a script action and a screenshot: the WARC holds the network
    responses of each page (document, script, stylesheet, fetch()ed JSON) as the server sent them and
    passes ``warcio check``; each item names its screenshot, a PNG file."""
    from warcio.archiveiterator import ArchiveIterator

    with site() as (base, seen):
        render = json.dumps({"script": "document.title", "screenshot": True})
        run = crawlkit("crawl", "-s", f"render={render}", "-s", "render_screenshots=shots", "--warc", "warc",
                       "-s", "max_depth=0", seeds=[base + "/p/1"])
        assert run.returncode == 0, run.stderr
        served = set(seen.paths(browser=True))
    assert served >= {"/p/1", "/api/1.json", "/s.css", "/app.js"}
    [item] = [i for i in run.items() if i["url"] == base + "/p/1"]
    shot = tmp_path / "shots" / item["screenshot"]
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    files = sorted((tmp_path / "warc").glob("*.warc.gz"))
    warcio = str(Path(sys.executable).with_name("warcio"))
    check = subprocess.run([warcio, "check", "-v", *map(str, files)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    responses = {}
    for path in files:
        with open(path, "rb") as stream:
            for record in ArchiveIterator(stream):
                if record.rec_type == "response":
                    responses[record.rec_headers.get_header("WARC-Target-URI")] = record.content_stream().read()
    assert {base + p for p in ("/p/1", "/api/1.json", "/s.css", "/app.js")} <= set(responses)
    assert b'"title"' in responses[base + "/api/1.json"]  # the JSON as served, not the DOM
    assert b"<h1 id=\"t\"></h1>" in responses[base + "/p/1"]  # the document as served, before its script ran



@pytest.mark.parametrize("source", ["setting", "request meta", "environment"])
def test_a_rendered_page_and_its_sub_resources_go_through_the_proxy_the_plain_path_would_use(
        crawlkit: Callable[..., Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """The ``proxy`` setting, the request's ``meta["proxy"]`` or HTTP_PROXY: the server sees only what the proxy
    relayed, navigation and sub-resources alike; the proxy's credentials go to the proxy (Proxy-Authorization)."""
    with site() as (base, seen), ForwardProxy("127.0.0.5") as proxy:
        via = proxy.url.replace("http://", "http://agent:p%40ss@")
        args: tuple[str, ...] = ()
        start: list[tuple[str, bool | None]] = [(base + "/p/1", True)]
        if source == "setting":
            args = ("-s", f"proxy={via}")
        elif source == "environment":
            monkeypatch.setenv("HTTP_PROXY", via)
            monkeypatch.setenv("NO_PROXY", "")
        else:
            (tmp_path / "via.py").write_text(f'''
from crawlkit import Request
from pages import Pages


class Via(Pages):
    async def start(self):
        yield Request({base + "/p/1"!r}, render=True, meta={{"proxy": {via!r}}})
''')
        spider(tmp_path, start)
        run = crawlkit("runspider", "via.py" if source == "request meta" else "pages.py", *args)
        assert items(run) == {base + "/p/1": ("Title 1", True)}
        served = Counter(base + path for path in seen.paths())
        if source == "request meta":  # the page's own proxy: robots.txt went direct
            served -= Counter([base + "/robots.txt"])
        # Every request of the page the server saw came through the proxy. (Chromium's own update check may too,
        # under HTTP_PROXY: not the site's.)
        assert Counter(url for url in proxy.urls() if url.startswith(base)) == served
        assert set(served) >= {base + p for p in ("/p/1", "/api/1.json", "/s.css", "/app.js")}
        assert set(seen.paths(browser=True)) == {"/p/1", "/api/1.json", "/s.css", "/app.js"}
        credentials = "Basic " + b64encode(b"agent:p@ss").decode()
        assert proxy.tunnels and {headers.get("proxy-authorization") for _, headers in proxy.tunnels} == {credentials}
        browser = [headers for _, _, headers in proxy.seen if "sec-ch-ua" in headers]  # sent in the tunnels
        assert len(browser) == 4 and not [headers for headers in browser if "proxy-authorization" in headers]


def test_a_browser_over_render_recycle_mb_is_started_afresh_and_every_page_is_still_rendered(
        crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    """With 1 MB, each browser is due once it has rendered a page: it is closed when its pages in progress end
    and another launched; every page is rendered, each once, and no browser outlives the crawl (the fixture)."""
    with site() as (base, seen):
        run = crawlkit("runspider", spider(tmp_path, [(base + "/", None)]), "-s", "render=true",
                       "-s", "render_recycle_pages=0", "-s", "render_recycle_mb=1", "--stats", "stats.json")
        assert items(run) == js_pages(base)
        pages = ["/", *(f"/p/{n}" for n in range(1, PAGES + 1))]
        assert sorted(p for p in seen.paths(browser=True) if p == "/" or p.startswith("/p/")) == sorted(pages)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["counts"]["render_recycled"] >= 1, stats
    assert "the browser is started afresh: its processes hold" in run.stderr
    assert "render_recycle_mb is 1, below the 60 MB or more a browser holds once it rendered a page" in run.stderr


def test_a_request_whose_render_options_are_refused_is_one_render_options_error_and_the_crawl_goes_on(
        crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    """Options the spider set in meta (``Request(url, render=...)`` refuses them as it is built), by a
    middleware, or from an older jobdir: the renderer refuses the page before navigating, not retried."""
    with site() as (base, seen):
        (tmp_path / "bad.py").write_text(f'''
from crawlkit import Request
from pages import Pages


class Bad(Pages):
    async def start(self):
        yield Request({base + "/p/1"!r}, meta={{"render": {{"bogus": 1}}}})
        yield Request({base + "/p/2"!r}, render=True)
''')
        spider(tmp_path, [])
        run = crawlkit("runspider", "bad.py", "-s", "retries=2", "--stats", "stats.json")
        assert items(run) == {base + "/p/2": ("Title 2", True)}
        assert "/p/1" not in seen.paths()  # never sent: not by the browser, not by a retry
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["errors"] == {"render_options": 1}, stats
    [line] = [line for line in run.stderr.splitlines() if "render_options" in line and base + "/p/1" in line]
    assert "'render' has no action 'bogus'" in line, line


def test_a_body_over_max_body_never_reaches_the_browser_a_sub_resource_refused_to_its_page(
        crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    """``/big``'s script (by its Content-Length) and its fetch()ed JSON (chunked: by its body) are refused to
    the page, which renders without them; ``/huge``, a page over max_body, is a body_too_large error."""
    with site() as (base, seen):
        start: list[tuple[str, bool | None]] = [(base + "/big", True), (base + "/huge", True)]
        run = crawlkit("runspider", spider(tmp_path, start), "-s", f"max_body={BIG // 2}", "-s", "retries=0",
                       "--stats", "stats.json")
        assert items(run) == {base + "/big": ("Big", True)}  # neither wrote the title
        assert sorted(seen.paths(browser=True)) == ["/big", "/big.js", "/big.json", "/huge"]  # each sent once
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["counts"]["render_too_large"] == 2, stats
    assert stats["errors"] == {"body_too_large": 1}, stats
    assert f"2 sub-resources of {base}/big refused to the page: their bodies are over max_body" in run.stderr


def test_a_page_that_never_settles_is_read_at_render_timeout_counted_and_named_in_a_warning(
        crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    """``/poll`` asks for a JSON every 30 ms: it is read as it stands at its render_timeout, once, and said so."""
    with site() as (base, seen):
        start: list[tuple[str, bool | None]] = [(base + "/poll", True)]
        run = crawlkit("runspider", spider(tmp_path, start), "-s", "render_timeout=5", "--stats", "stats.json")
        assert items(run) == {base + "/poll": ("Poll", True)}
        assert seen.paths(browser=True).count("/poll") == 1  # not retried
        assert seen.paths(browser=True).count("/api/1.json") > 10  # it kept asking until it was read
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["counts"]["render_unsettled"] == 1, stats
    assert f"{base}/poll: read as it stood at render_timeout (5s)" in run.stderr


def test_the_sub_resources_of_a_pages_own_host_obey_its_robots_txt_as_the_engine_reads_it(
        crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    """The crawl's group (``crawlkit``) disallows ``/app.js``; the ``*`` group, not crawlkit's, ``/s.css``. With
    robots off, the browser asks for both."""
    with site() as (base, seen):
        seen.robots = "User-agent: crawlkit\nDisallow: /app.js\n\nUser-agent: *\nDisallow: /s.css\n"
        start: list[tuple[str, bool | None]] = [(base + "/p/1", True), (base + "/p/2", True)]
        run = crawlkit("runspider", spider(tmp_path, start), "--stats", "stats.json")
        assert items(run) == {base + f"/p/{n}": (f"Title {n}", True) for n in (1, 2)}
        assert sorted(seen.paths(browser=True)) == ["/api/1.json", "/api/2.json", "/p/1", "/p/2", "/s.css", "/s.css"]
        stats = json.loads((tmp_path / "stats.json").read_text())
        assert stats["counts"]["render_robots_denied"] == 2, stats
        seen.requests.clear()
        run = crawlkit("runspider", spider(tmp_path, start[:1]), "-s", "robots=false", output="unchecked.jsonl")
        assert items(run) == {base + "/p/1": ("Title 1", True)}
        assert sorted(seen.paths()) == ["/api/1.json", "/app.js", "/p/1", "/s.css"]


def test_a_host_serving_other_hosts_pages_sub_resources_is_held_to_its_per_host_within_a_renderer(
        crawlkit: Callable[..., Run], tmp_path: Path) -> None:
    """Four pages of a host (its rule: per_host 4) render at once, each loading four sub-resources of a second
    host, one after another; the second host (per_host 1) never has more than one of them in flight."""
    with site() as (base, seen), site("127.0.0.6") as (cdn_base, cdn):
        seen.cdn = cdn_base
        hosts = json.dumps({base.removeprefix("http://"): {"per_host": 4}})
        start: list[tuple[str, bool | None]] = [(f"{base}/cdn/{n}", True) for n in range(1, 9)]
        run = crawlkit("runspider", spider(tmp_path, start), "-s", "per_host=1", "-s", f"hosts={hosts}",
                       "-s", "render_pages=4")
        assert items(run) == {f"{base}/cdn/{n}": (f"CDN {n}", True) for n in range(1, 9)}
        assert len(cdn.paths(browser=True)) == 8 * 4
        assert cdn.peak == {cdn_base.removeprefix("http://"): 1}, cdn.peak
        assert seen.peak[base.removeprefix("http://")] > 1  # the pages did render at once
