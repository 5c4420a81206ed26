"""``crawlkit bench``: crawl a generated local site and say what each page cost.

The site (``crawlkit.tools.site.SiteProcess``) runs in a child process of its own, so the crawler
never shares a GIL with it; the crawl runs in this process like ``crawlkit crawl`` does, robots
on, items discarded. What it costs is measured from outside the code under test: a
``TreeMonitor`` thread samples CPU time and RSS of this process and all its descendants (the
site excluded), and the site reports what it served (requests, distinct URLs, peak requests
in flight per host), which is how a duplicate fetch or a broken per-host limit shows up.
Start-up is measured apart, as users meet it: ``crawlkit crawl`` launched in a process of its
own, timed to the first request the site sees.

The two benchmark spiders live here so that ``tests/benchmarks/compare_scrapy.py`` can run the
same work in Scrapy: ``light`` (title and links by CSS, the cheapest useful callback) and
``soup`` (BeautifulSoup with html.parser and ``get_text()`` of the whole page, a CPU-heavy one).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crawlkit.http import Response
from crawlkit.process import PROCESS_NAMES
from crawlkit.spider import Spider, seed_sites

if TYPE_CHECKING:
    import psutil

    from crawlkit.core.engine import Engine
    from crawlkit.tools.site import SiteProcess

# Every parser process imports this module to load a benchmark spider, so the crawl machinery
# (engine, settings), BeautifulSoup and psutil are imported in the functions that use them: a
# parser would otherwise carry ~3 MB more than the same spider defined elsewhere.

SAMPLE_EVERY = 0.2  # seconds between TreeMonitor samples
LAUNCH_TIMEOUT = 60.0  # seconds the start-up probe's crawl may take in all


class LightSpider(Spider):
    """Title and links by CSS selectors (``::text``, ``::attr(href)``, as a Scrapy spider takes them);
    follows every link within the seeds' sites."""

    name = "bench-light"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allowed_domains = seed_sites(self.start_urls)

    def parse(self, response: Response) -> Iterable[Any]:
        yield {"url": response.url, "title": response.css("title::text").get()}
        yield from response.follow_all(response.css("a::attr(href)").getall())


class SoupSpider(LightSpider):
    """The whole page through BeautifulSoup's pure-Python html.parser: text length and links."""

    name = "bench-soup"

    def parse(self, response: Response) -> Iterable[Any]:
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(response.text, "html.parser")
        yield {"url": response.url, "chars": len(soup.get_text())}
        for a in soup.find_all("a", href=True):
            yield response.follow(str(a["href"]))  # bs4 types an attribute as str or a list of them


SPIDERS = {"light": "crawlkit.tools.bench:LightSpider", "soup": "crawlkit.tools.bench:SoupSpider"}


@dataclass
class Usage:
    """What a TreeMonitor measured: CPU seconds (user + system), in all and per role; peak RSS and PSS sums in bytes."""

    cpu_s: float
    peak_rss: int
    peak_pss: int
    cpu_s_by_role: dict[str, float]


class TreeMonitor:
    """CPU time and memory of a process and all its descendants, sampled by a background thread.

    A process's CPU time can only be read while it lives, so the last value seen for each
    process is kept: one that exits between two samples loses at most ``interval`` seconds of
    CPU, and at the end of a crawl those are idle seconds. RSS and PSS are summed over the tree
    per sample and their peaks kept: the RSS sum counts a page shared by forked processes once
    per process, the PSS sum divides it among them, so it is the tree's real footprint.
    ``exclude`` pids, with their descendants, are left out (a site server the tree started).
    ``role(process)`` names a process for the per-role CPU breakdown; unnamed ones are "other".
    """

    def __init__(self, root: int, exclude: Iterable[int] = (),
                 role: Callable[[psutil.Process], str | None] | None = None, interval: float = SAMPLE_EVERY) -> None:
        import psutil

        self.root = psutil.Process(root)
        self.exclude = set(exclude)
        self.role = role
        self.interval = interval
        self.cpu: dict[tuple[int, float], float] = {}  # (pid, create time) -> last CPU seconds seen
        self.roles: dict[tuple[int, float], str] = {}
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-monitor", daemon=True)

    def __enter__(self) -> TreeMonitor:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def _tree(self) -> list[psutil.Process]:
        import psutil

        try:
            tree = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        excluded = set(self.exclude)
        for pid in self.exclude:
            try:
                excluded.update(p.pid for p in psutil.Process(pid).children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        return [p for p in tree if p.pid not in excluded]

    def sample(self) -> None:
        import psutil

        rss = pss = 0
        for proc in self._tree():
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    times = proc.cpu_times()
                    memory = proc.memory_full_info()
                    rss += memory.rss
                    pss += memory.pss
                    # A child takes its name in its first instants: until then it has none, so ask again.
                    role = self.role(proc) if key not in self.roles and self.role is not None else None
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            self.cpu[key] = times.user + times.system
            if role is not None:
                self.roles[key] = role
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)

    def usage(self) -> Usage:
        by_role: dict[str, float] = {}
        for key, cpu in self.cpu.items():
            role = self.roles.get(key, "other")
            by_role[role] = by_role.get(role, 0.0) + cpu
        by_cpu = dict(sorted(by_role.items(), key=lambda kv: -kv[1]))
        return Usage(sum(self.cpu.values()), self.peak_rss, self.peak_pss, by_cpu)


def build_engine(seeds: list[str], spider: str, workers: int | None = None, concurrency: int | None = None,
                 per_host: int | None = None, parsers: int | None = None, max_pages: int | None = None,
                 render: bool = False) -> Engine:
    """An Engine crawling from ``seeds`` with robots on and no output; ``spider`` is light, soup or path.py:Class;
    ``render``: every page rendered in a browser (``render: true``).

    Unset numbers keep crawlkit's defaults. Logs warnings and errors only, to stderr.
    """
    from crawlkit.log import LogConfig, setup_logging
    from crawlkit.runner import Crawl

    flags = {
        "workers": workers, "concurrency": concurrency, "per_host": per_host, "parsers": parsers,
        "max_pages": max_pages, "robots": True, "output": None, "log_level": "WARNING", "render": render,
    }
    crawl = Crawl(SPIDERS.get(spider, spider), flags, spider_args={"start_urls": seeds})
    setup_logging(LogConfig.from_settings(crawl.settings))
    return crawl.engine()


def crawl_roles(engine_pid: int) -> Callable[[psutil.Process], str | None]:
    """Names a crawl's processes: the engine by its pid, the fetchers, parsers and seen store by the
    names ``child_setup`` gives them (``process.PROCESS_NAMES``); anything else is unnamed."""
    by_name = {name: role for role, name in PROCESS_NAMES.items()}

    def role(process: psutil.Process) -> str | None:
        return "engine" if process.pid == engine_pid else by_name.get(process.name())

    return role


def server_view(stats: dict[str, Any], expected: set[str]) -> dict[str, Any]:
    """What the site saw, from ``SiteProcess.stats()``: requests per distinct URL, peak in flight per host,
    and how many of the ``expected`` URLs (``SiteProcess.expected_urls()``) it never served.

    With no latency the site answers each request before reading the next one, so it sees one
    request in flight per host whatever the crawler sends; the peak means something only with latency.
    """
    fetches = stats["fetches"]  # keyed "ip:port/path"
    peaks = stats["peak_inflight"]
    return {
        "requests": stats["total"],
        "distinct_urls": len(fetches),
        "fetches_per_page": round(stats["total"] / len(fetches), 3) if fetches else 0.0,
        "refetched_urls": sum(1 for n in fetches.values() if n > 1),
        "expected_missed": len({url.split("//", 1)[1] for url in expected} - fetches.keys()),
        "peak_inflight_per_host": max(peaks.values(), default=0),
    }


def launch_to_first_request(site: SiteProcess) -> float:
    """Seconds from launching ``crawlkit crawl`` (one page, robots on) to the first request the site saw.

    The command runs as users run it, in a process of its own, so this covers everything on the
    way: the interpreter, imports, the fork server's preload, the seen store, the parsers and the
    Pool starting. The site stamps each arrival with ``time.monotonic()``, a clock shared by every
    process of the machine. Its figures are reset first: read them before.
    """
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="crawlkit-bench-") as tmp:
        seeds = os.path.join(tmp, "seeds.txt")
        with open(seeds, "w", encoding="utf-8") as f:
            f.write(site.seeds()[0] + "\n")
        site.reset_stats()
        command = [sys.executable, "-c", "from crawlkit.cli import main; main()",  # what the console script runs
                   "crawl", seeds, "-q", "--max-pages", "1"]
        launched = time.monotonic()
        run = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    if run.returncode:
        raise RuntimeError(f"the start-up probe (crawlkit crawl) exited with code {run.returncode}: {run.stderr}")
    arrivals = [t for times in site.stats()["arrivals"].values() for t in times]
    return min(arrivals) - launched


def run_bench(hosts: int = 2, pages: int = 1000, page_size: int = 20_000, latency: float = 0.0, spider: str = "light",
              workers: int | None = None, concurrency: int | None = None, per_host: int | None = None,
              parsers: int | None = None, render: bool = False) -> dict[str, Any]:
    """Serve the site in a child process, crawl it here, and return the figures (JSON-ready).

    Blocks for the whole crawl. ``pages`` counts every final response (404s included, as
    Scrapy's response count does); the benchmark spiders yield one item per 2xx page, so
    ``items`` should equal ``expected_pages``, the pages a correct crawler reaches. With ``render``
    every page is rendered in a browser, whose processes count as the crawl's (role ``other``).
    """
    from crawlkit.tools.site import SiteProcess, SiteSpec

    with SiteProcess(SiteSpec(hosts=hosts, pages=pages, page_size=page_size, latency=latency)) as site:
        engine = build_engine(site.seeds(), spider, workers, concurrency, per_host, parsers, render=render)
        # The site is not crawlkit's cost.
        with TreeMonitor(os.getpid(), exclude=[site.pid], role=crawl_roles(os.getpid())) as monitor:
            stats = engine.run()
        expected = site.expected_urls()
        server = server_view(site.stats(), expected)
        first_request = launch_to_first_request(site)
    usage = monitor.usage()
    counts = stats.counts
    done = counts["pages"]
    s = engine.settings
    return {
        "site": {"hosts": hosts, "pages": pages, "page_size": page_size, "latency": latency},
        "settings": {
            "spider": spider, "workers": engine.workers, "concurrency": s.concurrency, "per_host": s.per_host,
            "parsers": s.parsers, "render": s.render,
        },
        "reason": stats.reason,
        "pages": done,
        "items": counts["items"],
        "expected_pages": len(expected),
        "elapsed_s": round(stats.elapsed, 3),
        "pages_per_s": round(done / stats.elapsed, 1) if stats.elapsed else 0.0,
        "first_request_s": round(first_request, 3),
        "cpu_s": round(usage.cpu_s, 3),
        "cpu_ms_per_page": round(1000 * usage.cpu_s / done, 3) if done else 0.0,
        "cpu_s_by_role": {role: round(cpu, 3) for role, cpu in usage.cpu_s_by_role.items()},
        "peak_rss_mb": round(usage.peak_rss / 2**20, 1),
        "peak_pss_mb": round(usage.peak_pss / 2**20, 1),
        "errors": stats.errors(),
        "server": server,
    }


def format_report(r: dict[str, Any]) -> str:
    """The figures of ``run_bench`` as a few lines for a terminal."""
    site, s, server = r["site"], r["settings"], r["server"]
    roles = ", ".join(f"{role} {cpu:.2f}" for role, cpu in r["cpu_s_by_role"].items())
    return "\n".join([
        f"site: {site['hosts']} hosts x {site['pages']} pages of ~{site['page_size']:,} bytes, "
        f"latency {site['latency']}s",
        f"crawl: spider {s['spider']}, {s['workers']} fetcher processes, {s['parsers']} parsers, "
        f"concurrency {s['concurrency']}, per host {s['per_host']}",
        f"pages: {r['pages']} ({r['items']} items, {r['expected_pages']} pages expected) in {r['elapsed_s']:.2f}s: "
        f"{r['pages_per_s']} pages/s ({r['reason']})",
        f"start-up: the site saw the first request {r['first_request_s']:.2f}s after `crawlkit crawl` was launched",
        f"CPU: {r['cpu_ms_per_page']:.2f} ms per page, {r['cpu_s']:.2f}s in all ({roles})",
        f"peak memory of all crawlkit processes: {r['peak_rss_mb']:.0f} MB RSS, {r['peak_pss_mb']:.0f} MB PSS",
        (
            f"server saw: {server['requests']} requests for {server['distinct_urls']} URLs "
            f"({server['fetches_per_page']} fetches per page, "
            f"{server['refetched_urls']} refetched, {server['expected_missed']} expected never fetched), "
            f"peak {server['peak_inflight_per_host']} in flight per host"
        ),
        f"errors: {', '.join(f'{k} {v}' for k, v in r['errors'].items()) or 'none'}",
    ])
