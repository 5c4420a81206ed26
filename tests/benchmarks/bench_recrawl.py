"""Recrawl cost: CPU of recrawling an unchanged site against the first crawl of it, whole commands and engine runs.

A local site of ``--pages`` pages (two hosts, about 20 kB and 11 links a page, as ``crawlkit
bench``'s site has; every page with an ETag, and a 304 for a matching If-None-Match) is crawled
by the built-in spider with a fresh ``--jobdir``, then recrawled (``--recrawl``) with nothing
changed: every page answers 304, so the recrawl should cost a fraction of the first crawl (issue
15 asks for at most 15%). Runs alternate first crawl / recrawl; the medians are reported.

By default each run is a whole ``crawlkit crawl SEEDS --jobdir D [--recrawl]`` command, as a
user runs it, in a process of its own: what counts is the CPU of that command and of every
process it started, its start-up included (importing crawlkit and click, the fork server
importing lxml and requests, the seen store's Manager, reading the settings and the jobdir,
writing the stats at the end), which weighs little in a first crawl and much in a recrawl. The
command runs under a small watcher process (``--measure``) made a child subreaper
(``PR_SET_CHILD_SUBREAPER``): the processes that outlive the command (the fork server and
multiprocessing's resource tracker exit after it: ``outlived_the_command``) are handed to the
watcher, which waits for every one, so ``RUSAGE_CHILDREN`` counts them all; the site runs apart
and is not counted. Commands run with crawlkit's bytecode compiled, as an installed crawlkit has
it, after a round that is not counted.

With ``--engine`` each run is an engine in this process instead, as ``crawlkit bench`` runs it,
its CPU summed over the process tree by ``TreeMonitor`` (the site's process left out) and split
by role. The fork server is started by the first run and reused by the later ones
(``crawlkit.process.context``), so its own start is counted in the first run only
(``fork_server_cpu_s`` in the JSON), and no run counts this process's imports.

With ``--sitemap`` each host also serves ``/sitemap.xml`` listing its pages with a ``lastmod``
older than the first crawl, and both crawls read it (``use_sitemaps``): the recrawl fetches the
sitemaps and no page (issue 15 item 7: the sitemap says none changed since its last fetch).

Measured (medians, a 2-core machine with a load average of 10 to 27 from other work; see
"Recrawling" in the README for the engine runs and what a command's CPU goes to):

    whole commands, 2,000 pages, 5 rounds:   first crawl 4.09 s, recrawl 0.90 s of CPU (22%);
                                             another run 5.08 s, 1.03 s (20%)
    whole commands, 10,000 pages, 3 rounds:  first crawl 14.05 s, recrawl 1.70 s of CPU (12%);
                                             another run 26.64 s, 2.25 s (8.5%)
    engine runs (--engine), 2,000 pages:     first crawl 2.76 s, recrawl 0.25 s of CPU (9%)

Run:

    python tests/benchmarks/bench_recrawl.py                 # 2,000 pages, 5 rounds, whole commands
    python tests/benchmarks/bench_recrawl.py --sitemap       # the same site, with sitemaps
    python tests/benchmarks/bench_recrawl.py --engine        # engine runs in this process, CPU by role
    python tests/benchmarks/bench_recrawl.py --pages 5000 --rounds 3 --json

Not a pytest test (no ``test_`` prefix): run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import multiprocessing
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path

from crawlkit.log import LogConfig, setup_logging
from crawlkit.runner import Crawl
from crawlkit.stats import Stats
from crawlkit.tools.bench import TreeMonitor, Usage, crawl_roles

HOSTS = ("127.0.0.61", "127.0.0.62")
PAGE_BYTES = 20_000
COMMAND_TIMEOUT = 300  # seconds a whole command may take, its last process included
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


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


def measure(argv: list[str]) -> None:
    """Run ``argv`` to its end and print (JSON) its exit code, wall time and the CPU seconds of it and of every
    process it started, those that outlived it included; runs as the watcher process (``--measure``).

    As a child subreaper, this process is handed every descendant whose parent exits first (the fork
    server is the engine's child and exits after it), and waits for each: ``RUSAGE_CHILDREN`` counts
    only waited-for processes, and each counts its own waited-for children in turn.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    signal.alarm(COMMAND_TIMEOUT)  # ends this watcher if a process of the command never exits
    before = os.times()
    code = subprocess.run(argv, stdout=subprocess.DEVNULL, check=False).returncode
    wall = os.times().elapsed - before.elapsed
    outlived = 0
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
        outlived += 1
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"code": code, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "outlived": outlived}))


def command(seeds: Path, job: Path, recrawl: bool, sitemaps: bool,
            env: dict[str, str]) -> tuple[float, float, dict[str, int], int]:
    """A whole ``crawlkit crawl`` command of the built-in spider under a watcher: the CPU seconds of its process
    tree, its wall time, its stats' counts, and how many of its processes outlived it (the fork server)."""
    stats_file = job.with_name(f"{job.name}-{'recrawl' if recrawl else 'first'}.json")
    argv = [str(Path(sys.executable).with_name("crawlkit")), "crawl", str(seeds), "--jobdir", str(job),
            "--no-robots", "-o", str(job.with_suffix(".jsonl")), "--log-level", "error", "--stats", str(stats_file)]
    argv += ["--recrawl"] * recrawl + ["-s", "use_sitemaps=true"] * sitemaps
    watcher = subprocess.run([sys.executable, __file__, "--measure", *argv], capture_output=True, text=True,
                             timeout=COMMAND_TIMEOUT + 30, check=False, env=env)
    if watcher.returncode:
        raise RuntimeError(f"the watcher failed ({watcher.returncode}): {watcher.stderr}")
    result = json.loads(watcher.stdout)
    if result["code"]:
        raise RuntimeError(f"{' '.join(argv)} exited {result['code']}: {watcher.stderr}")
    counts = json.loads(stats_file.read_text())["counts"]
    return result["cpu_s"], result["wall_s"], counts, result["outlived"]


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


def _check(args: argparse.Namespace, first: dict[str, int], again: dict[str, int]) -> None:
    """Both crawls did what they are for: every page fetched, then every one found unchanged."""
    assert first["pages"] == args.pages // len(HOSTS) * len(HOSTS), first
    if args.sitemap:  # the sitemaps alone are fetched
        assert again["sitemap_unchanged"] == first["pages"], again
    else:
        assert again["unchanged"] == first["pages"], again


def _median(runs: list[float]) -> float:
    return round(statistics.median(runs), 3)


def engine_rounds(args: argparse.Namespace, seeds: list[str], site_pid: int,
                  tmp: Path) -> tuple[float, float, dict[str, object]]:
    """Alternating engine runs in this process: median CPU seconds of first crawls and of recrawls, and the
    other figures (wall times, CPU by role)."""
    firsts: list[tuple[Usage, float]] = []
    recrawls: list[tuple[Usage, float]] = []
    for n in range(args.rounds):
        job = tmp / f"job{n}"
        usage, wall, first = crawl(seeds, job, False, site_pid, args.sitemap)
        firsts.append((usage, wall))
        usage, wall, again = crawl(seeds, job, True, site_pid, args.sitemap)
        recrawls.append((usage, wall))
        _check(args, first.counts, again.counts)
    return _median([usage.cpu_s for usage, _ in firsts]), _median([usage.cpu_s for usage, _ in recrawls]), {
        "first_wall_s": _median([wall for _, wall in firsts]),
        "recrawl_wall_s": _median([wall for _, wall in recrawls]),
        "fork_server_cpu_s": round(fork_server_cpu(), 3),
        "first_cpu_s_runs": [round(usage.cpu_s, 3) for usage, _ in firsts],
        "recrawl_cpu_s_runs": [round(usage.cpu_s, 3) for usage, _ in recrawls],
        "first_cpu_s_by_role": _by_role([usage for usage, _ in firsts]),
        "recrawl_cpu_s_by_role": _by_role([usage for usage, _ in recrawls]),
    }


def command_rounds(args: argparse.Namespace, seeds: list[str], tmp: Path) -> tuple[float, float, dict[str, object]]:
    """Alternating whole commands: median CPU seconds of first crawls and of recrawls, and the other figures
    (wall times, how many processes outlived each command)."""
    seeds_file = tmp / "seeds.txt"
    seeds_file.write_text("".join(f"{url}\n" for url in seeds))
    # Bytecode as an installed crawlkit has it (pip compiles it): an editable install under
    # PYTHONDONTWRITEBYTECODE would compile every crawlkit module in every command, about 0.1 s
    # in the main process and as much in the fork server, which no user pays. A round not
    # counted writes it, and warms the page cache.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    firsts: list[tuple[float, float]] = []
    recrawls: list[tuple[float, float]] = []
    outlived = set()
    for n in range(-1, args.rounds):
        job = tmp / f"job{n}"
        cpu, wall, first, left = command(seeds_file, job, False, args.sitemap, env)
        firsts.append((cpu, wall))
        outlived.add(left)
        cpu, wall, again, left = command(seeds_file, job, True, args.sitemap, env)
        recrawls.append((cpu, wall))
        outlived.add(left)
        _check(args, first, again)
    del firsts[0], recrawls[0]  # the warm-up round
    return _median([cpu for cpu, _ in firsts]), _median([cpu for cpu, _ in recrawls]), {
        "first_wall_s": _median([wall for _, wall in firsts]),
        "recrawl_wall_s": _median([wall for _, wall in recrawls]),
        "outlived_the_command": sorted(outlived),
        "first_cpu_s_runs": [round(cpu, 3) for cpu, _ in firsts],
        "recrawl_cpu_s_runs": [round(cpu, 3) for cpu, _ in recrawls],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sitemap", action="store_true", help="the site has sitemaps with lastmod; crawls read them")
    parser.add_argument("--engine", action="store_true", help="engine runs in this process, not whole commands")
    parser.add_argument("--measure", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return
    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    site = ctx.Process(target=_serve, args=(args.pages, child), daemon=True)
    site.start()
    child.close()
    port = conn.recv()
    seeds = [f"http://{host}:{port}/p/0" for host in HOSTS]
    assert site.pid is not None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.engine:
                first_cpu, recrawl_cpu, figures = engine_rounds(args, seeds, site.pid, Path(tmp))
            else:
                first_cpu, recrawl_cpu, figures = command_rounds(args, seeds, Path(tmp))
    finally:
        conn.send("stop")
        site.join(10)
        if site.is_alive():
            site.kill()
    runs = "engine runs" if args.engine else "whole commands"
    share = round(recrawl_cpu / first_cpu, 3)
    if args.json:
        print(json.dumps({"pages": args.pages, "rounds": args.rounds, "sitemap": args.sitemap, "runs": runs,
                          "first_cpu_s": first_cpu, "recrawl_cpu_s": recrawl_cpu, "recrawl_share": share,
                          **figures}, indent=1))
    else:
        print(f"{args.pages} pages, {runs}, medians of {args.rounds} alternating runs: first crawl {first_cpu:.2f} s "
              f"CPU, unchanged recrawl {recrawl_cpu:.2f} s CPU ({100 * share:.1f}%)")


if __name__ == "__main__":
    main()
