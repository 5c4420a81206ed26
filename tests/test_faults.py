"""Durability: hostile and broken servers, broken spiders and bad input, through the real CLI.

One crawl of a hostile site holds most traps at once (each on its own path or host), so the
slow ones overlap; the tests then ask, trap by trap, what the summary counted, what the log
says about its URL, and what the server saw. Small timeouts (``FAST``) keep the module fast.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hostile import (
    Exchange,
    HostileServer,
    Site,
    bomb,
    drip,
    page,
    raw,
    redirect,
    reset,
    response_head,
    silence,
    stream,
)
from support import CRAWLKIT, Run, leftover_processes

from crawlkit import safepickle
from crawlkit.http import Request
from crawlkit.urls import fingerprint

FAST = ["read_timeout=1", "download_timeout=2", "connect_timeout=1", "retries=1", "retry_backoff=0.05",
        "max_body=100000", "robots_rechecks=0"]  # test_robots_txt_asked_again_later covers the rechecks
PER_HOST = 2
MAX_DEPTH = 4


def crawl(tmp: Path, seeds: list[str], *args: str, env: dict[str, str] | None = None) -> Run:
    """Run ``crawlkit crawl`` on ``seeds`` with the fast settings; fails if a process outlives it."""
    (tmp / "seeds.txt").write_text("\n".join(seeds) + "\n", encoding="utf-8")
    return run_cli(tmp, "crawl", "seeds.txt", "-o", "out.jsonl", *[a for s in FAST for a in ("-s", s)], *args, env=env)


def run_cli(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    """Run ``crawlkit ARGS`` in ``tmp`` (conftest's ``crawlkit`` fixture is per test; the hostile crawl
    is per module)."""
    marker = uuid.uuid4().hex
    proc = subprocess.run(
        [CRAWLKIT, *args], capture_output=True, text=True, timeout=120, cwd=tmp,
        env={**os.environ, **(env or {}), "CRAWLKIT_TEST_RUN": marker},
    )
    leftovers = leftover_processes(marker)
    for p in leftovers:
        p.kill()
    assert not leftovers, f"crawlkit left processes behind: {leftovers}"
    return Run(proc, tmp / "out.jsonl")


def summary(stderr: str) -> dict[str, int]:
    """The closing summary's counters, keyed like Stats: error_read_timeout, status_200, dropped_depth..."""
    text = stderr[stderr.rindex("\ncrawl "):]
    counts = {"pages": int(re.search(r": (\d+) pages", text).group(1))}
    for label, prefix in (("statuses", "status_"), ("errors", "error_"), ("filtered", "dropped_")):
        listed = re.search(rf"{label}: ([^;\n]*)", text).group(1)
        for name, n in re.findall(r"(\w+) (\d+)", listed):
            counts[prefix + name] = int(n)
    for key, pattern in (("redirects", r"redirects: (\d+)"), ("retries", r"retries: (\d+)"),
                         ("robots_disallowed", r"(\d+) disallowed"), ("robots_unavailable", r"(\d+) on unreachable")):
        counts[key] = int(re.search(pattern, text).group(1))
    return counts


def assert_logged(stderr: str, *parts: str) -> None:
    """Some log line holds every one of ``parts``."""
    assert any(all(p in line for p in parts) for line in stderr.splitlines()), f"no log line with {parts}"


# ------------------------------------------------------------------ the hostile site


async def calendar(ex: Exchange) -> None:
    """/cal/YYYY/MM links to the next month, for ever."""
    year, month = map(int, ex.path.split("/")[2:4])
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    await ex.respond(200, f'<a href="/cal/{year}/{month:02d}">next month</a>'.encode())


async def recursive(ex: Exchange) -> None:
    """/a/ links to a/ relative to itself: /a/a/, /a/a/a/, ..."""
    await ex.respond(200, b'<a href="a/">deeper</a>')


TITLE = "Grüße"
STRAY_PERCENT = "/%41%2F%zz%"  # two valid escapes, then two "%" that start none
LONG_PATH = "/long/" + "x" * 2100
RNG = random.Random(1)
JUNK = bytes(RNG.randrange(256) for _ in range(3000))
BINARY = JUNK.translate(None, b"<>&'\"")  # NULs, control bytes, invalid UTF-8; no markup to swallow a link

#: The trap paths of the main site that fail, and how: (stats key, attempts the server sees).
FAILING = {
    "/reset": ("connection_reset", 2),
    "/silence": ("read_timeout", 2),
    "/drip": ("download_timeout", 2),
    "/partial": ("connection_error", 2),
    "/garbage": ("bad_response", 1),
    "/gzip-bomb": ("body_too_large", 1),
    "/deflate-bomb": ("body_too_large", 1),
    "/big-with-length": ("body_too_large", 1),
    "/big-without-length": ("body_too_large", 1),
}
#: Pages that must be fetched once and parsed, with the page each links to (also fetched once).
PARSED = {
    "/cs-missing": "/cs-missing-ok",
    "/cs-klingon": "/cs-klingon-ok",
    "/cs-conflict": "/cs-conflict-ok",
    "/cs-codec": "/cs-codec-ok",
    "/cs-bom": "/cs-bom-ok",
    "/binary": "/binary-ok",
    "/malformed": "/malformed-ok",
    "/cs-utf16-lie": "/cs-utf16-lie-ok",
    "/deep": "/deep-ok",
}
DEEP = 3000  # nested elements: libxml2 keeps 2048 open, even with huge_tree


def main_routes() -> dict[str, Any]:
    ok = page(b"<title>ok</title>")
    latin = TITLE.encode("latin-1")
    routes: dict[str, Any] = {
        "/robots.txt": page(b"User-agent: *\nDisallow: /private\n", content_type="text/plain"),
        "/private/secret": ok,
        "/reset": reset(),
        "/silence": silence(),
        "/drip": drip(0.2),
        "/partial": raw(response_head(200, {"Content-Type": "text/html", "Content-Length": "10000"}) + b"<p>" * 30),
        "/garbage": raw(b"SSH-2.0-OpenSSH_9.6\r\n" + JUNK),
        "/gzip-bomb": bomb("gzip"),
        "/deflate-bomb": bomb("deflate"),
        "/big-with-length": stream(200_000),
        "/big-without-length": stream(200_000, length=False),
        "/loop-a": redirect("/loop-b"),
        "/loop-b": redirect("/loop-a"),
        "/to-file": redirect("file:///etc/passwd"),
        "/to-ftp": redirect("ftp://files.example/x"),
        "/to-javascript": redirect("javascript:alert(1)"),
        "/to-broken": redirect("http://[::1/x"),
        "/to-unicode": redirect("/päge-moved"),
        "/p%C3%A4ge-moved": ok,
        "/%C3%BCn%C3%AF/p%C3%A4ge": ok,
        # UTF-8 bytes, no charset anywhere.
        "/cs-missing": page(f"<title>{TITLE}</title><a href=/cs-missing-ok>ok</a>".encode(), content_type="text/html"),
        # A charset nobody knows; Latin-1 bytes.
        "/cs-klingon": page(b"<title>" + latin + b"</title><a href=/cs-klingon-ok>",
                            content_type="text/html; charset=klingon"),
        # The header (Latin-1) wins over <meta> (UTF-8); 0x81 has no cp1252 character.
        "/cs-conflict": page(b'<meta charset="utf-8"><title>' + latin + b"</title>\x81<a href=/cs-conflict-ok>",
                             content_type="text/html; charset=iso-8859-1"),
        # A Python codec that is no text encoding.
        "/cs-codec": page(f"<title>{TITLE}</title><a href=/cs-codec-ok>".encode(),
                          content_type="text/html; charset=base64"),
        # A UTF-16 byte order mark wins over the header's UTF-8.
        "/cs-bom": page(f"<title>{TITLE}</title><a href=/cs-bom-ok>".encode("utf-16"),
                        content_type="text/html; charset=utf-8"),
        "/binary": page(BINARY + b"<a href=/binary-ok>" + BINARY, content_type="text/html"),
        "/malformed": page(
            b"<html><body>" + b"<div><font>" * 600 + b"<p>unclosed <b>bold\x00<a href='http://[::1'>broken</a>"
            b"<table><tr><td>\x00<a href=/malformed-ok>ok</a>\x00 <a href=\"/malformed-ok#again\">"
        ),
        "/comment-only": page(b"<!-- nothing here -->"),
        # A server's default charset, UTF-16, on an ASCII page: no NUL anywhere.
        "/cs-utf16-lie": page(b"<title>Gr&uuml;&szlig;e</title><a href=/cs-utf16-lie-ok>ok</a>",
                              content_type="text/html; charset=utf-16"),
        "/deep": page(b"<html><body>" + b"<div>" * DEEP + b"<a href=/deep-ok>deep</a>" + b"</div>" * DEEP),
    }
    routes.update(dict.fromkeys(PARSED.values(), ok))
    return routes


def robots_site(server: HostileServer, robots: Any) -> Site:
    """A host with a page of its own behind the robots.txt handler ``robots``."""
    return server.site({"/robots.txt": robots, "/": page(b"<a href=/private/x>p</a> <a href=/public>p</a>"),
                        "/public": page(b"public"), "/private/x": page(b"private")})


@dataclass
class Hostile:
    server: HostileServer
    main: Site
    robots: dict[str, Site]
    refused: str
    run: Run
    counts: dict[str, int]

    def url(self, path: str) -> str:
        return self.main.url(path)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    with HostileServer() as server:
        main = server.site(main_routes(), prefixes={"/cal/": calendar, "/a/": recursive})
        huge = b"User-agent: *\nDisallow: /private\n" + b"# filler to push the next rule past 512 KiB\n" * 14000
        robots = {
            "huge": robots_site(server, page(huge + b"Disallow: /public\n", content_type="text/plain")),
            "binary": robots_site(server, page(JUNK, content_type="text/plain")),
            "slow": robots_site(server, silence(head=True)),
            "redirect": robots_site(server, redirect("/rules.txt", 301)),
            "5xx": robots_site(server, page(b"down for maintenance", status=503)),
        }
        robots["redirect"].routes["/rules.txt"] = page(b"User-agent: *\nDisallow: /private\n",
                                                       content_type="text/plain")
        refused = server.refusing_url()
        links = [*FAILING, *PARSED, "/loop-a", "/to-file", "/to-ftp", "/to-javascript", "/to-broken", "/to-unicode",
                 "/ünï/päge", LONG_PATH, STRAY_PERCENT, "/cal/2024/01", "/a/", "/private/secret", "/comment-only",
                 *(site.url("/") for site in robots.values()), refused]
        index = "".join(f'<a href="{link}">{i}</a>\n' for i, link in enumerate(links))
        main.routes["/"] = page(f"<title>traps</title>{index}".encode())
        refused_host = refused.split("//")[1].split(":")[0]
        run = crawl(tmp_path_factory.mktemp("hostile"), [main.url("/")], "--per-host", str(PER_HOST),
                    "--max-depth", str(MAX_DEPTH), "--allow-domain", refused_host,
                    "--allow-domain", server.ip,  # robots sites: other ports
                    "--log-level", "DEBUG", "--stats", "stats.json")
        yield Hostile(server, main, robots, refused, run, summary(run.stderr) if "\ncrawl " in run.stderr else {})


def test_the_crawl_finishes_politely_and_fetches_every_ordinary_page_once(hostile: Hostile) -> None:
    run = hostile.run
    assert run.returncode == 0, run.stderr[-3000:]
    assert "crawl finished" in run.stderr and "Traceback" not in run.stderr
    assert "error_internal" not in hostile.counts and "error_spider_exception" not in hostile.counts
    seen = hostile.server.paths(hostile.main)
    for path in ["/", "/robots.txt", *PARSED, *PARSED.values(), "/comment-only", "/loop-a", "/loop-b"]:
        assert seen[path] == 1, (path, seen[path])
    for site in [hostile.main, *hostile.robots.values()]:
        assert 1 <= site.peak <= PER_HOST, (site.address, site.peak)


@pytest.mark.parametrize("path", FAILING)
def test_a_failing_page_is_retried_as_configured_then_counted_and_logged(hostile: Hostile, path: str) -> None:
    kind, attempts = FAILING[path]
    assert hostile.server.count(hostile.main, path) == attempts  # retries=1: transient faults twice, the rest once
    assert_logged(hostile.run.stderr, "WARNING", f"{kind}: {hostile.url(path)} (")
    if attempts > 1:
        assert_logged(hostile.run.stderr, f"retrying {hostile.url(path)} after {kind}")


def test_failures_are_counted_by_kind_in_the_summary(hostile: Hostile) -> None:
    c = hostile.counts
    expected = {}
    for kind, attempts in FAILING.values():
        expected[f"error_{kind}"] = expected.get(f"error_{kind}", 0) + attempts
    expected["error_read_timeout"] += 2  # the slow robots.txt
    expected["error_connection_refused"] = 2  # robots.txt of the refusing host
    expected["error_redirect_loop"] = 1
    assert {k: v for k, v in c.items() if k.startswith("error_")} == expected
    assert c["retries"] == sum(a - 1 for _, a in FAILING.values()) + 3  # + slow robots, 5xx robots, refused robots


def test_connection_refused_host_is_given_up_after_its_robots_txt(hostile: Hostile) -> None:
    robots = hostile.refused.rstrip("/") + "/robots.txt"
    assert_logged(hostile.run.stderr, "WARNING", f"connection_refused: {robots}")
    host = hostile.refused.split("//")[1].rstrip("/")
    assert_logged(hostile.run.stderr, "WARNING", f"connection refused: {host} (robots.txt); not crawling this host")


def test_redirect_loops_and_other_schemes_are_dropped(hostile: Hostile) -> None:
    stderr, url = hostile.run.stderr, hostile.url
    assert_logged(stderr, "redirect loop", f"{url('/loop-b')} -> {url('/loop-a')}")
    for path, target in [("/to-file", "file:///etc/passwd"), ("/to-ftp", "ftp://files.example/x"),
                         ("/to-javascript", "javascript:alert(1)")]:
        assert_logged(stderr, "redirect to a non-http(s) URL dropped", f"{url(path)} -> {target}")
    assert_logged(stderr, "redirect to an invalid URL dropped", url("/to-broken"))
    assert hostile.counts["dropped_redirect_scheme"] == 3
    assert hostile.counts["dropped_invalid_url"] == 1
    assert hostile.counts["redirects"] == 7
    seen = hostile.server.paths(hostile.main)
    assert all(seen[p] == 1 for p in ["/loop-a", "/loop-b", "/to-file", "/to-ftp", "/to-javascript", "/to-broken"])


def test_non_ascii_urls_are_fetched_percent_encoded_and_long_ones_dropped(hostile: Hostile) -> None:
    seen = hostile.server.paths(hostile.main)
    assert seen["/%C3%BCn%C3%AF/p%C3%A4ge"] == 1
    assert seen["/p%C3%A4ge-moved"] == 1  # a UTF-8 Location header, read as UTF-8
    assert not [p for p in seen if p.startswith("/long/")]
    assert hostile.counts["dropped_url_too_long"] == 1
    assert_logged(hostile.run.stderr, "dropped (url_too_long)", hostile.url("/long/xxx"))


def test_a_stray_percent_is_escaped_and_the_valid_escapes_are_sent_as_written(hostile: Hostile) -> None:
    seen = hostile.server.paths(hostile.main)
    assert seen["/%41%2F%25zz%25"] == 1  # once: a 404, not retried
    assert not [path for path in seen if "%25" in path and "zz" not in path] and "/%2541%252F%25zz%25" not in seen


def test_bad_charsets_binary_and_malformed_html_are_still_parsed_and_followed(hostile: Hostile) -> None:
    items = {item["url"]: item for item in hostile.run.items()}
    for path, target in PARSED.items():
        assert items[hostile.url(path)]["status"] == 200
        assert hostile.url(target) in items[hostile.url(path)]["links"], path
        assert hostile.server.count(hostile.main, target) == 1, target
    for path in ["/cs-missing", "/cs-klingon", "/cs-conflict", "/cs-codec", "/cs-bom", "/cs-utf16-lie"]:
        assert items[hostile.url(path)]["title"] == TITLE, path
    assert items[hostile.url("/comment-only")]["links"] == []


def test_html_nested_deeper_than_libxml2_goes_is_logged_and_its_links_still_followed(hostile: Hostile) -> None:
    assert hostile.server.count(hostile.main, "/deep-ok") == 1  # the link after the 2048th nested element
    assert_logged(hostile.run.stderr, "WARNING", hostile.url("/deep"), "HTML nested deeper than 2048 elements")
    assert json.loads((hostile.run.output.parent / "stats.json").read_text())["counts"]["html_too_deep"] == 1
    assert not any("HTML nested deeper" in line for line in hostile.run.stderr.splitlines() if "/malformed" in line)


def test_spider_traps_stop_at_max_depth_and_at_repeated_path_segments(hostile: Hostile) -> None:
    seen = hostile.server.paths(hostile.main)
    assert sorted(p for p in seen if p.startswith("/cal/")) == [f"/cal/2024/{m:02d}" for m in range(1, MAX_DEPTH + 1)]
    assert sorted(p for p in seen if p.startswith("/a/")) == ["/a/", "/a/a/", "/a/a/a/"]
    assert hostile.counts["dropped_depth"] == 1
    assert hostile.counts["dropped_repeated_segments"] == 1
    assert_logged(hostile.run.stderr, "dropped (depth)", hostile.url(f"/cal/2024/{MAX_DEPTH + 1:02d}"))
    assert_logged(hostile.run.stderr, "dropped (repeated_segments)", hostile.url("/a/a/a/a/"))


def test_robots_txt_huge_binary_slow_redirected_and_5xx(hostile: Hostile) -> None:
    seen = {name: hostile.server.paths(site) for name, site in hostile.robots.items()}
    # Huge: read up to 512 KiB; the rule at the top holds, the one past the cut does not.
    assert seen["huge"] == {"/robots.txt": 1, "/": 1, "/public": 1}
    # Binary: no rules in it, so everything is allowed.
    assert seen["binary"] == {"/robots.txt": 1, "/": 1, "/public": 1, "/private/x": 1}
    # Redirected: followed, and the rules at the target obeyed.
    assert seen["redirect"] == {"/robots.txt": 1, "/rules.txt": 1, "/": 1, "/public": 1}
    # Slower than read_timeout, or 5xx: asked retries+1 times, then (no rechecks) the host is not crawled.
    assert seen["slow"] == {"/robots.txt": 2}
    assert seen["5xx"] == {"/robots.txt": 2}
    for name, why in [("slow", "no answer"), ("5xx", "503")]:
        assert_logged(hostile.run.stderr, "WARNING",
                      f"robots.txt of {hostile.robots[name].address} unavailable ({why})")
    assert hostile.server.count(hostile.main, "/private/secret") == 0
    assert_logged(hostile.run.stderr, "robots.txt disallows", hostile.url("/private/secret"))
    assert hostile.counts["robots_disallowed"] == 3  # main, huge and redirect hosts' /private pages
    assert hostile.counts["robots_unavailable"] == 3  # the slow, 5xx and refusing hosts' start pages


def test_5xx_and_429_are_retried_with_backoff_and_retry_after_pauses_the_host(tmp_path: Path) -> None:
    calls = {"/busy": 0}

    async def busy(ex: Exchange) -> None:  # 429 with Retry-After once, then the page
        calls["/busy"] += 1
        if calls["/busy"] == 1:
            await ex.respond(429, b"slow down", headers={"Retry-After": "1"})
        else:
            await ex.respond(200, b"<title>busy</title><a href=/after>a</a>")

    ok = page(b"<title>ok</title>")
    with HostileServer() as server:
        site = server.site({"/": page(b"<a href=/busy>b</a> <a href=/down>d</a>"), "/busy": busy,
                            "/down": page(b"down", status=503), "/after": ok, "/robots.txt": page(b"", status=404)})
        run = crawl(tmp_path, [site.url("/")], "--per-host", str(PER_HOST),
                    "-s", "retries=2", "-s", "retry_backoff=0.1")
        hits = [h for h in server.seen() if h.site == site.address]
    assert run.returncode == 0, run.stderr[-3000:]
    assert Counter(h.path for h in hits) == {"/robots.txt": 1, "/": 1, "/busy": 2, "/down": 3, "/after": 1}
    first_busy = next(h.time for h in hits if h.path == "/busy")
    # Retry-After: 1 paused the whole host: for a second after the 429, nothing reached it but
    # what was already on its way (per_host is 2, so at most one other request).
    during = [(h.path, round(h.time - first_busy, 3)) for h in hits if first_busy < h.time < first_busy + 1.0]
    assert len(during) <= PER_HOST - 1, during
    assert {item["url"] for item in run.items()} == {site.url(p) for p in ["/", "/busy", "/down", "/after"]}
    counts = summary(run.stderr)
    assert counts["status_429"] == 1 and counts["status_503"] == 3 and counts["retries"] == 3
    assert_logged(run.stderr, "retrying", site.url("/busy"), "HTTP 429")


def test_a_refused_host_is_given_up_after_the_retries_of_its_robots_txt_not_rechecked(tmp_path: Path) -> None:
    """With the default rechecks (30 s, then 60 s), a host that refuses connections once took 95 s to give up."""
    with HostileServer() as server:
        site = server.site({"/": page(b"<a href=/a>a</a>"), "/a": page(b"a")})
        refused = server.refusing_url()
        started = time.monotonic()
        run = crawl(tmp_path, [site.url("/"), refused, refused + "other"], "-s", "robots_rechecks=2",
                    "-s", "robots_recheck_after=30", "-s", "retries=2", "--stats", "stats.json")
        took = time.monotonic() - started
        seen = server.paths(site)
    assert run.returncode == 0, run.stderr[-3000:]
    assert took < 20, took  # the first recheck alone would be 30 s in
    assert seen == {"/robots.txt": 1, "/": 1, "/a": 1}  # the other host is crawled as usual
    stats = json.loads((tmp_path / "stats.json").read_text())["counts"]
    assert stats["error_connection_refused"] == 3  # robots.txt: 1 + retries, then given up
    assert "robots_rechecks" not in stats and stats["robots_unavailable"] == 2  # the host's two pages, never fetched
    host = refused.split("//")[1].rstrip("/")
    assert_logged(run.stderr, "WARNING", f"connection refused: {host} (robots.txt); not crawling this host")


def test_robots_txt_asked_again_later_while_the_hosts_requests_wait(tmp_path: Path) -> None:
    """RFC 9309: an unavailable robots.txt disallows all "for a while", not for the whole crawl."""
    answers = {"flaky": 0}

    async def flaky(ex: Exchange) -> None:  # down twice, then rules
        answers["flaky"] += 1
        if answers["flaky"] <= 2:
            await ex.respond(503, b"maintenance")
        else:
            await ex.respond(200, b"User-agent: *\nDisallow: /private\n", content_type="text/plain")

    with HostileServer() as server:
        back = robots_site(server, flaky)
        down = robots_site(server, page(b"still down", status=500))
        run = crawl(tmp_path, [back.url("/"), down.url("/")],
                    "-s", "retries=0", "-s", "robots_rechecks=2", "-s", "robots_recheck_after=0.1")
        seen_back, seen_down = server.paths(back), server.paths(down)
    assert run.returncode == 0, run.stderr[-3000:]
    assert seen_back == {"/robots.txt": 3, "/": 1, "/public": 1}  # crawled once its rules came, and obeyed
    assert seen_down == {"/robots.txt": 3}  # asked 1 + robots_rechecks (2) times, then given up
    for host in (back.address, down.address):
        assert_logged(run.stderr, "WARNING", f"robots.txt of {host} unavailable", "asking again in 0s (recheck 1 of 2)")
    counts = summary(run.stderr)
    assert counts["robots_unavailable"] == 1 and counts["robots_disallowed"] == 1


# ------------------------------------------------------------------ a job directory others wrote


class _RunsCode:
    """Pickles as a call of os.system (posix.system): what a crafted journal row would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def _journal_row(db: Path, request_blob: bytes, fp: int | None = None) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO requests (fp, state, request) VALUES (?, 0, ?)", (fp, request_blob))


def test_resuming_a_jobdir_with_crafted_rows_runs_no_code_and_skips_only_those_rows(tmp_path: Path) -> None:
    with HostileServer() as server:
        site = server.site({"/": page(b"<a href=/a>a</a>"), "/a": page(b"a"), "/new": page(b"new")})
        first = crawl(tmp_path, [site.url("/")], "--jobdir", "job")
        assert first.returncode == 0, first.stderr[-3000:]
        marker = tmp_path / "ran"
        db = tmp_path / "job" / "crawl.sqlite"
        _journal_row(db, pickle.dumps(_RunsCode(marker)))
        _journal_row(db, b"\x80\x02cbuiltins\nbytearray\nJ\x00\x00\x00\x40\x85R.")  # bytearray(2**30)
        _journal_row(db, b"not a pickle at all")
        fp = fingerprint(site.url("/new"))
        signed = fp - (1 << 64) if fp >> 63 else fp  # as stored
        _journal_row(db, safepickle.dumps(Request(site.url("/new"))), signed)
        run = crawl(tmp_path, [site.url("/")], "--jobdir", "job")
        seen = server.paths(site)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not marker.exists() and "Traceback" not in run.stderr
    assert seen == {"/robots.txt": 1, "/": 1, "/a": 1, "/new": 1}  # the good row is crawled; nothing twice
    assert summary(run.stderr)["error_unreadable_jobdir_data"] == 3
    assert_logged(run.stderr, "ERROR", "skipped request row", "which crawlkit did not write", "posix.system")
    assert [item["url"] for item in run.items()] == [site.url(p) for p in ("/", "/a", "/new")]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_jobdir_database_is_a_one_line_error(tmp_path: Path, damage: str) -> None:
    with HostileServer() as server:
        site = server.site({"/": page(b"".join(b"<a href=/p%d>p</a>" % i for i in range(300)))},
                           prefixes={"/p": page(b"p")})
        db = tmp_path / "job" / "crawl.sqlite"
        if damage == "garbage":
            db.parent.mkdir()
            db.write_bytes(b"this is not SQLite\n" * 500)
        else:
            assert crawl(tmp_path, [site.url("/")], "--jobdir", "job").returncode == 0
            with db.open("r+b") as f:
                f.truncate(db.stat().st_size // 2)
        fetched = len(server.seen())
        run = crawl(tmp_path, [site.url("/")], "--jobdir", "job")
        assert len(server.seen()) == fetched  # stopped before any request
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "job" in errors[0]
    assert "crawl.sqlite is damaged or not a crawlkit job database" in errors[0]
    assert "new --jobdir" in errors[0]


# ------------------------------------------------------------------ broken spiders

SPIDERS = '''
from crawlkit import Request, Spider


class Faulty(Spider):
    name = "faulty"

    def start_requests(self):
        yield from super().start_requests()
        raise RuntimeError("start_requests gave up half way")

    def parse(self, response):
        yield {"url": response.url}
        for url in response.links():
            yield Request(url, callback=getattr(self, "parse_" + url.rsplit("/", 1)[1], self.parse))

    def parse_boom(self, response):
        yield {"url": response.url}
        raise ValueError("no good")

    def parse_junk(self, response):
        yield 42
        yield {1, 2}
        yield {("not", "a", "key"): 1}
        yield {"url": response.url}
        yield Request(response.urljoin("/after-junk"))


class BrokenInit(Spider):
    name = "broken_init"

    def __init__(self, **kwargs):
        raise RuntimeError("cannot start")
'''


def test_spider_that_raises_or_yields_junk_is_logged_counted_and_the_crawl_goes_on(tmp_path: Path) -> None:
    (tmp_path / "faulty.py").write_text(SPIDERS)
    ok = page(b"<title>ok</title>")
    with HostileServer() as server:
        site = server.site({"/": page(b"<a href=/boom>b</a><a href=/junk>j</a><a href=/fine>f</a>"),
                            "/boom": ok, "/junk": ok, "/fine": ok, "/after-junk": ok,
                            "/robots.txt": page(b"", status=404)})
        run = crawl(tmp_path, [site.url("/")], "--spider", "faulty.py:Faulty")
        seen = server.paths(site)
    assert run.returncode == 0, run.stderr[-3000:]
    assert seen == {"/robots.txt": 1, "/": 1, "/boom": 1, "/junk": 1, "/fine": 1, "/after-junk": 1}
    expected = {site.url(p) for p in ["/", "/boom", "/junk", "/fine", "/after-junk"]}
    assert {item["url"] for item in run.items()} == expected
    c = summary(run.stderr)
    assert c["error_spider_exception"] == 2 and c["error_spider_output"] == 3
    assert_logged(run.stderr, "spider faulty start_requests raised RuntimeError: start_requests gave up half way")
    assert_logged(run.stderr, "spider faulty callback parse_boom raised ValueError on", site.url("/boom"))
    assert_logged(run.stderr, "spider faulty callback parse_junk yielded a int on", site.url("/junk"))
    assert_logged(run.stderr, "spider faulty callback parse_junk yielded a set on", site.url("/junk"))
    assert_logged(run.stderr, "spider faulty callback parse_junk yielded an item that cannot be written as JSON",
                  site.url("/junk"))
    assert "Traceback" not in run.stderr


def test_spider_whose_init_raises_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "faulty.py").write_text(SPIDERS)
    with HostileServer() as server:
        site = server.site({})
        run = crawl(tmp_path, [site.url("/")], "--spider", "faulty.py:BrokenInit")
        assert server.seen() == []
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["Error: spider BrokenInit could not be created: RuntimeError: cannot start"]


# ------------------------------------------------------------------ bad input at the edges

SEEDS = """\
# junk a user might paste
not a url
ftp://files.test/x
javascript:alert(1)
http://exa mple.test/
http://plain.test:99999/
http://bücher.test/
HTTP://BÜCHER.test:80/#top
http://xn--bcher-kva.test/
http://plain.test/a?b=2&a=1
http://plain.test/a?a=1&b=2
"""


def test_seeds_with_junk_duplicates_and_idn_hosts(tmp_path: Path) -> None:
    with HostileServer() as server:
        # The site is every host's proxy, so names no resolver knows can be crawled.
        proxy = server.site({"/": page(b"<title>home</title>"), "/a": page(b"<title>a</title>"),
                             "/robots.txt": page(b"", status=404)})
        env = {"http_proxy": proxy.url(""), "HTTP_PROXY": proxy.url(""), "no_proxy": "", "NO_PROXY": ""}
        (tmp_path / "seeds.txt").write_text(SEEDS, encoding="utf-8")
        run = run_cli(tmp_path, "crawl", "seeds.txt", "-o", "out.jsonl", *[a for s in FAST for a in ("-s", s)], env=env)
        hits = sorted((h.host, h.path) for h in server.seen())
    assert run.returncode == 0, run.stderr[-3000:]
    for line, url in [(2, "not a url"), (3, "ftp://files.test/x"), (4, "javascript:alert(1)")]:
        assert_logged(run.stderr, f"seeds.txt, line {line}: {url!r} skipped: not an http(s) URL")
    assert_logged(run.stderr, "seeds.txt, line 5: 'http://exa mple.test/' skipped: invalid host")
    assert_logged(run.stderr, "seeds.txt, line 6: 'http://plain.test:99999/' skipped: Port out of range")
    assert_logged(run.stderr, "seeds.txt: 3 line(s) repeat an earlier seed (first on line 8)")
    # The IDN host went out in its IDNA (punycode) form, once for all three spellings.
    assert hits == [("plain.test", "/a?b=2&a=1"), ("plain.test", "/robots.txt"),
                    ("xn--bcher-kva.test", "/"), ("xn--bcher-kva.test", "/robots.txt")]
    assert sorted(item["url"] for item in run.items()) == ["http://plain.test/a?b=2&a=1", "http://xn--bcher-kva.test/"]


BAD_SPIDER_FILES = {
    "raises.py": (
        "import crawlkit\n\n\ndef setup():\n    raise RuntimeError('no config\\nfor this host')\n\n\nsetup()\n"
    ),
    "syntax.py": "from crawlkit import Spider\n\nclass S(Spider):\n    def parse(self, response)\n        pass\n",
    "plain.py": "class NotASpider:\n    pass\n",
}


@pytest.mark.parametrize("args, message", [
    (["--config", "syntax.yaml"], "Error: syntax.yaml, line 3: not valid YAML: mapping values are not allowed here"),
    (["--config", "unknown.yaml"], "Error: unknown.yaml, line 2: unknown setting 'per_hots'; did you mean 'per_host'?"),
    (["--config", "badvalue.yaml"],
     "Error: badvalue.yaml, line 1: 'per_host' must be an integer from 1 to 1,024, got 'two'"),
    (["--spider", "missing.py:Spider"], "Error: spider file 'missing.py' does not exist"),
    (["--spider", "raises.py:Spider"],
     "Error: raises.py, line 5: importing it raised RuntimeError: no config for this host"),
    (["--spider", "syntax.py:S"], "Error: syntax.py, line 4: importing it raised SyntaxError: expected ':'"),
    (["--spider", "no_such_module_xyz:Spider"], "Error: cannot import module 'no_such_module_xyz' for spider"),
    (["--spider", "plain.py:NotASpider"], "Error: plain.py:NotASpider is not a subclass of crawlkit.Spider"),
], ids=["yaml-syntax", "yaml-unknown-key", "yaml-bad-value", "spider-missing", "spider-import-raises",
        "spider-syntax-error", "spider-no-module", "spider-not-a-spider"])
def test_bad_config_or_spider_is_a_one_line_error_with_exit_code_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "seeds.txt").write_text("http://127.0.0.1:9/\n")
    (tmp_path / "syntax.yaml").write_text("workers: 2\nper_host: 2\n  delay: 1\n")
    (tmp_path / "unknown.yaml").write_text("workers: 2\nper_hots: 2\n")
    (tmp_path / "badvalue.yaml").write_text("per_host: two\n")
    for name, text in BAD_SPIDER_FILES.items():
        (tmp_path / name).write_text(text)
    run = run_cli(tmp_path, "crawl", "seeds.txt", *args)
    assert run.returncode == 2
    assert len(run.stderr.splitlines()) == 1 and run.stderr.startswith(message), run.stderr


def test_runspider_on_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    run = run_cli(tmp_path, "runspider", "nowhere.py")
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["Error: spider file 'nowhere.py' does not exist; give the path of a .py file"]
