"""The HTML report: self-contained, rendered by headless Chromium, its figures those of the stats file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

import lxml.html
import pytest

from crawlkit.stats import Stats
from crawlkit.tools.report import TOP_HOSTS, render_report
from crawlkit.tools.site import Site, SiteSpec

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def chromium() -> str:
    """Path of Debian's chromium; skips the test without it, but fails it under CI (CI installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install -y chromium); the report's rendering is not tested"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """One headless Chromium run, in its own process group, all of which is gone when this returns."""
    argv = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # helpers (zygote, crashpad) may outlive the browser
        except ProcessLookupError:
            pass
        proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_report_renders_in_chromium_with_the_figures_of_the_stats_file_and_the_server(crawlkit, tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=3, pages=80, latency=0.01)) as site:
        run = crawlkit("crawl", "--stats", "stats.json", "--report", "report.html", seeds=site.seeds())
        fetches = site.stats()["fetches"]
    assert run.returncode == 0, run.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    report = tmp_path / "report.html"
    source = report.read_text()
    for external in ("<script", "<link", "<img", "src=", "@import", "url("):
        assert external not in source  # nothing fetched from anywhere
    rendered = run_chromium(tmp_path, "--dump-dom", report.as_uri())
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    dom = lxml.html.fromstring(rendered.stdout)

    cards = {card.get("data-key"): card for card in dom.xpath("//div[@class='card' or @class='card bad']")}
    figures = {key: json.loads(card.get("data-value")) for key, card in cards.items()}
    assert figures["pages"] == stats["pages"] == len(run.items())
    assert figures["items"] == stats["items"]
    assert figures["pages_per_s"] == stats["pages_per_s"] and figures["elapsed_s"] == stats["elapsed_s"]
    assert figures["errors"] == sum(stats["errors"].values()) == 3  # the site's redirect loops
    assert figures["bytes"] == stats["bytes"] and figures["hosts"] == 3
    assert figures["robots_disallowed"] == stats["counts"]["robots_disallowed"] > 0
    assert cards["pages"].xpath("string(.//div[@class='value'])") == f"{stats['pages']:,}"
    assert dom.xpath("string(//p[@id='reason']/@data-reason)") == "finished"

    bars = dom.xpath("//*[@id='status-chart']//*[@class='status']")
    statuses = {g.get("data-status"): int(g.get("data-count")) for g in bars}
    assert statuses == stats["statuses"]
    served = Counter()  # what the site answered, by status, from the paths it served
    for key, n in fetches.items():
        path = key.split("/", 1)[1]
        status = (
            "301" if path.startswith("redirect/") else "302" if path.startswith("loop/")
            else "404" if path.startswith("missing/") else "200"
        )
        served[status] += n
    assert statuses == dict(served)

    hosts = {g.get("data-host"): g for g in dom.xpath("//*[@id='host-chart']//*[@class='host']")}
    assert set(hosts) == set(stats["hosts"]) == {url.split("//")[1] for url in site.urls}
    for host, g in hosts.items():
        assert int(g.get("data-pages")) == stats["hosts"][host]["pages"]
        assert int(g.get("data-errors")) == stats["hosts"][host]["errors"] == 1
        assert int(g.get("data-requests")) == sum(n for key, n in fetches.items() if key.startswith(host + "/"))
        assert f"{stats['hosts'][host]['pages']:,} pages" in g.xpath("string(.)")
    slow = dom.xpath("//*[@id='slow-chart']//*[@class='slow-host']")
    means = [float(g.get("data-mean-s")) for g in slow]
    assert len(slow) == 3 and means == sorted(means, reverse=True)
    assert means[0] == max(h["mean_s"] for h in stats["hosts"].values())
    assert int(dom.xpath("string(//*[@id='rate-chart']/@data-points)")) >= 1
    errors = {tr.get("data-key"): int(tr.get("data-value")) for tr in dom.xpath("//table[@id='errors']//tr[@data-key]")}
    assert errors == stats["errors"]

    shot = tmp_path / "report.png"
    rendered = run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1100,1800", report.as_uri())
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000  # drawn, not blank


def _stats_with_hosts(n: int) -> dict:
    stats = Stats()
    for i in range(n):
        for _ in range(i + 1):
            stats.page_done(f"host{i}.example", {"pages": 1, "status_200": 1, "bytes": 10}, 200, 0.01 * (i + 1))
    stats.sample(stats.started + 1, 0, 0)
    return stats.full_dict()


def test_many_hosts_show_the_top_ones_and_say_so() -> None:
    page = lxml.html.fromstring(render_report(_stats_with_hosts(TOP_HOSTS + 5), "big"))
    shown = [g.get("data-host") for g in page.xpath("//*[@class='host']")]
    assert shown == [f"host{i}.example" for i in range(TOP_HOSTS + 4, 4, -1)]  # most pages first
    assert f"top {TOP_HOSTS} of {TOP_HOSTS + 5}" in page.xpath("string(//h2[contains(., 'per host')])")
    assert page.xpath("string(//title)") == "big: crawl report"


def test_an_empty_crawl_still_makes_a_page() -> None:
    stats = Stats()
    stats.reason = "finished"
    page = lxml.html.fromstring(render_report(stats.full_dict()))
    assert page.xpath("string(//*[@id='rate-chart'])") == "Too short a crawl to draw a rate."
    assert page.xpath("//*[@id='status-chart']")[0].text == "None."
    assert page.xpath("string(//div[@data-key='pages']/@data-value)") == "0"


def test_host_names_are_escaped() -> None:
    data = _stats_with_hosts(1)
    data["hosts"] = {'<b>"x"</b>': data["hosts"]["host0.example"]}
    html = render_report(data)
    assert "<b>" not in html and "&lt;b&gt;" in html
