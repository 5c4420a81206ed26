"""Bounds: a page with 600,000 links, and a seeds file of 1,000,000 lines.

Both through the real ``crawlkit crawl`` (a subprocess) against a site served from a child
process on loopback, measured from outside:

- fan-out: the site's ``/`` links to ``--links`` pages ``/l/N``; the crawl stops after
  ``--max-pages``. Reported: peak RSS and PSS summed over the crawl's process tree
  (``crawlkit.bench.TreeMonitor``) and the longest gap between two progress lines
  (``progress_interval`` 0.25 s: the engine loop's longest pause), with the default
  ``max_links_per_page`` and with no cap.
- seeds: ``--seeds`` lines ``/s/N`` of the same site, ``--max-pages`` 50. Reported: seconds
  from launch to the site's first request, and the largest USS of a fetcher or parser process
  (the seen-URL store, named by the engine's DEBUG log, is left out: it holds what was admitted).

    python tests/benchmarks/bench_bounds.py
    python tests/benchmarks/bench_bounds.py --links 100000 --seeds 200000

Not a pytest test (no ``test_`` prefix): run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import multiprocessing
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from crawlkit.bench import TreeMonitor

HOST = "127.0.0.2"
CRAWLKIT = str(Path(sys.executable).with_name("crawlkit"))


def _serve(links: int, conn: Any) -> None:
    """``/``: ``links`` links; ``/l/N`` and ``/s/N``: small pages; ``/__first__``: the first request's time."""
    first: list[float] = []
    wide = ("<title>wide</title>" + "".join(f'<a href="/l/{n}">x</a>' for n in range(links))).encode()

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
                if path == "/":
                    body, status = wide, b"200 OK"
                elif path.startswith(("/l/", "/s/")):
                    body, status = b"<title>small</title>", b"200 OK"
                elif path == "/__first__":
                    body, status = repr(first[0] if first else 0.0).encode(), b"200 OK"
                    first.clear()
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
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until the parent says stop
        server.close()

    try:
        asyncio.run(main())
    except EOFError:
        pass


class Site:
    def __init__(self, links: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(links, child), daemon=True)
        self.process.start()
        child.close()
        self.base = f"http://{HOST}:{self.conn.recv()}"

    def first_request_at(self) -> float:
        """Wall-clock time of the first crawl request since the last call."""
        with urllib.request.urlopen(self.base + "/__first__", timeout=10) as answer:
            return float(answer.read())

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()


def fan_out(site: Site, tmp: Path, cap: int | None, max_pages: int) -> dict[str, Any]:
    """Crawl the wide page; peak memory of the tree and the longest gap between progress lines."""
    (tmp / "wide.txt").write_text(site.base + "/\n")
    args = [CRAWLKIT, "crawl", "wide.txt", "--max-pages", str(max_pages), "-s", "progress_interval=0.25",
            "-s", "max_body=20000000", "--no-robots"]
    if cap is not None:
        args += ["-s", f"max_links_per_page={cap}"]
    started = time.monotonic()
    proc = subprocess.Popen(args, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with TreeMonitor(proc.pid, exclude=[site.process.pid]) as monitor:
        stderr = proc.communicate()[1]
    elapsed = time.monotonic() - started
    stamps = [datetime.datetime.strptime(m, "%H:%M:%S.%f") for m in re.findall(r"^(\d\d:\d\d:\d\d\.\d+) .* pages \(", stderr, re.M)]
    gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
    usage = monitor.usage()
    return {"elapsed_s": round(elapsed, 1), "peak_rss_mb": round(usage.peak_rss / 2**20), "peak_pss_mb": round(usage.peak_pss / 2**20),
            "progress_lines": len(stamps), "max_gap_s": round(max(gaps), 2) if gaps else None,
            "dropped_links_per_page": re.findall(r"links_per_page (\d+)", stderr)[-1:]}


def seeds(site: Site, tmp: Path, lines: int) -> dict[str, Any]:
    """Crawl a seeds file of ``lines`` lines; time to the first request and the children's largest USS."""
    path = tmp / "seeds.txt"
    path.write_text("".join(f"{site.base}/s/{n}\n" for n in range(lines)))
    log = tmp / "seeds.log"
    site.first_request_at()  # forget the earlier crawls' requests
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=600_000, help="links on the wide page (default 600,000)")
    parser.add_argument("--max-pages", type=int, default=200, help="pages the fan-out crawl fetches (default 200)")
    parser.add_argument("--seeds", type=int, default=1_000_000, help="lines of the seeds file (default 1,000,000)")
    args = parser.parse_args()
    site = Site(args.links)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for cap in (None, 0):
                label = "default max_links_per_page" if cap is None else "no cap"
                print(f"{args.links:,}-link page, {label}: {fan_out(site, Path(tmp), cap, args.max_pages)}", flush=True)
            print(f"{args.seeds:,}-line seeds file: {seeds(site, Path(tmp), args.seeds)}", flush=True)
    finally:
        site.stop()


if __name__ == "__main__":
    main()
