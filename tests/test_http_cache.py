"""The development HTTP cache on answers built directly: storage, expiry, ignored statuses, the RFC 9111 policy."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from crawlkit.errors import ConfigError
from crawlkit.fetch import cache as cache_module
from crawlkit.fetch.cache import HttpCache, check_cache_dir
from crawlkit.http import Request
from crawlkit.messages import FetchResult
from crawlkit.settings import load_settings

URL = "http://127.0.0.2:8000/page/1.html"


def make_cache(tmp_path: Path, ttl: float = 0.0, ignore: tuple[int, ...] = (), rfc9111: bool = False,
               max_body: int = 10_000_000) -> HttpCache:
    return HttpCache(str(tmp_path / "cache"), ttl, frozenset(ignore), rfc9111, max_body)


def answer(request: Request, status: int = 200, headers: list[tuple[str, str]] | None = None,
           body: bytes = b"<title>one</title>") -> FetchResult:
    return FetchResult(req_id=7, request=request, url=request.url, status=status, status_line=f"HTTP/1.1 {status} X",
                       headers=headers if headers is not None else [("Content-Type", "text/html")],
                       request_headers=[("User-Agent", "crawlkit")], body=body, elapsed=0.25)


class Server:
    """Stands in for the fetch: records each request it is sent and answers from a list, in turn."""

    def __init__(self, *answers: Callable[[Request], FetchResult]) -> None:
        self.answers = list(answers)
        self.seen: list[Request] = []

    def __call__(self, request: Request) -> FetchResult:
        self.seen.append(request)
        return self.answers.pop(0)(request)


def test_an_answer_round_trips_and_a_hit_does_not_reach_the_server(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    request = Request(URL)
    headers = [("Content-Type", "text/html"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    first = cache.fetch(request, Server(lambda r: answer(r, headers=headers, body=b"\n\x00binary\n")))
    assert first.counts == {"http_cache_misses": 1}

    server = Server()
    hit = cache.fetch(Request(URL), server)
    assert server.seen == []
    assert (hit.url, hit.status, hit.status_line, hit.headers, hit.body) == (
        URL, 200, "HTTP/1.1 200 X", headers, b"\n\x00binary\n")
    assert hit.request_headers == [("User-Agent", "crawlkit")]
    assert hit.counts == {"http_cache_hits": 1}
    # One file a request, a JSON line and the body: nothing that unpickles.
    [path] = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert path == cache.path(request)
    assert json.loads(path.read_bytes().partition(b"\n")[0])["request_url"] == URL


def test_credentials_sent_are_not_kept_in_the_cache_file(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    sent = [("User-Agent", "crawlkit"), ("Cookie", "session=s3cret"), ("Authorization", "Bearer t0ken"),
            ("proxy-authorization", "Basic cHc=")]
    cache.fetch(Request(URL), Server(lambda r: FetchResult(1, r, r.url, 200, "HTTP/1.1 200 OK", [], sent, b"x")))
    data = cache.path(Request(URL)).read_bytes()
    assert b"s3cret" not in data and b"t0ken" not in data and b"cHc=" not in data
    assert cache.fetch(Request(URL), Server()).request_headers == [("User-Agent", "crawlkit")]


def test_a_file_longer_than_max_body_is_a_miss_and_not_read_whole(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, max_body=1000)
    cache.fetch(Request(URL), Server(lambda r: answer(r, body=b"x" * 1000)))
    assert cache.hit(Request(URL)) is not None  # a body of max_body is served
    path = cache.path(Request(URL))
    with open(path, "ab") as file:  # someone else's edit: more than max_body and the head line allow
        file.write(b"y" * (1 << 20))
    assert cache.hit(Request(URL)) is None


def test_method_and_body_are_part_of_the_key(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    cache.fetch(Request(URL, method="POST", body=b"q=1"), Server(lambda r: answer(r, body=b"one")))
    server = Server(lambda r: answer(r, body=b"two"), lambda r: answer(r, body=b"three"))
    assert cache.fetch(Request(URL, method="POST", body=b"q=2"), server).body == b"two"
    assert cache.fetch(Request(URL), server).body == b"three"
    assert len(server.seen) == 2
    assert cache.fetch(Request(URL, method="POST", body=b"q=1"), Server()).body == b"one"


@pytest.mark.parametrize("damage", [
    lambda data: data[:10],  # cut in its head line
    lambda data: b"\x80\x04garbage\n" + data,  # not JSON
    lambda data: data.replace(b'"v":1', b'"v":99'),  # another format
    lambda data: data.replace(URL.encode(), b"http://other.test/"),  # another request's file
])
def test_a_file_that_does_not_read_back_is_a_miss(tmp_path: Path, damage: Callable[[bytes], bytes]) -> None:
    cache = make_cache(tmp_path)
    cache.fetch(Request(URL), Server(lambda r: answer(r, body=b"old")))
    path = cache.path(Request(URL))
    path.write_bytes(damage(path.read_bytes()))
    assert cache.fetch(Request(URL), Server(lambda r: answer(r, body=b"new"))).body == b"new"
    assert cache.fetch(Request(URL), Server()).body == b"new"  # and was replaced


def test_writes_are_atomic_and_leave_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = make_cache(tmp_path)
    cache.fetch(Request(URL), Server(lambda r: answer(r, body=b"kept")))

    def killed(*args: object) -> None:  # the process dies between writing and renaming
        raise OSError("no space left")

    monkeypatch.setattr(cache_module.os, "replace", killed)
    assert not cache.store(Request(URL), answer(Request(URL), body=b"half"))
    assert cache.fetch(Request(URL + "?b"), Server(answer)).counts == {"http_cache_misses": 1,
                                                                        "http_cache_unwritten": 1}
    monkeypatch.undo()
    assert cache.fetch(Request(URL), Server()).body == b"kept"
    assert not [p for p in (tmp_path / "cache").rglob("*.tmp")]


def test_writers_racing_on_one_answer_leave_one_whole_answer(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    bodies = {bytes([n]) * 200_000 for n in range(8)}
    threads = [threading.Thread(target=cache.store, args=(Request(URL), answer(Request(URL), body=body)))
               for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.fetch(Request(URL), Server()).body in bodies
    assert not [p for p in (tmp_path / "cache").rglob("*.tmp")]


def test_an_answer_older_than_the_ttl_is_fetched_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = make_cache(tmp_path, ttl=60)
    cache.fetch(Request(URL), Server(lambda r: answer(r, body=b"old")))
    now = cache_module.time.time()
    monkeypatch.setattr(cache_module.time, "time", lambda: now + 59)
    assert cache.fetch(Request(URL), Server()).body == b"old"
    monkeypatch.setattr(cache_module.time, "time", lambda: now + 61)
    server = Server(lambda r: answer(r, body=b"new"))
    assert cache.fetch(Request(URL), server).body == b"new" and len(server.seen) == 1
    assert cache.fetch(Request(URL), Server()).body == b"new"  # stored anew, young again


def test_ignored_statuses_and_failures_are_never_stored(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, ignore=(503,))
    failed = FetchResult(req_id=1, request=Request(URL), url=URL, error="read_timeout")
    for result in (answer(Request(URL), status=503), failed):
        server = Server(lambda r, result=result: result, lambda r, result=result: result)
        cache.fetch(Request(URL), server)
        cache.fetch(Request(URL), server)
        assert len(server.seen) == 2
    cache.fetch(Request(URL), Server(lambda r: answer(r, status=404)))
    assert cache.fetch(Request(URL), Server()).status == 404  # not ignored: stored
    ignoring = make_cache(tmp_path, ignore=(404,))  # a later run that ignores it asks again
    assert ignoring.fetch(Request(URL), Server(lambda r: answer(r, body=b"found"))).body == b"found"


def test_a_recrawl_revisit_asks_the_server_and_a_change_replaces_the_stored_answer(tmp_path: Path) -> None:
    """A recrawl round exists to ask the server whether a page changed: the stored answer would make
    every revisit a changed page (a 200), its items written again, whatever the server says."""
    cache = make_cache(tmp_path)
    cache.fetch(Request(URL), Server(lambda r: answer(r, body=b"v1")))
    revisit = Request(URL, headers={"If-None-Match": '"v1"'}, meta={"revisit": True})
    server = Server(lambda r: answer(r, status=304, body=b""), lambda r: answer(r, body=b"v2"))
    unchanged = cache.fetch(revisit, server)
    assert (unchanged.status, unchanged.counts) == (304, {"http_cache_misses": 1})
    assert cache.fetch(revisit, server).body == b"v2"
    assert [r.headers["If-None-Match"] for r in server.seen] == ['"v1"', '"v1"']
    assert cache.fetch(Request(URL), Server()).body == b"v2"  # the change is what a later run gets
    # Nor does the engine dispatch a revisit as a hit (without a permit, served from the file).
    stored = cache.stored_answers(time.time())
    assert stored is not None and not stored.take(revisit) and stored.take(Request(URL))


def test_the_default_policy_serves_what_http_would_not(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    cache.fetch(Request(URL), Server(lambda r: answer(r, headers=[("Cache-Control", "no-store, max-age=0")])))
    assert cache.fetch(Request(URL), Server()).counts == {"http_cache_hits": 1}


def rfc_cache(tmp_path: Path, headers: list[tuple[str, str]], body: bytes = b"v1") -> HttpCache:
    """An RFC 9111 cache holding an answer to URL with ``headers``."""
    cache = make_cache(tmp_path, rfc9111=True)
    cache.fetch(Request(URL), Server(lambda r: answer(r, headers=headers, body=body)))
    return cache


@pytest.mark.parametrize("headers", [
    [("Cache-Control", "public, max-age=3600")],
    [("Date", "Tue, 01 Dec 2026 10:00:00 GMT"), ("Expires", "Tue, 01 Dec 2126 10:00:00 GMT")],
    # Heuristic freshness: a tenth of the time since Last-Modified (about ten years here).
    [("Date", "Tue, 01 Dec 2026 10:00:00 GMT"), ("Last-Modified", "Tue, 01 Dec 1926 10:00:00 GMT")],
])
def test_rfc9111_serves_a_fresh_answer_without_the_server(tmp_path: Path, headers: list[tuple[str, str]]) -> None:
    cache = rfc_cache(tmp_path, headers)
    assert cache.fetch(Request(URL), Server()).counts == {"http_cache_hits": 1}


def test_rfc9111_revalidates_a_stale_answer_and_serves_the_304_from_the_cache(tmp_path: Path) -> None:
    cache = rfc_cache(tmp_path, [("Cache-Control", "max-age=0"), ("ETag", '"v1"'),
                                 ("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT"), ("Content-Length", "2")])
    server = Server(lambda r: answer(r, status=304, body=b"", headers=[
        ("Cache-Control", "max-age=0"), ("ETag", '"v1"'), ("X-Checked", "yes"), ("Content-Length", "0")]))
    served = cache.fetch(Request(URL, headers={"Accept": "text/html"}), server)
    [sent] = server.seen
    assert (sent.headers["If-None-Match"], sent.headers["If-Modified-Since"], sent.headers["Accept"]) == (
        '"v1"', "Tue, 01 Dec 2026 10:00:00 GMT", "text/html")
    assert (served.status, served.body, served.counts) == (200, b"v1", {"http_cache_revalidated": 1})
    headers = dict(served.headers)
    assert headers["X-Checked"] == "yes" and headers["Content-Length"] == "2"  # the 304's own length is not the body's
    assert dict(cache.fetch(Request(URL), Server(lambda r: answer(r, status=304, body=b""))).headers)["X-Checked"]


def test_rfc9111_a_changed_page_replaces_the_stored_one(tmp_path: Path) -> None:
    cache = rfc_cache(tmp_path, [("Cache-Control", "no-cache"), ("ETag", '"v1"')])
    changed = cache.fetch(Request(URL), Server(lambda r: answer(r, body=b"v2", headers=[("ETag", '"v2"')])))
    assert (changed.body, changed.counts) == (b"v2", {"http_cache_misses": 1})
    server = Server(lambda r: answer(r, status=304, body=b""))
    assert cache.fetch(Request(URL), server).body == b"v2"
    assert server.seen[0].headers["If-None-Match"] == '"v2"'


def test_rfc9111_stale_without_validators_is_a_plain_fetch(tmp_path: Path) -> None:
    cache = rfc_cache(tmp_path, [("Content-Type", "text/html")])
    server = Server(lambda r: answer(r, body=b"v2"))
    assert cache.fetch(Request(URL), server).body == b"v2"
    assert "If-None-Match" not in server.seen[0].headers and "If-Modified-Since" not in server.seen[0].headers


def test_rfc9111_no_store_and_request_directives(tmp_path: Path) -> None:
    cache = rfc_cache(tmp_path, [("Cache-Control", "no-store, max-age=3600")])
    server = Server(lambda r: answer(r))
    cache.fetch(Request(URL), server)
    assert len(server.seen) == 1  # never stored, so asked again

    cache = rfc_cache(tmp_path / "b", [("Cache-Control", "max-age=3600"), ("ETag", '"v1"')])
    server = Server(lambda r: answer(r, status=304, body=b""), lambda r: answer(r, body=b"v3"))
    assert cache.fetch(Request(URL, headers={"Cache-Control": "no-cache"}), server).counts == {
        "http_cache_revalidated": 1}
    assert cache.fetch(Request(URL, headers={"Cache-Control": "no-store"}), server).body == b"v3"
    assert [r.headers.get("If-None-Match") for r in server.seen] == ['"v1"', None]
    assert cache.fetch(Request(URL, headers={"Cache-Control": "max-age=0"}), Server(
        lambda r: answer(r, status=304, body=b""))).body == b"v1"  # no-store did not store v3


def test_settings_and_scrapy_names(tmp_path: Path) -> None:
    settings = load_settings(spider_settings={
        "HTTPCACHE_ENABLED": True, "HTTPCACHE_EXPIRATION_SECS": 30, "HTTPCACHE_IGNORE_HTTP_CODES": [500, 503],
        "HTTPCACHE_POLICY": "scrapy.extensions.httpcache.RFC2616Policy",
    })
    assert (settings.http_cache, settings.http_cache_ttl, settings.http_cache_ignore_statuses,
            settings.http_cache_rfc9111) == ("httpcache", 30.0, (500, 503), True)
    assert load_settings(spider_settings={"HTTPCACHE_DIR": "dev"}).http_cache == "dev"
    assert load_settings(spider_settings={"HTTPCACHE_ENABLED": False}).http_cache is None
    with pytest.raises(ConfigError, match=r"^-s http_cache_ttl=-1: 'http_cache_ttl' must be a finite number from 0"):
        load_settings(cli={"http_cache_ttl": "-1"})
    with pytest.raises(ConfigError, match="HTTPCACHE_POLICY is crawlkit's http_cache_rfc9111.*RFC2616Policy or "
                                          "DummyPolicy, got 'my.Policy'"):
        load_settings(spider_settings={"HTTPCACHE_POLICY": "my.Policy"})
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"^http_cache '.*/file/cache': cannot create the directory \(Not a dir"):
        check_cache_dir(str(blocker / "cache"))
    check_cache_dir(str(tmp_path / "new"))
    assert (tmp_path / "new").is_dir()
    made = HttpCache.from_settings(load_settings(cli={"http_cache": "dev", "http_cache_ttl": 5}))
    assert made == HttpCache(str(Path("dev").resolve()), 5.0, frozenset(), False, 10_485_760)
    assert HttpCache.from_settings(load_settings()) is None


def test_the_engine_lists_the_answers_stored_and_not_about_to_expire(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, ttl=3600)
    old, new = Request(URL), Request(URL + "?new")
    for request in (old, new):
        assert cache.store(request, answer(request))
    stored_at = cache.path(old).stat().st_mtime
    # An hour after the first was stored: the first is within EXPIRY_MARGIN of its ttl; the second, younger, is not.
    os.utime(cache.path(new), (stored_at + 600, stored_at + 600))
    listed = cache.stored_answers(stored_at + 3600 - cache_module.EXPIRY_MARGIN)
    assert listed is not None and listed.names == {cache_module.key(new)}
    assert listed.take(new) and not listed.take(new) and not listed.take(old)
    forever = make_cache(tmp_path)
    assert forever.stored_answers(stored_at + 10**9).names == {cache_module.key(old), cache_module.key(new)}
    assert make_cache(tmp_path, rfc9111=True).stored_answers(stored_at) is None  # freshness is in the headers


def test_a_hit_is_read_from_its_file_alone(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    request = Request(URL)
    assert cache.hit(request) is None
    cache.store(request, answer(request))
    hit = cache.hit(request)
    assert hit is not None and hit.body == b"<title>one</title>" and hit.counts == {cache_module.HITS: 1}
