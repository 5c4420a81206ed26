"""The local test site: what it serves, what it records, and its own idea of the reachable pages."""

from __future__ import annotations

import http.client
import threading
import urllib.error
import urllib.request
from urllib.parse import urldefrag, urljoin

from lxml import html
from support import wait_for

from crawlkit.tools.site import Site, SiteProcess, SiteSpec, respond


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read(), answer.url
    except urllib.error.HTTPError as exc:
        return exc.code, b"", url


def test_pages_robots_redirects_and_404() -> None:
    with Site(SiteSpec(hosts=2, pages=20)) as site:
        status, body, _ = get(site.urls[0] + "/page/3.html")
        assert status == 200 and b"<title>Host 0 page 3</title>" in body
        assert len(body) > 15_000
        status, body, _ = get(site.urls[1] + "/robots.txt")
        assert b"Disallow: /private/" in body
        status, _, final = get(site.urls[0] + "/redirect/4")
        assert status == 200 and final.endswith("/page/4.html")
        assert get(site.urls[0] + "/missing/1.html")[0] == 404
        counts = site.stats()["fetches"]
        assert counts[f"{site.urls[0][7:]}/redirect/4"] == 1 and counts[f"{site.urls[0][7:]}/page/4.html"] == 1


def test_expected_urls_match_a_plain_breadth_first_walk() -> None:
    with Site(SiteSpec(hosts=2, pages=30)) as site:
        seen, todo, ok, missing = set(site.seeds()), list(site.seeds()), set(), set()
        for _ in range(500):  # bounded: the site has about 70 pages
            if not todo:
                break
            url = todo.pop()
            if "/private/" in url and not url.endswith("public.html"):
                continue  # what robots.txt disallows
            status, body, final = get(url)
            if status == 404:
                missing.add(final)
            if status != 200:
                continue
            ok.add(final)
            for href in html.fromstring(body).xpath("//a/@href"):
                target = urldefrag(urljoin(url, href))[0]
                if target.startswith(tuple(site.urls)) and target not in seen:
                    seen.add(target)
                    todo.append(target)
        assert not todo
        assert ok == site.expected_urls() and missing == site.missing_urls()


def test_hold_answers_the_given_number_then_keeps_the_rest_in_flight_until_release() -> None:
    with Site(SiteSpec(hosts=1, pages=5)) as site:
        site.hold(after=1)
        assert get(site.urls[0] + "/page/1.html")[0] == 200
        answers: list[int] = []
        waiting = threading.Thread(target=lambda: answers.append(get(site.urls[0] + "/page/2.html")[0]))
        waiting.start()
        try:
            wait_for(lambda: site.stats()["total"] == 2, 10, "the server to have the second request")
            waiting.join(0.3)  # held: still unanswered
            assert waiting.is_alive() and not answers and site.stats()["total"] == 2
        finally:
            site.release()
            waiting.join(10)
        assert answers == [200]
        assert get(site.urls[0] + "/page/3.html")[0] == 200  # released for good


def test_peak_inflight_is_recorded_with_latency_and_routes_override() -> None:
    with Site(SiteSpec(hosts=1, pages=5, latency=0.1)) as site:
        site.route("/custom", respond(418, b"teapot"))
        host = site.urls[0][7:].split(":")

        def fetch() -> None:
            conn = http.client.HTTPConnection(host[0], int(host[1]), timeout=10)
            conn.request("GET", "/page/1.html")
            conn.getresponse().read()
            conn.close()

        threads = [threading.Thread(target=fetch) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert get(site.urls[0] + "/custom")[0] == 418
        stats = site.stats()
    assert stats["peak_inflight"][site.urls[0][7:]] == 3
    assert stats["total"] == 4


def test_process_mode_serves_and_reports() -> None:
    with SiteProcess(SiteSpec(hosts=2, pages=10)) as site:
        assert get(site.seeds()[1])[0] == 200
        stats = site.stats()
        assert stats["total"] == 1
        site.reset_stats()
        assert site.stats()["total"] == 0
        assert len(site.expected_urls()) > 20
