"""Helpers for tests that run the real ``crawlkit`` command (imported by conftest and tests)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

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


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until true; a bounded wait on an observable state, not a sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
