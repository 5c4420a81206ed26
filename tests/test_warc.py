"""WARC files: exchanges recorded as sent, revisit records, warcio's check, CDXJ indexes and replay in pywb.

The crawls run the real ``crawlkit`` against a local site and compare the records with the bytes
the site sent; the unit tests build FetchResults and fake transfers directly.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from warcio.archiveiterator import ArchiveIterator
from warcio.recordloader import ArcWarcRecord

from crawlkit import __version__
from crawlkit.tools.site import Site, SiteRequest, SiteSpec

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
    for path, (sent_head, body) in SENT.items():
        record = answers[base + path]
        if record.rec_type == "revisit":
            continue
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
