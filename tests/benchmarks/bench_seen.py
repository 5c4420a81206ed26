"""Benchmark the seen-URL store: memory per URL and add_many throughput, against a set of SHA-1 hex strings.

The store under test is the one the engine uses: a ``FingerprintSet`` served by a
``SeenManager`` process, called through its proxy with batches of fingerprints. Fingerprints
are random 64-bit ints, which is what blake2b fingerprints look like to the table, so no time
goes into canonicalizing URLs. The baseline is Scrapy's dupefilter: a Python ``set`` of 40-char
SHA-1 hex strings in the crawling process itself (no IPC), measured with tracemalloc.

    python tests/benchmarks/bench_seen.py                 # 1M and 10M, batches of 100 (~1-2 min)
    python tests/benchmarks/bench_seen.py --sizes 1000000 --batch 1000

Not a pytest test (no ``test_`` prefix): run it by hand.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import tracemalloc
from collections.abc import Iterator

import psutil

from crawlkit.backends.local.seen import FingerprintSet, SeenManager, serve_setup
from crawlkit.log import LogConfig
from crawlkit.process import PROCESS_NAMES, context

MB = 1 << 20


def batches(total: int, size: int, rng: random.Random) -> Iterator[list[int]]:
    """Random 64-bit fingerprints, ``total`` of them in lists of ``size``."""
    for start in range(0, total, size):
        yield [rng.getrandbits(64) for _ in range(min(size, total - start))]


def bench_manager(sizes: list[int], batch: int) -> list[dict[str, float]]:
    """Fill one Manager-served FingerprintSet up to each size in turn; time only the proxy calls."""
    manager = SeenManager(ctx=context())
    manager.start(serve_setup, (LogConfig(level="WARNING"),))
    try:
        seen = manager.FingerprintSet()
        # The Manager has no public pid; its process takes its role's name as it starts.
        (server,) = [p for p in psutil.Process().children(recursive=True) if p.name() == PROCESS_NAMES["seen-manager"]]
        rss_before = server.memory_info().rss
        rng = random.Random(1)
        rows, count, spent = [], 0, 0.0
        for size in sizes:
            segment_start, segment_spent = count, 0.0
            for fps in batches(size - count, batch, rng):
                started = time.perf_counter()
                seen.add_many(fps)
                segment_spent += time.perf_counter() - started
            count = size
            spent += segment_spent
            assert seen.count() == count, "random 64-bit fingerprints collided; rerun"
            rows.append({
                "count": count,
                "table_bytes_per_url": seen.nbytes() / count,
                "rss_growth_bytes_per_url": (server.memory_info().rss - rss_before) / count,
                "adds_per_s_segment": (count - segment_start) / segment_spent,
                "adds_per_s_overall": count / spent,
                "us_per_call": segment_spent / ((count - segment_start) / batch) * 1e6,
            })
        return rows
    finally:
        manager.shutdown()


def bench_in_process(size: int, batch: int) -> float:
    """Adds per second of a FingerprintSet in this process: the store's cost without the IPC."""
    store, spent = FingerprintSet(), 0.0
    for fps in batches(size, batch, random.Random(2)):
        started = time.perf_counter()
        store.add_many(fps)
        spent += time.perf_counter() - started
    return size / spent


def fill_sha1_set(fingerprints: set[str], size: int, batch: int) -> float:
    """Scrapy's dupefilter: ``fp in set`` then ``set.add(fp)`` per request; seconds spent in the set."""
    spent = 0.0
    for start in range(0, size, batch):
        hexes = [os.urandom(20).hex() for _ in range(min(batch, size - start))]
        started = time.perf_counter()
        for fp in hexes:
            if fp not in fingerprints:
                fingerprints.add(fp)
        spent += time.perf_counter() - started
    return spent


def bench_sha1_set(size: int, batch: int) -> dict[str, float]:
    """Adds/s and RSS growth of a set of 40-char hex strings, then its bytes per URL by tracemalloc.

    Untraced first: tracemalloc's hooks slow every allocation and its traces inflate the RSS.
    """
    rss_before = psutil.Process().memory_info().rss
    fingerprints: set[str] = set()
    spent = fill_sha1_set(fingerprints, size, batch)
    grown = psutil.Process().memory_info().rss - rss_before
    row = {"adds_per_s": size / spent, "rss_growth_bytes_per_url": grown / size}
    fingerprints.clear()
    tracemalloc.start()
    fill_sha1_set(fingerprints, size, batch)
    row["tracemalloc_bytes_per_url"] = tracemalloc.get_traced_memory()[0] / size
    tracemalloc.stop()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="fill levels, ascending")
    parser.add_argument("--batch", type=int, default=100, help="fingerprints per add_many call")
    args = parser.parse_args()
    sizes = sorted(args.sizes)
    started = time.monotonic()

    print(f"FingerprintSet via SeenManager proxy, batches of {args.batch}")
    print(f"{'URLs':>12} {'table B/URL':>12} {'RSS B/URL':>10} "
          f"{'adds/s (segment)':>17} {'adds/s (all)':>13} {'us/call':>8}")
    for row in bench_manager(sizes, args.batch):
        print(
            f"{row['count']:>12,} {row['table_bytes_per_url']:>12.1f} {row['rss_growth_bytes_per_url']:>10.1f} "
            f"{row['adds_per_s_segment']:>17,.0f} {row['adds_per_s_overall']:>13,.0f} {row['us_per_call']:>8.0f}"
        )
    print(f"FingerprintSet in this process (no IPC), {sizes[0]:,} URLs: "
          f"{bench_in_process(sizes[0], args.batch):,.0f} adds/s")

    sha1 = bench_sha1_set(sizes[0], args.batch)
    print(f"set of SHA-1 hex strings in this process (Scrapy's dupefilter), {sizes[0]:,} URLs:")
    print(
        f"  {sha1['tracemalloc_bytes_per_url']:.1f} B/URL (tracemalloc), "
        f"{sha1['rss_growth_bytes_per_url']:.1f} B/URL (RSS growth), "
        f"{sha1['adds_per_s']:,.0f} adds/s"
    )
    print(f"done in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
