"""Credentials and redirects: what a redirect to another origin may carry, asserted on what each server received.

A spider sets ``Authorization``, ``Cookie`` and ``Proxy-Authorization`` headers, or puts
``user:password@`` in its URLs; pages redirect to another host, to another port of the same
host, and within their own origin. Only the last may carry them (as Scrapy since 2.11.1/2.11.2,
GHSA-cw9j-q3vf-hrrv, CVE-2024-1968).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import Exchange, Handler, Hit, HostileServer, free_loopback_ip, page

from crawlkit.http import Request
from crawlkit.parse.redirect import redirect_request

SECRET = "s3cret"
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")

SPIDER = '''
from crawlkit import Request, Spider

HEADERS = {{"Authorization": "Bearer {secret}", "Cookie": "sid={secret}", "Proxy-Authorization": "Basic {secret}"}}


class Creds(Spider):
    name = "creds"

    def start_requests(self):
        for path in ("/to-other-host", "/to-other-port", "/to-same-origin"):
            yield Request({origin!r} + path + "?by=headers", headers=HEADERS)
            yield Request({userinfo_origin!r} + path + "?by=url")

    def parse(self, response):
        yield {{"url": response.url}}
'''


def redirecting(to: str) -> Handler:
    """A redirect to ``to`` + this request's own query (so each seed lands on a page of its own)."""

    async def handle(ex: Exchange) -> None:
        query = ex.path.partition("?")[2]
        await ex.respond(302, b"", {"Location": f"{to}?{query}"})

    return handle


def credentials(hit: Hit) -> dict[str, str]:
    return {name: value for name, value in hit.headers.items() if name in CREDENTIAL_HEADERS}


def test_credentials_are_dropped_when_a_redirect_leaves_the_origin_and_kept_within_it(crawlkit, tmp_path: Path) -> None:
    with HostileServer() as first, HostileServer(free_loopback_ip(avoid=first.ip)) as other:
        landing = {"/landed": page(b"<html>landed</html>")}
        elsewhere = other.site(landing)  # another IP: another host
        other_port = first.site(landing)  # the same IP, another port
        start = first.site({
            "/to-other-host": redirecting(elsewhere.url("/landed")),
            "/to-other-port": redirecting(other_port.url("/landed")),
            "/to-same-origin": redirecting("/landed"),
            "/landed": page(b"<html>landed</html>"),
        })
        (tmp_path / "creds.py").write_text(SPIDER.format(
            secret=SECRET, origin=start.url(""), userinfo_origin=f"http://user:{SECRET}@{start.address}"))
        run = crawlkit("runspider", "creds.py", "--workers", "1", "--concurrency", "4", "--no-robots", timeout=60)
        hits = first.seen() + other.seen()
    assert run.returncode == 0, run.stderr
    assert len(run.items()) == 6
    landed = {(h.site, h.path): h for h in hits if h.path.startswith("/landed")}
    assert len(landed) == 6 and len(hits) == 12  # each page fetched once: no retries, nothing else
    for target in (elsewhere, other_port):
        for by in ("headers", "url"):
            assert credentials(landed[target.address, f"/landed?by={by}"]) == {}, (
                f"{by} credentials followed to {target.address}"
            )
    kept = credentials(landed[start.address, "/landed?by=headers"])
    assert kept == {
        "authorization": f"Bearer {SECRET}", "cookie": f"sid={SECRET}", "proxy-authorization": f"Basic {SECRET}"
    }
    assert credentials(landed[start.address, "/landed?by=url"])["authorization"].startswith("Basic ")


HEADERS = {"Authorization": "Bearer x", "cookie": "sid=x", "PROXY-AUTHORIZATION": "Basic x", "X-Other": "kept"}


@pytest.mark.parametrize("target", [
    "https://a.example/next",  # another scheme
    "http://b.example/next",  # another host
    "http://a.example:8080/next",  # another port
    "http://sub.a.example/next",  # a subdomain is another origin too
])
def test_redirect_request_drops_credential_headers_when_the_origin_changes(target: str) -> None:
    source = Request("http://a.example/start", headers=HEADERS, meta={"proxy": "http://proxy.example:3128"})
    follow = redirect_request(source, target)
    assert follow.url == target and follow.headers == {"X-Other": "kept"}
    assert follow.meta["redirect_urls"] == ["http://a.example/start"] and follow.meta["proxy"] == "http://proxy.example:3128"


@pytest.mark.parametrize("target", ["http://a.example/next", "http://A.example:80/next", "http://user:pw@a.example/next"])
def test_redirect_request_keeps_headers_within_the_origin(target: str) -> None:
    follow = redirect_request(Request("http://a.example/start", headers=HEADERS, meta={"retry_times": 2}), target)
    assert follow.headers == HEADERS and follow.meta["retry_times"] == 0
