"""End-to-end crawls through the real CLI, checked from the server's side."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from support import CRAWLKIT, held_until, leftover_processes, wait_for

from crawlkit.tools.site import Site, SiteRequest, SiteSpec, respond


def fetched_paths(site: Site) -> Counter:
    """(host, path) -> times the server served it, robots.txt excluded."""
    counts = site.stats()["fetches"]
    return Counter({key: n for key, n in counts.items() if not key.endswith("/robots.txt")})


def test_two_hosts_of_1000_pages_fetched_completely_once_and_politely(crawlkit) -> None:
    with Site(SiteSpec(hosts=2, pages=1000, page_size=3000, links=6)) as site:
        run = crawlkit("crawl", "--workers", "8", "--per-host", "2", seeds=site.seeds())
        assert run.returncode == 0, run.stderr
        stats = site.stats()
    items = run.items()
    ok = {item["url"] for item in items if item["status"] == 200}
    assert ok == site.expected_urls()
    assert len(items) == len({item["url"] for item in items})  # one item per page
    fetches = fetched_paths(site)
    assert max(fetches.values()) == 1  # nothing fetched twice (redirect targets deduplicated too)
    assert not [key for key in fetches if "/private/" in key and "public.html" not in key]  # robots obeyed
    assert any("public.html" in key for key in fetches)  # Allow rule honoured
    robots = [key for key in stats["fetches"] if key.endswith("/robots.txt")]
    assert len(robots) == 2 and all(stats["fetches"][key] == 1 for key in robots)
    assert all(peak <= 2 for peak in stats["peak_inflight"].values()), stats["peak_inflight"]
    assert "finished" in run.stderr and "404" in run.stderr


def test_per_host_cap_is_reached_and_never_exceeded_without_head_of_line_blocking(crawlkit) -> None:
    """A host that holds every request open must not hold up the others.

    The slow host answers nothing until the server has served every page of the fast hosts
    (or 60 s pass): with head-of-line blocking that moment never comes and the test fails.
    """
    fast_spec = SiteSpec(hosts=2, pages=40, latency=0.05, extras=False, first_ip="127.0.0.2")
    slow_spec = SiteSpec(hosts=1, pages=5, extras=False, robots=False, first_ip="127.0.0.4")
    with Site(fast_spec) as fast, Site(slow_spec) as slow:
        expected_fast = {url.split("//", 1)[1] for url in fast.expected_urls()}
        released_early = []

        def hold(path: str, body: bytes):
            async def handler(request: SiteRequest, writer: asyncio.StreamWriter) -> None:
                deadline = time.monotonic() + 60
                while not expected_fast <= fast.stats()["fetches"].keys():
                    if time.monotonic() > deadline:
                        released_early.append(path)
                        break
                    await asyncio.sleep(0.02)
                await respond(200, body)(request, writer)
            return handler

        links = "".join(f'<a href="/page/{n}.html">{n}</a>' for n in range(1, 6))
        slow.route("/", hold("/", f"<html><title>slow</title>{links}</html>".encode()))
        for n in range(1, 6):
            slow.route(f"/page/{n}.html", hold(f"/page/{n}.html", b"<html><title>slow page</title></html>"))
        # The fast hosts' robots.txt, index and the two pages it links to answered, then held
        # until 3 are in flight at each.
        reached = lambda: sorted(fast.stats()["peak_inflight"].values()) == [3, 3]  # noqa: E731
        with held_until(fast, 8, reached) as capped:
            run = crawlkit("crawl", "--workers", "2", "--concurrency", "16", "--per-host", "3",
                           seeds=[*fast.seeds(), *slow.seeds()])
        assert capped.is_set(), fast.stats()["peak_inflight"]  # 3 at once at each fast host, while held
        assert run.returncode == 0, run.stderr
        fast_stats, slow_stats = fast.stats(), slow.stats()
    assert not released_early, f"the slow host waited 60 s for the fast ones: {released_early}"
    assert set(fast_stats["peak_inflight"].values()) == {3}, fast_stats["peak_inflight"]  # used fully, never exceeded
    assert max(slow_stats["peak_inflight"].values()) <= 3, slow_stats["peak_inflight"]
    got = {item["url"] for item in run.items()}
    assert got == fast.expected_urls() | {slow.seeds()[0], *(f"{slow.urls[0]}/page/{n}.html" for n in range(1, 6))}


def test_concurrency_caps_requests_in_flight_over_all_hosts(crawlkit) -> None:
    """``concurrency`` counts exchanges in progress, as the server sees them: with 4 hosts
    allowing 3 each, 5 at once in total, and it is reached (a fetched page waiting for the
    parser does not hold a place)."""
    with Site(SiteSpec(hosts=4, pages=30, latency=0.05, extras=False)) as site:
        # robots.txt and the index of each host answered, then held until 5 are in flight.
        with held_until(site, 8, lambda: site.stats()["peak_inflight_total"] >= 5) as capped:
            run = crawlkit("crawl", "--workers", "2", "--concurrency", "5", "--per-host", "3", seeds=site.seeds())
        assert capped.is_set()  # 5 at once while held: none stuck in a fetcher behind held ones
        assert run.returncode == 0, run.stderr
        stats = site.stats()
    assert stats["peak_inflight_total"] == 5, stats["peak_inflight_total"]
    assert max(stats["peak_inflight"].values()) <= 3
    assert {item["url"] for item in run.items()} == site.expected_urls()


OVERLAP_SPIDER = """
import os, time
from crawlkit import Spider

class Overlap(Spider):
    name = "overlap"
    start_urls = [{a!r}, {b!r}]

    def parse(self, response):
        # Bounded wait for the server to have received both pages (the site's routes mark them).
        deadline = time.monotonic() + 15
        while not all(os.path.exists(os.path.join({flags!r}, p)) for p in ("a", "b")) and time.monotonic() < deadline:
            time.sleep(0.01)
        both = all(os.path.exists(os.path.join({flags!r}, p)) for p in ("a", "b"))
        yield {{"url": response.url, "both_requested": both}}
"""


def test_a_hosts_next_request_starts_while_its_last_page_is_parsed(crawlkit, tmp_path: Path) -> None:
    """With one request at a time to the host, the second page must be requested while the
    first one's callback still runs: the fetcher's notice frees the host, not the parse."""
    flags = tmp_path / "flags"
    flags.mkdir()
    with Site(SiteSpec(hosts=1, pages=1, extras=False, robots=False)) as site:
        for name in ("a", "b"):
            def mark(request: SiteRequest, writer: asyncio.StreamWriter, name: str = name) -> Any:
                (flags / name).touch()
                return respond(200, b"<html><title>t</title></html>")(request, writer)
            site.route(f"/{name}", mark)
        spider = OVERLAP_SPIDER.format(a=site.urls[0] + "/a", b=site.urls[0] + "/b", flags=str(flags))
        (tmp_path / "overlap.py").write_text(spider)
        run = crawlkit("runspider", "overlap.py", "--workers", "1", "--concurrency", "1", "--per-host", "1")
        peak = site.stats()["peak_inflight_total"]
    assert run.returncode == 0, run.stderr
    assert sorted(item["both_requested"] for item in run.items()) == [True, True], run.items()
    assert peak == 1


def test_delay_spaces_request_starts_to_one_host(crawlkit) -> None:
    with Site(SiteSpec(hosts=1, pages=8, extras=False, robots=False)) as site:
        run = crawlkit("crawl", "--per-host", "4", "--delay", "0.15", seeds=site.seeds())
        assert run.returncode == 0, run.stderr
        arrivals = next(iter(site.stats()["arrivals"].values()))
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert len(arrivals) >= 9
    assert min(gaps) >= 0.15, gaps  # as the server saw them


def test_max_pages_max_depth_and_offsite(crawlkit) -> None:
    with Site(SiteSpec(hosts=2, pages=50)) as site:
        run = crawlkit("crawl", "--max-pages", "7", seeds=site.seeds()[:1])
        assert run.returncode == 0, run.stderr
        assert len(run.items()) == 7
        assert "max_pages" in run.stderr
        site.reset_stats()
        run = crawlkit("crawl", "--max-depth", "2", seeds=site.seeds()[:1])
        assert run.returncode == 0, run.stderr
        items = run.items()
        assert items and max(item["depth"] for item in items) == 2
        other_host = site.urls[1].split("//", 1)[1]
        # The built-in spider stays on its seeds' hosts.
        assert all(other_host not in key for key in fetched_paths(site))
        assert "offsite" in run.stderr
        site.reset_stats()
        run = crawlkit("crawl", "--max-depth", "2", "--allow-domain", other_host.split(":")[0], seeds=site.seeds()[:1])
        assert run.returncode == 0, run.stderr
        assert any(other_host in key for key in fetched_paths(site))


def test_no_robots_fetches_disallowed_pages(crawlkit) -> None:
    with Site(SiteSpec(hosts=1, pages=20)) as site:
        run = crawlkit("crawl", "--no-robots", seeds=site.seeds())
        assert run.returncode == 0, run.stderr
        fetches = site.stats()["fetches"]
    assert any("/private/" in key for key in fetches)
    assert not any(key.endswith("/robots.txt") for key in fetches)


def test_csv_and_stdout_outputs(crawlkit) -> None:
    with Site(SiteSpec(hosts=1, pages=10, extras=False)) as site:
        run = crawlkit("crawl", seeds=site.seeds(), output="out.csv")
        assert run.returncode == 0, run.stderr
        lines = run.output.read_text().splitlines()
        assert lines[0] == "url,status,title,depth,referer,content_type,size,canonical,links"
        assert len(lines) == 1 + len(site.expected_urls())
        run = crawlkit("crawl", "-o", "-", seeds=site.seeds(), output=None)
        assert run.returncode == 0, run.stderr
        assert len(run.stdout.splitlines()) == len(site.expected_urls())


SPIDER = '''
from crawlkit import Spider, Request

class Titles(Spider):
    name = "titles"
    custom_settings = {"per_host": 1}

    def parse(self, response):
        for a in response.css("a"):
            href = a.attrib.get("href")
            if href and "/page/" in href:
                yield response.follow(a, callback=self.parse_page, meta={"from": response.url})

    def parse_page(self, response):
        yield {"url": response.url, "title": response.css("title::text").get(), "from": response.meta["from"],
               "texts": len(response.xpath("//span[@class='text']"))}
'''


def test_runspider_with_callbacks_by_name_and_custom_settings(crawlkit, tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=30, extras=False)) as site:
        spider = tmp_path / "titles.py"
        spider.write_text(SPIDER.replace("class Titles", f"START = {site.seeds()!r}\n\nclass Titles").replace(
            'name = "titles"', 'name = "titles"\n    start_urls = START'))
        run = crawlkit("runspider", str(spider))
        assert run.returncode == 0, run.stderr
        stats = site.stats()
    items = run.items()
    assert items and all(item["title"].startswith("Host 0 page") for item in items)
    assert all(item["from"] for item in items)
    assert all(peak <= 1 for peak in stats["peak_inflight"].values())  # custom_settings per_host 1


def test_ctrl_c_stops_cleanly_with_exit_130(tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=2, pages=400, latency=0.05, extras=False)) as site:
        seeds = tmp_path / "seeds.txt"
        seeds.write_text("\n".join(site.seeds()))
        out = tmp_path / "out.jsonl"
        marker = uuid.uuid4().hex
        proc = subprocess.Popen(
            [CRAWLKIT, "crawl", str(seeds), "-o", str(out)], stderr=subprocess.PIPE, text=True,
            env={**os.environ, "CRAWLKIT_TEST_RUN": marker},
        )
        try:
            wait_for(lambda: out.exists() and out.stat().st_size > 2000, 60, "the first items")
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert out.read_text().endswith("\n")  # whole records only
    assert not leftover_processes(marker)


def test_bad_seeds_are_one_line_errors(crawlkit, tmp_path: Path) -> None:
    run = crawlkit("crawl", str(tmp_path / "missing.txt"), output=None)
    assert run.returncode == 2 and "does not exist" in run.stderr and "Traceback" not in run.stderr
    junk = tmp_path / "junk.txt"
    junk.write_text("# only junk\nftp://example.com/\nnot a url\n")
    run = crawlkit("crawl", str(junk), output=None)
    assert run.returncode == 2 and "no valid seed" in run.stderr and "Traceback" not in run.stderr


def test_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=2, pages=50, extras=False)) as site:
        site.hold(after=2)  # robots.txt answered; every page after it held until the end of the test
        seeds = tmp_path / "seeds.txt"
        seeds.write_text("\n".join(site.seeds()))
        log = tmp_path / "crawl.log"
        marker = uuid.uuid4().hex
        proc = subprocess.Popen(
            [CRAWLKIT, "crawl", str(seeds), "-o", str(tmp_path / "out.jsonl"), "--log-file", str(log),
             "-s", "shutdown_timeout=60"],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "CRAWLKIT_TEST_RUN": marker}, start_new_session=True,
        )
        try:
            wait_for(lambda: site.stats()["total"] >= 4, 60, "requests in flight at the server")
            os.killpg(proc.pid, signal.SIGINT)
            wait_for(lambda: "press Ctrl-C again" in log.read_text(), 10, "the first Ctrl-C to be taken")
            os.killpg(proc.pid, signal.SIGINT)
            # The requests in flight are never answered: the first Ctrl-C alone would wait 60 s.
            _, stderr = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            site.release()
    assert proc.returncode == 130, stderr
    assert "stopping with" in stderr and "interrupted" in stderr
    assert not leftover_processes(marker)
