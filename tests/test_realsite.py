"""Crawl real HTML nobody here wrote: Debian's python3.11-doc, served on loopback.

The oracle is independent of crawlkit: a breadth-first walk over the files on disk with the
standard library's HTMLParser. The server records every request, so "every page exactly once"
is checked from the server's side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest
from support import serve_http

DOCS = Path("/usr/share/doc/python3.11/html")

@pytest.fixture(autouse=True)
def _docs_installed() -> None:
    """Skips without Debian's python3.11-doc, but fails under CI (.ci/run installs it)."""
    if not DOCS.is_dir():
        message = "needs Debian's python3.11-doc (apt-get install python3.11-doc)"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the real-site test)")
        pytest.skip(message)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "a":
            self.hrefs.extend(v for k, v in attrs if k == "href" and v)


def reachable(base: str) -> set[str]:
    """Pages reachable from index.html by <a href> links, by reading the files directly."""
    seen, todo = {base + "index.html"}, [base + "index.html"]
    while todo:
        url = todo.pop()
        path = DOCS / urlsplit(url).path.lstrip("/")
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            continue
        parser = _Links()
        parser.feed(path.read_bytes().decode("utf-8", "replace"))
        for href in parser.hrefs:
            target = urldefrag(urljoin(url, href.strip()))[0]
            if target.startswith(base) and target not in seen:
                seen.add(target)
                todo.append(target)
    return {u for u in seen if (DOCS / urlsplit(u).path.lstrip("/")).is_file()}


class _Recorder(SimpleHTTPRequestHandler):
    counts: Counter
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.lock:
            self.counts[self.path] += 1
        super().do_GET()


@pytest.fixture()
def docs_site():
    counts: Counter = Counter()
    handler = type("H", (_Recorder,), {"counts": counts})
    with serve_http(partial(handler, directory=str(DOCS)), "127.0.0.9") as base:
        yield f"{base}/", counts


def test_python_docs_are_crawled_completely_and_once(docs_site, tmp_path: Path) -> None:
    base, counts = docs_site
    expected = reachable(base)
    assert len(expected) > 400  # the package holds about 530 linked pages
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(base + "index.html\n")
    out = tmp_path / "out.jsonl"
    crawlkit = str(Path(sys.executable).with_name("crawlkit"))
    proc = subprocess.run(
        [crawlkit, "crawl", str(seeds), "--workers", "2", "--per-host", "4", "-o", str(out), "--log-level", "WARNING"],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    items = [json.loads(line) for line in out.read_text().splitlines()]
    got = {item["url"] for item in items if item["status"] == 200}
    assert got == expected
    assert len(items) == len({item["url"] for item in items})  # one item per page
    fetched = {path: n for path, n in counts.items() if path != "/robots.txt"}
    assert max(fetched.values()) == 1, [p for p, n in fetched.items() if n > 1][:5]
    assert {base.rstrip("/") + p for p in fetched} >= expected
    titles = [item["title"] for item in items if item["url"].endswith("/library/json.html")]
    assert titles and "json" in titles[0]
