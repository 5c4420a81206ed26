"""WARC files: exchanges recorded as sent, revisit records, warcio's check, CDXJ indexes and replay in pywb.

The crawls run the real ``crawlkit`` against a local site and compare the records with the bytes
the site sent; the unit tests build FetchResults and fake transfers directly.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from support import wait_for, warc_records
from warcio.archiveiterator import ArchiveIterator
from warcio.recordloader import ArcWarcRecord

from crawlkit import __version__
from crawlkit.errors import FetchErrorKind
from crawlkit.extensions.warc import WarcWriter, prepare_warc_dir, warcinfo_settings
from crawlkit.extensions.warc_digests import DigestIndex, seed
from crawlkit.fetch.cache import HITS, REVALIDATED
from crawlkit.fetch.fetcher import _decoder, _read_encoded_body
from crawlkit.http import Request, Response
from crawlkit.log import LogConfig
from crawlkit.messages import FetchResult, PageDone
from crawlkit.parse.archive import WarcStage
from crawlkit.parse.parser import ParserConfig
from crawlkit.parse.retry import RetryPolicy
from crawlkit.parse.stages import Page, StageSetup
from crawlkit.settings import load_settings
from crawlkit.spider import Spider
from crawlkit.tools.site import Site, SiteRequest, SiteSpec
from crawlkit.urls import Fingerprinter

WARCIO = str(Path(sys.executable).with_name("warcio"))
PAGE = b"<html><head><title>kept</title></head><body>" + b"squeeze " * 3000 + b"</body></html>"
PACKED = gzip.compress(PAGE)
BINARY = bytes(range(256)) * 64
SHARED = b"<html><title>the same everywhere</title><p>" + b"twin " * 500 + b"</html>"


def head(status: str, *headers: tuple[str, str]) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n").encode("latin-1")


# What each route sends, byte for byte; the chunked one's body is de-chunked in the record.
SENT: dict[str, tuple[bytes, bytes]] = {
    "/gz": (head("200 OK", ("Content-Type", "text/html"), ("Set-Cookie", "a=1"), ("x-odd-CASE", "kept"),
                  ("X-Title", "Grüße".encode().decode("latin-1")),  # UTF-8 bytes, not percent-encoded in the record
                  ("Content-Encoding", "gzip"), ("Set-Cookie", "b=2"), ("Content-Length", str(len(PACKED)))), PACKED),
    "/logo.png": (head("200 OK", ("Content-Type", "image/png"), ("Content-Length", str(len(BINARY)))), BINARY),
    "/moved": (head("301 Moved Permanently", ("Location", "/gz"), ("Content-Length", "0")), b""),
    "/twin-a": (head("200 OK", ("Content-Type", "text/html"), ("Content-Length", str(len(SHARED)))), SHARED),
    "/twin-b": (head("200 OK", ("Content-Type", "text/html"), ("Content-Length", str(len(SHARED)))), SHARED),
}
CHUNKED_HEAD = head("200 OK", ("Content-Type", "text/html"), ("Transfer-Encoding", "chunked"))
CHUNKS = [b"<html><title>in pieces</title>", b"1a\r\n" * 10, b"</html>"]


def serve(site: Site) -> None:
    for path, (sent_head, body) in SENT.items():
        site.route(path, _fixed(sent_head + body))
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in CHUNKS) + b"0\r\n\r\n"
    site.route("/chunked", _fixed(CHUNKED_HEAD + chunked))


def _fixed(raw: bytes) -> Any:
    async def handler(request: SiteRequest, writer: Any) -> None:
        writer.write(raw)
        await writer.drain()

    return handler


def records(warc_dir: Path) -> Iterator[tuple[Path, ArcWarcRecord, bytes]]:
    """Every record of the closed WARC files, with its content as stored (not decoded)."""
    for path in sorted(warc_dir.glob("*.warc.gz")):
        with open(path, "rb") as stream:
            for record in ArchiveIterator(stream, no_record_parse=False):
                yield path, record, record.raw_stream.read()


def blocks(warc_dir: Path) -> dict[str, bytes]:
    """The block of every response record, by target URI: the HTTP head and payload, byte for byte."""
    found = {}
    for path in sorted(warc_dir.glob("*.warc.gz")):
        with open(path, "rb") as stream:
            for record in ArchiveIterator(stream, no_record_parse=True):
                if record.rec_type == "response":
                    found[record.rec_headers.get_header("WARC-Target-URI")] = record.raw_stream.read()
    return found


def warcio_check(warc_dir: Path) -> None:
    files = sorted(str(p) for p in warc_dir.glob("*.warc.gz"))
    assert files
    check = subprocess.run([WARCIO, "check", "-v", *files], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


def test_records_hold_the_exchanges_as_sent_and_pass_warcio_check(crawlkit, tmp_path: Path) -> None:
    warc_dir = tmp_path / "warc"
    with Site(SiteSpec(hosts=2, pages=10, extras=True)) as site:
        serve(site)
        extra = ["/gz", "/logo.png", "/moved", "/chunked", "/twin-a", "/twin-b"]
        seeds = site.seeds() + [site.urls[0] + path for path in extra]
        run = crawlkit("crawl", "--parsers", "2", "--warc", str(warc_dir), "-s", "warc_max_size=30000", seeds=seeds)
        assert run.returncode == 0, run.stderr
        fetched = site.stats()["fetches"]
    assert set(fetched.values()) == {1}
    assert len(list(warc_dir.glob("*.warc.gz"))) > 2 and not list(warc_dir.glob("*.open"))  # rotated, all closed
    warcio_check(warc_dir)

    answers: dict[str, ArcWarcRecord] = {}
    payloads: dict[str, bytes] = {}
    requests: dict[str, ArcWarcRecord] = {}
    infos = []
    for _, record, content in records(warc_dir):
        uri = record.rec_headers.get_header("WARC-Target-URI")
        if record.rec_type == "warcinfo":
            infos.append(dict(line.split(": ", 1) for line in content.decode().splitlines() if ": " in line))
        elif record.rec_type == "request":
            assert uri not in requests
            requests[uri] = record
        else:
            assert record.rec_type in ("response", "revisit") and uri not in answers, uri
            answers[uri] = record
            payloads[uri] = content
    assert set(answers) == set(requests) == {f"http://{key}" for key in fetched}  # every fetch the server saw, once
    for uri, record in answers.items():  # the request record names the response record it goes with
        assert requests[uri].rec_headers.get_header("WARC-Concurrent-To") == record.rec_headers.get_header(
            "WARC-Record-ID")
        assert record.rec_headers.get_header("WARC-IP-Address") == uri.split("//")[1].split(":")[0]
    assert all(info["software"] == f"crawlkit/{__version__}" for info in infos)
    assert json.loads(infos[0]["crawlkit-settings"])["warc_max_size"] == 30000

    base = site.urls[0]
    wire = blocks(warc_dir)
    for path, (sent_head, body) in SENT.items():
        record = answers[base + path]
        if record.rec_type == "revisit":
            continue
        assert wire[base + path] == sent_head + body, path  # what the server sent, byte for byte
        stored = record.http_headers
        assert stored.statusline == sent_head.split(b"\r\n")[0].decode()[len("HTTP/1.1 "):]
        assert stored.headers == [tuple(line.decode().split(": ", 1)) for line in sent_head.split(b"\r\n")[1:-2]]
        assert payloads[base + path] == body, path  # as transferred: the gzip body stays gzip
    assert answers[base + "/gz"].rec_headers.get_header("WARC-Payload-Digest") == digest_of(PACKED)
    chunked = answers[base + "/chunked"]
    assert payloads[base + "/chunked"] == b"".join(CHUNKS)
    assert chunked.http_headers.get_header("Transfer-Encoding") is None
    assert chunked.http_headers.get_header("X-Crawlkit-Orig-Transfer-Encoding") == "chunked"

    twins = sorted((answers[base + p] for p in ("/twin-a", "/twin-b")), key=lambda r: r.rec_type)
    assert [r.rec_type for r in twins] == ["response", "revisit"]  # the second parser to see it refers to the first
    kept, revisit = twins
    assert revisit.rec_headers.get_header("WARC-Profile").endswith("/revisit/identical-payload-digest")
    assert revisit.rec_headers.get_header("WARC-Refers-To-Target-URI") == kept.rec_headers.get_header(
        "WARC-Target-URI")
    assert revisit.rec_headers.get_header("WARC-Refers-To-Date") == kept.rec_headers.get_header("WARC-Date")
    assert revisit.rec_headers.get_header("WARC-Payload-Digest") == digest_of(SHARED)


def digest_of(payload: bytes) -> str:
    import base64
    import hashlib

    return "sha1:" + base64.b32encode(hashlib.sha1(payload).digest()).decode()


def crawl_into(crawlkit: Any, site: Site, warc_dir: Path, *extra: str) -> dict[str, int]:
    """Crawl the site and its extra routes into ``warc_dir``; returns the requests the server saw."""
    site.reset_stats()
    seeds = site.seeds() + [site.urls[0] + path for path in [*SENT, "/chunked"]]
    run = crawlkit("crawl", "--parsers", "2", "--warc", str(warc_dir), *extra, seeds=seeds)
    assert run.returncode == 0, run.stderr
    fetched: dict[str, int] = site.stats()["fetches"]
    assert set(fetched.values()) == {1}
    return fetched


def by_uri(warc_dir: Path) -> dict[str, tuple[ArcWarcRecord, bytes]]:
    """The response or revisit record of each target URI (one each), with its payload as stored."""
    found: dict[str, tuple[ArcWarcRecord, bytes]] = {}
    for _, record, content in records(warc_dir):
        if record.rec_type in ("response", "revisit"):
            uri = record.rec_headers.get_header("WARC-Target-URI")
            assert uri not in found
            found[uri] = record, content
    return found


def test_a_later_crawl_writes_revisits_for_the_payloads_an_earlier_crawl_stored(crawlkit, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    with Site(SiteSpec(hosts=1, pages=8, extras=False)) as site:
        serve(site)
        crawl_into(crawlkit, site, first)
        changed = BINARY[::-1]
        site.route("/logo.png", _fixed(SENT["/logo.png"][0] + changed))  # the site changes between the crawls
        fetched = crawl_into(crawlkit, site, second, "-s", f"warc_dedup=[{first}]")
    earlier = {uri: record for uri, (record, _) in by_uri(first).items()}
    later = by_uri(second)
    assert set(later) == {f"http://{key}" for key in fetched}  # every page fetched again, and recorded
    warcio_check(second)
    logo = site.urls[0] + "/logo.png"
    assert later[logo][1] == changed
    for uri, (record, _) in later.items():
        status = int(record.http_headers.get_statuscode())
        if uri == logo or not 200 <= status < 300:
            assert record.rec_type == "response", uri  # a new payload, or none worth referring to
            continue
        assert record.rec_type == "revisit", uri
        # An unchanged page names the capture of the earlier crawl (twin-b's names twin-a's, the one stored)
        stored = earlier[uri] if earlier[uri].rec_type == "response" else earlier[
            earlier[uri].rec_headers.get_header("WARC-Refers-To-Target-URI")]
        assert record.rec_headers.get_header("WARC-Refers-To-Target-URI") == stored.rec_headers.get_header(
            "WARC-Target-URI")
        assert record.rec_headers.get_header("WARC-Refers-To-Date") == stored.rec_headers.get_header("WARC-Date")
        assert record.rec_headers.get_header("WARC-Payload-Digest") == stored.rec_headers.get_header(
            "WARC-Payload-Digest")


def pywb_tool(name: str) -> str:
    """The path of one of pywb's commands: on PATH, or in the ``.venv-pywb`` that .ci/run makes (pywb pins
    redis 2.x, which the test extra's client cannot live with, so it has an environment of its own)."""
    found = shutil.which(name) or str(Path(__file__).parents[1] / ".venv-pywb" / "bin" / name)
    if not os.access(found, os.X_OK):
        message = (f"{name} is not installed: python3 -m venv .venv-pywb && "
                   ".venv-pywb/bin/pip install pywb cdxj-indexer wacz")
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the replay test)")
        pytest.skip(message)
    return found


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def replay(port: int, url: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of ``url`` as pywb replays it (``id_``: the archived response, not rewritten)."""
    opener = urllib.request.build_opener(NoRedirects)
    try:
        with opener.open(f"http://127.0.0.1:{port}/crawl/2id_/{url}", timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as answer:
        return answer.code, dict(answer.headers), answer.read()


@contextlib.contextmanager
def wayback(command: str, root: Path) -> Iterator[int]:
    """pywb's replay server over the collections under ``root``, on a free loopback port, stopped at the end."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([command, "-p", str(port), "-b", "127.0.0.1"], cwd=root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def up() -> bool:
        assert server.poll() is None, server.communicate()[1]
        with socket.socket() as conn:
            return conn.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(up, 60, "pywb's wayback to listen")
        yield port
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def test_pywb_replays_the_site_a_cdxj_index_feeds_a_later_crawl_wacz_packs_it(crawlkit, tmp_path: Path) -> None:
    tool = {name: pywb_tool(name) for name in ("cdxj-indexer", "wb-manager", "wayback", "wacz")}
    first, second, root = tmp_path / "first", tmp_path / "second", tmp_path / "pywb"
    root.mkdir()
    with Site(SiteSpec(hosts=1, pages=5, extras=False)) as site:
        serve(site)
        fetched = crawl_into(crawlkit, site, first)
        page = site.seeds()[0]
        served_page = urllib.request.urlopen(page, timeout=10).read()
        base = site.urls[0]

        index = tmp_path / "first.cdxj"
        indexer = subprocess.run([tool["cdxj-indexer"], "-o", str(index), str(first)],
                                 capture_output=True, text=True, timeout=120)
        assert indexer.returncode == 0, indexer.stderr
        lines = index.read_text().splitlines()
        assert {json.loads(line.split(" ", 2)[2])["url"] for line in lines} >= {f"http://{key}" for key in fetched}

        site.route("/gz", _fixed(SENT["/gz"][0].replace(b"kept", b"next") + PACKED))  # headers changed, not payload
        crawl_into(crawlkit, site, second, "-s", f"warc_dedup=[{index}]")
    later = by_uri(second)
    assert later[base + "/gz"][0].rec_type == "revisit"  # the payload is the earlier crawl's, found by its index
    assert later[base + "/gz"][0].http_headers.get_header("x-odd-CASE") == "next"

    for command in (["init", "crawl"], ["add", "crawl", *map(str, sorted(first.glob("*.warc.gz")))]):
        made = subprocess.run([tool["wb-manager"], *command], cwd=root, capture_output=True, text=True,
                              timeout=120)
        assert made.returncode == 0, made.stderr
    with wayback(tool["wayback"], root) as port:
        status, headers, body = replay(port, page)
        assert status == 200 and body == served_page
        status, headers, body = replay(port, base + "/gz")  # stored gzip, replayed decoded, as a browser gets it
        assert status == 200 and body == PAGE and headers["X-Archive-Orig-Content-Encoding"] == "gzip"
        assert headers["x-odd-CASE"] == "kept"
        status, headers, body = replay(port, base + "/moved")
        assert status == 301 and headers["Location"] == "/gz"
        status, headers, body = replay(port, base + "/logo.png")
        assert status == 200 and body == BINARY and headers["Content-Type"] == "image/png"
        status, headers, body = replay(port, base + "/twin-b")  # a revisit record: the payload of twin-a's
        assert status == 200 and body == SHARED

    wacz = tmp_path / "crawl.wacz"  # the package ReplayWeb.page opens
    files = [str(path) for path in sorted(first.glob("*.warc.gz"))]
    for command in (["create", "-o", str(wacz), *files], ["validate", "-f", str(wacz)]):
        packed = subprocess.run([tool["wacz"], *command], capture_output=True, text=True, timeout=120)
        assert packed.returncode == 0, packed.stdout + packed.stderr


def test_a_warc_dedup_that_cannot_be_used_stops_the_crawl_with_one_line(crawlkit, tmp_path: Path) -> None:
    missing = tmp_path / "no-such.warc.gz"
    run = crawlkit("crawl", "--warc", str(tmp_path / "warc"), "-s", f"warc_dedup=[{missing}]",
                   seeds=["http://127.0.0.1:9/"])
    assert run.returncode == 2
    assert run.stderr == (f"Error: warc_dedup entry {str(missing)!r} is not a WARC file, a directory of them or a "
                          ".cdxj index; list the WARCs (or their CDXJ index) of the earlier crawl\n")
    (tmp_path / "old").mkdir()
    run = crawlkit("crawl", "--warc", str(tmp_path / "warc"), "-s", f"warc_dedup=[{tmp_path / 'old'}]",
                   "-s", "warc_revisits=false", seeds=["http://127.0.0.1:9/"])
    assert run.returncode == 2
    assert run.stderr == (f"Error: warc_dedup lists {str(tmp_path / 'old')!r} but warc_revisits is false; set "
                          "warc_revisits: true to write its payloads as revisits, or leave warc_dedup empty\n")


# --------------------------------------------------------------------------- units: no process, no server


def test_a_warc_dedup_source_with_no_digest_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    garbage = tmp_path / "old.cdxj"  # index lines, but none with a digest (a directory of other files would do too)
    garbage.write_text('com,example)/ 20260101000000 {"url": "http://example.com/", "status": "200"}\n')
    with caplog.at_level("WARNING", logger="crawlkit"):
        prepare_warc_dir(str(tmp_path / "warc"), True, [str(garbage)])
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"warc_dedup: no payload digest found in {str(garbage)!r}; check they are")


class Transfer:
    """What the fetcher reads a body from (urllib3's response): ``read1`` pieces of ``data``, then closed."""

    def __init__(self, data: bytes, piece: int = 4096) -> None:
        self.pieces = [data[i:i + piece] for i in range(0, len(data), piece)]
        self.reads = 0

    @property
    def closed(self) -> bool:
        return not self.pieces

    def read1(self, amount: int, decode_content: bool) -> bytes:
        assert decode_content is False  # the transferred bytes, decoded by the fetcher itself
        self.reads += 1
        return self.pieces.pop(0) if self.pieces else b""


FAR = 1e18  # a deadline no unit test reaches


def test_an_encoded_body_is_kept_as_transferred_and_decoded_for_the_spider() -> None:
    for encoding, data in [("gzip", PACKED), ("deflate", zlib.compress(PAGE)), ("GZIP", PACKED)]:
        decoder = _decoder(encoding)
        assert decoder is not None
        body, transferred, kind, _ = _read_encoded_body(Transfer(data), decoder, len(PAGE), FAR, False)
        assert (body, transferred, kind) == (PAGE, data, None), encoding
    assert _decoder("") is None and _decoder("identity") is None and _decoder("x-unknown") is None


def test_a_gzip_bomb_stops_at_max_body_of_output() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # 50 MB from 50 kB
    transfer = Transfer(bomb)
    decoder = _decoder("gzip")
    assert decoder is not None
    body, transferred, kind, message = _read_encoded_body(transfer, decoder, 100_000, FAR, False)
    assert (body, transferred, kind) == (b"", None, FetchErrorKind.BODY_TOO_LARGE)
    assert transfer.reads == 1 and "max_body 100000" in message  # stopped at the first piece that went over

    body, transferred, kind, _ = _read_encoded_body(Transfer(bomb), _decoder("gzip"), 100_000, FAR, True)
    assert body == b"\0" * 100_000 and transferred is not None and bomb.startswith(transferred) and kind is None


def test_a_body_that_does_not_decode_is_a_decoding_error() -> None:
    with pytest.raises(urllib3.exceptions.DecodeError):
        _read_encoded_body(Transfer(b"not gzip at all"), _decoder("gzip"), 1000, FAR, False)


def result_of(url: str, status: int, headers: list[tuple[str, str]], body: bytes, transferred: bytes | None = None,
              method: str = "GET") -> FetchResult:
    reason = {200: "OK", 304: "Not Modified"}.get(status, "Status")
    return FetchResult(
        req_id=1, request=Request(url, method=method), url=url, status=status,
        status_line=f"HTTP/1.1 {status} {reason}", headers=headers, body=body, transferred=transferred,
        request_headers=[("User-Agent", "crawlkit/test"), ("Accept-Encoding", "gzip")], peer="127.0.0.9",
    )


def test_the_writer_stores_payloads_once_and_writes_revisits_of_both_profiles(tmp_path: Path) -> None:
    gz = [("Content-Encoding", "gzip"), ("Content-Length", str(len(PACKED)))]
    one = WarcWriter(str(tmp_path), 10**9, {"software": "crawlkit/test"})
    other = WarcWriter(str(tmp_path), 10**9, {"software": "crawlkit/test"})  # another parser process's
    kept = one.write(result_of("http://a.test/1", 200, gz, PAGE, PACKED))
    assert other.write(result_of("http://a.test/2", 200, gz, PAGE, PACKED)) == kept  # the same payload, elsewhere
    one.write(result_of("http://a.test/cut", 200, [("Content-Length", "999999")], b"partial"))
    one.write(result_of("http://a.test/head", 200, [("Content-Length", "50")], b"", method="HEAD"))
    one.write_revisit(result_of("http://a.test/1", 304, [("ETag", '"v1"')], b""), "server-not-modified",
                      "http://a.test/1", "2026-01-01T00:00:00Z")
    one.close()
    other.close()
    assert len(list(tmp_path.glob("*.warc.gz"))) == 2 and not list(tmp_path.glob("*.open"))
    answers = {
        (r.rec_headers.get_header("WARC-Target-URI"), r.rec_type, r.http_headers.get_statuscode()): r
        for r in warc_records(tmp_path) if r.rec_type in ("response", "revisit")
    }
    stored = answers["http://a.test/1", "response", "200"]
    assert stored.stored == PACKED and stored.http_headers.get_header("Content-Encoding") == "gzip"
    assert stored.rec_headers.get_header("WARC-IP-Address") == "127.0.0.9"
    same = answers["http://a.test/2", "revisit", "200"]
    assert same.stored == b"" and same.rec_headers.get_header("WARC-Profile").endswith("identical-payload-digest")
    assert same.rec_headers.get_header("WARC-Refers-To-Target-URI") == "http://a.test/1"
    assert same.rec_headers.get_header("WARC-Refers-To-Date") == stored.rec_headers.get_header("WARC-Date")
    assert kept == ("http://a.test/1", stored.rec_headers.get_header("WARC-Date"))
    assert answers["http://a.test/cut", "response", "200"].rec_headers.get_header("WARC-Truncated") == "length"
    assert answers["http://a.test/head", "response", "200"].rec_headers.get_header("WARC-Truncated") is None
    unchanged = answers["http://a.test/1", "revisit", "304"]
    assert unchanged.rec_headers.get_header("WARC-Profile") == (
        "http://netpreserve.org/warc/1.1/revisit/server-not-modified")
    assert unchanged.rec_headers.get_header("WARC-Refers-To-Date") == "2026-01-01T00:00:00Z"
    assert unchanged.http_headers.get_header("ETag") == '"v1"'


def test_a_record_that_fails_gives_its_digest_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = WarcWriter(str(tmp_path), 10**9, {})
    page = result_of("http://a.test/1", 200, [], SHARED)
    monkeypatch.setattr(writer, "_write_pair", lambda *args: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        writer.write(page)
    monkeypatch.undo()
    writer.write(result_of("http://a.test/2", 200, [], SHARED))
    writer.close()
    assert [r.rec_type for r in warc_records(tmp_path) if r.rec_type != "request"] == ["warcinfo", "response"]


def test_file_names_are_never_reused(tmp_path: Path) -> None:
    first = WarcWriter(str(tmp_path), 10**9, {}, revisits=False)
    first.write(result_of("http://a.test/1", 200, [], b"one"))
    first.close()
    again = WarcWriter(str(tmp_path), 10**9, {}, revisits=False)  # a resumed crawl's parser, maybe the same pid
    again.write(result_of("http://a.test/2", 200, [], b"two"))
    again.close()
    assert len(list(tmp_path.glob("*.warc.gz"))) == 2
    assert sorted(r.stored for r in warc_records(tmp_path) if r.rec_type == "response") == [b"one", b"two"]


def test_the_digest_index_is_claimed_once_and_seeded_from_an_earlier_crawl(tmp_path: Path) -> None:
    index = DigestIndex(tmp_path)
    assert index.claim("sha1:AAAA", "http://a.test/", "2026-01-01T00:00:00Z") is None
    assert index.claim("sha1:AAAA", "http://b.test/", "2026-02-01T00:00:00Z") == ("http://a.test/",
                                                                                  "2026-01-01T00:00:00Z")
    index.release("sha1:AAAA")
    assert index.claim("sha1:AAAA", "http://b.test/", "2026-02-01T00:00:00Z") is None
    assert DigestIndex(tmp_path).claim("sha1:AAAA", "http://c.test/", "now") == (  # another process's view
        "http://b.test/", "2026-02-01T00:00:00Z")

    cdxj = tmp_path / "earlier.cdxj"
    cdxj.write_text(
        '!meta 0 {"format": "cdxj"}\n'
        'test,a)/x 20250102030405 {"url": "http://a.test/x", "mime": "text/html", "digest": "CCCC"}\n'
        'test,a)/y 20250102030405 {"url": "http://a.test/y", "mime": "warc/revisit", "digest": "DDDD"}\n'
    )
    assert seed(index, [str(cdxj)]) == 1
    assert index.claim("sha1:CCCC", "http://a.test/z", "now") == ("http://a.test/x", "2025-01-02T03:04:05Z")


def test_the_warcinfo_settings_leave_credentials_out() -> None:
    settings = {"proxy": "http://user:secret@proxy.test:3128", "frontier": "redis://:secret@r.test/0",
                "warc_max_size": 5,
                "hosts": {"*.a.test": {"delay": 1.0, "headers": {"Authorization": "Bearer secret"}}, "b.test": {}}}
    recorded = warcinfo_settings(settings)
    assert "secret" not in recorded
    assert json.loads(recorded) == {
        "proxy": "http://proxy.test:3128", "frontier": "redis://r.test/0", "warc_max_size": 5,
        "hosts": {"*.a.test": {"delay": 1.0, "headers": {"Authorization": "(not recorded)"}}, "b.test": {}},
    }


def test_a_second_run_into_the_same_directory_adds_files_and_refers_to_the_first_runs_payloads(
    crawlkit, tmp_path: Path
) -> None:
    warc_dir = tmp_path / "warc"
    with Site(SiteSpec(hosts=1, pages=4, extras=False)) as site:
        serve(site)
        crawl_into(crawlkit, site, warc_dir)
        first = {path.name: path.read_bytes() for path in warc_dir.glob("*.warc.gz")}
        site.route("/twin-a", _fixed(SENT["/twin-a"][0] + SHARED.upper()))  # changed between the runs
        fetched = crawl_into(crawlkit, site, warc_dir)
    files = {path.name: path.read_bytes() for path in warc_dir.glob("*.warc.gz")}
    assert len(files) > len(first) and all(files[name] == data for name, data in first.items())  # none reused
    warcio_check(warc_dir)
    later: dict[str, ArcWarcRecord] = {}
    for path, record, _ in records(warc_dir):
        if path.name not in first and record.rec_type in ("response", "revisit"):
            later[record.rec_headers.get_header("WARC-Target-URI")] = record
    assert set(later) == {f"http://{key}" for key in fetched}
    kinds = {uri.removeprefix(site.urls[0]): record.rec_type for uri, record in later.items()
             if record.http_headers.get_statuscode() == "200"}
    assert kinds.pop("/twin-a") == "response"
    assert set(kinds.values()) == {"revisit"}  # twin-b too: its payload is the first run's twin-a's


def test_with_warc_on_a_gzip_bomb_is_cut_at_max_body_and_left_out_of_the_archive(crawlkit, tmp_path: Path) -> None:
    warc_dir = tmp_path / "warc"
    bomb = gzip.compress(bytes(20_000_000), 9)  # 20 MB of zeros in some 20 kB
    with Site(SiteSpec(hosts=1, pages=2, extras=False)) as site:
        site.route("/bomb", _fixed(head("200 OK", ("Content-Type", "text/html"), ("Content-Encoding", "gzip"),
                                        ("Content-Length", str(len(bomb)))) + bomb))
        site.route("/gz", _fixed(SENT["/gz"][0] + PACKED))
        seeds = [site.urls[0] + "/bomb", site.urls[0] + "/gz"]
        run = crawlkit("crawl", "--warc", str(warc_dir), "-s", "max_body=1000000", "--stats", "stats.json",
                       seeds=seeds)
        fetched = site.stats()["fetches"]
    assert run.returncode == 0, run.stderr
    assert fetched[f"{site.urls[0][7:]}/bomb"] == 1  # not retried: it is no transient fault
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["errors"] == {"body_too_large": 1}, stats
    stored = by_uri(warc_dir)
    assert site.urls[0] + "/bomb" not in stored and stored[site.urls[0] + "/gz"][1] == PACKED
    assert len(run.items()) >= 1  # /gz was parsed from the body decoded in the fetcher


def test_answers_from_the_http_cache_are_not_recorded(crawlkit, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    with Site(SiteSpec(hosts=1, pages=8, extras=False)) as site:
        serve(site)
        seeds = site.seeds() + [site.urls[0] + "/gz"]
        run = crawlkit("crawl", "--http-cache", "cache", "--warc", str(first), seeds=seeds)
        assert run.returncode == 0, run.stderr
        asked = site.stats()["total"]
        site.reset_stats()
        new = site.urls[0] + "/chunked"  # not in the cache: the one exchange of the second run
        run = crawlkit("crawl", "--http-cache", "cache", "--warc", str(second), "--stats", "stats.json",
                       seeds=[*seeds, new])
        assert run.returncode == 0, run.stderr
        assert site.stats()["total"] == 1
    warcio_check(first)  # the run that fetched them recorded them, as sent
    assert len(by_uri(first)) == asked
    assert by_uri(first)[site.urls[0] + "/gz"][0].http_headers.get_header("Content-Encoding") == "gzip"
    counts = json.loads((tmp_path / "stats.json").read_text())["counts"]
    assert counts["warc_skipped_http_cache"] == counts["http_cache_hits"] == asked
    warcio_check(second)
    assert list(by_uri(second)) == [new]  # what came over the wire in this run, and nothing else


def test_the_warc_stage_leaves_cached_answers_out(tmp_path: Path) -> None:
    config = ParserConfig.from_settings(load_settings(cli={"warc": str(tmp_path)}), None, {}, LogConfig())
    url = "http://a.test/page"
    stage = WarcStage(StageSetup(config, Spider(start_urls=[url]), Fingerprinter(), RetryPolicy(0, 1.0, 1.0)))
    pages = []
    for counted in ({HITS: 1}, {REVALIDATED: 1}, {}):
        result = result_of(url, 200, [("Content-Length", "4")], b"page")
        result.counts = dict(counted)
        page = Page(result, PageDone(req_id=1, host="a.test"), Counter())
        response = Response(url, 200, {}, b"page", result.request)
        assert stage.on_response(page, response) is response  # passed on, recorded or not
        pages.append(page.counts)
    stage.close()
    assert pages == [{"warc_skipped_http_cache": 1}, {"warc_skipped_http_cache": 1}, {}]
    assert [record.rec_type for record in warc_records(tmp_path)] == ["warcinfo", "response", "request"]
