"""A full or unwritable disk: one line naming the file, the summary, exit code 3, whole records, a clean resume.

Two ways to fill a disk. ``RLIMIT_FSIZE`` works unprivileged and everywhere: every file the
crawl writes past the limit fails with "File too large" (Python ignores SIGXFSZ), as a full
disk would. A small tmpfs is the real thing (No space left on device), and lets the output and
the job directory be on different disks, so each can be the one that fills; it needs root
(CI runs as root) and the tests that use it skip elsewhere. Every mount is unmounted.
"""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import CRAWLKIT, leftover_processes

from crawlkit.tools.site import Site, SiteSpec

SPEC = SiteSpec(hosts=2, pages=100, extras=False)  # 202 pages, ~600 bytes of JSON an item


def crawl(tmp_path: Path, seeds: list[str], *args: str, file_limit: int | None = None) -> subprocess.CompletedProcess:
    """Run ``crawlkit crawl`` to its end (bounded), optionally with every file it writes capped at
    ``file_limit`` bytes."""
    (tmp_path / "seeds.txt").write_text("\n".join(seeds) + "\n")
    marker = uuid.uuid4().hex

    def cap() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    try:
        return subprocess.run(
            [CRAWLKIT, "crawl", "seeds.txt", "--no-robots", *args], capture_output=True, text=True, timeout=120,
            cwd=tmp_path, env={**os.environ, "CRAWLKIT_TEST_RUN": marker}, preexec_fn=cap,
        )
    finally:
        leftovers = leftover_processes(marker)
        for p in leftovers:
            p.kill()
        assert not leftovers, f"crawlkit left processes behind: {leftovers}"


def assert_refused(
    proc: subprocess.CompletedProcess, path: Path, reason: str | tuple[str, ...], resumable: bool
) -> None:
    """Exit code 3, the summary, and one error line naming ``path`` and ``reason`` (or one of them); no traceback."""
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Logging error" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    again = "run the same command again to resume" if resumable else "run the command again"
    reasons = (reason,) if isinstance(reason, str) else reason
    starts = tuple(f"Error: cannot write {path}: {r}; " for r in reasons)
    assert len(errors) == 1 and errors[0].startswith(starts), proc.stderr[-3000:]
    assert again in errors[0]
    assert "crawl stopped (a write failed) in " in proc.stderr
    assert proc.stderr.rstrip().endswith(errors[0])  # after the summary


def whole_lines(path: Path) -> list[dict]:
    """Every record of a JSON Lines file, asserting it ends on a complete one."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), repr(text[-200:])
    return [json.loads(line) for line in text.splitlines()]


def test_a_file_size_limit_stops_the_crawl_with_whole_records_and_exit_3(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with Site(SPEC) as site:
        proc = crawl(tmp_path, site.seeds(), "-o", str(out), file_limit=40_000)
        fetches = site.stats()["fetches"]
    assert_refused(proc, out, "File too large", resumable=False)
    items = whole_lines(out)
    assert 10 < len(items) < 202 and len({item["url"] for item in items}) == len(items)
    assert out.stat().st_size <= 40_000
    assert max(fetches.values()) == 1  # stopped at once: nothing fetched again, no page without limit


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str, int], Path]]:
    """Mount a tmpfs of a given size (root only; skips elsewhere); ``grow`` it later to free space. Always unmounted."""
    mounted: list[Path] = []

    def mount(name: str, size: int) -> Path:
        path = tmp_path / name
        path.mkdir(exist_ok=True)
        options = f"remount,size={size}" if path in mounted else f"size={size}"
        if shutil.which("mount") is None:
            pytest.skip("no mount command here")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                capture_output=True, text=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        if path not in mounted:
            mounted.append(path)
        return path

    try:
        yield mount
    finally:
        for path in mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def resume_and_check(tmp_path: Path, site: Site, out: Path, job: Path) -> None:
    """Run the same command again: it finishes, and every page's item is in the output exactly once."""
    proc = crawl(tmp_path, site.seeds(), "-o", str(out), "--jobdir", str(job))
    assert proc.returncode == 0, proc.stderr[-3000:]
    urls = [item["url"] for item in whole_lines(out)]
    assert len(urls) == len(set(urls)), "an item was written twice"
    assert set(urls) == site.expected_urls()
    fetches = site.stats()["fetches"]
    # Fetched again: only what the stopped run had not committed (at most a batch in flight).
    assert max(fetches.values()) <= 2 and sum(n - 1 for n in fetches.values()) <= 64, fetches


def test_output_on_a_full_disk_then_resume_writes_each_item_once(
    tmp_path: Path, small_disk: Callable[[str, int], Path]
) -> None:
    disk = small_disk("disk", 48 * 1024)
    out, job = disk / "out.jsonl", tmp_path / "job"
    with Site(SPEC) as site:
        proc = crawl(tmp_path, site.seeds(), "-o", str(out), "--jobdir", str(job))
        assert_refused(proc, out, "No space left on device", resumable=True)
        first = whole_lines(out)
        assert 10 < len(first) < 202
        small_disk("disk", 8 * 1024 * 1024)  # free space
        resume_and_check(tmp_path, site, out, job)


def test_jobdir_on_a_full_disk_then_resume_writes_each_item_once(
    tmp_path: Path, small_disk: Callable[[str, int], Path]
) -> None:
    disk = small_disk("disk", 160 * 1024)
    out, job = tmp_path / "out.jsonl", disk / "job"
    with Site(SPEC) as site:
        proc = crawl(tmp_path, site.seeds(), "-o", str(out), "--jobdir", str(job))
        assert_refused(proc, job / "crawl.sqlite", ("database or disk is full", "disk I/O error"), resumable=True)
        whole_lines(out)
        small_disk("disk", 16 * 1024 * 1024)
        resume_and_check(tmp_path, site, out, job)


OUTPUTS = [("--log-file", "crawl.log"), ("--stats", "stats.json"), ("--report", "report.html"), ("-o", "out.jsonl")]


@pytest.mark.parametrize(
    "option, path",
    [(option, f"missing/{name}") for option, name in OUTPUTS]
    + [(option, f"/proc/{name}") for option, name in [*OUTPUTS, ("--jobdir", "job"), ("--warc", "warc")]],
)
def test_output_paths_that_cannot_be_written_are_refused_before_the_crawl(
    tmp_path: Path, option: str, path: str
) -> None:
    # /proc takes no new files, for root too; "missing" is a directory that does not exist (a
    # missing jobdir or WARC directory is created).
    with Site(SiteSpec(hosts=1, pages=1, extras=False)) as site:
        proc = crawl(tmp_path, site.seeds(), option, path)
        assert site.stats()["total"] == 0  # refused before the first request
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("Error: ") and path in proc.stderr, proc.stderr


def test_a_full_log_file_is_one_line_and_the_crawl_goes_on_to_its_own_stop(tmp_path: Path) -> None:
    out, log = tmp_path / "out.jsonl", tmp_path / "crawl.log"
    log.write_text("an earlier crawl's log\n" * 2_600)  # 59,800 bytes: the log reaches the limit long before the output
    with Site(SPEC) as site:
        proc = crawl(tmp_path, site.seeds(), "-o", str(out), "--log-file", str(log), "--log-level", "DEBUG",
                     "--workers", "2", file_limit=60_000)
        fetches = site.stats()["fetches"]
    assert_refused(proc, out, "File too large", resumable=False)
    note = f"crawlkit: cannot write the log file {log}: File too large"
    notes = [line for line in proc.stderr.splitlines() if line.startswith(note)]
    assert 1 <= len(notes) <= 5, proc.stderr[-3000:]  # at most one a process: engine, seen store, parser, 2 fetchers
    assert log.stat().st_size <= 60_000 and len(whole_lines(out)) > 10
    assert max(fetches.values()) == 1


@pytest.mark.parametrize("suffix", [".json", ".csv", ".sqlite"])
def test_every_format_ends_on_a_complete_record_when_the_limit_is_hit(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    with Site(SPEC) as site:
        proc = crawl(tmp_path, site.seeds(), "-o", str(out), file_limit=60_000)
        fetches = site.stats()["fetches"]
    # SQLite reports a file past the limit as one of two errors, depending on which write it was.
    reason = ("database or disk is full", "disk I/O error") if suffix == ".sqlite" else "File too large"
    assert_refused(proc, out, reason, resumable=False)
    if suffix == ".json":
        urls = [item["url"] for item in json.loads(out.read_text())]  # still one whole array
    elif suffix == ".csv":
        text = out.read_text()
        assert text.endswith("\n")
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0][0] == "url" and all(len(row) == len(rows[0]) for row in rows)
        urls = [row[0] for row in rows[1:]]
    else:
        with sqlite3.connect(out) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            urls = [url for (url,) in db.execute("SELECT url FROM items")]
    assert len(urls) > 5 and len(urls) == len(set(urls))
    assert max(fetches.values()) == 1


def test_fetch_with_a_log_file_in_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([CRAWLKIT, "fetch", "http://127.0.0.1:9/", "-s", "log_file=missing/crawl.log"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"Error: log_file 'missing/crawl.log': directory '{tmp_path.resolve() / 'missing'}' does not exist; "
        "create it or choose another path"]
