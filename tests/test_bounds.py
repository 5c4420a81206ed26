"""Bounds on what one input can make a crawl hold: a page's fan-out, a seeds file's length.

Through the real CLI against the hostile server, asserting on what the server saw (which
pages, how often, and whether another host kept being served), on the files written, and on
the memory of the child processes measured from outside (psutil).
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import psutil
import pytest
from hostile import HostileServer, held, page
from support import CRAWLKIT, leftover_processes, wait_for
from test_faults import assert_logged, crawl, summary

from crawlkit import Request
from crawlkit.core.seeds import SeedFile
from crawlkit.errors import SeedsError
from crawlkit.log import LogConfig
from crawlkit.messages import LINKS_CHUNK, FetchResult, Links, PageDone
from crawlkit.parse.parser import ParserConfig, Router, build_spider
from crawlkit.settings import load_settings

NO_ROBOTS = page(b"", status=404)


# ------------------------------------------------------------------ a page's fan-out


def links_page(hrefs: list[str]) -> bytes:
    return ("<title>many</title>" + "".join(f'<a href="{h}">x</a>' for h in hrefs)).encode()


def test_the_router_caps_a_pages_requests_and_sends_the_rest_ahead_in_chunks() -> None:
    config = ParserConfig.from_settings(load_settings(cli={"max_links_per_page": "5000"}), None, {}, LogConfig())
    base = "http://127.0.0.2:8000"
    ahead: list[bytes] = []
    router = Router(build_spider(None, {"start_urls": [base + "/"]}), config, ahead=ahead.append)
    result = FetchResult(1, Request(base + "/"), base + "/", status=200, headers=[("Content-Type", "text/html")],
                         body=links_page([f"/l/{n}" for n in range(7_000)]))
    done: PageDone = pickle.loads(router.handle(result))
    chunks: list[Links] = [pickle.loads(message) for message in ahead]
    # 5,000 followed: two chunks ahead, the last 1,000 in the PageDone, in page order; 2,000 dropped.
    assert [len(c.candidates) for c in chunks] == [LINKS_CHUNK, LINKS_CHUNK] and all(c.req_id == 1 for c in chunks)
    sent = [r.url for c in chunks for _, r in c.candidates] + [r.url for _, r in done.candidates]
    assert sent == [f"{base}/l/{n}" for n in range(5_000)]
    assert done.counts["dropped_links_per_page"] == 2_000
    assert len(done.items[0]["links"]) == 5_000


def test_a_seeds_file_is_read_as_it_is_iterated(tmp_path: Path) -> None:
    path = tmp_path / "seeds.txt"
    path.write_text("# sites\nhttp://A.test/1\nnot a url\nhttps://b.test:8443/x?y\nhttp://a.test/1#top\n"
                    + "".join(f"http://c.test/{n}\n" for n in range(100_000)))
    seeds = SeedFile(path)
    assert seeds.sites() == ["http://a.test/", "https://b.test:8443/", "http://c.test/"]
    urls = iter(seeds)
    assert [next(urls), next(urls)] == ["http://A.test/1", "https://b.test:8443/x?y"]
    path.write_text("")  # cut: the lines not read yet are gone, but for what a read buffer holds
    assert len(list(urls)) < 1_000
    path.write_text("ftp://x.test/\n\n")
    with pytest.raises(SeedsError, match="has no valid seed"):
        SeedFile(path)


def test_links_beyond_max_links_per_page_are_dropped_counted_and_left_out_of_the_item(tmp_path: Path) -> None:
    long_link = "/long/" + "y" * 50_000
    hrefs = [long_link, *(f"/l/{n}" for n in range(20_000))]
    with HostileServer() as server:
        site = server.site({"/": page(links_page(hrefs)), "/robots.txt": NO_ROBOTS}, {"/l/": page(b"<title>l</title>")})
        run = crawl(tmp_path, [site.url("/")], "-s", "max_links_per_page=100", "-s", "max_body=2000000")
        fetched = server.paths(site)
    assert run.returncode == 0, run.stderr[-3000:]
    # The first 100 requests of the page are followed (the long link among them is dropped as
    # too long); the other 19,901 are never fetched.
    assert sorted(p for p in fetched if p.startswith("/l/")) == sorted(f"/l/{n}" for n in range(99))
    assert all(n == 1 for n in fetched.values())
    counts = summary(run.stderr)
    assert counts["dropped_links_per_page"] == 19_901 and counts["dropped_url_too_long"] == 1
    assert_logged(run.stderr, site.url("/"), "20001 requests", "max_links_per_page")
    (item,) = [i for i in run.items() if i["url"] == site.url("/")]
    assert item["links"] == [site.url(f"/l/{n}") for n in range(100)]  # none too long, no more than the cap


def test_a_huge_fan_out_does_not_stop_the_engine_serving_other_hosts(tmp_path: Path) -> None:
    """300,000 links on one page, uncapped: while they are queued, another host's pages keep
    being fetched (the server sees no long gap), and the crawl ends by itself."""
    wide = links_page([f"/l/{n}" for n in range(300_000)])
    other = links_page([f"/b/{n}" for n in range(400)])
    with HostileServer() as server:
        a = server.site({"/": page(wide), "/robots.txt": NO_ROBOTS}, {"/l/": page(b"<title>l</title>")})
        b = server.site({"/": page(other), "/robots.txt": NO_ROBOTS}, {"/b/": page(b"<title>b</title>")})
        run = crawl(tmp_path, [a.url("/"), b.url("/")], "--parsers", "2", "--max-pages", "500", "-s", "delay=0.03",
                    "-s", "max_links_per_page=0", "-s", "max_body=10000000")
        hits = server.seen()
    assert run.returncode == 0, run.stderr[-3000:]
    a_pages = [h.time for h in hits if h.site == a.address and h.path.startswith("/l/")]
    b_pages = [h.time for h in hits if h.site == b.address and h.path.startswith("/b/")]
    assert a_pages, "the wide page's links were never followed"
    assert all(n == 1 for n in Counter((h.site, h.path) for h in hits).values())  # no page fetched twice
    # B is served from its first page on, while A's 300,000 links are queued, until it is done
    # or the crawl stops: never a pause the length of the whole fan-out.
    gaps = [later - earlier for earlier, later in zip(b_pages, b_pages[1:])]
    assert len(b_pages) > 100 and max(gaps) < 1.5, f"{len(b_pages)} pages of B, longest gap {max(gaps):.2f}s"


# ------------------------------------------------------------------ a long seeds file


def children(engine: psutil.Process, seen_store: int) -> list[psutil.Process]:
    """The fetcher and parser processes: the fork server's children but the seen-URL store."""
    found = []
    try:
        for server in engine.children():
            if "forkserver" in " ".join(server.cmdline()):
                found += [child for child in server.children() if child.pid != seen_store]
    except psutil.NoSuchProcess:
        pass
    return found


def seeded_crawl(tmp: Path, server: HostileServer, lines: int) -> tuple[float, int]:
    """Crawl ``lines`` seeds of a new site whose pages are held until measured, with max_pages 20.

    Returns the seconds from launch to the first request the server saw, and the largest USS
    of a fetcher or parser process while the pages were held.
    """
    release = threading.Event()
    site = server.site({"/robots.txt": NO_ROBOTS}, {"/s/": held(release)})
    tmp.mkdir()
    (tmp / "seeds.txt").write_text("".join(f"{site.url('/s/')}{n}\n" for n in range(lines)))
    marker = uuid.uuid4().hex
    log = tmp / "crawl.log"
    start = time.monotonic()
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            [CRAWLKIT, "crawl", "seeds.txt", "-o", "out.jsonl", "--max-pages", "20", "--workers", "2", "--parsers", "1",
             "--log-level", "DEBUG"], cwd=tmp, stdout=subprocess.DEVNULL, stderr=stderr,
            env={**os.environ, "CRAWLKIT_TEST_RUN": marker},
        )
    try:
        def requests() -> list[float]:
            return [h.time for h in server.seen() if h.site == site.address and h.path.startswith("/s/")]

        wait_for(requests, 60, "a first request")
        first = min(requests()) - start
        found = re.search(r"seen-URL store process (\d+) started", log.read_text())
        assert found, log.read_text()[-2000:]
        engine, store = psutil.Process(proc.pid), int(found.group(1))
        wait_for(lambda: len(children(engine, store)) == 3, 30, "two fetchers and a parser")
        uss = max(p.memory_full_info().uss for p in children(engine, store))
        release.set()
        assert proc.wait(120) == 0, log.read_text()[-3000:]
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for child in leftover_processes(marker):
            child.kill()
    # max_pages bounds the crawl of a long seeds file, and no page was fetched twice.
    fetched = server.paths(site)
    assert all(n == 1 for n in fetched.values())
    assert 1 <= sum(1 for path in fetched if path.startswith("/s/")) <= 20
    assert 1 <= len((tmp / "out.jsonl").read_text().splitlines()) <= 20
    return first, uss


def test_a_long_seeds_file_is_streamed_and_never_copied_into_the_children(tmp_path: Path) -> None:
    with HostileServer() as server:
        one_first, one_uss = seeded_crawl(tmp_path / "one", server, 1)
        many_first, many_uss = seeded_crawl(tmp_path / "many", server, 200_000)
    # The 200,000 seeds cost no start-up time to speak of, and no child memory (they took
    # about 20 MB in each child when the spider's arguments carried them).
    assert many_first < one_first + 3, f"first request {many_first:.1f}s after launch (one seed: {one_first:.1f}s)"
    assert many_uss < one_uss + 8 * 2**20, (
        f"a child's USS {many_uss / 2**20:.0f} MB, with one seed {one_uss / 2**20:.0f} MB"
    )
