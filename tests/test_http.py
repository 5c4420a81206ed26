"""Response as a callback sees it: links resolved against <base href>, once per page."""

from __future__ import annotations

from crawlkit import Request, Response


def page(html: bytes, url: str = "http://docs.test/guide/intro.html") -> Response:
    return Response(url, 200, {"Content-Type": "text/html; charset=utf-8"}, html, Request(url))


def test_links_and_follow_resolve_against_base_href() -> None:
    response = page(b'<html><head><base href="/v2/"></head><body><a href="api.html#x">a</a> <a href="../faq">f</a></body></html>')
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
