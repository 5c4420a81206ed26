"""Where requests may go: redirects obey the link rules, another port is another site, and
``allow_private_addresses: false`` keeps every request off non-public addresses.

Asserted on what the servers saw: with the setting off, a crawl of local seeds (in every
spelling a resolver takes for loopback) reaches no server at all, and ends by itself, quickly.
"""

from __future__ import annotations

import ipaddress
import pickle
import socket
import time
from pathlib import Path

import pytest
from hostile import HostileServer, free_loopback_ip, page, redirect
from test_faults import assert_logged, summary

from crawlkit import Request
from crawlkit.fetch import destinations
from crawlkit.fetch.channels import FetcherConfig
from crawlkit.fetch.destinations import DestinationBlocked, literal_address, public_addresses, why_not_public
from crawlkit.fetch.fetcher import fetch, new_session
from crawlkit.log import LogConfig
from crawlkit.messages import FetchResult, PageDone
from crawlkit.parse.parser import ParserConfig, Router
from crawlkit.settings import load_settings
from crawlkit.spider import LinkSpider

# How a resolver may spell 127.0.0.1 besides the dotted quad.
ODD_LOOPBACK = ["0x7f.0.0.1", "2130706433", "127.1", "0177.0.0.1", "[::ffff:7f00:1]"]


# ------------------------------------------------------------------ address classification


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fc00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("240.0.0.1", "private"),  # reserved for future use; Python files it among the private ones
    ("100.64.0.1", "special-purpose"),  # carrier-grade NAT
    ("::ffff:127.0.0.1", "loopback (as 127.0.0.1)"),  # IPv4-mapped
    ("::ffff:10.0.0.1", "private (as 10.0.0.1)"),
    ("2002:7f00:1::", "loopback (as 127.0.0.1)"),  # 6to4
    ("64:ff9b::a00:1", "private (as 10.0.0.1)"),  # NAT64
])
def test_non_public_addresses_are_named_by_kind(address: str, kind: str) -> None:
    assert why_not_public(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert why_not_public(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("host", ["127.0.0.1", *ODD_LOOPBACK])
def test_every_spelling_of_loopback_is_read_as_the_resolver_reads_it(host: str) -> None:
    assert why_not_public(literal_address(host)).startswith("loopback")
    with pytest.raises(DestinationBlocked, match="loopback"):
        public_addresses(host.strip("[]"), 80)


def test_names_are_judged_by_what_they_resolve_to() -> None:
    assert literal_address("example.com") is None and literal_address("1.example") is None
    with pytest.raises(DestinationBlocked, match="localhost resolves to .*loopback"):
        public_addresses("localhost", 80)


# ------------------------------------------------------------------ the fetcher


def config(proxy: str | None = None) -> FetcherConfig:
    return FetcherConfig(threads=1, user_agent="crawlkit-test/1.0", connect_timeout=5, read_timeout=5,
                         download_timeout=10, max_body=1_000_000, max_redirects=5, log=LogConfig(), proxy=proxy,
                         middlewares=[], spider=None, spider_kwargs={}, allow_private_addresses=False)


def test_through_a_proxy_non_public_ip_hosts_are_refused_and_names_left_to_the_proxy() -> None:
    with HostileServer() as proxy:
        site = proxy.site({"/": page(b"ok")})
        session = new_session(config(site.url("")))
        refused = [
            fetch(session, Request(f"http://{host}:8080/"), config(site.url("")))
            for host in ["10.0.0.1", *ODD_LOOPBACK]
        ]
        named = fetch(session, Request("http://crawl.test/"), config(site.url("")))
        hits = proxy.seen()
    assert {r.error for r in refused} == {"destination_blocked"}
    assert "allow_private_addresses is false" in refused[0].message
    assert named.status == 200 and [(h.host, h.path) for h in hits] == [("crawl.test", "/")]


def test_a_name_is_resolved_once_and_the_connection_goes_to_the_address_checked(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a name that resolves to a public address when checked, and to a private one
    a moment later, must not get a second lookup. The local server stands in for a public host."""
    with HostileServer() as server:
        site = server.site({"/": page(b"ok")})
        port = int(site.address.split(":")[1])
        real_getaddrinfo = socket.getaddrinfo
        lookups: list[str] = []

        def rebinding(host: str, *args: object, **kwargs: object) -> object:
            if host != "rebind.test":
                return real_getaddrinfo(host, *args, **kwargs)
            lookups.append(host)
            answer = server.ip if len(lookups) == 1 else "127.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, port))]

        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        monkeypatch.setattr(destinations, "why_not_public",
                            lambda address: None if str(address) == server.ip else "loopback")
        result = fetch(new_session(config()), Request(f"http://rebind.test:{port}/"), config())
        hits = server.seen()
    assert (result.status, result.error) == (200, None)
    assert lookups == ["rebind.test"]
    assert [(h.site, h.host) for h in hits] == [(site.address, f"rebind.test:{port}")]


def test_a_robots_txt_redirect_is_checked_at_every_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    """robots.txt follows redirects inside requests; each hop connects through the same guard."""
    with HostileServer() as public, HostileServer("127.0.0.1") as private:
        inside = private.site({"/robots.txt": page(b"User-agent: *\nDisallow:\n", content_type="text/plain")})
        site = public.site({"/robots.txt": redirect(inside.url("/robots.txt"))})
        monkeypatch.setattr(destinations, "why_not_public",
                            lambda address: None if str(address) == public.ip else "loopback")
        robots = Request(site.url("/robots.txt"), meta={"follow_redirects": True})
        result = fetch(new_session(config()), robots, config())
        hits = public.paths(), private.seen()
    assert result.error == "destination_blocked"
    assert hits == ({"/robots.txt": 1}, [])


# ------------------------------------------------------------------ through the CLI


def test_private_addresses_refused_reach_no_server_and_are_counted_while_the_default_crawls_them(
    crawlkit, tmp_path: Path
) -> None:
    with HostileServer(ip="127.0.0.1") as local, HostileServer() as other:
        site = local.site({"/": page(b'<a href="/next">next</a>'), "/next": page(b"next")})
        elsewhere = other.site({"/": page(b"elsewhere")})
        port = site.address.split(":")[1]
        seeds = [site.url("/"), elsewhere.url("/"), *(f"http://{host}:{port}/" for host in ODD_LOOPBACK)]
        started = time.monotonic()
        refused = crawlkit("crawl", "-s", "allow_private_addresses=false", "--workers", "1", seeds=seeds, timeout=120)
        elapsed = time.monotonic() - started
        hits_refused = local.seen() + other.seen()
        allowed = crawlkit("crawl", "--workers", "1", seeds=seeds, timeout=120)
        root_fetches = local.count(site, "/"), other.count(elsewhere, "/")
    assert refused.returncode == 0, refused.stderr
    assert hits_refused == []
    assert elapsed < 40  # no robots.txt rechecks, no retries (a refused robots.txt is asked for again after 30 s, 60 s)
    # Each seed's robots.txt and the seed itself: refused at connect time, counted, logged with the URL.
    assert summary(refused.stderr)["error_destination_blocked"] == 2 * len(seeds)
    for url in seeds:
        assert_logged(refused.stderr, "destination_blocked", url, "allow_private_addresses is false")
    assert allowed.returncode == 0, allowed.stderr
    assert "destination_blocked" not in allowed.stderr
    assert root_fetches == (len(seeds) - 1, 1)  # every spelling reaches the local server once


def test_crawlkit_fetch_refuses_a_private_address_in_one_line_and_sends_nothing(crawlkit) -> None:
    with HostileServer() as server:
        site = server.site({"/": page(b"ok")})
        url = site.url("/")
        run = crawlkit("fetch", "-s", "allow_private_addresses=false", url, output=None, timeout=60)
        hits = server.seen()
    assert hits == []
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(f"Error: destination_blocked: {url} (")


def test_crawlkit_parse_does_not_follow_a_redirect_the_crawl_would_drop(crawlkit) -> None:
    with HostileServer() as server:
        other_port = server.site({"/landed": page(b"other port")})
        site = server.site({"/": redirect(other_port.url("/landed"))})
        run = crawlkit("parse", "--no-robots", site.url("/"), output=None, timeout=60)
        followed = crawlkit("parse", "--no-robots", "-s", f"allowed_domains=[{server.ip}]", site.url("/"),
                            output=None, timeout=60)
        hits = server.paths(other_port)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        f"Error: {site.url('/')} redirects to {other_port.url('/landed')}, outside allowed_domains, "
        "so a crawl would not follow it; add its domain to allowed_domains (-s allowed_domains=[...]) to follow it")
    assert followed.returncode == 0, followed.stderr
    assert hits == {"/landed": 1}  # only when allowed


def test_redirects_obey_the_link_rules_and_another_port_is_another_site(crawlkit) -> None:
    with HostileServer() as server, HostileServer(free_loopback_ip(avoid=server.ip)) as offsite_server:
        offsite = offsite_server.site({"/landed": page(b"offsite")})
        other_port = server.site({"/landed": page(b"other port"), "/linked": page(b"other port")})
        main = server.site({
            "/": page(
                f'<a href="/to-offsite">a</a><a href="/to-other-port">b</a><a href="{other_port.url("/linked")}">c</a>'
                .encode()
            ),
            "/to-offsite": redirect(offsite.url("/landed")),
            "/to-other-port": redirect(other_port.url("/landed")),
        })
        run = crawlkit("crawl", "--workers", "1", seeds=[main.url("/")], timeout=120)
        first = offsite_server.seen(), server.paths(other_port)
        widened = crawlkit("crawl", "--workers", "1", "--allow-domain", server.ip, seeds=[main.url("/")], timeout=120)
        second = offsite_server.seen(), server.paths(other_port)
    assert run.returncode == 0 and widened.returncode == 0, run.stderr + widened.stderr
    assert first == ([], {})
    assert summary("\n" + run.stderr)["dropped_offsite"] == 3
    # A domain without a port allows every port of it (as in Scrapy); the offsite host stays out.
    assert second[0] == [] and second[1] == {"/robots.txt": 1, "/landed": 1, "/linked": 1}


def sent_links(spider_kwargs: dict[str, object], allowed_domains: list[str], links: list[str]) -> list[str]:
    settings = load_settings(cli={"allowed_domains": allowed_domains})
    router = Router(LinkSpider(**spider_kwargs), ParserConfig.from_settings(settings, None, {}, LogConfig()))
    html = "".join(f'<a href="{href}">x</a>' for href in links).encode()
    url = "http://127.0.0.2:8001/"
    done: PageDone = pickle.loads(router.handle(FetchResult(1, Request(url), url, status=200, body=html,
                                                            headers=[("Content-Type", "text/html")])))
    return [request.url for _, request in done.candidates]


def test_allowed_domains_with_and_without_a_port() -> None:
    links = ["http://127.0.0.2:8001/a", "http://127.0.0.2:8002/b", "http://www.example.com/c", "https://example.com/d",
             "http://example.com:8080/e"]
    # The built-in spider: its seeds' sites, a default port standing for http and https alike.
    assert sent_links({"start_urls": ["http://127.0.0.2:8001/", "http://example.com/"]}, [], links) == [
        "http://127.0.0.2:8001/a", "http://www.example.com/c", "https://example.com/d"]
    # Explicit entries: a bare domain takes every port, host:port that port only.
    assert sent_links({"allowed_domains": ["127.0.0.2"]}, ["example.com:8080"], links) == [
        "http://127.0.0.2:8001/a", "http://127.0.0.2:8002/b", "http://example.com:8080/e"]
