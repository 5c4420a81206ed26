"""The ``hosts`` setting: which rule a host gets, the one-line errors for bad rules, and what a
host's own user agent, headers and max_pages do: unit tests of the pieces (the headers a fetch
sends, the robots.txt group a host is matched for) and a crawl of three loopback hosts with
different rules, asserting what each server received."""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from support import serve_http

from crawlkit.errors import ConfigError
from crawlkit.extensions.robots import RobotsRules
from crawlkit.fetch.fetcher import site_headers
from crawlkit.http import Headers
from crawlkit.settings import load_settings
from crawlkit.sites import NO_RULE, SiteRules
from crawlkit.urls import host_of


def rules(text: str) -> SiteRules:
    return SiteRules(load_settings(cli={"hosts": text}).hosts)


def test_exact_beats_glob_and_first_glob_wins() -> None:
    r = rules('{"*.example.org": {per_host: 1}, "*.org": {per_host: 3}, "a.example.org": {delay: 2}}')
    assert r.for_host("a.example.org").delay == 2.0 and r.for_host("a.example.org").per_host is None
    assert r.for_host("b.example.org").per_host == 1
    assert r.for_host("b.other.org").per_host == 3
    assert r.for_host("example.org").per_host == 3  # *.example.org needs a dot before it
    assert r.for_host("example.com") is NO_RULE


def test_ports_and_case() -> None:
    r = rules('{"127.0.0.2:8001": {max_pages: 5}, "Docs.Example.COM": {user_agent: me/1.0}, "[::1]": {per_host: 4}}')
    assert r.for_host("127.0.0.2:8001").max_pages == 5
    assert r.for_host("127.0.0.2:8002") is NO_RULE
    assert r.for_host("docs.example.com:8080").user_agent == "me/1.0"  # a bare host matches every port
    assert r.for_host("[::1]:8080").per_host == 4


def test_a_pattern_written_in_unicode_matches_the_hosts_idna_form() -> None:
    r = rules('{"*.bücher.de": {per_host: 1}, "Bücher.de:8080": {delay: 2}}')
    assert r.for_host(host_of("http://shop.bücher.de/")).per_host == 1  # hosts are keyed as xn--bcher-kva.de
    assert r.for_host(host_of("http://bücher.de:8080/")).delay == 2.0
    with pytest.raises(ConfigError, match="'hosts': 'bü\\*.de' mixes a glob into a non-ASCII label"):
        rules('{"bü*.de": {per_host: 1}}')


def test_headers_and_pickling() -> None:
    r = pickle.loads(pickle.dumps(rules('{"*": {headers: {X-Token: abc, Accept-Language: fr}}}')))
    assert r.for_host("anything:81").headers == (("X-Token", "abc"), ("Accept-Language", "fr"))
    assert not SiteRules({})


@pytest.mark.parametrize(("text", "message"), [
    ("[1]", "'hosts' must be a mapping of host patterns to rules, got list"),
    ('{"a b": {}}', "'a b' is not a host pattern"),
    ('{"a": 3}', "'hosts' → 'a' must be a mapping of settings"),
    ('{"a": {foo: 1}}', "unknown key 'foo'; a host rule may set per_host, delay, max_pages, user_agent, headers"),
    ('{"a": {per_host: 0}}', "'hosts' → 'a': 'per_host' must be an integer from 1 to 1,024, got 0"),
    ('{"a": {per_host: 100000000000}}', "'per_host' must be an integer from 1 to 1,024"),  # not a semaphore's crash
    ('{"a": {delay: .inf}}', "'delay' must be a finite number from 0 to 86,400"),
    ('{"a": {delay: null}}', "'delay' must not be null"),
    ('{"a": {headers: {"x y": v}}}', "'x y' is not an HTTP header name"),
    ('{"a": {headers: {X: "a\\r\\nb"}}}', "header 'X' must be a one-line string"),
])
def test_bad_rules_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(cli={"hosts": text})
    assert message in str(caught.value) and "\n" not in str(caught.value)


ROBOTS = b"User-agent: abot\nDisallow: /b-only\n\nUser-agent: *\nDisallow: /star-only\n"


def test_a_hosts_user_agent_and_headers_go_under_the_requests_own() -> None:
    rules = SiteRules({"a.test": {"user_agent": "abot/1.0", "headers": {"X-Token": "t", "Accept": "text/x"}}})
    sent = site_headers(rules.for_host("a.test"), Headers({"accept": "text/plain"}), follows_redirects=False)
    assert dict(sent) == {"accept": "text/plain", "X-Token": "t", "User-Agent": "abot/1.0"}  # the request's wins
    # robots.txt follows its redirects inside the fetcher, wherever they point: the user agent only.
    robots = site_headers(rules.for_host("a.test"), Headers(), follows_redirects=True)
    assert dict(robots) == {"User-Agent": "abot/1.0"}
    plain = Headers({"X-Own": "1"})
    assert site_headers(rules.for_host("b.test"), plain, follows_redirects=False) is plain  # no rule: as it is


def test_robots_txt_is_matched_for_the_hosts_own_user_agent() -> None:
    rules = RobotsRules("crawlkit-test/1.0", sites=SiteRules({"a.test": {"user_agent": "abot/1.0 (+x)"}}))
    for host in ("a.test", "b.test"):
        rules.learn(host, 200, ROBOTS)
    assert not rules.allowed("http://a.test/b-only") and rules.allowed("http://a.test/star-only")
    assert rules.allowed("http://b.test/b-only") and not rules.allowed("http://b.test/star-only")


class _Recorder(BaseHTTPRequestHandler):
    """Each host: robots.txt, an index linking six pages and two robots-disallowed ones, and on
    host A a redirect to host B. Records (ip, path, headers) of every request."""

    seen: list[tuple[str, str, dict[str, str]]]
    lock = threading.Lock()
    b_base = ""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        ip = self.server.server_address[0]
        with self.lock:
            self.seen.append((ip, self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.path == "/robots.txt":
            self._send(200, ROBOTS, "text/plain")
        elif self.path == "/go":
            self.send_response(302)
            self.send_header("Location", self.b_base + "/from-a")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            links = [f"/p{i}" for i in range(6)] + ["/b-only", "/star-only"]
            if ip == "127.0.0.2":
                links.append("/go")
            body = "".join(f'<a href="{link}">{link}</a>' for link in links) if self.path == "/" else "leaf"
            self._send(200, f"<html><title>{self.path}</title>{body}</html>".encode(), "text/html")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def three_hosts() -> Iterator[tuple[list[str], list[tuple[str, str, dict[str, str]]]]]:
    seen: list[tuple[str, str, dict[str, str]]] = []
    handler = type("H", (_Recorder,), {"seen": seen})
    with ExitStack() as stack:
        bases = [stack.enter_context(serve_http(handler, f"127.0.0.{i}")) for i in (2, 3, 4)]
        handler.b_base = bases[1]
        yield bases, seen


def test_each_host_gets_its_own_user_agent_headers_robots_group_and_page_budget(crawlkit, tmp_path: Path) -> None:
    with three_hosts() as (bases, seen):
        a, b, c = (base.removeprefix("http://") for base in bases)
        hosts = {a: {"user_agent": "abot/1.0", "headers": {"X-Token": "secret-a"}}, c: {"max_pages": 3}}
        (tmp_path / "crawl.yaml").write_text(json.dumps({"hosts": hosts}))
        run = crawlkit("crawl", "--config", "crawl.yaml", "--user-agent", "crawlkit-test/1.0", "--stats", "stats.json",
                       seeds=[f"{base}/" for base in bases])
        requests = list(seen)
    assert run.returncode == 0, run.stderr
    by_host = {ip: [(path, headers) for host, path, headers in requests if host == ip]
               for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4")}
    pages = [f"/p{i}" for i in range(6)]
    # Host A: its user agent on every request, robots.txt included; its token on every request but robots.txt.
    assert {headers["user-agent"] for _, headers in by_host["127.0.0.2"]} == {"abot/1.0"}
    assert all(("x-token" in headers) == (path != "/robots.txt") for path, headers in by_host["127.0.0.2"])
    assert {h["x-token"] for p, h in by_host["127.0.0.2"] if p != "/robots.txt"} == {"secret-a"}
    # ... and robots.txt's group for abot: /b-only is disallowed, /star-only is not.
    assert sorted(path for path, _ in by_host["127.0.0.2"]) == sorted(
        ["/robots.txt", "/", "/go", "/star-only", *pages])
    # Host B: the crawl's user agent, the * group, and no token, not even on the redirect from A.
    assert {headers["user-agent"] for _, headers in by_host["127.0.0.3"]} == {"crawlkit-test/1.0"}
    assert not any("x-token" in headers for _, headers in by_host["127.0.0.3"])
    assert sorted(path for path, _ in by_host["127.0.0.3"]) == sorted(
        ["/robots.txt", "/", "/b-only", "/from-a", *pages])
    # Host C: three pages (robots.txt is not one), the rest dropped and counted.
    assert len([path for path, _ in by_host["127.0.0.4"] if path != "/robots.txt"]) == 3
    counts = json.loads((tmp_path / "stats.json").read_text())["counts"]
    assert counts[f"pages_site:{c}"] == 3 and counts["dropped_site_max_pages"] == 5  # 8 links, 3 pages in all
    assert len([item for item in run.items() if c in item["url"]]) == 3


def test_a_hosts_own_max_pages_counts_the_pages_of_a_resumed_crawls_earlier_runs(crawlkit, tmp_path: Path) -> None:
    with three_hosts() as (bases, seen):
        c = bases[2].removeprefix("http://")
        (tmp_path / "crawl.yaml").write_text(json.dumps({"hosts": {c: {"max_pages": 5}}}))
        common = ("crawl", "--config", "crawl.yaml", "--jobdir", "job")
        first = crawlkit(*common, "--max-pages", "3", seeds=[bases[2] + "/"])
        second = crawlkit(*common, "--stats", "stats.json", seeds=[bases[2] + "/"])
        requests = [path for _, path, _ in seen if path != "/robots.txt"]
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert len(requests) == len(set(requests)) == 5  # three in the first run, two in the resumed one
    counts = json.loads((tmp_path / "stats.json").read_text())["counts"]
    assert counts[f"pages_site:{c}"] == 5 and len(second.items()) == 5
