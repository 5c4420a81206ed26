"""One crawlkit crawl for compare_scrapy.py, in a process tree of its own; prints one JSON line of results.

The same engine set-up as ``crawlkit bench`` (robots on, no output, warnings only) from a seeds
file, so compare_scrapy.py can measure it from outside exactly as it measures Scrapy.

    python tests/benchmarks/run_crawlkit.py --spider light --seeds-file seeds.txt --workers 2 --parsers 1 --per-host 8
"""

from __future__ import annotations

import argparse
import json

from crawlkit.tools.bench import build_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spider", required=True, help="light, soup or path.py:Class")
    parser.add_argument("--seeds-file", required=True)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--parsers", type=int)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--per-host", type=int, default=8)
    args = parser.parse_args()
    with open(args.seeds_file, encoding="utf-8") as f:
        seeds = [line.strip() for line in f if line.strip()]
    engine = build_engine(seeds, args.spider, args.workers, args.concurrency, args.per_host, args.parsers)
    stats = engine.run()
    print(json.dumps({
        "pages": stats.counts["pages"],
        "items": stats.counts["items"],
        # From the start requests on, as Scrapy's elapsed_time_seconds runs from spider_opened:
        # starting the processes (about 0.3 s, the fork server importing requests and lxml) is not crawling.
        "elapsed_s": stats.finished - stats.crawl_started,
        "reason": stats.reason,
    }))


if __name__ == "__main__":  # forkserver re-imports the main module in its server process
    main()
