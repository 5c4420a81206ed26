"""Shared fixtures: the local multi-host site (crawlkit.site) and running the real CLI.

Like Scrapy's mockserver: every crawl test runs against pages served on loopback hosts
(127.0.0.2, 127.0.0.3, ...), and asserts on what the server saw as well as on crawlkit's output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

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


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until true; a bounded wait on an observable state, not a sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture()
def crawlkit(tmp_path: Path) -> Callable[..., Run]:
    """Run the real ``crawlkit`` command; checks that no process of it outlives it."""

    def run(*args: str, output: str | None = "out.jsonl", timeout: float = 180, seeds: list[str] | None = None) -> Run:
        argv = [CRAWLKIT, *args]
        if seeds is not None:
            seeds_file = tmp_path / "seeds.txt"
            seeds_file.write_text("\n".join(seeds) + "\n")
            argv.insert(2, str(seeds_file))
        out = None
        if output is not None:
            out = tmp_path / output
            argv += ["-o", str(out)]
        marker = uuid.uuid4().hex
        env = {**os.environ, "CRAWLKIT_TEST_RUN": marker}
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env)
        leftovers = leftover_processes(marker)
        for p in leftovers:
            p.kill()
        assert not leftovers, f"crawlkit left processes behind: {leftovers}"
        return Run(proc, out)

    return run
