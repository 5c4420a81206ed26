"""Shared fixtures: the local multi-host site (crawlkit.site) and running the real CLI.

Like Scrapy's mockserver: every crawl test runs against pages served on loopback hosts
(127.0.0.2, 127.0.0.3, ...), and asserts on what the server saw as well as on crawlkit's output.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from support import CRAWLKIT, Run, leftover_processes


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
