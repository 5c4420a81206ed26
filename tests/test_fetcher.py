"""One exchange as the fetcher sends it, recorded by a plain HTTP server on loopback."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from crawlkit.fetch import fetcher
from crawlkit.fetch.fetcher import FetcherConfig, fetch, new_session
from crawlkit.http import Request
from crawlkit.log import LogConfig


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with 200 and records method, path, headers and body."""

    seen: list[dict[str, Any]] = []

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Recorder.seen.append({"method": self.command, "path": self.path, "body": body,
                              "user_agents": self.headers.get_all("User-Agent"),
                              "headers": {name.lower(): value for name, value in self.headers.items()}})
        reply = b"" if self.command == "HEAD" else b"<html>ok</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", "15")
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = do_HEAD = _record

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.2", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.2:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def config() -> FetcherConfig:
    return FetcherConfig(threads=1, user_agent="crawlkit-test/1.0", connect_timeout=5, read_timeout=5,
                         download_timeout=10, max_body=1_000_000, max_redirects=5, log=LogConfig(), proxy=None,
                         middlewares=[], spider=None, spider_kwargs={})


def test_method_body_headers_cookie_and_url_credentials_are_sent_as_given(server: str) -> None:
    session = new_session(config())
    post = Request(f"http://user:s%40cret@{server}/form?x=1", method="POST", body=b"a=1&b=2",
                   headers={"Content-Type": "application/x-www-form-urlencoded", "user-agent": "mine/2",
                            "X-Extra": "yes"})
    result = fetch(session, post, config(), cookie="session=abc")
    assert (result.status, result.error, result.body) == (200, None, b"<html>ok</html>")
    head = fetch(session, Request(f"http://{server}/h%C3%A9?q=%20", method="HEAD"), config())
    assert (head.status, head.body) == (200, b"")
    first, second = Recorder.seen
    assert (first["method"], first["path"], first["body"]) == ("POST", "/form?x=1", b"a=1&b=2")
    headers = first["headers"]
    assert headers["content-type"] == "application/x-www-form-urlencoded" and headers["content-length"] == "7"
    assert first["user_agents"] == ["mine/2"]  # the request's header replaces the session's, whatever its case
    assert headers["x-extra"] == "yes" and headers["cookie"] == "session=abc"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"user:s@cret").decode()
    assert headers["accept"].startswith("text/html")
    assert (second["method"], second["path"], second["body"]) == ("HEAD", "/h%C3%A9?q=%20", b"")
    assert second["headers"]["user-agent"] == "crawlkit-test/1.0" and "authorization" not in second["headers"]


def test_a_host_name_that_does_not_resolve_is_its_own_kind_of_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_address(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_address)  # what the resolver says of a name that does not exist
    result = fetch(new_session(config()), Request("http://no-such-host.invalid/"), config())
    assert (result.status, result.error) == (0, "unresolvable_host")
    assert "no-such-host.invalid" in result.message


def test_percent_escapes_are_sent_as_written_and_only_a_stray_percent_is_escaped(server: str) -> None:
    session = new_session(config())
    # urllib3 upper-cases the hex of an escape (%2f -> %2F): the same URL by RFC 3986.
    for path, sent in [("/%41%2F%zz%", "/%41%2F%25zz%25"), ("/a%2fb?q=%7e%&r=%C3%A9", "/a%2Fb?q=%7E%25&r=%C3%A9"),
                       ("/sp ace/é?x=<%>", "/sp%20ace/%C3%A9?x=%3C%25%3E"), ("/%41", "/%41")]:
        result = fetch(session, Request(f"http://{server}{path}"), config())
        assert (result.status, result.error) == (200, None), path
        assert Recorder.seen[-1]["path"] == sent, path


def test_elapsed_is_the_exchange_without_the_wait_for_the_hosts_turn(server: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The politeness wait is the crawl's choice, not the server's slowness: the response times
    (live view "avg time", stats mean_s, the report's slowest hosts) must not include it."""
    clock = {"offset": 0.0}
    monkeypatch.setattr(fetcher, "time", SimpleNamespace(monotonic=lambda: time.monotonic() + clock["offset"],
                                                         sleep=time.sleep))

    @contextmanager
    def minute_long_turn() -> Iterator[None]:
        clock["offset"] += 60.0  # the host's turn came a minute later, by the fetcher's clock
        yield

    result = fetch(new_session(config()), Request(f"http://{server}/slow-turn"), config(), minute_long_turn())
    assert result.status == 200 and Recorder.seen[0]["path"] == "/slow-turn"
    assert 0 < result.elapsed < 60
