"""Per-site caps and adaptive politeness through the CLI, checked from the server's side."""

from __future__ import annotations

import json
import statistics
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from support import held_until, serve_http

from crawlkit.tools.site import Site, SiteSpec, respond


def gaps(arrivals: list[float]) -> list[float]:
    return [b - a for a, b in zip(arrivals, arrivals[1:])]


def test_each_host_is_held_to_its_own_rules_cap_and_delay(crawlkit, tmp_path: Path) -> None:
    spec = SiteSpec(hosts=1, pages=20, latency=0.02, extras=False)
    with Site(spec) as wide_site, Site(replace(spec, pages=6, first_ip="127.0.0.3")) as narrow_site:
        wide, narrow = (site.urls[0].split("//", 1)[1] for site in (wide_site, narrow_site))
        (tmp_path / "hosts.yaml").write_text(
            f'hosts:\n  "{wide}": {{per_host: 4}}\n  "127.0.0.3": {{per_host: 1, delay: 0.15}}\n')
        # The wide host's robots.txt, index and the 2 pages it links to answered, then held until it has 4 in flight.
        reached_4 = lambda: wide_site.stats()["peak_inflight"].get(wide, 0) >= 4  # noqa: E731
        with held_until(wide_site, 4, reached_4) as reached:
            run = crawlkit("crawl", "--config", "hosts.yaml", "--workers", "2", "--concurrency", "8",
                           "--per-host", "2", seeds=[*wide_site.seeds(), *narrow_site.seeds()])
        wide_stats, narrow_stats = wide_site.stats(), narrow_site.stats()
        expected = wide_site.expected_urls() | narrow_site.expected_urls()
    assert run.returncode == 0, run.stderr
    assert reached.is_set(), wide_stats["peak_inflight"]
    # Each host's own cap, reached and never exceeded.
    assert (wide_stats["peak_inflight"], narrow_stats["peak_inflight"]) == ({wide: 4}, {narrow: 1})
    assert min(gaps(narrow_stats["arrivals"][narrow])) >= 0.15  # its delay between starts, as its server saw them
    assert min(gaps(wide_stats["arrivals"][wide])) < 0.15  # the other host is not slowed by it
    assert {item["url"] for item in run.items()} == expected


def test_adaptive_politeness_keeps_an_overloaded_hosts_latency_near_idle(crawlkit, tmp_path: Path) -> None:
    """A host that serves 2 at full speed (latency grows with more in flight), crawled with
    per_host 8: adaptive politeness brings its concurrency down, so the server's latency over
    the second half of the crawl stays near its idle latency; the stats file shows the pace."""
    spec = SiteSpec(hosts=1, pages=80, page_size=2000, latency=0.05, capacity=2, extras=False)
    with Site(spec) as site:
        run = crawlkit("crawl", "--workers", "2", "--concurrency", "8", "--per-host", "8", "-s", "adaptive=true",
                       "--stats", "stats.json", seeds=site.seeds())
        stats = site.stats()
    assert run.returncode == 0, run.stderr
    assert {item["url"] for item in run.items()} == site.expected_urls()
    (host, latencies), = stats["latencies"].items()
    second_half = latencies[len(latencies) // 2:]
    # Under twice the idle latency, so fewer than 4 in flight (2 serve at full speed; 8 would be 4 times it).
    assert statistics.median(second_half) < 2 * spec.latency, latencies
    shown = json.loads((tmp_path / "stats.json").read_text())["hosts"][host]
    assert 1 <= shown["per_host"] < 8 and shown["delay_s"] >= 0.0


class OneServer(BaseHTTPRequestHandler):
    """Two ports, one server: counts the requests in flight over both together (``peak``)."""

    lock = threading.Lock()
    inflight = 0
    peak = 0
    served: list[str] = []

    def do_GET(self) -> None:
        cls = type(self)
        with cls.lock:
            cls.inflight += 1
            cls.peak = max(cls.peak, cls.inflight)
            cls.served.append(f"{self.server.server_address[1]}{self.path}")
        try:
            if self.path == "/robots.txt":
                body, status = b"", 404
            else:
                time.sleep(0.03)  # the handler is the server's work, not a wait for the test
                body = "".join(f'<a href="/p/{n}">{n}</a>' for n in range(8)).encode() if self.path == "/" else b"x"
                status = 200
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        finally:
            with cls.lock:
                cls.inflight -= 1

    def log_message(self, *args: object) -> None:
        return None


def test_with_per_ip_two_ports_of_one_address_share_one_cap(crawlkit) -> None:
    OneServer.served, OneServer.peak = [], 0
    with serve_http(OneServer, "127.0.0.2") as first, serve_http(OneServer, "127.0.0.2") as second:
        run = crawlkit("crawl", "--workers", "2", "--concurrency", "8", "--per-host", "2", "-s", "per_ip=true",
                       seeds=[first + "/", second + "/"])
    assert run.returncode == 0, run.stderr
    assert len(OneServer.served) == 2 * (1 + 1 + 8)  # both hosts crawled whole: robots.txt, index, 8 pages
    assert OneServer.peak <= 2  # per_host 2 over both ports together, as the server counted them
    assert len(run.items()) == 2 * 9


def test_per_ip_in_a_shared_crawl_and_bad_values_are_one_line_errors(crawlkit) -> None:
    run = crawlkit("crawl", "--frontier", "redis://127.0.0.1:1/0", "-s", "per_ip=true", seeds=["http://127.0.0.2:9/"])
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "Error: per_ip and frontier 'redis://127.0.0.1:1/0' cannot be combined: politeness by IP is kept by one "
        "machine's limiter; drop per_ip (per_host and the hosts setting hold in a shared crawl)"
    ]
    for setting, message in (("adaptive=maybe", "'adaptive' must be true or false, got 'maybe'"),
                             ("adaptive_max_delay=-1", "'adaptive_max_delay' must be a finite number from 0 to "
                                                       "86,400, got -1")):
        run = crawlkit("crawl", "-s", setting, seeds=["http://127.0.0.2:9/"])
        assert run.returncode == 2 and message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_adaptive_politeness_backs_off_a_host_answering_503_as_its_server_sees_it(crawlkit, tmp_path: Path) -> None:
    """Every answer a 503: the host's concurrency halves to one, then its delay rises; the
    server sees the last requests one at a time and spaced, and the stats file the pace."""
    # Answers 50 ms apart at most, so the engine hears of them while it still has requests to send.
    with Site(SiteSpec(hosts=1, pages=1, latency=0.05, extras=False, robots=False)) as site:
        paths = [f"/busy/{n}" for n in range(30)]
        for path in paths:
            site.route(path, respond(503, b"busy"))
        run = crawlkit("crawl", "--workers", "2", "--concurrency", "8", "--per-host", "4", "-s", "adaptive=true",
                       "-s", "adaptive_max_delay=0.2", "-s", "retries=0", "--stats", "stats.json",
                       seeds=[site.urls[0] + path for path in paths])
        stats = site.stats()
    assert run.returncode == 0, run.stderr
    (host, arrivals), = stats["arrivals"].items()
    assert len(arrivals) == 1 + 30  # robots.txt (a 404) and the pages
    shown = json.loads((tmp_path / "stats.json").read_text())["hosts"][host]
    assert shown["per_host"] == 1 and 0.1 <= shown["delay_s"] <= 0.2  # halved twice, then 0.1 s, at most 0.2
    # After 3 steps (each waits for 5 answers) at most one request was in flight: the last 3 came spaced.
    assert min(gaps(arrivals[-3:])) >= 0.1, gaps(arrivals)
