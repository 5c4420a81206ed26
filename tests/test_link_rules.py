"""The built-in spider's ``follow`` setting through the real CLI, from a config file and from ``-s``:
which URLs the server was asked for, and what the items list."""

from __future__ import annotations

from pathlib import Path

from crawlkit.tools.site import Site, SiteSpec, respond

HOME = b"""<html><head><title>home</title><link rel="next" href="/list/2.html"></head><body>
<nav><a href="/docs/intro.html">intro</a> <a href="/blog/post.html">post</a></nav>
<main><a href="/docs/guide.pdf">guide</a> <a href="/docs/old/page.html">old</a> <a href="/media/clip.mp4">clip</a>
<a href="/docs/intro.html#install">install</a> <a href="/shop/cart.html">cart</a></main></body></html>"""
LEAF = b"<html><head><title>leaf</title></head><body>no links</body></html>"
PATHS = ["/docs/intro.html", "/blog/post.html", "/docs/guide.pdf", "/docs/old/page.html", "/media/clip.mp4",
         "/shop/cart.html", "/list/2.html"]


def fetched(site: Site) -> set[str]:
    return {key.split("/", 1)[1] for key in site.stats()["fetches"]}


def serve() -> Site:
    site = Site(SiteSpec(hosts=1, pages=0, extras=False, robots=False))
    site.route("/", respond(200, HOME, {"Content-Type": "text/html"}))
    for path in PATHS:
        site.route(path, respond(200, LEAF, {"Content-Type": "text/html"}))
    return site


def test_the_follow_rules_of_a_config_file_choose_what_the_built_in_spider_fetches(crawlkit, tmp_path: Path) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text('follow:\n  allow: ["/docs/", "/list/"]\n  deny: ["/old/"]\n  tags: [a, link]\n'
                      "  deny_extensions: IGNORED_EXTENSIONS\n")
    with serve() as site:
        run = crawlkit("crawl", "--config", str(config), seeds=site.seeds())
        seen = fetched(site)
    assert run.returncode == 0, run.stderr[-3000:]
    # The pdf is Scrapy's IGNORED_EXTENSIONS, /old/ denied, /blog/ and /shop/ not allowed; <link rel=next> read.
    assert seen == {"robots.txt", "", "docs/intro.html", "list/2.html"}
    home = next(item for item in run.items() if item["title"] == "home")
    assert len(home["links"]) == 6  # the item still lists every <a href> of the page, fragment-free


def test_follow_rules_from_the_command_line_restrict_to_a_region_and_keep_documents(crawlkit) -> None:
    with serve() as site:
        run = crawlkit("crawl", "-s", "follow={restrict_css: [main], deny: [cart]}",
                       seeds=site.seeds())
        seen = fetched(site)
    assert run.returncode == 0, run.stderr[-3000:]
    # Only <main>'s links but the cart, and no extension denied by default: the PDF and the video too.
    assert seen == {"robots.txt", "", "docs/guide.pdf", "docs/old/page.html", "media/clip.mp4", "docs/intro.html"}


def test_a_bad_follow_rule_stops_the_crawl_before_it_starts_with_one_line(crawlkit) -> None:
    run = crawlkit("crawl", "-s", "follow={allow: ['docs/(']}", seeds=["http://127.0.0.2:9/"])
    assert run.returncode == 2
    line, = run.stderr.splitlines()  # one line, re's own words in it
    assert line.startswith("Error: -s follow={allow: ['docs/(']}: 'follow' → allow: 'docs/(' is not a regular "
                           "expression (")
