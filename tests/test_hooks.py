"""Item pipelines and request/response hooks (middlewares), cookies and proxies, end to end through the CLI."""

from __future__ import annotations

import json
import re
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from forward_proxy import ForwardProxy
from support import leftover_processes, start_crawl, stop_crawl, wait_for

from crawlkit.tools.site import Site, SiteRequest, SiteSpec, respond

PIPES = '''
import os
from crawlkit import DropItem

OUT = {out!r}

class Tag:
    def open(self, spider):
        self.n = 0
        open(os.path.join(OUT, f"open-{{os.getpid()}}"), "w").close()

    def process_item(self, item, spider):
        self.n += 1
        item["tags"] = ["tag"]
        return item

    def close(self, spider):
        with open(os.path.join(OUT, f"close-{{os.getpid()}}"), "w") as f:
            f.write(str(self.n))

class DropOdd:
    def process_item(self, item, spider):
        if item["url"].endswith(("/1.html", "/3.html")):
            raise DropItem("odd page")
        item["tags"].append("kept")  # fails if Tag has not run first
        return item

class Boom:
    def process_item(self, item, spider):
        if item["url"].endswith("/4.html"):
            raise ValueError("boom on purpose")
        return item
'''


def closes(directory: Path) -> dict[str, int]:
    return {p.name: int(p.read_text()) for p in directory.glob("close-*")}


def test_pipelines_from_yaml_run_in_order_change_drop_and_survive_a_failing_one(crawlkit, tmp_path: Path) -> None:
    (tmp_path / "pipes.py").write_text(PIPES.format(out=str(tmp_path)))
    (tmp_path / "crawl.yaml").write_text("pipelines: [pipes.py:Tag, pipes.py:DropOdd, pipes.py:Boom]\nrobots: false\n")
    with Site(SiteSpec(hosts=1, pages=6, extras=False, robots=False)) as site:
        run = crawlkit("crawl", "--config", "crawl.yaml", "--parsers", "2", seeds=site.seeds())
        fetched = site.stats()["fetches"]
    assert run.returncode == 0, run.stderr
    assert len(fetched) == 7 and set(fetched.values()) == {1}  # index and 6 pages, as the server saw
    items = run.items()
    assert sorted(item["url"].rsplit("/", 1)[1] for item in items) == ["", "0.html", "2.html", "5.html"]
    assert all(item["tags"] == ["tag", "kept"] for item in items)
    assert "items dropped by pipelines: 3" in run.stderr and "pipeline 1" in run.stderr
    assert re.search(
        r"pipeline pipes\.py:Boom failed on an item from http://\S+/page/4\.html: ValueError: boom on purpose",
        run.stderr,
    )
    # Each parser process had its own instances, opened and closed once; together they saw every item.
    assert len(list(tmp_path.glob("open-*"))) == 2
    assert len(closes(tmp_path)) == 2 and sum(closes(tmp_path).values()) == 7


@pytest.mark.parametrize(
    "value, message",
    [
        ("[nowhere.py:Pipe]", "Error: pipeline file 'nowhere.py' does not exist"),
        ("[json:NoSuchClass]", "Error: json has no 'NoSuchClass' for pipeline 'json:NoSuchClass'"),
        ("[no_such_module_xyz:Pipe]", "Error: cannot import module 'no_such_module_xyz' for pipeline"),
        ("[json:JSONDecoder]", "Error: pipeline 'json:JSONDecoder' must name a class (path.py:Class or module:Class) "
                               "with a process_item() method"),
    ],
)
def test_a_pipeline_that_cannot_be_loaded_stops_the_crawl_before_it_starts(crawlkit, value: str, message: str) -> None:
    with Site(SiteSpec(hosts=1, pages=3, extras=False)) as site:
        run = crawlkit("crawl", "-s", f"pipelines={value}", seeds=site.seeds())
        assert site.stats()["total"] == 0  # not one request
    assert run.returncode == 2
    assert run.stderr.startswith(message) and len(run.stderr.splitlines()) == 1, run.stderr


def test_a_middleware_that_cannot_be_loaded_is_a_one_line_error(crawlkit, tmp_path: Path) -> None:
    (tmp_path / "hooks.py").write_text(
        "class NeedsArgs:\n    def __init__(self, x):\n        pass\n"
        "    def process_request(self, request, spider):\n        return request\n"
    )
    run = crawlkit("crawl", "-s", "middlewares=[hooks.py:NeedsArgs]", seeds=["http://127.0.0.2:9/"])
    assert run.returncode == 2
    assert run.stderr.startswith("Error: middleware 'hooks.py:NeedsArgs' could not be created: TypeError")
    assert len(run.stderr.splitlines()) == 1


@pytest.mark.parametrize("proxy", ["127.0.0.1:3128", "ftp://127.0.0.1:21", "http://:8080", "http://127.0.0.1:99999"])
def test_a_proxy_setting_that_is_no_proxy_url_is_a_one_line_error(crawlkit, proxy: str) -> None:
    run = crawlkit("crawl", "-s", f"proxy={proxy}", seeds=["http://127.0.0.2:9/"])
    assert run.returncode == 2
    assert run.stderr == f"Error: proxy {proxy!r} is not a proxy URL; write it as http://host:port or http://user:password@host:port\n"


def test_pipelines_from_custom_settings_are_closed_after_ctrl_c(tmp_path: Path) -> None:
    (tmp_path / "pipes.py").write_text(PIPES.format(out=str(tmp_path)))
    (tmp_path / "slow.py").write_text(
        "from crawlkit import LinkSpider\n\n"
        "class Slow(LinkSpider):\n    custom_settings = {'pipelines': ['pipes.py:Tag']}\n"
    )
    out = tmp_path / "out.jsonl"
    with Site(SiteSpec(hosts=2, pages=300, latency=0.05, extras=False)) as site:
        proc, marker = start_crawl(tmp_path, site.seeds(), out, "--spider", "slow.py:Slow", "--parsers", "2")
        wait_for(lambda: out.exists() and out.read_text().count("\n") > 20, 60, "the first items")
        stderr = stop_crawl(proc, marker, signal.SIGINT)
    assert proc.returncode == 130, stderr
    written = out.read_text().splitlines()
    assert all('"tags": ["tag"]' in line for line in written)
    assert len(closes(tmp_path)) == 2  # close() ran in both parser processes
    assert sum(closes(tmp_path).values()) == len(written)  # and they had seen exactly the items written
    assert not leftover_processes(marker)


# ---------------------------------------------------------------- middlewares, cookies, proxies

HOOKS = '''
from crawlkit import IgnoreRequest, RetryRequest

class AddToken:
    def process_request(self, request, spider):
        if request.url.endswith("/drop"):
            raise IgnoreRequest("not this one")
        request.headers["X-Token"] = "secret"  # in place: None goes on with it, as in Scrapy

class CaptchaRetry:
    def process_response(self, response, spider):
        if b"captcha" in response.body:
            raise RetryRequest("captcha page")
        return response
'''

SPIDER = '''
from crawlkit import Request, Spider

class Session(Spider):
    name = "session"
    start_urls = [{base0!r} + "/login"]

    def parse(self, response):
        for n in range(20):
            yield Request(f"{base0}/echo?n={{n}}", callback="echo")
        yield Request({base1!r} + "/echo?n=other", callback="echo")
        yield Request({base0!r} + "/captcha", callback="echo")
        yield Request({base0!r} + "/drop", callback="echo")

    def echo(self, response):
        yield {{"url": response.url, "text": response.text}}
        if response.url.endswith("n=0"):
            yield Request({base0!r} + "/final", callback="echo")
'''


class Recorder:
    """Routes that record each request's headers, as the server received them."""

    def __init__(self, site: Site) -> None:
        self.seen: list[tuple[int, str, dict[str, str]]] = []
        self.captchas = Counter()
        site.route("/robots.txt", self.recording(respond(404)))
        site.route("/login",
                   self.recording(respond(200, b"<html>welcome</html>", {"Set-Cookie": "session=abc123; Path=/"})))
        site.route("/echo", self.recording(self.echo))
        site.route("/captcha", self.recording(self.captcha))
        site.route("/drop", self.recording(respond(200, b"dropped?")))
        site.route("/final", self.recording(respond(200, b"<html>final</html>")))

    def recording(self, handler: Any) -> Any:
        async def record(request: SiteRequest, writer: Any) -> None:
            self.seen.append((request.host, request.path, dict(request.headers)))
            await handler(request, writer)

        return record

    async def echo(self, request: SiteRequest, writer: Any) -> None:
        # Two Set-Cookie headers in one response; the first one's Expires holds a comma, which
        # headers folded into one line would split wrongly.
        body = b"<html>echo</html>"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
                     b"Set-Cookie: theme=dark; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/\r\n"
                     b"Set-Cookie: lang=en; Path=/\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    async def captcha(self, request: SiteRequest, writer: Any) -> None:
        self.captchas[request.host] += 1
        first = self.captchas[request.host] == 1
        body = b"<html>please solve this captcha</html>" if first else b"<html>the real page</html>"
        await respond(200, body)(request, writer)

    def requests(self, host: int, path: str) -> list[dict[str, str]]:
        return [headers for h, p, headers in self.seen if h == host and p.split("?")[0] == path]


def run_session(crawlkit, tmp_path: Path, site: Site, *args: str):
    (tmp_path / "hooks.py").write_text(HOOKS)
    (tmp_path / "session.py").write_text(SPIDER.format(base0=site.urls[0], base1=site.urls[1]))
    return crawlkit("runspider", "session.py", "--workers", "2", "--concurrency", "8", "--per-host", "4",
                    "-s", "middlewares=[hooks.py:AddToken, hooks.py:CaptchaRetry]", "-s", "retry_backoff=0.05", *args)


def test_middlewares_set_headers_drop_requests_and_retry_by_a_custom_rule(crawlkit, tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=2, pages=1, extras=False)) as site:
        recorder = Recorder(site)
        run = run_session(crawlkit, tmp_path, site)
    assert run.returncode == 0, run.stderr
    every = [headers for _, path, headers in recorder.seen]
    assert len(every) == 2 + 1 + 21 + 2 + 1  # robots.txt x2, login, echoes, captcha twice, final
    assert all(headers.get("x-token") == "secret" for headers in every)  # robots.txt included
    assert not recorder.requests(0, "/drop")  # dropped before sending
    assert len(recorder.requests(0, "/captcha")) == 2  # the custom retry rule fetched it again
    items = {item["url"].rsplit("/", 1)[1]: item["text"] for item in run.items()}
    assert items["captcha"] == "<html>the real page</html>"
    assert len(items) == 23
    assert "middleware 1" in run.stderr  # the drop, counted among the filtered
    assert re.search(r"retrying http://\S+/captcha: captcha page", run.stderr)


def test_a_middleware_whose_open_fails_is_counted_in_every_process_and_the_crawl_goes_on(
    crawlkit, tmp_path: Path
) -> None:
    (tmp_path / "broken.py").write_text(
        "class Broken:\n"
        "    def open(self, spider):\n        raise RuntimeError('no licence key')\n"
        "    def process_request(self, request, spider):\n"
        "        request.headers['X-Seen'] = '1'\n        return request\n"
        "    def process_response(self, response, spider):\n        return response\n"
    )
    with Site(SiteSpec(hosts=1, pages=5, extras=False)) as site:
        run = crawlkit("crawl", "--workers", "1", "--concurrency", "2", "--stats", "stats.json",
                       "-s", "middlewares=[broken.py:Broken]", seeds=site.seeds())
        fetched = site.stats()["fetches"]
    assert run.returncode == 0, run.stderr
    counts = json.loads((tmp_path / "stats.json").read_text())["counts"]
    # One instance per fetch thread (2) and per parser (1), each open() failing once.
    assert counts["error_middleware"] == 3, counts
    assert run.stderr.count("open() raised RuntimeError: no licence key") == 3
    assert len(run.items()) == 6 and len(fetched) == 7  # every page, and robots.txt


def test_cookies_set_by_a_server_are_sent_back_to_that_host_only(crawlkit, tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=2, pages=1, extras=False)) as site:
        recorder = Recorder(site)
        run = run_session(crawlkit, tmp_path, site)
        assert run.returncode == 0, run.stderr
        echoes = recorder.requests(0, "/echo")
        assert len(echoes) == 20
        # Fetched by several processes and threads, every one after the login carried its cookie.
        assert all("session=abc123" in headers.get("cookie", "") for headers in echoes)
        assert "cookie" not in recorder.requests(0, "/login")[0]
        final = recorder.requests(0, "/final")[0]  # yielded by an echo's callback, so sent after its Set-Cookie
        assert sorted(final["cookie"].split("; ")) == ["lang=en", "session=abc123", "theme=dark"]
        assert "cookie" not in recorder.requests(1, "/echo")[0]  # another host gets none of them

        recorder.seen.clear()
        run = run_session(crawlkit, tmp_path, site, "-s", "cookies=false")
        assert run.returncode == 0, run.stderr
        assert recorder.seen and not any("cookie" in headers for _, _, headers in recorder.seen)


PROXY_HOOK = '''
class ProxyHostOne:
    def process_request(self, request, spider):
        if "{host1}" in request.url:
            request.meta["proxy"] = "{proxy}"
        return request
'''


def test_requests_go_through_the_proxy_of_the_setting_or_of_request_meta(crawlkit, tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=2, pages=5, extras=False)) as site, ForwardProxy() as proxy:
        run = crawlkit("crawl", "-s", f"proxy={proxy.url}", seeds=site.seeds())
        assert run.returncode == 0, run.stderr
        served = Counter({f"http://{key}": n for key, n in site.stats()["fetches"].items()})
        assert len(served) == 2 * 7  # index, 5 pages and robots.txt on each host
        assert Counter(proxy.urls()) == served  # every request the server saw came through the proxy
        assert all(headers["user-agent"].startswith("crawlkit/") for _, _, headers in proxy.seen)

        site.reset_stats()
        proxy.seen.clear()
        (tmp_path / "via.py").write_text(PROXY_HOOK.format(host1=site.urls[1].split("//")[1], proxy=proxy.url))
        run = crawlkit("crawl", "-s", "middlewares=[via.py:ProxyHostOne]", seeds=site.seeds())
        assert run.returncode == 0, run.stderr
        served = site.stats()["fetches"]
    assert len(served) == 2 * 7
    proxied = sorted(f"http://{key}" for key in served if key.startswith(site.urls[1].split("//")[1]))
    assert sorted(proxy.urls()) == proxied


def test_proxy_environment_variables_are_honoured_per_host(crawlkit, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY and NO_PROXY as curl and requests read them (crawlkit reads them once per host)."""
    with Site(SiteSpec(hosts=2, pages=3, extras=False)) as site, ForwardProxy() as proxy:
        direct = site.urls[0].split("//")[1].split(":")[0]
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", direct)
        run = crawlkit("crawl", seeds=site.seeds())
        assert run.returncode == 0, run.stderr
        served = site.stats()["fetches"]
    assert len(served) == 2 * 5  # index, 3 pages and robots.txt on each host
    proxied = site.urls[1].split("//")[1]
    assert sorted(proxy.urls()) == sorted(f"http://{key}" for key in served if key.startswith(proxied))


AUTH_HOOK = '''
class Auth:
    def process_request(self, request, spider):
        if "{host0}" in request.url:
            request.headers["Authorization"] = "Bearer s3cret"  # changed in place, as users write it
        return request
'''


def test_what_a_hook_changes_is_for_that_send_only_and_never_follows_a_redirect(crawlkit, tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=2, pages=1, extras=False)) as site:
        seen: list[tuple[int, str, dict[str, str]]] = []

        def recording(handler: Any) -> Any:
            async def record(request: SiteRequest, writer: Any) -> None:
                seen.append((request.host, request.path, dict(request.headers)))
                await handler(request, writer)
            return record

        site.route("/robots.txt", recording(respond(404)))
        site.route("/", recording(respond(200, b'<a href="/moved">m</a>')))
        site.route("/moved", recording(respond(302, b"", {"Location": site.urls[1] + "/target"})))
        site.route("/target", recording(respond(200, b"<title>target</title>")))
        host0 = site.urls[0].split("//")[1]
        (tmp_path / "auth.py").write_text(AUTH_HOOK.format(host0=host0))
        run = crawlkit("crawl", "-s", "middlewares=[auth.py:Auth]",
                       "--allow-domain", site.urls[1].split("//")[1].split(":")[0], seeds=[site.urls[0] + "/"])
    assert run.returncode == 0, run.stderr
    by_path = {(host, target): headers for host, target, headers in seen}
    assert by_path[(0, "/moved")].get("authorization") == "Bearer s3cret"
    assert "authorization" not in by_path[(1, "/target")]  # the redirect to another host did not carry it
