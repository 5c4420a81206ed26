"""Scale: time to the first request, and memory of a crawl that discovers millions of URLs.

A "wide" site, served from a child process on loopback, where page ``/w/N`` links to ``links``
pages that no other page links to (``/w/(N*links+1)`` ... ``/w/(N*links+links)``): every link
is a new URL. Crawling ``urls / links`` pages with ``max_pages`` therefore discovers ``urls``
URLs, nearly all of which are still waiting in the frontier when the crawl stops. That is the
worst case for memory: every one of them is in the seen-URL store (Manager process) and in the
frontier (memory up to ``frontier_memory`` requests, the rest spilled to a SQLite file).

Measured from outside the code under test: ``crawlkit.bench.TreeMonitor`` sums RSS and PSS over
every crawlkit process (the site excluded), and the site timestamps its first request, so the
start-up figure is from launching ``crawlkit crawl`` (a real subprocess) to the server seeing
its first request.

    python tests/benchmarks/bench_scale.py                         # 10M URLs, 1000 links a page
    python tests/benchmarks/bench_scale.py --urls 1000000 --runs 5

Not a pytest test (no ``test_`` prefix): run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from crawlkit.bench import TreeMonitor

HOST = "127.0.0.2"


def _serve(links: int, conn: Any) -> None:
    """The wide site: keep-alive HTTP/1.1, pages rendered on request, first-request time kept."""
    first: list[float] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                path = line.split(b" ")[1].decode()
                if not first and not path.startswith("/__"):
                    first.append(time.time())
                if path.startswith("/w/"):
                    n = int(path[3:])
                    hrefs = "".join(f'<a href="/w/{n * links + i}">{i}</a>\n' for i in range(1, links + 1))
                    body = f"<html><head><title>{n}</title></head><body>{hrefs}</body></html>".encode()
                    status = b"200 OK"
                elif path == "/__first__":
                    body, status = repr(first[0] if first else 0.0).encode(), b"200 OK"
                elif path == "/__reset__":
                    first.clear()
                    body, status = b"", b"200 OK"
                else:
                    body, status = b"not found", b"404 Not Found"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/html\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (ConnectionError, ValueError, IndexError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, HOST, 0)
        conn.send(server.sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)  # until the parent says stop (or is gone)
        server.close()

    try:
        asyncio.run(main())
    except EOFError:
        pass


class WideSite:
    def __init__(self, links: int) -> None:
        self.links = links

    def __enter__(self) -> WideSite:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(self.links, child), daemon=True)
        self.process.start()
        child.close()
        self.port = self.conn.recv()
        self.seed = f"http://{HOST}:{self.port}/w/0"
        return self

    def _control(self, name: str) -> bytes:
        with urllib.request.urlopen(f"http://{HOST}:{self.port}/__{name}__", timeout=10) as answer:
            return answer.read()

    def first_request_at(self) -> float:
        """Wall-clock time of the first crawl request since the site started or ``reset``."""
        return float(self._control("first"))

    def reset(self) -> None:
        self._control("reset")

    def __exit__(self, *exc: object) -> None:
        self.conn.send("stop")
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()


def startup(runs: int) -> list[float]:
    """Seconds from launching ``crawlkit crawl`` to the site's first request, one fresh site per run."""
    crawlkit = str(Path(sys.executable).with_name("crawlkit"))
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        seeds = Path(tmp) / "seeds.txt"
        for _ in range(runs):
            with WideSite(links=1) as site:
                seeds.write_text(site.seed + "\n")
                launched = time.time()
                subprocess.run([crawlkit, "crawl", str(seeds), "--max-pages", "1", "--log-level", "ERROR"],
                               cwd=tmp, check=True, capture_output=True)
                times.append(site.first_request_at() - launched)
    return times


def discover(urls: int, links: int, parsers: int) -> dict[str, Any]:
    """Crawl until ``urls`` URLs are discovered; peak memory of the crawlkit tree and what was left queued."""
    from crawlkit.bench import build_engine

    with WideSite(links=links) as site:
        engine = build_engine([site.seed], "light", workers=2, parsers=parsers, max_pages=urls // links)
        started = time.monotonic()
        with TreeMonitor(os.getpid(), exclude=[site.process.pid]) as monitor:
            stats = engine.run()
            queued = len(engine.frontier)
            spilled = engine.frontier.spilled
        elapsed = time.monotonic() - started
    usage = monitor.usage()
    return {
        "pages": stats.counts["pages"],
        "discovered": stats.counts["pages"] + queued,
        "queued_at_end": queued,
        "spilled_to_disk": spilled,
        "elapsed_s": round(elapsed, 1),
        "peak_rss_mb": round(usage.peak_rss / 2**20),
        "peak_pss_mb": round(usage.peak_pss / 2**20),
        "pss_bytes_per_url": round(usage.peak_pss / max(1, stats.counts["pages"] + queued), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", type=int, default=10_000_000, help="URLs to discover (default 10M)")
    parser.add_argument("--links", type=int, default=1000, help="new links per page (default 1000)")
    parser.add_argument("--parsers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5, help="start-up measurements (default 5)")
    args = parser.parse_args()

    times = startup(args.runs)
    print(f"first request after launch: median {statistics.median(times):.2f}s "
          f"(min {min(times):.2f}, max {max(times):.2f}, {len(times)} runs)", flush=True)
    r = discover(args.urls, args.links, args.parsers)
    print(f"discovered {r['discovered']:,} URLs ({r['pages']:,} pages fetched, {r['queued_at_end']:,} queued at the end, "
          f"{r['spilled_to_disk']:,} of them on disk) in {r['elapsed_s']}s")
    print(f"peak memory of all crawlkit processes: {r['peak_rss_mb']} MB RSS, {r['peak_pss_mb']} MB PSS "
          f"({r['pss_bytes_per_url']} bytes per discovered URL)")


if __name__ == "__main__":
    main()
