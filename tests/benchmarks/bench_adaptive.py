"""Benchmark adaptive politeness against fixed per_host settings, on a site that slows down under load.

The site (``SiteSpec.capacity``) serves ``capacity`` requests per host at its idle latency, as a
server with that many workers; past that each request's latency grows with the host's requests
in flight (latency * in_flight / capacity), so more at once buys no throughput, only waiting.
Each setting crawls the same site with ``crawlkit crawl`` (a process of its own, the light
defaults otherwise); runs alternate between settings, ``--runs`` times each, and the medians
are reported: the server's latency (median and p90, as multiples of its idle latency, from what
the server itself waited) and pages/s, also as a share of the best fixed setting's.

    python tests/benchmarks/bench_adaptive.py                  # ~2 min
    python tests/benchmarks/bench_adaptive.py --runs 5 --pages 600 --capacity 4

Not a pytest test (no ``test_`` prefix): run it by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from crawlkit.tools.site import Site, SiteSpec

CRAWLKIT = str(Path(sys.executable).with_name("crawlkit"))


def crawl(spec: SiteSpec, per_host: int, adaptive: bool, concurrency: int) -> dict[str, float]:
    """One crawl of a fresh site: pages/s and the server's latencies as multiples of its idle latency."""
    with Site(spec) as site, tempfile.TemporaryDirectory(prefix="crawlkit-adaptive-") as tmp:
        seeds = Path(tmp, "seeds.txt")
        seeds.write_text("\n".join(site.seeds()) + "\n")
        run = subprocess.run(
            [CRAWLKIT, "crawl", str(seeds), "-q", "--stats", "stats.json", "--per-host", str(per_host),
             "--concurrency", str(concurrency), "--workers", "2", "-s", f"adaptive={str(adaptive).lower()}"],
            cwd=tmp, capture_output=True, text=True, timeout=600,
        )
        if run.returncode:
            raise RuntimeError(run.stderr)
        stats = json.loads(Path(tmp, "stats.json").read_text())
        waited = sorted(t / spec.latency for times in site.stats()["latencies"].values() for t in times)
    return {
        "pages_per_s": stats["pages"] / stats["elapsed_s"],
        "latency_median": statistics.median(waited),
        "latency_p90": waited[int(0.9 * (len(waited) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--pages", type=int, default=300, help="per host")
    parser.add_argument("--latency", type=float, default=0.05, help="the idle latency, seconds")
    parser.add_argument("--capacity", type=int, default=4, help="requests a host serves at its idle latency")
    parser.add_argument("--fixed", default="1,2,4,8,16", help="the fixed per_host settings")
    parser.add_argument("--adaptive-per-host", type=int, default=16, help="adaptive politeness' cap")
    args = parser.parse_args()
    spec = SiteSpec(hosts=args.hosts, pages=args.pages, page_size=5000, latency=args.latency,
                    capacity=args.capacity, extras=False)
    settings = [(f"fixed per_host {n}", n, False) for n in map(int, args.fixed.split(","))]
    settings.append((f"adaptive (per_host {args.adaptive_per_host})", args.adaptive_per_host, True))
    concurrency = args.hosts * max(n for _, n, _ in settings)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in settings}
    for _ in range(args.runs):
        for name, per_host, adaptive in settings:
            runs[name].append(crawl(spec, per_host, adaptive, concurrency))
    medians = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for name, rs in runs.items()}
    best = max(m["pages_per_s"] for name, m in medians.items() if name.startswith("fixed"))
    print(f"site: {args.hosts} hosts x {args.pages} pages, idle latency {args.latency}s, "
          f"capacity {args.capacity} per host; medians of {args.runs} runs")
    print("| setting | pages/s | of the best fixed | server latency median | p90 |")
    print("|---|---|---|---|---|")
    for name, m in medians.items():
        print(f"| {name} | {m['pages_per_s']:.1f} | {100 * m['pages_per_s'] / best:.0f}% "
              f"| {m['latency_median']:.2f}x idle | {m['latency_p90']:.2f}x idle |")
    summary: dict[str, Any] = {"args": vars(args), "medians": medians}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
