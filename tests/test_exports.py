"""Exports: JSON array, CSV columns, SQLite table (with resume); WARC files are tested in test_warc.py."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

from support import leftover_processes, start_crawl, stop_crawl, wait_for

from crawlkit.extensions.output import open_output
from crawlkit.tools.site import Site, SiteSpec


def rows(path: Path) -> int:
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM items").fetchone()[0]
    except sqlite3.Error:  # the table is not created yet
        return 0
    finally:
        db.close()


def test_json_array_is_valid_after_ctrl_c_and_after_a_kill_and_resume(tmp_path: Path) -> None:
    spec = SiteSpec(hosts=2, pages=200, latency=0.02, extras=False)
    out, jobdir = tmp_path / "out.json", str(tmp_path / "job")
    with Site(spec) as site:
        site.hold(after=100)  # of 402 requests: the first run is stopped mid-way
        proc, marker = start_crawl(tmp_path, site.seeds(), out, "--jobdir", jobdir)
        wait_for(lambda: out.exists() and out.stat().st_size > 20_000, 60, "the first items")
        stderr = stop_crawl(proc, marker, signal.SIGINT, then=site.release)
        assert proc.returncode == 130, stderr
        first = json.loads(out.read_text())  # a whole array after Ctrl-C
        assert len(first) > 10 and not leftover_processes(marker)

        proc, marker = start_crawl(tmp_path, site.seeds(), out, "--jobdir", jobdir)
        wait_for(lambda: out.stat().st_size > 3 * 20_000, 60, "more items")
        stop_crawl(proc, marker, signal.SIGKILL)

        proc, marker = start_crawl(tmp_path, site.seeds(), out, "--jobdir", jobdir)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        fetches = site.stats()["fetches"]
    items = json.loads(out.read_text())
    urls = [item["url"] for item in items]
    assert items[: len(first)] == first  # the resumed crawl appended to the same array
    assert len(urls) == len(set(urls)) and set(urls) == site.expected_urls()
    refetched = sum(n - 1 for key, n in fetches.items() if not key.endswith("robots.txt"))
    assert refetched <= 16  # at most what was in flight at the kill


def test_sqlite_table_survives_a_kill_and_resumes_without_duplicates(tmp_path: Path) -> None:
    spec = SiteSpec(hosts=2, pages=150, latency=0.02, extras=False)
    out, jobdir = tmp_path / "out.sqlite", str(tmp_path / "job")
    with Site(spec) as site:
        proc, marker = start_crawl(tmp_path, site.seeds(), out, "--jobdir", jobdir)
        wait_for(lambda: rows(out) > 40, 60, "40 rows")
        stop_crawl(proc, marker, signal.SIGKILL)
        proc, marker = start_crawl(tmp_path, site.seeds(), out, "--jobdir", jobdir)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    assert not Path(f"{out}-wal").exists()  # closed as one self-contained file
    with sqlite3.connect(out) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(items)")]
        urls = [url for (url,) in db.execute("SELECT url FROM items")]
        links, status, depth = db.execute(
            "SELECT links, status, depth FROM items WHERE url LIKE '%/page/0.html'"
        ).fetchone()
    assert columns == ["url", "status", "title", "depth", "referer", "content_type", "size", "canonical", "links"]
    assert len(urls) == len(set(urls)) and set(urls) == site.expected_urls()
    # Nested values as JSON, numbers as numbers.
    assert isinstance(json.loads(links), list) and status == 200 and isinstance(depth, int)


VARYING = '''
from crawlkit import Spider

class Varying(Spider):
    name = "varying"
    start_urls = [{seed!r}]

    def parse(self, response):
        if response.url.endswith("/"):
            yield {{"url": response.url, "title": "index"}}
            for url in response.links():
                yield response.follow(url)
        else:
            yield {{"extra": {{"nested": [1, 2]}}, "url": response.url, "title": "page"}}
'''


def test_csv_and_sqlite_columns_follow_the_first_item_or_export_fields(crawlkit, tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=4, links=1, extras=False)) as site:
        (tmp_path / "varying.py").write_text(VARYING.format(seed=site.seeds()[0]))
        run = crawlkit("runspider", "varying.py", output="out.csv")
        assert run.returncode == 0, run.stderr
        lines = run.output.read_text().splitlines()
        assert lines[0] == "url,title" and len(lines) == 1 + 3  # the index, then the pages it links (0 and 1)
        assert "CSV output has no column for ['extra']" in run.stderr

        run = crawlkit("runspider", "varying.py", "-s", "export_fields=[extra, url]", output="fields.csv")
        lines = run.output.read_text().splitlines()
        assert lines[0] == "extra,url" and sum('"{""nested"": [1, 2]}"' in line for line in lines) == 2

        run = crawlkit("runspider", "varying.py", output="out.db")
        assert run.returncode == 0, run.stderr
    with sqlite3.connect(run.output) as db:
        assert [row[1] for row in db.execute("PRAGMA table_info(items)")] == ["url", "title", "extra"]
        assert sorted(db.execute("SELECT title, extra FROM items")) == [
            ("index", None), ("page", '{"nested": [1, 2]}'), ("page", '{"nested": [1, 2]}')]


def test_json_array_cut_back_to_a_committed_size_is_still_an_array(tmp_path: Path) -> None:
    path = str(tmp_path / "items.json")
    writer = open_output(path)
    writer.write([{"n": 1}, {"n": 2}])
    writer.flush()
    committed = writer.size
    writer.write([{"n": 3}])  # written, never committed: a resume must drop it
    writer.flush()
    writer.close()
    assert [i["n"] for i in json.loads(Path(path).read_text())] == [1, 2, 3]
    writer = open_output(path, resume_at=committed)
    assert [i["n"] for i in json.loads(Path(path).read_text())] == [1, 2]
    writer.write([{"n": 4}])
    writer.close()
    assert [i["n"] for i in json.loads(Path(path).read_text())] == [1, 2, 4]
    writer = open_output(path, resume_at=0)  # nothing committed yet
    writer.close()
    assert json.loads(Path(path).read_text()) == []


def test_sqlite_resume_deletes_rows_past_the_committed_count(tmp_path: Path) -> None:
    path = str(tmp_path / "items.sqlite")
    writer = open_output(path)
    writer.write([{"n": 1, "tags": ["a"]}, {"n": 2, "when": b"bytes"}])
    writer.flush()
    committed = writer.size
    writer.write([{"n": 3}])
    writer.close()
    writer = open_output(path, resume_at=committed)
    writer.write([{"n": 4, "N": 5}])  # SQLite names ignore case: N is written to column n
    writer.close()
    with sqlite3.connect(path) as db:
        kept = list(db.execute("SELECT n, tags, \"when\" FROM items ORDER BY _rowid_"))
        assert kept == [(1, '["a"]', None), (2, None, "bytes"), (5, None, None)]


# ---------------------------------------------------------------- WARC

NON_FINITE = '''
from crawlkit import Spider

class NonFinite(Spider):
    name = "nonfinite"
    start_urls = [{seed!r}]
    custom_settings = {{"pipelines": ["nonfinite.py:Ratio"]}}

    def parse(self, response):
        yield {{
            "url": response.url, "score": float("nan"), "more": [float("inf"), 1.5], "deep": {{"low": float("-inf")}}
        }}
        yield {{"url": response.url + "#fine", "score": 2.5}}


class Ratio:
    def process_item(self, item, spider):
        if "more" in item:
            item["ratio"] = float("nan")  # a pipeline's NaN is made null too
        return item
'''


def strict_json(text: str) -> object:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_are_written_as_null_in_every_format(crawlkit, tmp_path: Path) -> None:
    nulled = {"score": None, "more": [None, 1.5], "deep": {"low": None}, "ratio": None}
    with Site(SiteSpec(hosts=1, pages=1, links=0, extras=False)) as site:
        seed = site.seeds()[0]
        (tmp_path / "nonfinite.py").write_text(NON_FINITE.format(seed=seed))
        runs = {
            suffix: crawlkit("runspider", "nonfinite.py", output=f"out{suffix}")
            for suffix in (".jsonl", ".json", ".csv", ".sqlite")
        }
        fetches = site.stats()["fetches"]
    assert all(n == len(runs) for n in fetches.values()), fetches  # each page once per crawl
    for run in runs.values():
        assert run.returncode == 0, run.stderr[-2000:]
        assert "items with NaN or Infinity, written as null: 1" in run.stderr
        assert f"an item from {seed} holds NaN or Infinity, which JSON cannot hold: written as null" in run.stderr
    lines = runs[".jsonl"].output.read_text().splitlines()
    assert [strict_json(line) for line in lines] == [{"url": seed, **nulled}, {"url": seed + "#fine", "score": 2.5}]
    assert strict_json(runs[".json"].output.read_text()) == [
        {"url": seed, **nulled}, {"url": seed + "#fine", "score": 2.5}
    ]
    assert runs[".csv"].output.read_text().splitlines() == [
        "url,score,more,deep,ratio", f"{seed},,\"[null, 1.5]\",\"{{\"\"low\"\": null}}\",", f"{seed}#fine,2.5,,,"]
    with sqlite3.connect(runs[".sqlite"].output) as db:
        assert list(db.execute("SELECT url, score, more, deep, ratio FROM items")) == [
            (seed, None, "[null, 1.5]", '{"low": null}', None), (seed + "#fine", 2.5, None, None, None)]
