"""Durability figures: pages fetched twice after a SIGKILL at several moments, and resume time at a million URLs.

1. SIGKILL: for each moment (a share of the site's pages written to the output), a fresh job
   directory, ``crawlkit crawl --jobdir`` as a real process group, SIGKILL of the whole group
   once the output holds that many items, then the same command again to the end. The site
   counts every fetch, so "fetched twice" is what the server saw; the output is checked for
   duplicates and truncated records. The bound the design promises: at most the requests in
   flight at the kill (``concurrency`` being fetched, as many again fetched and waiting for a parser).
2. Resume at scale: a crawl of the wide site (bench_scale.py) stopped by ``max_pages`` leaves
   ``urls`` requests pending in the job directory; the same command with one more page allowed
   resumes it. Measured: launch to the server's first request after resuming, and to exit.

    python tests/benchmarks/bench_durability.py               # 2 hosts x 1000 pages; 1M URLs
    python tests/benchmarks/bench_durability.py --urls 200000

Not a pytest test (no ``test_`` prefix): run it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_scale import WideSite

from crawlkit.tools.site import Site, SiteSpec

CRAWLKIT = str(Path(sys.executable).with_name("crawlkit"))


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def sigkill_at(share: float, pages: int, concurrency: int) -> dict[str, float]:
    spec = SiteSpec(hosts=2, pages=pages, latency=0.005, extras=False)
    with Site(spec) as site, tempfile.TemporaryDirectory() as tmp:
        seeds, out, job = Path(tmp) / "seeds.txt", Path(tmp) / "out.jsonl", Path(tmp) / "job"
        seeds.write_text("\n".join(site.seeds()) + "\n")
        argv = [CRAWLKIT, "crawl", str(seeds), "-o", str(out), "--jobdir", str(job), "--concurrency", str(concurrency),
                "--log-level", "ERROR"]
        threshold = int(share * len(site.expected_urls()))
        proc = subprocess.Popen(argv, start_new_session=True, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while _lines(out) < threshold and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)  # a benchmark polling the output, not a test synchronising on it
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        written_at_kill = _lines(out)
        subprocess.run(argv, check=True, stderr=subprocess.DEVNULL)
        fetches = site.stats()["fetches"]
        text = out.read_text()
        urls = [json.loads(line)["url"] for line in text.splitlines()]
    twice = sum(n - 1 for key, n in fetches.items() if n > 1 and not key.endswith("robots.txt"))
    return {
        "share": share,
        "items_at_kill": written_at_kill,
        "refetched": twice,
        "items": len(urls),
        "duplicates": len(urls) - len(set(urls)),
        "missing": len({u.split("//", 1)[1] for u in site.expected_urls()} - {u.split("//", 1)[1] for u in urls}),
        "whole_records": text.endswith("\n"),
    }


def resume_at_scale(urls: int, links: int) -> dict[str, float]:
    pages = urls // links
    with WideSite(links=links) as site, tempfile.TemporaryDirectory() as tmp:
        seeds, job = Path(tmp) / "seeds.txt", Path(tmp) / "job"
        seeds.write_text(site.seed + "\n")
        base = [CRAWLKIT, "crawl", str(seeds), "--jobdir", str(job), "--log-level", "WARNING",
                "--spider", "crawlkit.tools.bench:LightSpider"]
        started = time.monotonic()
        subprocess.run([*base, "--max-pages", str(pages)], check=True, stderr=subprocess.DEVNULL)
        filled = time.monotonic() - started
        size = sum(f.stat().st_size for f in job.iterdir())
        site.reset()
        launched = time.time()
        run = subprocess.run([*base, "--max-pages", str(pages + 1), "--log-level", "INFO"],
                             check=True, capture_output=True, text=True)
        ended = time.time()
        first = site.first_request_at()
    resumed_line = next((line for line in run.stderr.splitlines() if "resuming from" in line), "")
    return {
        "urls": urls,
        "fill_s": round(filled, 1),
        "jobdir_mb": round(size / 2**20),
        "first_request_s": round(first - launched, 2),
        "total_s": round(ended - launched, 2),
        "log": resumed_line.split(": ", 1)[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=1000, help="pages per host for the SIGKILL runs")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--urls", type=int, default=1_000_000, help="pending URLs for the resume run")
    parser.add_argument("--links", type=int, default=1000)
    args = parser.parse_args()
    for share in (0.1, 0.5, 0.9):
        r = sigkill_at(share, args.pages, args.concurrency)
        print(f"SIGKILL after {r['items_at_kill']} items ({share:.0%}): {r['refetched']} pages fetched twice "
              f"(bound: 2 x concurrency {args.concurrency}); "
              f"after resume {r['items']} items, {r['duplicates']} duplicates, "
              f"{r['missing']} missing, whole records: {r['whole_records']}", flush=True)
    r = resume_at_scale(args.urls, args.links)
    print(f"resume of a job directory with {r['urls']:,} URLs ({r['jobdir_mb']} MB, filled in {r['fill_s']}s): "
          f"first request {r['first_request_s']}s after launch, done in {r['total_s']}s ({r['log']})")


if __name__ == "__main__":
    main()
