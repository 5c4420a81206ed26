"""Seeing the crawl: the live view on a terminal, progress lines elsewhere, --quiet, --log-json, --stats.

The live view is tested through a real pseudo-terminal (the ``pty`` module): crawlkit's stderr
is a TTY there, as on a user's screen.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from support import CRAWLKIT, leftover_processes, wait_for

from crawlkit.core.progress import write_atomic
from crawlkit.stats import SERIES_POINTS, Stats
from crawlkit.tools.site import Site, SiteSpec


class PtyRun:
    """``crawlkit`` with stdin, stdout and stderr on a pseudo-terminal of 120x40; reads all it writes."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.marker = uuid.uuid4().hex
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "CRAWLKIT_TEST_RUN": self.marker}
        for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
            env.pop(name, None)
        self.proc = subprocess.Popen([CRAWLKIT, *args], stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env)
        os.close(slave)
        self.master = master
        self.data = b""

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def read(self, until: str | Callable[[], bool] | None = None, timeout: float = 120) -> None:
        """Read the terminal until ``until`` appears (or returns true), or (None) until every process
        holding the terminal has closed it.

        The second is what ``subprocess.run`` does with pipes: crawlkit's children inherit the
        terminal, so its end means none of them is left writing to it.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until is not None and (until() if callable(until) else until in self.text):
                return
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every process has closed the terminal
                chunk = b""
            if chunk:
                self.data += chunk
            elif until is None:
                return
            else:
                break
        raise AssertionError(f"timed out reading the terminal (waiting for {until!r}); got {self.text[-2000:]!r}")

    def finish(self, timeout: float = 120) -> int:
        self.read(None, timeout)
        code = self.proc.wait(timeout=30)
        os.close(self.master)
        leftovers = leftover_processes(self.marker)
        for p in leftovers:
            p.kill()
        assert not leftovers, f"crawlkit left processes behind: {[(p, p.cmdline()) for p in leftovers]}"
        return code


def test_live_view_on_a_terminal_with_log_lines_above_it_and_progress_only_in_the_log_file(tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=3, pages=100, latency=0.02)) as site:
        (tmp_path / "seeds.txt").write_text("\n".join(site.seeds()) + "\n")
        argv = ["crawl", "seeds.txt", "-o", "out.jsonl", "--log-file", "crawl.log", "-s", "progress_interval=0.2"]
        run = PtyRun(argv, tmp_path)
        run.read(until="busiest hosts")  # the view is up while the crawl runs
        code = run.finish()
        fetched = site.stats()["fetches"]
    assert code == 0, run.text[-3000:]
    screen = run.text
    assert "pages/s" in screen and "in flight" in screen and "queued" in screen
    assert any(url.split("//")[1] in screen for url in site.urls)  # a busiest host by name
    assert "\x1b[1A" in screen and "\x1b[2K" in screen  # redrawn in place, line by line
    # A parser process's warnings reached the terminal whole, printed by the engine above the
    # view: each right after the escape codes that clear the view, not torn into it.
    loops = [line for line in screen.splitlines() if "WARNING crawlkit.parser[" in line]
    assert len(loops) == 3 and all("redirect loop:" in line for line in loops)
    # (One may come before the view's first frame, right after the code that hides the cursor.)
    cleared = r"(?:\x1b\[2K|\x1b\[\?25l)"
    warnings = re.findall(cleared + r"\d\d:\d\d:\d\d\.\d{3} WARNING crawlkit\.parser\[\d+\]: redirect loop:", screen)
    assert len(warnings) == 3
    assert "crawlkit.progress" not in screen  # the view replaces progress lines on the terminal...
    assert "crawlkit.progress" in (tmp_path / "crawl.log").read_text()  # ...but the log file keeps them
    assert "crawl finished" in screen.rsplit("busiest hosts", 1)[1]  # the summary comes after the view
    items = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert {i["url"] for i in items if i["status"] == 200} == site.expected_urls()
    assert sum(n for key, n in fetched.items() if key.endswith("/page/0.html")) == 3


def test_ctrl_c_under_the_live_view_stops_cleanly(tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=2, pages=400, latency=0.05)) as site:
        (tmp_path / "seeds.txt").write_text("\n".join(site.seeds()) + "\n")
        stats_file = tmp_path / "stats.json"
        argv = ["crawl", "seeds.txt", "-o", "out.jsonl", "--stats", str(stats_file), "-s", "progress_interval=0.1"]
        run = PtyRun(argv, tmp_path)
        run.read(until=lambda: "busiest hosts" in run.text and stats_file.exists()
                 and json.loads(stats_file.read_text())["pages"] > 0)
        run.proc.send_signal(signal.SIGINT)  # what Ctrl-C does to the engine (its children ignore it)
        code = run.finish()
    assert code == 130, run.text[-3000:]
    assert "crawl interrupted" in run.text
    stats = json.loads(stats_file.read_text())
    assert stats["reason"] == "interrupted" and 0 < stats["pages"] < 2 * 401


def test_not_a_terminal_gets_plain_progress_lines(crawlkit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # as CI systems often set: colours, not a terminal
    with Site(SiteSpec(hosts=2, pages=60, latency=0.02, extras=False)) as site:
        run = crawlkit("crawl", "-s", "progress_interval=0.1", seeds=site.seeds())
    assert run.returncode == 0, run.stderr
    progress = [line for line in run.stderr.splitlines() if "INFO    crawlkit.progress[" in line]
    assert progress, run.stderr  # 122 pages at 20 ms, 2 at a time per host, take over half a second
    assert all(" pages (" in line and " queued, " in line and " in flight, " in line for line in progress)
    assert "\x1b[" not in run.stderr  # no terminal control codes in a file or pipe


def test_quiet_shows_only_warnings_errors_and_the_summary(crawlkit) -> None:
    with Site(SiteSpec(hosts=2, pages=30, latency=0.01)) as site:
        run = crawlkit("crawl", "--quiet", "-s", "progress_interval=0.05", seeds=site.seeds())
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    summary_at = next(i for i, line in enumerate(lines) if line.startswith("crawl finished"))
    logged = lines[:summary_at]
    assert logged and all(" WARNING " in line or " ERROR " in line for line in logged), logged  # the redirect loops
    assert len(lines) - summary_at == 5  # the summary, whole


def test_log_json_is_one_object_per_line_from_every_process(crawlkit, tmp_path: Path) -> None:
    log_file = tmp_path / "crawl.log"
    with Site(SiteSpec(hosts=2, pages=40, latency=0.01)) as site:
        run = crawlkit("crawl", "--log-json", "--log-file", str(log_file), "-s", "progress_interval=0.05",
                       seeds=site.seeds())
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stderr.splitlines()]  # every line, the summary too
    assert all({"time", "level", "logger", "process", "message"} <= set(r) for r in records)
    assert records[-1]["logger"] == "crawlkit.stats" and records[-1]["message"].startswith("crawl finished")
    loops = [r for r in records if "redirect loop" in r["message"]]
    assert len(loops) == 2 and all(r["logger"] == "crawlkit.parser" and r["level"] == "WARNING" for r in loops)
    assert {r["url"] for r in loops} == {f"{base}/loop/b" for base in site.urls}  # the URL the message is about
    progress = [r for r in records if r["logger"] == "crawlkit.progress"]
    assert progress and "url" not in progress[0]
    assert loops[0]["process"] != progress[0]["process"]  # a parser and the engine, both as JSON
    assert time.strptime(records[0]["time"][:19], "%Y-%m-%dT%H:%M:%S")
    in_file = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [r["message"] for r in in_file if "redirect loop" in r["message"]] and len(in_file) >= len(records) - 1


def _expected_by_host(fetches: dict[str, int]) -> dict[str, Counter]:
    """Per host, the statuses the local site answered, from the paths it served."""
    out: dict[str, Counter] = {}
    for key, n in fetches.items():
        host, path = key.split("/", 1)
        path = "/" + path
        status = (
            "301" if path.startswith("/redirect/") else "302" if path.startswith("/loop/")
            else "404" if path.startswith("/missing/") else "200"
        )
        out.setdefault(host, Counter())[status] += n
    return out


def test_stats_file_is_rewritten_during_the_crawl_and_matches_the_server_at_the_end(tmp_path: Path) -> None:
    stats_file = tmp_path / "stats.json"
    marker = uuid.uuid4().hex
    with Site(SiteSpec(hosts=2, pages=150, latency=0.02)) as site:
        (tmp_path / "seeds.txt").write_text("\n".join(site.seeds()) + "\n")
        argv = [CRAWLKIT, "crawl", "seeds.txt", "-o", "out.jsonl", "--stats", str(stats_file),
                "-s", "progress_interval=0.1"]
        proc = subprocess.Popen(argv, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "CRAWLKIT_TEST_RUN": marker})
        seen: list[dict] = []

        def running_snapshot() -> bool:
            if stats_file.exists():
                seen.append(json.loads(stats_file.read_text()))  # always whole: written atomically
            return bool(seen) and seen[-1]["reason"] == "running"

        wait_for(running_snapshot, 60, "a stats file written mid-crawl")
        _, stderr = proc.communicate(timeout=120)
        fetches = site.stats()["fetches"]
    assert proc.returncode == 0, stderr
    assert not leftover_processes(marker)
    mid = seen[-1]
    final = json.loads(stats_file.read_text())
    assert final["reason"] == "finished" and mid["pages"] < final["pages"]
    items = (tmp_path / "out.jsonl").read_text().splitlines()
    assert final["pages"] == len(items) == final["counts"]["pages"]
    assert final["queued"] == final["in_flight"] == 0
    expected = _expected_by_host(fetches)
    assert set(final["hosts"]) == set(expected)
    for host, figures in final["hosts"].items():
        assert figures["statuses"] == dict(sorted(expected[host].items()))
        assert figures["requests"] == sum(expected[host].values())
        # Less the redirects and robots.txt.
        assert figures["pages"] == figures["requests"] - expected[host]["301"] - expected[host]["302"] - 1
        assert figures["errors"] == 1  # its redirect loop
        assert 0.02 <= figures["mean_s"] <= figures["max_s"]  # the site's latency is a floor
        assert figures["bytes"] > 0
    assert sum(f["bytes"] for f in final["hosts"].values()) == final["bytes"]
    rows = final["series"]["rows"]
    assert final["series"]["columns"] == ["t", "pages", "errors", "queued", "in_flight"]
    assert rows[-1][1] == final["pages"] and [r[1] for r in rows] == sorted(r[1] for r in rows)
    assert all(later[0] > earlier[0] for earlier, later in zip(rows, rows[1:]))


def test_page_done_counts_per_host() -> None:
    stats = Stats()
    stats.page_done("a:80", {"status_200": 1, "pages": 1, "bytes": 100, "items": 2}, 200, 0.5)
    stats.page_done("a:80", {"error_read_timeout": 1, "retries": 1}, 0, 2.0)
    stats.page_done("b:80", {"status_404": 1, "pages": 1, "bytes": 7, "error_spider_exception": 1}, 404, 0.1)
    a, b = stats.full_dict()["hosts"]["a:80"], stats.full_dict()["hosts"]["b:80"]
    assert a == {
        "requests": 2, "pages": 1, "errors": 1, "bytes": 100, "mean_s": 1.25, "max_s": 2.0, "statuses": {"200": 1}
    }
    assert (b["errors"], b["statuses"], stats.counts["items"], stats.error_count()) == (1, {"404": 1}, 2, 2)


def test_time_series_stays_bounded_on_a_long_crawl() -> None:
    stats = Stats()
    start = stats.started
    for second in range(10 * SERIES_POINTS):
        stats.counts["pages"] = second
        stats.sample(start + second, queued=5, in_flight=1)
    rows = stats.series
    assert SERIES_POINTS // 2 <= len(rows) <= SERIES_POINTS
    assert rows[0][0] == 0 and rows[-1][0] >= 9 * SERIES_POINTS  # still covers the whole crawl
    assert stats.series_step == 16.0


def test_series_ends_with_the_final_figures_even_right_after_a_sample() -> None:
    """A sample taken within the same hundredth of a second as the end, before the last page."""
    stats = Stats()
    stats.counts["pages"] = 334
    stats.sample(stats.started + 4.001, queued=1, in_flight=1)
    stats.counts["pages"] = 335
    stats.finished = stats.started + 4.004
    rows = stats.full_dict()["series"]["rows"]
    assert rows == [[4.0, 335, 0, 1, 1]]
    stats.finished = stats.started + 5.5
    assert stats.full_dict()["series"]["rows"] == [[4.0, 334, 0, 1, 1], [5.5, 335, 0, 1, 1]]


def test_write_atomic_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "stats.json"
    write_atomic(target, "old")
    write_atomic(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["stats.json"]
    with pytest.raises(OSError):
        write_atomic(tmp_path / "missing" / "stats.json", "x")


@pytest.mark.parametrize("flag", ["--stats", "--report"])
def test_a_stats_or_report_path_in_a_missing_directory_is_a_usage_error(crawlkit, tmp_path: Path, flag: str) -> None:
    run = crawlkit("crawl", flag, str(tmp_path / "nowhere" / "x"), seeds=["http://127.0.0.2:9/"])
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "does not exist" in run.stderr and "nowhere" in run.stderr
