"""Benchmark a crawl shared through Redis: bytes per seen URL in Redis, pages/s of one node vs two, and
the CPU a page costs one node with Redis against the same crawl alone.

    python tests/benchmarks/bench_redis.py seen --urls 1000000     # INFO memory of the seen store
    python tests/benchmarks/bench_redis.py nodes --runs 3          # 8 hosts, 100 ms latency, per_host 4
    python tests/benchmarks/bench_redis.py cpu --runs 3            # crawlkit bench's light workload

Both start their own redis-server (``apt-get install redis-server``) on a free loopback port.

``seen`` adds random 64-bit fingerprints (what URL fingerprints look like to the store) in
batches of 1000 through ``RedisSeen.add_many``, and compares with scrapy-redis' dupefilter: a
40-character SHA-1 hex string per URL in one Redis set. Bytes per URL is the growth of
``used_memory`` divided by the number of URLs.

``nodes`` serves a latency-bound site (each response waits 100 ms) from its own process and
runs the same crawl with one and with two ``crawlkit crawl`` nodes (one fetcher process each,
16 requests in flight each, per_host 4, so 8 hosts admit 32 at once). Pages/s is what the
server saw: pages served divided by the time from its first request to its last. Median of
``--runs`` runs.

``cpu`` runs ``crawlkit bench --pages 3000 --per-host 8 --parsers 2 --workers 2`` (the light
spider), a fresh process a run, alternately alone and with ``--frontier`` on the Redis, and
prints CPU ms per page: every crawlkit process, plus redis-server's own CPU in the Redis runs
(a crawl alone has no Redis to pay for). Medians of ``--runs`` pairs; run it on an idle
machine, or compare only figures from one run of it.

Not a pytest test (no ``test_`` prefix): run it by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for support.py

import psutil  # noqa: E402
import redis  # noqa: E402
from support import CRAWLKIT, redis_server  # noqa: E402

from crawlkit.backends.redis import connect  # noqa: E402
from crawlkit.core.engine import CrawlSpec, Engine  # noqa: E402
from crawlkit.loader import load_spider  # noqa: E402
from crawlkit.log import LogConfig, setup_logging  # noqa: E402
from crawlkit.settings import load_settings  # noqa: E402
from crawlkit.tools.bench import SPIDERS, TreeMonitor, crawl_roles  # noqa: E402
from crawlkit.tools.site import SiteProcess, SiteSpec  # noqa: E402

BATCH = 1000


def bench_seen(url: str, total: int) -> None:
    client = redis.Redis.from_url(url)
    rng = random.Random(1)
    seen = connect(url, "bench-seen").seen
    before = client.info("memory")["used_memory"]
    for start in range(0, total, BATCH):
        batch = [rng.getrandbits(64) for _ in range(min(BATCH, total - start))]
        seen.add_many(batch)
    ours = (client.info("memory")["used_memory"] - before) / total
    encodings = {client.object("encoding", k) for k in client.scan_iter("crawlkit:bench-seen:s:*", count=1000)}
    before = client.info("memory")["used_memory"]
    for start in range(0, total, BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(total, start + BATCH)):
            pipe.sadd("scrapy-redis:dupefilter", hashlib.sha1(str(i).encode()).hexdigest())
        pipe.execute()
    theirs = (client.info("memory")["used_memory"] - before) / total
    print(f"{total:,} URLs: crawlkit seen store {ours:.1f} bytes/URL "
          f"(set encodings: {sorted(e.decode() for e in encodings)}); "
          f"scrapy-redis hex strings {theirs:.1f} bytes/URL")


def crawl(url: str, seeds: Path, nodes: int, workdir: Path) -> None:
    crawl_id = "bench-" + uuid.uuid4().hex[:8]
    args = [CRAWLKIT, "crawl", str(seeds), "--frontier", url, "--crawl-id", crawl_id, "--workers", "1",
            "--per-host", "4", "--concurrency", "16", "--log-level", "WARNING"]
    procs = [subprocess.Popen([*args, "-o", str(workdir / f"{crawl_id}-{i}.jsonl")], stderr=subprocess.PIPE, text=True)
             for i in range(nodes)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        if proc.returncode:
            raise SystemExit(f"node failed ({proc.returncode}): {err}")


def bench_nodes(url: str, runs: int, pages: int, workdir: Path) -> None:
    spec = SiteSpec(hosts=8, pages=pages, latency=0.1, extras=False)
    with SiteProcess(spec) as site:
        seeds = workdir / "seeds.txt"
        seeds.write_text("\n".join(site.seeds()) + "\n")
        for nodes in (1, 2):
            rates = []
            for _ in range(runs):
                site.reset_stats()
                crawl(url, seeds, nodes, workdir)
                stats = site.stats()
                arrivals = [t for times in stats["arrivals"].values() for t in times]
                served = sum(n for key, n in stats["fetches"].items() if not key.endswith("/robots.txt"))
                rates.append(served / (max(arrivals) - min(arrivals)))
            print(f"{nodes} node(s): {statistics.median(rates):.1f} pages/s (median of {runs}: "
                  f"{', '.join(f'{r:.1f}' for r in rates)}), {served} pages")


def light_crawl(seeds: list[str], frontier: str | None) -> Engine:
    """The engine ``crawlkit bench`` builds for the light workload, with ``frontier`` set."""
    spider_cls = load_spider(SPIDERS["light"])
    flags = {"workers": 2, "per_host": 8, "parsers": 2, "robots": True, "output": None, "log_level": "WARNING",
             "frontier": frontier, "crawl_id": "bench-" + uuid.uuid4().hex[:8] if frontier else None}
    settings = load_settings(None, spider_cls.custom_settings, flags)
    setup_logging(LogConfig.from_settings(settings))
    kwargs = {"start_urls": seeds}
    spider = spider_cls(**kwargs)
    spider.settings = settings
    return Engine(CrawlSpec(settings=settings, spider=spider, spider_spec=SPIDERS["light"], spider_kwargs=kwargs))


def light_run(frontier: str | None) -> None:
    """One light crawl in this (fresh) process; prints its pages, seconds and crawlkit's CPU seconds as JSON."""
    with SiteProcess(SiteSpec(hosts=2, pages=3000)) as site:
        engine = light_crawl(site.seeds(), frontier)
        with TreeMonitor(os.getpid(), exclude=[site.pid], role=crawl_roles(os.getpid())) as monitor:
            stats = engine.run()
    print(json.dumps({"pages": stats.counts["pages"], "elapsed": stats.elapsed, "cpu_s": monitor.usage().cpu_s}))


def bench_cpu(url: str, runs: int) -> None:
    server = psutil.Process(redis.Redis.from_url(url).info("server")["process_id"])
    figures: dict[str, list[tuple[float, float]]] = {"alone": [], "redis": []}
    for _ in range(runs):
        for kind, frontier in (("alone", None), ("redis", url)):
            before = sum(server.cpu_times()[:2])
            out = subprocess.run([sys.executable, __file__, "cpu-run", *(["--frontier", url] if frontier else [])],
                                 capture_output=True, text=True, check=True, timeout=600).stdout
            run = json.loads(out.strip().splitlines()[-1])
            server_s = sum(server.cpu_times()[:2]) - before if frontier else 0.0
            cpu_ms = 1000 * (run["cpu_s"] + server_s) / run["pages"]
            figures[kind].append((cpu_ms, run["pages"] / run["elapsed"]))
            print(f"{kind}: {cpu_ms:.3f} ms CPU per page (redis-server {1000 * server_s / run['pages']:.3f}), "
                  f"{run['pages'] / run['elapsed']:.0f} pages/s", flush=True)
    alone, shared = (statistics.median(cpu for cpu, _ in figures[k]) for k in ("alone", "redis"))
    print(f"median CPU per page: alone {alone:.3f} ms, with Redis {shared:.3f} ms (x{shared / alone:.2f}); "
          f"pages/s: alone {statistics.median(r for _, r in figures['alone']):.0f}, "
          f"with Redis {statistics.median(r for _, r in figures['redis']):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    seen = sub.add_parser("seen")
    seen.add_argument("--urls", type=int, default=1_000_000)
    nodes = sub.add_parser("nodes")
    nodes.add_argument("--runs", type=int, default=3)
    nodes.add_argument("--pages", type=int, default=150, help="pages per host")
    cpu = sub.add_parser("cpu")
    cpu.add_argument("--runs", type=int, default=3)
    cpu_run = sub.add_parser("cpu-run", help="one run of cpu, in its own process (cpu starts them)")
    cpu_run.add_argument("--frontier")
    args = parser.parse_args()
    if args.what == "cpu-run":
        light_run(args.frontier)
        return
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed: apt-get install redis-server")
    with tempfile.TemporaryDirectory() as tmp, redis_server(server, Path(tmp)) as url:
        if args.what == "seen":
            bench_seen(url, args.urls)
        elif args.what == "cpu":
            bench_cpu(url, args.runs)
        else:
            bench_nodes(url, args.runs, args.pages, Path(tmp))


if __name__ == "__main__":
    main()
