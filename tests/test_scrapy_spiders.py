"""The spiders of tests/scrapy_spiders/, written in Scrapy's idioms (the files that
tests/benchmarks/compare_spiders.py also runs on Scrapy), crawl their local site with crawlkit: the
items they yield and what the server saw. Together with test_spider_crawl.py and
test_scrapy_idioms.py: selectors, ``-a``, ``cb_kwargs``, errbacks, ``follow``/``follow_all``,
``async def start``, dataclass items, ``self.logger``, ``FormRequest.from_response`` on a login form."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl

from hostile import free_loopback_ip
from scrapy_spiders.quotes_site import AUTHORS, LOGIN, MEMBERS, SESSION, expected_quotes, quotes_site

SPIDERS = Path(__file__).resolve().parent / "scrapy_spiders"


def test_the_quotes_spider_follows_pages_and_authors_with_its_arguments(crawlkit) -> None:
    with quotes_site(free_loopback_ip()) as (base, seen):
        run = crawlkit("runspider", str(SPIDERS / "quotes_spider.py"), "-a", f"base={base}", "-a", "tag=love",
                       "-s", "LOG_LEVEL=INFO", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=4")
    assert run.returncode == 0, run.stderr[-3000:]
    items = run.items()
    assert sorted((item for item in items if "text" in item), key=lambda item: item["text"]) == sorted(
        expected_quotes("love"), key=lambda item: item["text"])
    # Every author page once, though the pages link some of them twice.
    assert sorted((item["author"], item["born"]) for item in items if "born" in item) == sorted(AUTHORS.values())
    assert Counter(hit.path for hit in seen) == Counter(
        ["/robots.txt", "/page/1/", "/page/2/", "/page/3/", *(f"/author/{slug}/" for slug in AUTHORS)])
    assert {hit.agent for hit in seen} == {"quotes-bot/1.0"}  # custom_settings' USER_AGENT, robots.txt included
    assert f"starting at {base} (tag 'love')" in run.stderr  # self.logger, in the engine


def test_the_login_spider_posts_the_form_keeps_the_session_and_reads_json_and_failures(crawlkit) -> None:
    with quotes_site(free_loopback_ip()) as (base, seen):
        run = crawlkit("runspider", str(SPIDERS / "login_spider.py"), "-a", f"base={base}")
    assert run.returncode == 0, run.stderr[-3000:]
    items = run.items()
    assert sorted(item["text"] for item in items if "text" in item) == sorted(text for text, _, _ in MEMBERS)
    assert [item for item in items if "count" in item] == [{"count": len(MEMBERS), "user": "ann"}]
    assert [item for item in items if "failed" in item] == [{"failed": f"{base}/missing", "status": 404}]
    posted = [hit for hit in seen if hit.method == "POST"]
    assert len(posted) == 1 and dict(parse_qsl(posted[0].body)) == LOGIN  # the CSRF token from the form
    after = [hit for hit in seen if hit.path in ("/members/", "/api/count", "/missing")]
    assert sorted(hit.path for hit in after) == ["/api/count", "/members/", "/missing"]
    assert {hit.cookie for hit in after} == {SESSION}


def test_the_crawl_spider_follows_its_rules_links_and_no_others(crawlkit) -> None:
    with quotes_site(free_loopback_ip()) as (base, seen):
        run = crawlkit("runspider", str(SPIDERS / "crawl_spider.py"), "-a", f"base={base}")
    assert run.returncode == 0, run.stderr[-3000:]
    items = run.items()
    assert [item for item in items if "start" in item] == [{"start": "Quotes 1"}]
    assert sorted((item["author"], item["born"], item["via"], item["link_text"]) for item in items
                  if "author" in item) == sorted((name, born, "rule", "(about)") for name, born in AUTHORS.values())
    # The pager's pages and each author once; no tag page (no rule allows one), nothing twice.
    assert Counter(hit.path for hit in seen) == Counter(
        ["/robots.txt", "/page/1/", "/page/2/", "/page/3/", *(f"/author/{slug}/" for slug in AUTHORS)])
    assert {hit.agent for hit in seen} == {"authors-bot/1.0"}
