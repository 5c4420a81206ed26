"""Helpers for tests that run the real ``crawlkit`` command (imported by conftest and tests)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

CRAWLKIT = str(Path(sys.executable).with_name("crawlkit"))


class Run:
    """A finished ``crawlkit`` subprocess: exit code, stderr, and the items it wrote."""

    def __init__(self, proc: subprocess.CompletedProcess, output: Path | None) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.output = output

    def items(self) -> list[dict[str, Any]]:
        assert self.output is not None
        return [json.loads(line) for line in self.output.read_text(encoding="utf-8").splitlines()]


def leftover_processes(marker: str) -> list[psutil.Process]:
    """Processes still alive that were started by the crawl tagged with ``marker``."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("CRAWLKIT_TEST_RUN") == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def start_crawl(tmp_path: Path, seeds: list[str], out: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """Start ``crawlkit crawl`` on ``seeds`` in its own session (so signals reach its whole tree), in ``tmp_path``.

    Returns the process and the marker that ``leftover_processes`` finds its children by.
    """
    seeds_file = tmp_path / "seeds.txt"
    seeds_file.write_text("\n".join(seeds))
    marker = uuid.uuid4().hex
    proc = subprocess.Popen(
        [CRAWLKIT, "crawl", str(seeds_file), "-o", str(out), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True, cwd=tmp_path, env={**os.environ, "CRAWLKIT_TEST_RUN": marker},
    )
    return proc, marker


def stop_crawl(proc: subprocess.Popen, marker: str, sig: int, then: Callable[[], None] | None = None) -> str:
    """Send ``sig`` to the crawl's whole tree, call ``then`` (say, a held site's release), and wait
    for it; returns its stderr. After a SIGKILL, children that outlive the group are killed too."""
    try:
        os.killpg(proc.pid, sig)
        if then is not None:
            then()
        return proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if sig == signal.SIGKILL:
            for child in leftover_processes(marker):
                child.kill()


@contextlib.contextmanager
def held_until(site: Any, after: int, condition: Callable[[], bool], timeout: float = 20) -> Iterator[threading.Event]:
    """Hold ``site`` after ``after`` answers, and release it from a thread once ``condition`` is
    true (or ``timeout`` passes, well before a held request's read timeout): requests pile up in
    flight, so a cap is reached on any machine. Yields an Event set if ``condition`` came true."""
    site.hold(after)
    done, reached = threading.Event(), threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not done.is_set() and time.monotonic() < deadline:
            if condition():
                reached.set()
                break
            time.sleep(0.02)
        site.release()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield reached
    finally:
        done.set()
        watcher.join(timeout + 5)
        site.release()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until true; a bounded wait on an observable state, not a sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler], ip: str) -> Iterator[str]:
    """Serve ``handler`` on ``ip`` (a free port) in a thread until the block ends; yields the base URL
    (``http://ip:port``, no slash)."""
    server = ThreadingHTTPServer((ip, 0), handler)
    thread = threading.Thread(target=server.serve_forever, name=f"http-{ip}", daemon=True)
    thread.start()
    try:
        yield f"http://{ip}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextlib.contextmanager
def redis_server(server: str, workdir: Path) -> Iterator[str]:
    """Run ``redis-server`` on a free loopback port, without persistence, in ``workdir``; yields its URL."""
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            assert proc.poll() is None, "redis-server exited at start"
            return False

    try:
        wait_for(up, 20, "redis-server to answer")
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def route_canonical_pages(site: Any) -> None:
    """Serve, on ``site`` (a ``crawlkit.tools.site.Site``), pages that name canonical URLs, from its index:

    ``/p1`` and ``/p2`` name ``/p`` (linked from the index too, so seen before either is parsed)
    and link ``/from-p``; ``/q1`` and ``/q2`` name ``/q`` (linked from nowhere: the first of them
    parsed stands for it) and link ``/from-q``. With ``skip_duplicate_canonical`` the server
    sees ``/p``, one ``/from-q``, never ``/q`` nor ``/from-p``.
    """
    from crawlkit.tools.site import respond

    def page(links: str, head: str = "", headers: dict[str, str] | None = None) -> Any:
        return respond(200, f"<html><head><title>t</title>{head}</head><body>{links}</body></html>".encode(), headers)

    index = "".join(f'<a href="/{name}">{name}</a>' for name in ("p1", "p2", "p", "q1", "q2"))
    site.route("/", page(index))
    site.route("/p", page("", '<link rel="canonical" href="/p">'))
    site.route("/p1", page('<a href="/from-p">on</a>', '<link rel="canonical" href="/p">'))
    site.route("/p2", page('<a href="/from-p">on</a>', '<link rel="canonical" href="p">'))
    site.route("/q1", page('<a href="/from-q">on</a>', '<link rel="canonical" href="/q">'))
    site.route("/q2", page('<a href="/from-q">on</a>', headers={"Link": '</q>; rel="canonical"'}))
    for leaf in ("/from-p", "/from-q", "/q"):
        site.route(leaf, page(""))


def warc_records(directory: Path) -> list[Any]:
    """Every record of the WARC files in ``directory``, in file order, each with its block bytes as ``stored``."""
    from warcio.archiveiterator import ArchiveIterator

    found = []
    for path in sorted(directory.glob("*.warc.gz")):
        with open(path, "rb") as stream:
            for record in ArchiveIterator(stream):
                record.stored = record.raw_stream.read()
                found.append(record)
    return found
