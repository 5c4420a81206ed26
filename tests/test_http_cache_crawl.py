"""--http-cache through the CLI against a local site that changes between runs: what the server saw and was written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from crawlkit.tools.site import Site, SiteRequest, SiteSpec, respond


def counts(tmp_path: Path) -> dict[str, int]:
    return json.loads((tmp_path / "stats.json").read_text())["counts"]


def pages(run: Any) -> set[tuple[str, int, str | None]]:
    return {(item["url"], item["status"], item["title"]) for item in run.items()}


def test_a_second_run_with_the_cache_asks_the_server_nothing(crawlkit, tmp_path: Path) -> None:
    # Extras: redirects, a redirect loop, 404s and robots.txt rules, all of which must come back from the cache.
    with Site(SiteSpec(hosts=1, pages=12, page_size=2_000)) as site:
        base = site.urls[0]
        first = crawlkit("crawl", "--http-cache", "cache", "--stats", "stats.json", "-O", "one.jsonl",
                         output=None, seeds=site.seeds())
        assert first.returncode == 0, first.stderr
        first.output = tmp_path / "one.jsonl"
        asked = site.stats()["total"]
        assert counts(tmp_path)["http_cache_misses"] == asked
        site.route("/page/1.html", respond(200, b"<html><title>changed</title></html>"))
        site.reset_stats()
        second = crawlkit("crawl", "--http-cache", "cache", "--stats", "stats.json", "-O", "two.jsonl",
                          output=None, seeds=site.seeds())
        assert second.returncode == 0, second.stderr
        second.output = tmp_path / "two.jsonl"
        assert site.stats()["total"] == 0
    stats = counts(tmp_path)
    assert stats["http_cache_hits"] == asked and "http_cache_misses" not in stats
    assert pages(second) == pages(first)
    assert (f"{base}/page/1.html", 200, "Host 0 page 1") in pages(second)  # as stored, not as changed
    assert {f"{base}/missing/0.html", f"{base}/page/7.html"} <= {url for url, _, _ in pages(second)}  # 404, redirect
    assert f"{base}/private/0.html" not in {url for url, _, _ in pages(second)}  # the cached robots.txt rules
    assert (stats["status_301"], stats["status_302"], stats["error_redirect_loop"]) == (2, 2, 1)  # each hop cached


def test_a_hit_waits_for_no_delay(crawlkit, tmp_path: Path) -> None:
    # The first run fills the cache at full speed; the second asks for a second between requests to the host.
    with Site(SiteSpec(hosts=1, pages=12, page_size=2_000)) as site:
        first = crawlkit("crawl", "--http-cache", "cache", "--delay", "0", seeds=site.seeds())
        assert first.returncode == 0, first.stderr
        asked = site.stats()["total"]
        site.reset_stats()
        second = crawlkit("crawl", "--http-cache", "cache", "--delay", "1", "--stats", "stats.json",
                          "-O", "two.jsonl", output=None, seeds=site.seeds())
        assert second.returncode == 0, second.stderr
        assert site.stats()["total"] == 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["counts"]["http_cache_hits"] == asked >= 20
    # Spaced by the delay, the answers would take asked - 1 seconds; as hits they take none of it.
    assert stats["elapsed_s"] < (asked - 1) / 4


def test_expired_and_ignored_answers_are_asked_for_again(crawlkit, tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=12, page_size=2_000)) as site:
        base = site.urls[0]
        settings = ["--http-cache", "cache", "-s", "http_cache_ignore_statuses=[404]", "-s", "http_cache_ttl=3600"]
        first = crawlkit("crawl", *settings, seeds=site.seeds())
        assert first.returncode == 0, first.stderr
        asked = site.stats()["fetches"]
        site.route("/page/1.html", respond(200, b"<html><title>changed</title></html>"))
        site.reset_stats()
        second = crawlkit("crawl", *settings, "-O", "two.jsonl", output=None, seeds=site.seeds())
        assert second.returncode == 0, second.stderr
        # Only the 404s, never stored.
        missing = {key for key in asked if "/missing/" in key}
        assert len(missing) == 3 and site.stats()["fetches"] == dict.fromkeys(missing, 1)
        # Two hours later (the files say), every answer is older than the ttl.
        for path in (tmp_path / "cache").rglob("*"):
            if path.is_file():
                head, _, body = path.read_bytes().partition(b"\n")
                entry = json.loads(head)
                entry["stored"] -= 7200
                path.write_bytes(json.dumps(entry).encode() + b"\n" + body)
        site.reset_stats()
        third = crawlkit("crawl", *settings, "-O", "three.jsonl", output=None, seeds=site.seeds())
        assert third.returncode == 0, third.stderr
        fetched = site.stats()["fetches"]
    third.output = tmp_path / "three.jsonl"
    assert fetched == asked  # every page again, robots.txt and the redirects' hops
    assert (f"{base}/page/1.html", 200, "changed") in pages(third)


class Validating:
    """Page 0 of the site: an ETag and ``no-cache``; answers 304 to an If-None-Match that names its ETag."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    async def __call__(self, request: SiteRequest, writer: asyncio.StreamWriter) -> None:
        self.seen.append(request.headers)
        headers = {"ETag": '"v1"', "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == '"v1"':
            await respond(304, b"", headers)(request, writer)
        else:
            body = b'<html><title>zero v1</title><a href="/page/2.html">two</a></html>'
            await respond(200, body, headers)(request, writer)


def test_rfc9111_revalidates_with_if_none_match_and_serves_the_304_from_the_cache(crawlkit, tmp_path: Path) -> None:
    validating = Validating()
    with Site(SiteSpec(hosts=1, pages=3, extras=False)) as site:
        base = site.urls[0]
        netloc = base.split("//")[1]
        site.route("/page/0.html", validating)
        site.route("/page/1.html", respond(200, b"<title>one v1</title>", {"Cache-Control": "max-age=3600"}))
        site.route("/page/2.html", respond(200, b"<title>two v1</title>", {"Cache-Control": "no-store"}))
        settings = ["--http-cache", "cache", "-s", "http_cache_rfc9111=true", "--stats", "stats.json"]
        first = crawlkit("crawl", *settings, seeds=site.seeds())
        assert first.returncode == 0, first.stderr
        assert len(validating.seen) == 1 and "if-none-match" not in validating.seen[0]
        for n in (1, 2):
            site.route(f"/page/{n}.html", respond(200, f"<title>{n} v2</title>".encode()))
        site.reset_stats()
        second = crawlkit("crawl", *settings, "-O", "two.jsonl", output=None, seeds=site.seeds())
        assert second.returncode == 0, second.stderr
        fetched = site.stats()["fetches"]
    second.output = tmp_path / "two.jsonl"
    # The index and robots.txt have no caching headers, page 1 is fresh, page 2 was never stored.
    assert fetched == {f"{netloc}/": 1, f"{netloc}/robots.txt": 1, f"{netloc}/page/0.html": 1,
                       f"{netloc}/page/2.html": 1}
    assert validating.seen[1]["if-none-match"] == '"v1"'
    titles = {url: title for url, _, title in pages(second)}
    assert titles[f"{base}/page/0.html"] == "zero v1"  # the 304, answered with the stored page
    assert titles[f"{base}/page/1.html"] == "one v1"  # fresh for an hour: the change is not seen
    assert titles[f"{base}/page/2.html"] == "2 v2"
    stats = counts(tmp_path)
    assert (stats["http_cache_revalidated"], stats["http_cache_hits"], stats["http_cache_misses"]) == (1, 1, 3)
    assert "status_304" not in stats


def test_a_cache_directory_that_cannot_be_made_is_one_line_before_any_request(crawlkit, tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    with Site(SiteSpec(hosts=1, pages=1, extras=False)) as site:
        run = crawlkit("crawl", "--http-cache", "blocker/cache", seeds=site.seeds())
        assert site.stats()["total"] == 0
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["Error: http_cache 'blocker/cache': cannot create the directory (Not a "
                                       "directory); give a directory crawlkit may write"]
