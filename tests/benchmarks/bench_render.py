"""Benchmark rendering: rendered pages per second and memory per browser, beside plain fetching of the same site.

A local site of ``--pages`` pages, each linking to the next ones in its HTML (so a plain crawl
finds them all too) and running a script that ``fetch()``es a JSON endpoint and writes its
content into the page, with a stylesheet, a script and an image (blocked by default). The same
site is crawled plainly, then with ``render: true`` for each ``--render-pages`` value given, by
``crawlkit crawl`` (a process of its own); runs alternate, ``--runs`` times each, and the medians
are reported: pages/s, CPU per page (every process of the crawl, the browsers included, as last
sampled: a process that ends loses its last half second) and the peak proportional set size
(PSS) of the browsers' processes, sampled every half second.

    python tests/benchmarks/bench_render.py                    # ~2 min
    python tests/benchmarks/bench_render.py --pages 400 --render-pages 1 4 8 --runs 3

Not a pytest test (no ``test_`` prefix): run it by hand; it needs Playwright and chromium.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

CRAWLKIT = str(Path(sys.executable).with_name("crawlkit"))

PAGE = """<html><head><title>page {n}</title><link rel="stylesheet" href="/s.css"><script src="/app.js"></script></head>
<body><h1 id="t"></h1><p>{filler}</p>{links}<img src="/img/{n}.png"><script>
fetch("/api/{n}.json").then(function (r) {{ return r.json(); }}).then(function (d) {{
  document.getElementById("t").textContent = d.title;
}});
</script></body></html>"""


def handler(pages: int) -> type[BaseHTTPRequestHandler]:
    filler = "words of the page " * 200

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path
            kind, body = "text/html; charset=utf-8", ""
            if path.startswith("/p/") and path[3:].isdigit() and int(path[3:]) < pages:
                n = int(path[3:])
                links = "".join(f'<a href="/p/{m}">{m}</a> ' for m in (2 * n + 1, 2 * n + 2) if m < pages)
                body = PAGE.format(n=n, filler=filler, links=links)
            elif path.startswith("/api/"):
                kind, body = "application/json", json.dumps({"title": "title " + path})
            elif path == "/s.css":
                kind, body = "text/css", "h1 { color: red }"
            elif path == "/app.js":
                kind, body = "application/javascript", "window.app = 1;"
            else:
                self.send_error(404)
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def crawl_processes(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["pid"]):
        try:
            if process.environ().get("CRAWLKIT_BENCH_RUN") == marker:
                found.append(process)
        except psutil.Error:
            continue
    return found


def crawl(base: str, pages: int, render_pages: int | None) -> dict[str, float]:
    """One crawl of the site (rendered with ``render_pages`` pages per browser, or plainly for None)."""
    marker = uuid.uuid4().hex
    settings = ["-s", "robots=false", "--per-host", "8", "--workers", "2"]
    if render_pages is not None:
        settings += ["-s", "render=true", "-s", f"render_pages={render_pages}"]
    peak, cpu, done = [0], {}, threading.Event()

    def sample() -> None:  # the browsers' PSS, and every crawl process's CPU time as last seen
        while not done.is_set():
            pss = 0
            for process in crawl_processes(marker):
                try:
                    times = process.cpu_times()
                    cpu[process.pid] = times.user + times.system  # not children_*: a reaped child was seen itself
                    if process.name() == "chromium":
                        pss += process.memory_full_info().pss
                except psutil.Error:
                    continue
            peak[0] = max(peak[0], pss)
            done.wait(0.5)

    with tempfile.TemporaryDirectory(prefix="crawlkit-render-bench-") as tmp:
        Path(tmp, "seeds.txt").write_text(base + "/p/0\n")
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        run = subprocess.run([CRAWLKIT, "crawl", "seeds.txt", "-q", "--stats", "stats.json", *settings], cwd=tmp,
                             capture_output=True, text=True, timeout=1800,
                             env={**os.environ, "CRAWLKIT_BENCH_RUN": marker})
        elapsed = time.monotonic() - started
        done.set()
        sampler.join()
        if run.returncode:
            raise RuntimeError(run.stderr)
        stats = json.loads(Path(tmp, "stats.json").read_text())
    if stats["pages"] != pages:
        raise RuntimeError(f"crawled {stats['pages']} pages of {pages}")
    return {"pages_per_s": pages / elapsed, "cpu_ms_per_page": 1000 * sum(cpu.values()) / pages,
            "browser_pss_mb": peak[0] / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--render-pages", type=int, nargs="+", default=[4])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(args.pages))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    ways: list[int | None] = [None, *args.render_pages]
    results: dict[int | None, list[dict[str, float]]] = {way: [] for way in ways}
    for _ in range(args.runs):
        for way in ways:
            results[way].append(crawl(base, args.pages, way))
    print(f"{args.pages} pages, {args.runs} runs each, medians")
    print(f"{'way':<22} {'pages/s':>8} {'CPU ms/page':>12} {'browser PSS MB':>15}")
    for way in ways:
        name = "plain fetch" if way is None else f"rendered, {way} pages/browser"
        med = {key: statistics.median(r[key] for r in results[way]) for key in results[way][0]}
        print(f"{name:<22} {med['pages_per_s']:>8.1f} {med['cpu_ms_per_page']:>12.1f} {med['browser_pss_mb']:>15.0f}")
    server.shutdown()


if __name__ == "__main__":
    main()
