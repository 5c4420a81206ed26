"""Recrawl cost: CPU of recrawling an unchanged site against the first crawl of it, summed over every crawlkit process.

A local site of ``--pages`` pages (two hosts, about 20 kB and 11 links a page, as ``crawlkit
bench``'s site has; every page with an ETag, and a 304 for a matching If-None-Match) is crawled
by the built-in spider with a fresh ``--jobdir``, then recrawled (``--recrawl``) with nothing
changed: every page answers 304, so the recrawl should cost a fraction of the first crawl (issue
15 asks for at most 15%). Each run is an engine in this process, as ``crawlkit bench`` runs it,
with its CPU summed over the whole process tree by ``TreeMonitor`` (the site's process left
out). Runs alternate first crawl / recrawl; the medians are reported, per role too.

What a run counts is the CPU its process tree spent while it ran. The fork server is started by
the first run of this process and reused by the later ones (``crawlkit.process.context``), so its
own start (about 0.25 s: it imports crawlkit, lxml and requests) is counted in the first run only;
the processes a run forks from it are counted in full. A ``crawlkit crawl`` command pays that
start once per command, first crawl and recrawl alike: add it to both to compare whole commands
(``fork_server_cpu_s`` in the JSON).

With ``--sitemap`` each host also serves ``/sitemap.xml`` listing its pages with a ``lastmod``
older than the first crawl, and both crawls read it (``use_sitemaps``): the recrawl fetches the
sitemaps and no page (issue 15 item 7: the sitemap says none changed since its last fetch).

    python tests/benchmarks/bench_recrawl.py                 # 2,000 pages, 5 rounds
    python tests/benchmarks/bench_recrawl.py --sitemap       # the same site, with sitemaps
    python tests/benchmarks/bench_recrawl.py --pages 5000 --rounds 3 --json

Not a pytest test (no ``test_`` prefix): run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path

from crawlkit.log import LogConfig, setup_logging
from crawlkit.runner import Crawl
from crawlkit.stats import Stats
from crawlkit.tools.bench import TreeMonitor, Usage, crawl_roles

HOSTS = ("127.0.0.61", "127.0.0.62")
PAGE_BYTES = 20_000


def _pages(count: int, port: int) -> dict[tuple[str, str], tuple[bytes, bytes]]:
    """(host, path) -> (ETag, whole 200 response) of every page: page n links to n+1, nine others of its
    host and its twin on the other host."""
    per_host = count // len(HOSTS)
    pages = {}
    for h, host in enumerate(HOSTS):
        for n in range(per_host):
            links = [(host, (n + 1) % per_host), (HOSTS[(h + 1) % len(HOSTS)], n)]
            links += [(host, (n * 7 + 31 * k) % per_host) for k in range(1, 10)]
            anchors = "".join(f'<a href="http://{to}:{port}/p/{m}">page {m}</a> ' for to, m in links)
            filler = ("<p>" + "recrawl benchmark text " * 40 + "</p>") * max(1, PAGE_BYTES // 960)
            body = f"<html><head><title>page {n}</title></head><body>{anchors}{filler}</body></html>".encode()
            etag = f'"{h}-{n}"'.encode()
            head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nETag: " + etag +
                    f"\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            pages[(host, f"/p/{n}")] = (etag, head + body)
        entries = "".join(f"<url><loc>http://{host}:{port}/p/{n}</loc><lastmod>2026-01-01</lastmod></url>"
                          for n in range(per_host))
        sitemap = f"<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>{entries}</urlset>".encode()
        pages[(host, "/sitemap.xml")] = (b"", b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
                                          + f"Content-Length: {len(sitemap)}\r\n\r\n".encode() + sitemap)
    return pages


_NOT_MODIFIED = b"HTTP/1.1 304 Not Modified\r\nETag: %s\r\n\r\n"
_MISSING = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


async def _site(count: int, conn: Connection) -> None:
    servers = []
    port = 0
    loop = asyncio.get_running_loop()
    pages: dict[tuple[str, str], tuple[bytes, bytes]] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host = writer.get_extra_info("sockname")[0]
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                inm = next((line.split(":", 1)[1].strip() for line in lines[1:]
                            if line.lower().startswith("if-none-match:")), None)
                etag, response = pages.get((host, path), (b"", _MISSING))
                writer.write(_NOT_MODIFIED % etag if etag and inm == etag.decode() else response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    for host in HOSTS:
        server = await asyncio.start_server(handle, host, port)
        port = server.sockets[0].getsockname()[1]
        servers.append(server)
    pages.update(_pages(count, port))
    conn.send(port)
    await loop.run_in_executor(None, conn.recv)  # "stop"


def _serve(count: int, conn: Connection) -> None:
    asyncio.run(_site(count, conn))


def crawl(seeds: list[str], job: Path, recrawl: bool, site_pid: int,
          sitemaps: bool = False) -> tuple[Usage, float, Stats]:
    """CPU of the crawl's whole process tree (in all and per role), its wall time, and its stats."""
    flags = {"jobdir": str(job), "robots": False, "output": str(job / "out.jsonl"), "log_level": "ERROR",
             "recrawl": recrawl, "use_sitemaps": sitemaps}
    run = Crawl(None, flags, spider_args={"start_urls": seeds})
    setup_logging(LogConfig.from_settings(run.settings))
    engine = run.engine()
    # The CPU the processes alive now (this one, the fork server) spent before: not this crawl's.
    earlier = TreeMonitor(os.getpid(), exclude=[site_pid], role=crawl_roles(os.getpid()))
    earlier.sample()
    with TreeMonitor(os.getpid(), exclude=[site_pid], role=crawl_roles(os.getpid())) as monitor:
        stats = engine.run()
    usage = monitor.usage()
    for key, spent in earlier.cpu.items():
        role = monitor.roles.get(key, "other")
        usage.cpu_s -= spent
        usage.cpu_s_by_role[role] -= spent
    return usage, stats.elapsed, stats


def fork_server_cpu() -> float:
    """CPU seconds the fork server (a child of this process that is no crawl's role) has spent, mostly its start."""
    import psutil

    return sum(sum(child.cpu_times()[:2]) for child in psutil.Process().children()
               if "forkserver" in " ".join(child.cmdline()))


def _by_role(runs: list[Usage]) -> dict[str, float]:
    """The median CPU seconds of each role over ``runs``."""
    roles = {role for usage in runs for role in usage.cpu_s_by_role}
    return {role: round(statistics.median(usage.cpu_s_by_role.get(role, 0.0) for usage in runs), 3)
            for role in sorted(roles)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sitemap", action="store_true", help="the site has sitemaps with lastmod; crawls read them")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    site = ctx.Process(target=_serve, args=(args.pages, child), daemon=True)
    site.start()
    child.close()
    port = conn.recv()
    firsts: list[tuple[Usage, float]] = []
    recrawls: list[tuple[Usage, float]] = []
    seeds = [f"http://{host}:{port}/p/0" for host in HOSTS]
    assert site.pid is not None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in range(args.rounds):
                job = Path(tmp) / f"job{n}"
                usage, wall, first = crawl(seeds, job, False, site.pid, args.sitemap)
                assert first.counts["pages"] == args.pages // len(HOSTS) * len(HOSTS), first.counts
                firsts.append((usage, wall))
                usage, wall, again = crawl(seeds, job, True, site.pid, args.sitemap)
                if args.sitemap:  # the sitemaps alone are fetched
                    assert again.counts["sitemap_unchanged"] == first.counts["pages"], again.counts
                else:
                    assert again.counts["unchanged"] == first.counts["pages"], again.counts
                recrawls.append((usage, wall))
    finally:
        conn.send("stop")
        site.join(10)
        if site.is_alive():
            site.kill()
    first_cpu = statistics.median(usage.cpu_s for usage, _ in firsts)
    fork_cpu = fork_server_cpu()
    recrawl_cpu = statistics.median(usage.cpu_s for usage, _ in recrawls)
    result = {
        "pages": args.pages, "rounds": args.rounds, "sitemap": args.sitemap,
        "first_cpu_s": round(first_cpu, 3), "recrawl_cpu_s": round(recrawl_cpu, 3),
        "first_wall_s": round(statistics.median(wall for _, wall in firsts), 3),
        "recrawl_wall_s": round(statistics.median(wall for _, wall in recrawls), 3),
        "recrawl_share": round(recrawl_cpu / first_cpu, 3),
        "fork_server_cpu_s": round(fork_cpu, 3),
        "first_cpu_s_runs": [round(usage.cpu_s, 3) for usage, _ in firsts],
        "recrawl_cpu_s_runs": [round(usage.cpu_s, 3) for usage, _ in recrawls],
        "first_cpu_s_by_role": _by_role([usage for usage, _ in firsts]),
        "recrawl_cpu_s_by_role": _by_role([usage for usage, _ in recrawls]),
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{args.pages} pages, medians of {args.rounds} alternating runs: first crawl {first_cpu:.2f} s CPU, "
              f"unchanged recrawl {recrawl_cpu:.2f} s CPU ({100 * result['recrawl_share']:.1f}%)")


if __name__ == "__main__":
    main()
