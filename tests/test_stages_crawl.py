"""The ``stages`` setting end to end through the CLI: what a changed order makes the server see."""

from __future__ import annotations

from pathlib import Path

from crawlkit.tools.site import Site, SiteSpec

AUDIT = '''
import os

OUT = {out!r}


class Audit:
    """Writes down every response that reaches it; ends the page of /page/3.html."""

    def __init__(self, setup):
        self.seen = os.path.join(OUT, f"seen-{{os.getpid()}}")

    def on_response(self, page, response):
        with open(self.seen, "a") as file:
            file.write(f"{{response.status}} {{response.url}}\\n")
        return None if response.url.endswith("/page/3.html") else response
'''

# hosts=1, links=1: the index links to pages 0 and 1, each page n only to page n + 1.
CHAIN = SiteSpec(hosts=1, pages=6, links=1, extras=False, robots=True)


def paths(fetched: dict[str, int]) -> set[str]:
    """The paths the server answered ("ip:port/path" keys of Site.stats()["fetches"])."""
    return {"/" + key.split("/", 1)[1] for key in fetched}


def test_a_user_stage_sees_every_response_in_its_place_and_can_end_a_page(crawlkit, tmp_path: Path) -> None:
    (tmp_path / "rules.py").write_text(AUDIT.format(out=str(tmp_path)))
    (tmp_path / "crawl.yaml").write_text("stages:\n  rules.py:Audit: 650\n")
    with Site(CHAIN) as site:
        run = crawlkit("crawl", "--config", "crawl.yaml", "--parsers", "2", seeds=site.seeds())
        fetched = site.stats()["fetches"]
    assert run.returncode == 0, run.stderr
    pages = {"/", "/page/0.html", "/page/1.html", "/page/2.html", "/page/3.html"}
    # The page it ended gave no links: pages 4 and 5 were never asked for.
    assert paths(fetched) == pages | {"/robots.txt"} and set(fetched.values()) == {1}
    seen = [line.split(" ", 1) for p in tmp_path.glob("seen-*") for line in p.read_text().splitlines()]
    # Every answer that got past the robots stage (500), once; the robots.txt never reached it.
    assert sorted(url.split(site.urls[0], 1)[1] for _, url in seen) == sorted(pages)
    assert {status for status, _ in seen} == {"200"}
    assert len(run.items()) == len(pages) - 1  # no callback for the page it ended


def test_removing_a_built_in_stage_changes_what_the_server_is_asked_for(crawlkit, tmp_path: Path) -> None:
    with Site(CHAIN) as site:
        limited = crawlkit("crawl", "-s", "max_depth=1", seeds=site.seeds())
        within = paths(site.stats()["fetches"])
        site.reset_stats()
        unlimited = crawlkit("crawl", "-s", "max_depth=1", "-s", "stages={depth: null}", seeds=site.seeds())
        everything = paths(site.stats()["fetches"])
    assert limited.returncode == 0 and unlimited.returncode == 0, limited.stderr + unlimited.stderr
    assert within == {"/robots.txt", "/", "/page/0.html", "/page/1.html"}
    assert everything == within | {f"/page/{n}.html" for n in range(2, 6)}


def test_a_wrong_stage_stops_the_crawl_before_it_starts(crawlkit) -> None:
    with Site(SiteSpec(hosts=1, pages=3, extras=False)) as site:
        unknown = crawlkit("crawl", "-s", "stages={ofsite: null}", seeds=site.seeds())
        number = crawlkit("crawl", "-s", "stages={offsite: first}", seeds=site.seeds())
        assert site.stats()["total"] == 0  # not one request
    assert unknown.returncode == 2 and number.returncode == 2
    assert unknown.stderr.startswith("Error: stages: unknown stage 'ofsite'; did you mean 'offsite'?")
    assert number.stderr.startswith("Error: -s stages={offsite: first}: 'stages' must be a mapping of names to "
                                    "integers or null, got {'offsite': 'first'}")
    assert len(unknown.stderr.splitlines()) == 1 and len(number.stderr.splitlines()) == 1
