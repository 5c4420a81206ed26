"""``crawlkit bench`` end to end: a real process tree crawling the local site, figures checked for sense."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import psutil
from hostile import HostileServer, held, page
from support import leftover_processes, start_crawl, wait_for

from crawlkit.tools.bench import crawl_roles


def test_bench_json_describes_a_correct_polite_crawl(crawlkit) -> None:
    # A little latency, so requests overlap at the server and the per-host peak means something.
    run = crawlkit("bench", "--hosts", "2", "--pages", "30", "--per-host", "2", "--latency", "0.02", "--json",
                   output=None, timeout=120)
    assert run.returncode == 0, run.stderr
    r = json.loads(run.stdout)
    server = r["server"]

    assert r["reason"] == "finished"
    assert r["items"] == r["expected_pages"] > 60  # the light spider yields one item per 200 page
    assert r["pages"] >= r["items"]  # plus the site's 404s
    assert server["expected_missed"] == 0
    assert server["fetches_per_page"] == 1.0 and server["refetched_urls"] == 0
    assert 1 <= server["peak_inflight_per_host"] <= r["settings"]["per_host"] == 2
    assert r["pages_per_s"] > 0 and r["elapsed_s"] > 0
    assert 0 < r["first_request_s"] < 60  # launch to the site's first request, of a crawl of its own
    assert r["cpu_ms_per_page"] > 0
    assert {"engine", "fetcher", "parser", "seen-manager"} <= set(r["cpu_s_by_role"])
    assert abs(sum(r["cpu_s_by_role"].values()) - r["cpu_s"]) < 0.01
    assert 0 < r["peak_pss_mb"] <= r["peak_rss_mb"]


def test_crawl_children_are_named_by_role_and_bench_tells_them_apart(tmp_path: Path) -> None:
    # bench splits CPU by these names (no private attributes of multiprocessing); ps and top show them.
    release = threading.Event()
    with HostileServer() as server:
        site = server.site({"/robots.txt": page(b"", status=404)}, {"/s/": held(release)})
        out = tmp_path / "out.jsonl"
        proc, marker = start_crawl(tmp_path, [site.url("/s/1")], out, "--workers", "2", "--parsers", "1")
        role = crawl_roles(proc.pid)

        def roles() -> Counter:
            found: Counter = Counter()
            for child in leftover_processes(marker):
                try:
                    found[role(child)] += 1
                except psutil.NoSuchProcess:
                    continue
            return found

        try:
            wait_for(lambda: server.count(site, "/s/1") == 1, 60, "the held page to be asked for")
            wait_for(lambda: {"fetcher": 2, "parser": 1, "seen-manager": 1}.items() <= roles().items(), 30,
                     f"named children (roles so far: {roles()})")
            assert role(psutil.Process(proc.pid)) == "engine"
            release.set()
            _, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, stderr
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            for child in leftover_processes(marker):
                child.kill()
        assert server.paths(site)["/s/1"] == 1
    assert len(out.read_text().splitlines()) == 1
