"""Inputs that used to hang, eat memory or end in a traceback: each is now one line and exit code 2, at once.

Every case runs the real CLI before any process starts and before any request: the seed is a
closed port that must never be contacted. The bound on wall time (10 s) is generous for a
slow CI machine; the target is well under a second.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from support import CRAWLKIT, leftover_processes

WALL = 10.0
LOL = "[" + ", ".join(["lol"] * 9) + "]"


def billion_laughs() -> str:
    """A 500-byte YAML value that expands into 9**9 strings: nine lists each nine aliases of the one before."""
    levels = [f"&l0 {LOL}"] + [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "allowed_domains: [" + ", ".join(levels) + "]\n"


def one_line_error(tmp_path: Path, *args: str, seeds: str = "seeds.txt", limit_files: int | None = None) -> str:
    """Run ``crawlkit crawl SEEDS ARGS``; assert exit 2, one ``Error:`` line, no traceback, within WALL;
    return the line."""
    if not (tmp_path / "seeds.txt").exists():
        (tmp_path / "seeds.txt").write_text("http://127.0.0.1:9/\n")
    marker = uuid.uuid4().hex

    def limit() -> None:
        if limit_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit_files, limit_files))

    started = time.monotonic()
    try:
        proc = subprocess.run(
            [CRAWLKIT, "crawl", seeds, "-o", "out.jsonl", *args], capture_output=True, text=True, timeout=WALL * 3,
            cwd=tmp_path, env={**os.environ, "CRAWLKIT_TEST_RUN": marker}, preexec_fn=limit,
        )
    finally:
        leftovers = leftover_processes(marker)
        for p in leftovers:
            p.kill()
    elapsed = time.monotonic() - started
    assert not leftovers, f"crawlkit left processes behind: {leftovers}"
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("Error: "), proc.stderr[-2000:]
    assert elapsed < WALL, f"took {elapsed:.1f} s"
    assert not (tmp_path / "out.jsonl").exists()
    return proc.stderr.strip()


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    assert len(bomb.read_bytes()) < 600
    line = one_line_error(tmp_path, "--config", "bomb.yaml")
    assert line == "Error: bomb.yaml, line 1: not valid YAML: aliases (*l0) are not allowed; write the value out"
    line = one_line_error(tmp_path, "-s", "allowed_domains=[&a [x, y], *a]")
    assert "aliases (*a) are not allowed" in line


@pytest.mark.parametrize("name", ["/dev/zero", "fifo.yaml", "big.yaml"])
def test_a_config_that_is_not_a_small_regular_file_is_refused(tmp_path: Path, name: str) -> None:
    os.mkfifo(tmp_path / "fifo.yaml")  # opening it for reading would wait for a writer forever
    (tmp_path / "big.yaml").write_text("# padding\n" * 200_000)  # 2 MB of valid YAML
    line = one_line_error(tmp_path, "--config", name)
    if name == "big.yaml":
        assert line == "Error: big.yaml: larger than 1,000,000 bytes, too large for a settings file"
    else:
        assert line == f"Error: {name}: not a regular file; give a YAML settings file"


@pytest.mark.parametrize("key", ["connect_timeout", "read_timeout", "download_timeout"])
@pytest.mark.parametrize("value", ["0", ".inf", ".nan", "-1"])
def test_timeouts_must_be_finite_and_more_than_zero(tmp_path: Path, key: str, value: str) -> None:
    line = one_line_error(tmp_path, "-s", f"{key}={value}")
    assert line.startswith(f"Error: -s {key}={value}: '{key}' must be a finite number > 0 and ≤ 86,400, got ")


def test_an_endless_delay_is_refused(tmp_path: Path) -> None:
    line = one_line_error(tmp_path, "--delay", "inf")
    assert line == "Error: command line: 'delay' must be a finite number from 0 to 86,400, got inf"


@pytest.mark.parametrize("key, value, expected", [
    ("delay", "1e300", "'delay' must be a finite number from 0 to 86,400, got 1e+300"),
    ("download_timeout", "1e9", "'download_timeout' must be a finite number > 0 and ≤ 86,400, got 1000000000.0"),
    ("retries", "1000000000", "'retries' must be an integer from 0 to 100, got 1000000000"),
    ("max_body", "99999999999999999999999",
     "'max_body' must be an integer from 1 to 1,073,741,824, got 99999999999999999999999"),
])
def test_absurd_durations_counts_and_sizes_are_refused(tmp_path: Path, key: str, value: str, expected: str) -> None:
    # Finite and accepted before, these stalled the crawl (a delay of 1e300 s) or let it hammer a server.
    assert one_line_error(tmp_path, "-s", f"{key}={value}") == f"Error: -s {key}={value}: {expected}"


@pytest.mark.parametrize("flag, most", [("--workers", 24), ("--parsers", 16), ("--concurrency", "1,024"),
                                        ("--per-host", "1,024")])  # a semaphore's count: past a C int, a traceback
def test_process_and_request_counts_are_bounded(tmp_path: Path, flag: str, most: int | str) -> None:
    line = one_line_error(tmp_path, flag, "100000")
    key = flag[2:].replace("-", "_")
    assert line.startswith(f"Error: command line: '{key}' must be an integer from 1 to {most}")
    assert line.endswith("got 100000")


def test_a_crawl_needing_more_open_files_than_allowed_is_refused_before_it_starts(tmp_path: Path) -> None:
    # The hard limit cannot be raised unprivileged; the soft limit is raised up to it when it is enough.
    line = one_line_error(tmp_path, "--workers", "24", "--parsers", "16", "--concurrency", "1024", limit_files=256)
    assert line == ("Error: workers 24, parsers 16 and concurrency 1024 need about 470 open files, "
                    "over this system's limit of 256 (ulimit -Hn); lower them")


@pytest.mark.parametrize("seeds", ["/dev/zero", "binary.txt"])
def test_seeds_that_are_a_device_or_binary_are_refused(tmp_path: Path, seeds: str) -> None:
    (tmp_path / "binary.txt").write_bytes(b"http://127.0.0.1:9/\n" + b"\0" * 5000 + b"\nhttp://127.0.0.1:9/a\n")
    line = one_line_error(tmp_path, seeds=seeds)
    if seeds == "/dev/zero":
        assert line == (
            "Error: seeds file '/dev/zero' is not a regular file or a pipe; give a text file with one URL per line"
        )
    else:
        assert line == (
            "Error: seeds file 'binary.txt' is binary (a NUL at byte 20); give a text file with one URL per line"
        )
