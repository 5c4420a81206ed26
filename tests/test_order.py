"""Crawl order through the CLI, as the server saw it: breadth-first, depth-first, and fairness
across hosts when one host's backlog has spilled to disk (the frontier's unit tests are in
test_scheduling.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler

import pytest
from support import serve_http


class _Pages(BaseHTTPRequestHandler):
    """Serves ``links[path]`` as a page of links (an empty page for any other path); records the
    paths asked for, in order of arrival, over all servers of the class."""

    links: dict[str, list[str]]
    arrivals: list[tuple[str, str]]
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path != "/robots.txt":
            with self.lock:
                self.arrivals.append((self.server.server_address[0], self.path))
        body = "".join(f'<a href="{link}">x</a>' for link in self.links.get(self.path, [])).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def pages(links: dict[str, list[str]], *ips: str) -> Iterator[tuple[list[str], list[tuple[str, str]]]]:
    arrivals: list[tuple[str, str]] = []
    handler = type("H", (_Pages,), {"links": links, "arrivals": arrivals})
    with ExitStack() as stack:
        yield [stack.enter_context(serve_http(handler, ip)) for ip in ips], arrivals


def _tree(fan_out: int, depth: int) -> dict[str, list[str]]:
    """Page ``/`` links to ``/0`` .. ``/{fan_out-1}``, ``/0`` to ``/00`` ..., ``depth`` levels down."""
    links: dict[str, list[str]] = {}
    level = ["/"]
    for _ in range(depth):
        below = []
        for page in level:
            links[page] = [f"{page}{i}" for i in range(fan_out)]
            below += links[page]
        level = below
    return links


@pytest.mark.parametrize(("order", "delay", "expected"), [
    # One request at a time and one parser: each page's links are queued in the order the pages
    # were fetched, and breadth-first takes a page's links after every page queued before them.
    ("breadth-first", "0", ["/", "/0", "/1", "/00", "/01", "/10", "/11", "/000", "/001", "/010", "/011", "/100", "/101",
                       "/110", "/111"]),
    # A branch to its leaves before the next one, the last link first (as Scrapy's LIFO queues);
    # a delay between starts far longer than a page takes to parse, so that each page's links
    # are queued before the next start, as they would be on a site of any size.
    ("depth-first", "0.5", ["/", "/1", "/11", "/111", "/110", "/10", "/101", "/100", "/0", "/01", "/011", "/010", "/00",
                     "/001", "/000"]),
])
def test_the_order_setting_is_the_order_the_server_sees(crawlkit, order: str, delay: str, expected: list[str]) -> None:
    with pages(_tree(2, 3), "127.0.0.2") as ([base], arrivals):
        run = crawlkit("crawl", "-s", f"order={order}", "--per-host", "1", "--delay", delay, seeds=[base + "/"])
        seen = [path for _, path in arrivals]
    assert run.returncode == 0, run.stderr
    assert seen == expected


def test_a_small_host_is_crawled_early_while_a_big_hosts_backlog_waits_on_disk(crawlkit) -> None:
    # The big host's index links 300 pages and, last, the small host, whose index links 5 pages:
    # with frontier_memory 20, the small host's requests are spilled behind the big host's backlog.
    links = {"/": [f"/b{i}" for i in range(300)], "/small/": [f"/s{i}" for i in range(5)]}
    with pages(links, "127.0.0.2", "127.0.0.3") as (bases, arrivals):
        links["/"].append(bases[1] + "/small/")  # its port is known now
        run = crawlkit("crawl", "-s", "frontier_memory=20", "--allow-domain", "127.0.0.3",
                       "-s", "order=breadth-first", seeds=[bases[0] + "/"])
        seen = list(arrivals)
    assert run.returncode == 0, run.stderr
    assert len(seen) == 1 + 300 + 1 + 5
    small = [i for i, (ip, _) in enumerate(seen) if ip == "127.0.0.3"]
    # Hosts take turns: the small host's six pages come among the first few dozen requests,
    # not after the big host's 280 spilled ones.
    assert len(small) == 6 and small[-1] < 40, small


def test_an_unknown_order_is_a_one_line_error(crawlkit) -> None:
    run = crawlkit("crawl", "http://127.0.0.2:1/", "-s", "order=dfs", output=None)
    assert run.returncode == 2
    assert run.stderr.strip() == "Error: -s order=dfs: 'order' must be one of breadth-first, depth-first, got 'dfs'"
