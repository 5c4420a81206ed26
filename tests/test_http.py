"""Response as a callback sees it: links resolved against <base href>, once per page."""

from __future__ import annotations

from crawlkit import Request, Response


def page(html: bytes, url: str = "http://docs.test/guide/intro.html") -> Response:
    return Response(url, 200, {"Content-Type": "text/html; charset=utf-8"}, html, Request(url))


def test_links_and_follow_resolve_against_base_href() -> None:
    response = page(
        b'<html><head><base href="/v2/"></head><body><a href="api.html#x">a</a> <a href="../faq">f</a></body></html>'
    )
    assert response.base_url == "http://docs.test/v2/"
    assert response.links() == ["http://docs.test/v2/api.html", "http://docs.test/faq"]
    assert response.follow("api.html").url == "http://docs.test/v2/api.html"
    assert response.urljoin("/top") == "http://docs.test/top"


def test_without_or_with_a_malformed_base_links_resolve_against_the_page() -> None:
    plain = page(b'<a href="setup.html">s</a>')
    assert plain.links() == ["http://docs.test/guide/setup.html"]
    broken = page(b'<base href="http://[x"><a href="setup.html">s</a>')
    assert broken.base_url == "http://docs.test/guide/intro.html"
    assert broken.follow("setup.html").url == "http://docs.test/guide/setup.html"


def test_urljoin_gives_what_urllib_gives_for_every_kind_of_link() -> None:
    """Response.urljoin caches the joins that depend only on the base's directory; the result
    must be urllib's for any base and link, the cached kinds and the rest alike."""
    from itertools import product
    from urllib.parse import urljoin

    bases = [
        "http://docs.test/guide/intro.html", "http://docs.test/guide/", "http://docs.test", "http://docs.test/a/b/c?x=1#f",
        "https://docs.test:8443/a//b/c;p=1?q", "http://docs.test/a/./b/../c.html", "http://docs.test/a;x/b",
        "http://docs.test/?only=query", "http://u:p@docs.test/dir/page",
    ]
    links = [
        "page.html", "sub/page.html", "../up.html", "../../../../over.html", "./here", ".", "..", "/root", "/a/../b",
        "/", "//other.test/x", "//", "?q=2", "#frag", "", " page.html", "\tpage", "page.html?x#y", "a:b", "mailto:x@y",
        "http://other.test", "http://other.test/p?q", "https://docs.test/s", "HTTP://Docs.Test/U", "http:", "http:rel",
        "http:/abs", "http:?q", "http://", ";params", "%7Euser/", "~user", "-x", "a/b:c", "javascript:void(0)", "p\t:q",
        "/\t/x", "é.html", "..//x",
    ]
    for base, link in product(bases, links):
        response = Response(base, 200, {"Content-Type": "text/html"}, b"<html></html>", Request(base))
        assert response.urljoin(link) == urljoin(base, link), (base, link)
        assert response.urljoin(link) == urljoin(base, link), (base, link)  # again, from the cache


def test_redirect_target_reads_location_as_the_server_meant_it() -> None:
    from crawlkit.parse.redirect import redirect_target

    # UTF-8 bytes arrive decoded as Latin-1; the crawl and `crawlkit fetch` both read them as UTF-8.
    assert redirect_target("http://docs.test/a/b", " /p\u00c3\u00a4ge ") == "http://docs.test/p\u00e4ge"
    assert redirect_target("http://docs.test/a/b", "c") == "http://docs.test/a/c"
    # Latin-1 proper stays.
    assert redirect_target("http://docs.test/a/b", "caf\u00e9") == "http://docs.test/a/caf\u00e9"
    assert redirect_target("http://docs.test/", "http://[::1") == "http://[::1"  # for the caller to reject


def test_a_utf16_header_is_believed_only_when_the_bytes_bear_it_out() -> None:
    html = '<title>Grüße</title><a href="next.html">n</a>'

    def served(body: bytes, charset: str) -> Response:
        url = "http://docs.test/p"
        return Response(url, 200, {"Content-Type": f"text/html; charset={charset}"}, body, Request(url))

    for charset, body in [("utf-16", html.encode("utf-16-le")), ("utf-16-be", html.encode("utf-16-be")),
                          ("utf-32", html.encode("utf-32-le"))]:
        real = served(body, charset)  # no BOM: the header is all there is
        assert (real.encoding, real.links()) == (charset, ["http://docs.test/next.html"]), charset
    for charset in ("utf-16", "utf-16-le", "utf-32"):
        lie = served(html.encode("utf-8"), charset)  # a server's wrong default on an ASCII-compatible page
        assert (lie.encoding, lie.links()) == ("utf-8", ["http://docs.test/next.html"]), charset
        assert lie.css("title::text").get() == "Grüße"


def test_links_past_libxml2s_depth_limit_are_still_found() -> None:
    from crawlkit.http import MAX_HTML_DEPTH

    for depth, too_deep in [(MAX_HTML_DEPTH - 10, False), (MAX_HTML_DEPTH + 10, True), (50_000, True)]:
        response = page(b'<a href="first">f</a>' + b"<div>" * depth + b'<a href="deep?a=1&amp;b=2">d</a>'
                        + b"</div>" * depth + b'<a href="last">l</a>')
        links = response.links()
        assert response.too_deep is too_deep, depth
        assert links == [f"http://docs.test/guide/{p}" for p in ("first", "deep?a=1&b=2", "last")], depth
