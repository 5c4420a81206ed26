"""Robots directives in pages and canonical URLs through the CLI: which URLs the server saw, what was written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support import route_canonical_pages

from crawlkit.tools.site import Handler, Site, SiteRequest, SiteSpec, respond

LEAF = b"<html><head><title>leaf</title></head><body>leaf</body></html>"


def page(links: str, head: str = "", headers: dict[str, str] | None = None) -> Handler:
    return respond(200, f"<html><head><title>t</title>{head}</head><body>{links}</body></html>".encode(), headers)


def raw(head: str, body: bytes) -> Handler:
    """A handler that sends ``head`` (status line and headers, a header repeated as written) and ``body``."""
    data = (head.strip() + f"\nContent-Length: {len(body)}").replace("\n", "\r\n").encode() + b"\r\n\r\n" + body

    async def handler(request: SiteRequest, writer: Any) -> None:
        writer.write(data)
        await writer.drain()

    return handler


PAGES = {
    "/noindex": page('<a href="/from-noindex">on</a>', '<meta name="robots" content="noindex">'),
    "/nofollow": page('<a href="/from-nofollow">on</a>', '<meta name="robots" content="nofollow">'),
    "/header": raw("HTTP/1.1 200 OK\nContent-Type: text/html\nX-Robots-Tag: googlebot: noindex\n"
                   "X-Robots-Tag: crawlkit: nofollow", b'<html><body><a href="/from-header">on</a></body></html>'),
    "/rel": page('<a rel="nofollow" href="/rel-no">no</a> <a href="/rel-yes">yes</a>'),
    "/mine": page("", '<meta name="crawlkit" content="noindex">'),
    "/theirs": page('<a href="/from-theirs">on</a>', '<meta name="googlebot" content="noindex, nofollow">'),
}
LEAVES = ("/from-noindex", "/from-nofollow", "/from-header", "/rel-no", "/rel-yes", "/from-theirs")


def directive_site(site: Site) -> None:
    site.route("/", page("".join(f'<a href="{path}">{path}</a>' for path in PAGES)))
    for path, handler in PAGES.items():
        site.route(path, handler)
    for path in LEAVES:
        site.route(path, respond(200, LEAF))


def paths(fetched: dict[str, int]) -> set[str]:
    return {"/" + key.split("/", 1)[1] for key in fetched}


def written(items: list[dict[str, Any]], base: str) -> set[str]:
    return {item["url"].removeprefix(base) for item in items}


def test_pages_robots_directives_decide_what_is_fetched_and_written(crawlkit, tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False, robots=False)) as site:
        directive_site(site)
        run = crawlkit("crawl", "--stats", "stats.json", seeds=site.seeds())
        fetched = site.stats()["fetches"]
    assert run.returncode == 0, run.stderr
    # Nothing of a nofollow page (meta or this crawler's X-Robots-Tag) nor a rel="nofollow" link was asked for.
    pages = {"/", *PAGES, "/from-noindex", "/rel-yes", "/from-theirs"}
    assert paths(fetched) == pages | {"/robots.txt"} and set(fetched.values()) == {1}
    # The noindex pages (robots, and this crawler's own meta) were fetched, their links followed, not written.
    assert written(run.items(), site.urls[0]) == pages - {"/noindex", "/mine"}
    counts = json.loads((tmp_path / "stats.json").read_text())["counts"]
    assert (counts["pages_noindex"], counts["items_noindex"], counts["pages_nofollow"]) == (2, 2, 2)
    assert counts["dropped_nofollow"] == 3 and counts["items"] == len(pages) - 2
    assert "robots directives in pages: 2 noindex (2 items not written), 2 nofollow" in run.stderr


def test_robots_meta_false_follows_and_writes_everything(crawlkit) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False, robots=False)) as site:
        directive_site(site)
        run = crawlkit("crawl", "-s", "robots_meta=false", seeds=site.seeds())
        fetched = site.stats()["fetches"]
    assert run.returncode == 0, run.stderr
    everything = {"/", *PAGES, *LEAVES}
    assert paths(fetched) == everything | {"/robots.txt"}
    assert written(run.items(), site.urls[0]) == everything


def test_a_page_whose_canonical_url_was_seen_is_skipped_only_when_asked(crawlkit, tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False, robots=False)) as site:
        route_canonical_pages(site)
        kept = crawlkit("crawl", "--parsers", "2", seeds=site.seeds(), output="all.jsonl")
        every = paths(site.stats()["fetches"])
        site.reset_stats()
        skipped = crawlkit("crawl", "--parsers", "2", "-s", "skip_duplicate_canonical=true", "--stats", "stats.json",
                           seeds=site.seeds(), output="skipped.jsonl")
        fetched = site.stats()["fetches"]
    assert kept.returncode == 0 and skipped.returncode == 0, kept.stderr + skipped.stderr
    base = site.urls[0]
    pages = {"/", "/p1", "/p2", "/p", "/q1", "/q2"}
    assert every == pages | {"/from-p", "/from-q", "/robots.txt"}
    canonicals = {item["url"].removeprefix(base): item["canonical"] for item in kept.items()}
    assert canonicals == {"/": None, "/p1": base + "/p", "/p2": base + "/p", "/p": base + "/p",
                          "/q1": base + "/q", "/q2": base + "/q", "/from-p": None, "/from-q": None}
    # /p was seen (linked from the index) before /p1 and /p2 were parsed: both skipped, their link never
    # fetched. /q was seen by no one: the first of /q1 and /q2 stands for it, so /q itself is not fetched.
    assert paths(fetched) == pages | {"/from-q", "/robots.txt"} and set(fetched.values()) == {1}
    urls = written(skipped.items(), base)
    assert urls - {"/q1", "/q2"} == {"/", "/p", "/from-q"} and len(urls & {"/q1", "/q2"}) == 1
    counts = json.loads((tmp_path / "stats.json").read_text())["counts"]
    assert counts["pages_duplicate_canonical"] == 3 and counts["items_duplicate_canonical"] == 3
    assert counts["items"] == 4 and counts["pages"] == 7
    assert "duplicates of a canonical URL seen before: 3 pages (3 items not written)" in skipped.stderr


def test_a_wrong_value_is_a_one_line_error_before_any_request(crawlkit) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False)) as site:
        meta = crawlkit("crawl", "-s", "robots_meta=maybe", seeds=site.seeds())
        canonical = crawlkit("crawl", "-s", "skip_duplicate_canonical=2", seeds=site.seeds())
        assert site.stats()["total"] == 0
    assert meta.returncode == 2 and canonical.returncode == 2
    assert meta.stderr == "Error: -s robots_meta=maybe: 'robots_meta' must be true or false, got 'maybe'\n"
    assert canonical.stderr == ("Error: -s skip_duplicate_canonical=2: 'skip_duplicate_canonical' must be true or "
                                "false, got 2\n")


def test_parse_says_why_a_page_gives_no_item_and_follows_no_link(crawlkit) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False, robots=False)) as site:
        directive_site(site)
        noindex = crawlkit("parse", site.urls[0] + "/noindex", output=None)
        nofollow = crawlkit("parse", site.urls[0] + "/nofollow", output=None)
    assert noindex.returncode == 0 and nofollow.returncode == 0, noindex.stderr + nofollow.stderr
    assert noindex.stdout.startswith("Items (0):\n  (1 more not written: the page says noindex; "
                                     "-s robots_meta=false keeps them)\nRequests (1):\n")
    assert nofollow.stdout.startswith("Items (1):\n") and "Requests (0):\nNot followed: nofollow 1" in nofollow.stdout
