"""Scale: time to the first request, memory of a crawl that discovers millions of URLs, and the
bounds on one page's fan-out and on a seeds file's length.

A "wide" site, served from a child process on loopback, where page ``/w/N`` links to ``links``
pages that no other page links to (``/w/(N*links+1)`` ... ``/w/(N*links+links)``): every link
is a new URL. Crawling ``urls / links`` pages with ``max_pages`` therefore discovers ``urls``
URLs, nearly all of which are still waiting in the frontier when the crawl stops. That is the
worst case for memory: every one of them is in the seen-URL store (Manager process) and in the
frontier (memory up to ``frontier_memory`` requests, the rest spilled to a SQLite file).

Measured from outside the code under test: ``crawlkit.tools.bench.TreeMonitor`` sums RSS and PSS over
every crawlkit process (the site excluded), and the site timestamps its first request, so the
start-up figure is from launching ``crawlkit crawl`` (a real subprocess) to the server seeing
its first request.

    python tests/benchmarks/bench_scale.py                         # 10M URLs, 1000 links a page
    python tests/benchmarks/bench_scale.py --urls 1000000 --runs 5
    python tests/benchmarks/bench_scale.py --fan-out 600000 --seeds 1000000

``--fan-out N`` crawls a page ``/fan`` of N links (to ``/w/...`` pages) for ``--max-pages``
pages, with the default ``max_links_per_page`` and with no cap: peak RSS and PSS of the
crawl's process tree, and the longest gap between progress lines (``progress_interval``
0.25 s: the engine loop's longest pause). ``--seeds N`` crawls a seeds file of N lines with
``max_pages`` 50: seconds from launch to the first request, and the largest USS of a fetcher
or parser process (the seen-URL store, named by the engine's DEBUG log, is left out: it holds
what was admitted). Either replaces the default measurements.

Not a pytest test (no ``test_`` prefix): run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from crawlkit.tools.bench import TreeMonitor

HOST = "127.0.0.2"
CRAWLKIT = str(Path(sys.executable).with_name("crawlkit"))


def _serve(links: int, fan: int, conn: Any) -> None:
    """The wide site: keep-alive HTTP/1.1, pages rendered on request, first-request time kept;
    ``/fan`` links to ``fan`` pages."""
    first: list[float] = []
    fan_page = ("<title>fan</title>" + "".join(f'<a href="/w/{n}">{n}</a>' for n in range(1, fan + 1))).encode()

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
                elif path == "/fan":
                    body, status = fan_page, b"200 OK"
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
    def __init__(self, links: int, fan: int = 0) -> None:
        self.links = links
        self.fan = fan

    def __enter__(self) -> WideSite:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(self.links, self.fan, child), daemon=True)
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
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        seeds = Path(tmp) / "seeds.txt"
        for _ in range(runs):
            with WideSite(links=1) as site:
                seeds.write_text(site.seed + "\n")
                launched = time.time()
                subprocess.run([CRAWLKIT, "crawl", str(seeds), "--max-pages", "1", "--log-level", "ERROR"],
                               cwd=tmp, check=True, capture_output=True)
                times.append(site.first_request_at() - launched)
    return times


def discover(urls: int, links: int, parsers: int) -> dict[str, Any]:
    """Crawl until ``urls`` URLs are discovered; peak memory of the crawlkit tree and what was left queued."""
    from crawlkit.tools.bench import build_engine

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

def fan_out(site: WideSite, tmp: Path, cap: int | None, max_pages: int) -> dict[str, Any]:
    """Crawl ``/fan``; peak memory of the tree and the longest gap between progress lines."""
    (tmp / "wide.txt").write_text(f"http://{HOST}:{site.port}/fan\n")
    args = [CRAWLKIT, "crawl", "wide.txt", "--max-pages", str(max_pages), "-s", "progress_interval=0.25",
            "-s", "max_body=20000000", "--no-robots"]
    if cap is not None:
        args += ["-s", f"max_links_per_page={cap}"]
    started = time.monotonic()
    proc = subprocess.Popen(args, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with TreeMonitor(proc.pid, exclude=[site.process.pid]) as monitor:
        stderr = proc.communicate()[1]
    elapsed = time.monotonic() - started
    times = re.findall(r"^(\d\d:\d\d:\d\d\.\d+) .* pages \(", stderr, re.M)
    stamps = [datetime.datetime.strptime(m, "%H:%M:%S.%f") for m in times]
    gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
    usage = monitor.usage()
    return {"elapsed_s": round(elapsed, 1),
            "peak_rss_mb": round(usage.peak_rss / 2**20), "peak_pss_mb": round(usage.peak_pss / 2**20),
            "progress_lines": len(stamps), "max_gap_s": round(max(gaps), 2) if gaps else None,
            "dropped_links_per_page": re.findall(r"links_per_page (\d+)", stderr)[-1:]}


def long_seeds(site: WideSite, tmp: Path, lines: int) -> dict[str, Any]:
    """Crawl a seeds file of ``lines`` lines; time to the first request and the children's largest USS."""
    path = tmp / "seeds.txt"
    path.write_text("".join(f"http://{HOST}:{site.port}/w/{n}\n" for n in range(lines)))
    log = tmp / "seeds.log"
    site.reset()  # forget the earlier crawls' requests
    launched = time.time()
    with open(log, "w") as stderr:
        proc = subprocess.Popen([CRAWLKIT, "crawl", "seeds.txt", "--max-pages", "50", "--log-level", "DEBUG"],
                                cwd=tmp, stdout=subprocess.DEVNULL, stderr=stderr)
    peak: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        engine = psutil.Process(proc.pid)
        while not done.wait(0.05):
            try:
                servers = [c for c in engine.children() if "forkserver" in " ".join(c.cmdline())]
                for child in (c for s in servers for c in s.children()):
                    peak[child.pid] = max(peak.get(child.pid, 0), child.memory_full_info().uss)
            except psutil.NoSuchProcess:
                continue

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    proc.wait()
    done.set()
    sampler.join()
    store = re.search(r"seen-URL store process (\d+) started", log.read_text())
    children = [uss for pid, uss in peak.items() if store is None or pid != int(store.group(1))]
    return {"first_request_s": round(site.first_request_at() - launched, 2),
            "max_child_uss_mb": round(max(children) / 2**20, 1) if children else None}



def bounds(fan: int, max_pages: int, seeds: int) -> None:
    with WideSite(links=1, fan=fan) as site, tempfile.TemporaryDirectory() as tmp:
        if fan:
            for cap in (None, 0):
                label = "default max_links_per_page" if cap is None else "no cap"
                print(f"{fan:,}-link page, {label}: {fan_out(site, Path(tmp), cap, max_pages)}", flush=True)
        if seeds:
            print(f"{seeds:,}-line seeds file: {long_seeds(site, Path(tmp), seeds)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", type=int, default=10_000_000, help="URLs to discover (default 10M)")
    parser.add_argument("--links", type=int, default=1000, help="new links per page (default 1000)")
    parser.add_argument("--parsers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5, help="start-up measurements (default 5)")
    parser.add_argument("--fan-out", type=int, default=0, help="links on one page, for the fan-out bound (e.g. 600000)")
    parser.add_argument("--max-pages", type=int, default=200, help="pages the fan-out crawl fetches (default 200)")
    parser.add_argument("--seeds", type=int, default=0,
                        help="lines of a seeds file, for the seeds bound (e.g. 1000000)")
    args = parser.parse_args()
    if args.fan_out or args.seeds:
        bounds(args.fan_out, args.max_pages, args.seeds)
        return

    times = startup(args.runs)
    print(f"first request after launch: median {statistics.median(times):.2f}s "
          f"(min {min(times):.2f}, max {max(times):.2f}, {len(times)} runs)", flush=True)
    r = discover(args.urls, args.links, args.parsers)
    print(f"discovered {r['discovered']:,} URLs ({r['pages']:,} pages fetched, "
          f"{r['queued_at_end']:,} queued at the end, "
          f"{r['spilled_to_disk']:,} of them on disk) in {r['elapsed_s']}s")
    print(f"peak memory of all crawlkit processes: {r['peak_rss_mb']} MB RSS, {r['peak_pss_mb']} MB PSS "
          f"({r['pss_bytes_per_url']} bytes per discovered URL)")


if __name__ == "__main__":
    main()
