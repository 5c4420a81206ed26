"""``crawlkit bench`` end to end: a real process tree crawling the local site, figures checked for sense."""

from __future__ import annotations

import json


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
    assert r["cpu_ms_per_page"] > 0
    assert {"engine", "fetcher", "parser", "seen-manager"} <= set(r["cpu_s_by_role"])
    assert abs(sum(r["cpu_s_by_role"].values()) - r["cpu_s"]) < 0.01
    assert 0 < r["peak_pss_mb"] <= r["peak_rss_mb"]
