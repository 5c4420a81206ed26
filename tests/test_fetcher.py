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


# ------------------------------------------------------------------ a revalidation batch's own exchanges


def test_a_batchs_revisit_is_sent_as_the_session_sends_it_and_its_answer_read_as_fetch_reads_it(server: str) -> None:
    """The same request through ``fetch`` and through a revalidation batch's socket: the server sees the same
    headers, and a 200 (no 304: handed to http.client and urllib3) comes back the same."""
    request = Request(f"http://{server}/page?x=1", headers={"If-None-Match": '"v1"', "X-Extra": "1"})
    session = new_session(config())
    try:
        plain = fetch(session, request, config(), cookie="a=1")
        revisits = fetcher._Revisits(session, config())
        batched = revisits.fetch(request, None, "a=1")
        revisits.close()
    finally:
        session.close()
    assert [seen["path"] for seen in Recorder.seen] == ["/page?x=1", "/page?x=1"]
    assert Recorder.seen[0]["headers"] == Recorder.seen[1]["headers"]
    assert Recorder.seen[1]["headers"]["cookie"] == "a=1" and Recorder.seen[1]["headers"]["if-none-match"] == '"v1"'
    assert (batched.status, batched.body, batched.error, batched.status_line) == (
        plain.status, plain.body, plain.error, plain.status_line) == (200, b"<html>ok</html>", None, "HTTP/1.0 200 OK")
    assert dict(batched.headers)["Content-Type"] == "text/html" and batched.request_headers == plain.request_headers


def _answer_twice(peer: socket.socket, answers: list[bytes], heads: list[bytes]) -> None:
    """The peer of a batch's connection: reads each request head and writes the next answer."""
    with peer:
        for answer in answers:
            received = b""
            while b"\r\n\r\n" not in received:
                received += peer.recv(65_536)
            heads.append(received)
            peer.sendall(answer)


def test_a_batchs_304_is_read_without_requests_and_its_connection_kept_for_the_next_revisit() -> None:
    """On one connection (a socket pair: no server), a 304 then a chunked 200: the 304's head is read here and
    the connection reused; the 200 is de-chunked as fetch would, and its connection then dropped."""
    ours, peer = socket.socketpair()
    heads: list[bytes] = []
    answers = [b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nDate: Mon, 02 Nov 2026 10:00:00 GMT\r\n\r\n',
               b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"v2\"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]
    thread = threading.Thread(target=_answer_twice, args=(peer, answers, heads))
    thread.start()
    session = new_session(config())
    revisits = fetcher._Revisits(session, config())
    revisits.sock = ours  # as if connected to a.test by an earlier revisit of the batch
    try:
        request = Request("http://a.test/a", headers={"If-None-Match": '"v1"'})
        unchanged = revisits.fetch(request, None, "")
        assert (unchanged.status, unchanged.status_line, unchanged.error) == (304, "HTTP/1.1 304 Not Modified", None)
        assert unchanged.headers == [("ETag", '"v1"'), ("Date", "Mon, 02 Nov 2026 10:00:00 GMT")]
        assert fetcher._unchanged(unchanged, request) and revisits.sock is ours
        changed = revisits.fetch(Request("http://a.test/b", headers={"If-None-Match": '"v1"'}), None, "")
        assert (changed.status, changed.body, changed.error) == (200, b"hello", None)
        assert not fetcher._unchanged(changed, request) and revisits.sock is None
    finally:
        revisits.close()
        ours.close()
        session.close()
        thread.join(10)
    assert [head.split(b"\r\n")[:2] for head in heads] == [[b"GET /a HTTP/1.1", b"Host: a.test"],
                                                           [b"GET /b HTTP/1.1", b"Host: a.test"]]
    assert b'\r\nIf-None-Match: "v1"\r\n' in heads[0] and b"\r\nUser-Agent: crawlkit-test/1.0\r\n" in heads[0]


def test_a_304_with_new_validators_is_not_unchanged() -> None:
    request = Request("http://a.test/a", headers={"If-None-Match": '"v1"', "If-Modified-Since": "then"})
    answer = fetcher.FetchResult(0, request, request.url, status=304)
    assert fetcher._unchanged(answer, request)
    answer.headers = [("etag", '"v1"'), ("Last-Modified", "then")]
    assert fetcher._unchanged(answer, request)
    answer.headers = [("ETag", '"v2"')]
    assert not fetcher._unchanged(answer, request)
    answer.headers, answer.error = [], "read_timeout"
    assert not fetcher._unchanged(answer, request)
