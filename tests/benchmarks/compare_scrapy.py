"""crawlkit against Scrapy on the same local site, same spiders, same limits; medians of several runs.

Each workload starts its site once (``crawlkit.tools.site.SiteProcess``) and crawls it with every
contender in turn, ``--runs`` rounds (the order reverses every other round, so drift in a shared
machine's load falls on both sides). Each contender runs as a process tree of its own
(run_crawlkit.py, run_scrapy.py) measured from here in the same way: ``crawlkit.tools.bench.TreeMonitor``
for CPU and memory of the whole tree, the site for what was fetched and how many requests
overlapped per host, and the crawler's own stats for pages and crawl time (start-up excluded).

Workloads:
  light    2 hosts x 3000 pages, no latency, per host 8; title and links by CSS
           (crawlkit with 2 fetchers and 1 or 2 parsers)
  soup     the same site; BeautifulSoup html.parser and get_text() (crawlkit with 2 parsers)
  latency  8 hosts x 200 pages, 100 ms per response, per host 4: the politeness bound is
           hosts x per_host / latency = 320 requests/s. Concurrency is 32 on both sides here, so
           that the per-host limit, not the global one, is what binds.

Scrapy runs with CONCURRENT_REQUESTS = concurrency, CONCURRENT_REQUESTS_PER_DOMAIN = per host,
ROBOTSTXT_OBEY, no autothrottle, no HTTP cache (``pip install -e '.[bench]'``), on its default
asyncio reactor and, as "epoll", on Twisted's own: Scrapy 2.19 on asyncio does not enforce the
per-domain limit (see run_scrapy.py), so the epoll rows are the polite Scrapy. Ratios are
against Scrapy's default.

    python tests/benchmarks/compare_scrapy.py                    # all workloads, 3 runs each
    python tests/benchmarks/compare_scrapy.py light --runs 5

Not a pytest test (no ``test_`` prefix): run it by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawlkit.tools.bench import TreeMonitor, server_view
from crawlkit.tools.site import SiteProcess, SiteSpec

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Contender:
    label: str
    framework: str  # "crawlkit" or "scrapy"
    spider: str  # light or soup
    workers: int | None = None
    parsers: int | None = None
    reactor: str | None = None  # Scrapy only: asyncio (its default) or epoll

    def argv(self, seeds_file: Path, concurrency: int, per_host: int) -> list[str]:
        script = HERE / f"run_{self.framework}.py"
        argv = [sys.executable, str(script), "--spider", self.spider, "--seeds-file", str(seeds_file),
                "--concurrency", str(concurrency), "--per-host", str(per_host)]
        if self.workers is not None:
            argv += ["--workers", str(self.workers)]
        if self.parsers is not None:
            argv += ["--parsers", str(self.parsers)]
        if self.reactor is not None:
            argv += ["--reactor", self.reactor]
        return argv


@dataclass(frozen=True)
class Workload:
    name: str
    site: SiteSpec
    per_host: int
    concurrency: int
    contenders: tuple[Contender, ...]


BIG_SITE = SiteSpec(hosts=2, pages=3000, page_size=20_000)
WORKLOADS = {
    "light": Workload("light", BIG_SITE, per_host=8, concurrency=16, contenders=(
        Contender("crawlkit light w2 p1", "crawlkit", "light", workers=2, parsers=1),
        Contender("crawlkit light w2 p2", "crawlkit", "light", workers=2, parsers=2),
        Contender("scrapy light", "scrapy", "light"),
        Contender("scrapy light epoll", "scrapy", "light", reactor="epoll"),
    )),
    "soup": Workload("soup", BIG_SITE, per_host=8, concurrency=16, contenders=(
        Contender("crawlkit soup w2 p2", "crawlkit", "soup", workers=2, parsers=2),
        Contender("scrapy soup", "scrapy", "soup"),
    )),
    "latency": Workload("latency", SiteSpec(hosts=8, pages=200, page_size=20_000, latency=0.1),
                        per_host=4, concurrency=32, contenders=(
        Contender("crawlkit light w2 p1", "crawlkit", "light", workers=2, parsers=1),
        Contender("scrapy light", "scrapy", "light"),
        Contender("scrapy light epoll", "scrapy", "light", reactor="epoll"),
    )),
}


def run_once(
    contender: Contender, workload: Workload, site: SiteProcess, seeds_file: Path, expected: set[str]
) -> dict[str, Any]:
    """One crawl in a child process tree; its own stats, the tree's CPU and memory, and the server's view."""
    site.reset_stats()
    argv = contender.argv(seeds_file, workload.concurrency, workload.per_host)
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True)
        with TreeMonitor(proc.pid) as monitor:
            stdout, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            stderr.seek(0)
            raise RuntimeError(f"{contender.label} exited with {proc.returncode}:\n{stderr.read()[-3000:]}")
    own = json.loads(stdout.strip().splitlines()[-1])
    usage = monitor.usage()
    return {
        **own,
        "pages_per_s": own["pages"] / own["elapsed_s"],
        "cpu_s": usage.cpu_s,
        "cpu_ms_per_page": 1000 * usage.cpu_s / own["pages"],
        "peak_rss_mb": usage.peak_rss / 2**20,
        "peak_pss_mb": usage.peak_pss / 2**20,
        "server": server_view(site.stats(), expected),
    }


def run_workload(workload: Workload, runs: int) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {c.label: [] for c in workload.contenders}
    with SiteProcess(workload.site) as site, tempfile.TemporaryDirectory() as tmp:
        seeds_file = Path(tmp) / "seeds.txt"
        seeds_file.write_text("\n".join(site.seeds()) + "\n")
        expected = site.expected_urls()
        for round_ in range(runs):
            order = workload.contenders if round_ % 2 == 0 else workload.contenders[::-1]
            for contender in order:
                r = run_once(contender, workload, site, seeds_file, expected)
                results[contender.label].append(r)
                s = r["server"]
                print(
                    f"  run {round_ + 1} {contender.label:<22} {r['pages']:>6} pages {r['pages_per_s']:>7.1f}/s "
                    f"{r['cpu_ms_per_page']:>6.2f} CPU ms/page  "
                    f"RSS {r['peak_rss_mb']:>5.0f} MB  PSS {r['peak_pss_mb']:>5.0f} MB  "
                    f"{s['fetches_per_page']:.3f} fetches/page  missed {s['expected_missed']}  "
                    f"peak {s['peak_inflight_per_host']}/host",
                    flush=True,
                )
    return results


def med(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def summarize(workload: Workload, results: dict[str, list[dict[str, Any]]]) -> None:
    """Medians per contender, and crawlkit's pages/s over Scrapy's for the same spider."""
    scrapy = {
        c.spider: med(results[c.label], "pages_per_s")
        for c in workload.contenders if c.framework == "scrapy" and c.reactor is None
    }
    site = workload.site
    print(
        f"\n{workload.name}: {site.hosts} hosts x {site.pages} pages of ~{site.page_size // 1000} KB, "
        f"latency {site.latency}s, per host {workload.per_host}, concurrency {workload.concurrency}; "
        f"medians of {len(next(iter(results.values())))} runs"
    )
    print(f"{'contender':<22} {'pages':>6} {'pages/s':>8} {'vs scrapy':>9} {'CPU ms/pg':>9} "
          f"{'RSS MB':>7} {'PSS MB':>7} {'fetch/pg':>8} {'peak/host':>9}")
    for contender in workload.contenders:
        rows = results[contender.label]
        rate = med(rows, "pages_per_s")
        ratio = f"{rate / scrapy[contender.spider]:.2f}x" if contender.framework == "crawlkit" else ""
        fetches = statistics.median(r["server"]["fetches_per_page"] for r in rows)
        peak = max(r["server"]["peak_inflight_per_host"] for r in rows)
        print(
            f"{contender.label:<22} {med(rows, 'pages'):>6.0f} {rate:>8.1f} {ratio:>9} "
            f"{med(rows, 'cpu_ms_per_page'):>9.2f} "
            f"{med(rows, 'peak_rss_mb'):>7.0f} {med(rows, 'peak_pss_mb'):>7.0f} {fetches:>8.3f} {peak:>9}"
        )
    if site.latency:
        bound = site.hosts * workload.per_host / site.latency
        print(f"politeness bound: {site.hosts} hosts x {workload.per_host} per host / {site.latency}s "
              f"= {bound:.0f} requests/s")
        for contender in workload.contenders:
            rows = results[contender.label]
            requests_per_s = statistics.median(r["server"]["requests"] / r["elapsed_s"] for r in rows)
            peak = max(r["server"]["peak_inflight_per_host"] for r in rows)
            verdict = "never exceeded" if peak <= workload.per_host else "EXCEEDED"
            print(
                f"  {contender.label:<22} {requests_per_s:.0f} requests/s = {requests_per_s / bound:.0%} of the bound; "
                f"peak {peak} in flight per host, {verdict} {workload.per_host}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help=f"{', '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--runs", type=int, default=3, help="rounds per workload (default 3)")
    args = parser.parse_args()
    unknown = sorted(set(args.workloads) - WORKLOADS.keys())
    if unknown:
        parser.error(f"unknown workload {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    for name in args.workloads or list(WORKLOADS):
        workload = WORKLOADS[name]
        print(f"== {name}", flush=True)
        summarize(workload, run_workload(workload, args.runs))
        print(flush=True)


if __name__ == "__main__":  # SiteProcess starts its server with spawn, which re-imports this module
    main()
