"""WARC files of the HTTP exchanges as they went over the wire (``--warc DIR``), for archivists, written with warcio.

Each parser process writes files of its own (the body is already there; sending it to one
writer process would move every body across processes a second time):
``DIR/crawlkit-<UTC time>-<pid>-<n>.warc.gz``, each opening with a ``warcinfo`` record (crawlkit,
its version and the crawl's settings), then a ``request`` and a ``response`` record (linked by
``WARC-Concurrent-To``) for every fetch that got an HTTP answer: pages, redirects, errors
statuses, retried attempts, robots.txt and sitemaps. A file is named ``....warc.gz.open`` while
written, renamed when closed, and a new one begun past ``warc_max_size`` bytes; a name already
taken (another process, a resumed crawl) is never reused. Records are flushed one pair at a
time, so a killed process leaves whole records behind.

The response record holds what the server sent: its status line, its headers in their order,
case and bytes (a repeated header repeated), and the body as transferred, de-chunked but with its
Content-Encoding kept (a gzip response stays gzip, as a replay tool expects), with
``WARC-Payload-Digest`` over those bytes and ``WARC-IP-Address`` the address connected to. The
fetcher keeps those bytes only when ``warc`` is on (``FetcherConfig.archive``). A chunked
response's ``Transfer-Encoding`` header is stored as ``X-Crawlkit-Orig-Transfer-Encoding``, since
its chunks are not; a body cut at ``max_body`` (``meta["truncate"]``) is marked ``WARC-Truncated``.

A 2xx payload already stored (by any parser process of this crawl, an earlier run into the same
directory, or the crawl ``warc_dedup`` names: see ``warc_digests.py``) is written as a
``revisit`` record of the identical-payload-digest profile instead, naming the record that holds
it; ``write_revisit`` writes one of either profile. A 304 answering a recrawl's conditional
revisit (``meta["revisit"]``, see ``crawlkit.recrawl``) is a revisit record of the
server-not-modified profile: its headers and no payload, referring to the same URI, whose content
an earlier crawl recorded (the job directory keeps no capture date, so it has no Refers-To-Date).

A rendered page is written as the network responses its browser received, each through ``write``
(``parse/archive.py``); ``crawlkit.render.capture`` makes their headers fit the decoded bodies.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple
from urllib.parse import urlsplit

from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date
from warcio.warcwriter import WARCWriter

from crawlkit.errors import ConfigError
from crawlkit.extensions.warc_digests import DigestIndex, check_sources, seed
from crawlkit.messages import FetchResult

log = logging.getLogger("crawlkit.warc")

Profile = Literal["identical-payload-digest", "server-not-modified"]
_PROFILES = {
    "identical-payload-digest": "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest",
    "server-not-modified": "http://netpreserve.org/warc/1.1/revisit/server-not-modified",
}


class Capture(NamedTuple):
    """The record that holds a payload: its WARC-Target-URI and WARC-Date (a revisit's WARC-Refers-To-*)."""

    uri: str
    date: str


def prepare_warc_dir(path: str, revisits: bool, earlier: Sequence[str]) -> None:
    """Create the WARC directory and, with ``revisits``, add the payload digests of the earlier crawl's
    WARCs (``warc_dedup``) to its index; raise a ConfigError saying why it cannot be done (main process)."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"warc directory {path!r}: cannot create it: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"warc directory {path!r} is not writable; give another --warc DIR")
    if earlier and not revisits:
        raise ConfigError(f"warc_dedup lists {earlier[0]!r} but warc_revisits is false; set warc_revisits: true "
                          "to write its payloads as revisits, or leave warc_dedup empty")
    if revisits:  # the digest index is made here, before the parser processes share it
        check_sources(earlier)
        index = DigestIndex(path)
        try:
            index.create()
            added = seed(index, earlier)
        except sqlite3.Error as exc:
            raise ConfigError(f"warc directory {path!r}: cannot use its digest index {str(index.path)!r}: {exc}; "
                              "give another --warc DIR, or set warc_revisits: false") from None
        finally:
            index.close()
        if earlier and not added:  # files that hold no record crawlkit can read: say so, the crawl goes on
            log.warning("warc_dedup: no payload digest found in %s; check they are the earlier crawl's WARC or "
                        "CDXJ files (every payload will be written in full)", ", ".join(map(repr, earlier)))
        elif earlier:
            log.info("%d payload digests of the earlier crawl (warc_dedup) will be written as revisits", added)


def warcinfo_settings(settings: Mapping[str, Any]) -> str:
    """The crawl's settings as one JSON line for the warcinfo record, with the credentials in URLs (the
    proxy's, the Redis frontier's) and the per-site headers' values (credentials, often) left out."""
    values = dict(settings)
    for key, value in values.items():
        if isinstance(value, str) and "://" in value and "@" in value:
            parts = urlsplit(value)
            values[key] = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    hosts = values.get("hosts")
    if isinstance(hosts, Mapping):
        values["hosts"] = {
            pattern: {**rule, "headers": dict.fromkeys(rule["headers"], "(not recorded)")}
            if isinstance(rule, Mapping) and rule.get("headers") else rule
            for pattern, rule in hosts.items()
        }
    return json.dumps(values, sort_keys=True, default=str)


class WarcWriter:
    """The WARC files of one parser process; not thread-safe (a parser has one thread).

    ``revisits``: a 2xx payload already in ``directory``'s digest index is written as a revisit.
    """

    def __init__(self, directory: str, max_size: int, info: dict[str, str], revisits: bool = True) -> None:
        self.directory = Path(directory)
        self.max_size = max_size
        self.info = info
        self.index = DigestIndex(directory) if revisits else None
        self.serial = 0
        self.stream: BinaryIO | None = None
        self.writer: Any = None
        self.path: Path | None = None

    def write(self, result: FetchResult) -> Capture:
        """Append the request and response records of one fetch (one that got an HTTP answer), or a revisit
        record in place of the response when its payload is stored already.

        Returns the capture whose record holds the payload (this one's, or the one the revisit names):
        what a later revisit of the page, a recrawl's 304, refers to.
        """
        if result.status == 304 and result.request.meta.get("revisit"):
            self.write_revisit(result, "server-not-modified", result.url, None)
            return Capture(result.url, _now())
        payload = result.body if result.transferred is None else result.transferred
        date = _now()
        claimed: str | None = None
        if self.index is not None and payload and 200 <= result.status < 300:
            digest = _digest(payload)
            earlier = self.index.claim(digest, result.url, date)
            if earlier is not None:
                self.write_revisit(result, "identical-payload-digest", *earlier, digest=digest)
                return Capture(*earlier)
            claimed = digest
        try:
            headers = {"WARC-Date": date}
            if claimed is not None:
                headers["WARC-Payload-Digest"] = claimed
            response = self._record(result, "response", payload, headers)
            self._write_pair(result, response)
        except BaseException:
            if claimed is not None and self.index is not None:
                self.index.release(claimed)
            raise
        return Capture(result.url, date)

    def write_revisit(self, result: FetchResult, profile: Profile, refers_to_uri: str, refers_to_date: str | None,
                      digest: str | None = None) -> None:
        """Append the request record of ``result`` and a revisit record of ``profile`` holding its status line
        and headers, naming the earlier capture (its target URI and WARC-Date) whose payload stands for it.

        ``identical-payload-digest``: ``result``'s payload is the one of digest ``digest`` already stored.
        ``server-not-modified``: ``result`` is a 304 (or another answer saying the stored capture still holds).
        """
        headers = {"WARC-Date": _now(), "WARC-Profile": _PROFILES[profile], "WARC-Refers-To-Target-URI": refers_to_uri}
        if refers_to_date is not None:
            headers["WARC-Refers-To-Date"] = refers_to_date
        if digest is not None:
            headers["WARC-Payload-Digest"] = digest
        self._write_pair(result, self._record(result, "revisit", b"", headers))

    def close(self) -> None:
        """Close the current file and drop its ``.open`` suffix; the next write begins a new one."""
        if self.stream is None or self.path is None:
            return
        self.stream.close()
        self.stream = None
        if self.index is not None:
            self.index.close()
        final = self.path.with_suffix("")  # "x.warc.gz.open" -> "x.warc.gz"
        os.replace(self.path, final)
        log.info("WARC file %s written", final)

    def _record(self, result: FetchResult, kind: str, payload: bytes, headers: dict[str, str]) -> ArcWarcRecord:
        if result.peer:
            headers["WARC-IP-Address"] = result.peer
        length = _content_length(result.headers)
        bodiless = result.request.method == "HEAD" or result.status in (204, 304)
        if kind == "response" and length is not None and length != len(payload) and not bodiless:
            headers["WARC-Truncated"] = "length"  # meta["truncate"] cut the body at max_body
        if self.stream is None:
            self._open()
        return self.writer.create_warc_record(
            result.url, kind, payload=io.BytesIO(payload), length=len(payload),
            http_headers=_response_headers(result), warc_headers_dict=headers,
        )

    def _write_pair(self, result: FetchResult, response: ArcWarcRecord) -> None:
        assert self.stream is not None  # _record opened it
        request = self.writer.create_warc_record(
            result.url, "request", payload=io.BytesIO(result.request.body),
            http_headers=_request_headers(result), length=len(result.request.body),
        )
        self.writer.write_request_response_pair(request, response)
        self.stream.flush()
        if self.stream.tell() >= self.max_size:
            self.close()

    def _open(self) -> None:
        """Begin the next ``.open`` file with its warcinfo record, under a name no file has yet (closed or not)."""
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        while True:
            self.serial += 1
            name = f"crawlkit-{stamp}-{os.getpid()}-{self.serial:05d}.warc.gz"
            path = self.directory / f"{name}.open"
            if (self.directory / name).exists():
                continue
            try:
                self.stream = open(path, "xb")
            except FileExistsError:
                continue
            break
        self.path = path
        self.writer = WARCWriter(self.stream, gzip=True, warc_version="1.1")
        info = {"hostname": socket.gethostname(), "format": "WARC File Format 1.1", **self.info}
        self.writer.write_record(self.writer.create_warcinfo_record(name, info))


def _now() -> str:
    """A WARC-Date with microseconds (WARC 1.1), so the captures of one second stay apart."""
    return str(datetime_to_iso_date(datetime.now(timezone.utc).replace(tzinfo=None), use_micros=True))


def _digest(payload: bytes) -> str:
    """A WARC payload digest, in the form warcio writes and readers compare: ``sha1:`` and base32."""
    return "sha1:" + base64.b32encode(hashlib.sha1(payload).digest()).decode("ascii")


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length" and value.strip().isdigit():
            return int(value)
    return None


class _WireHeaders(StatusAndHeaders):
    """Status line and headers written back as the bytes that crossed the wire: ``http.client`` reads them as
    Latin-1 and sends str values as Latin-1, so encoding them so again is exact. (warcio would write
    non-ASCII values percent-encoded; it still does for a value Latin-1 cannot hold.)"""

    def compute_headers_buffer(self, header_filter: Any = None) -> None:
        try:
            self.headers_buff = self.to_str(header_filter).encode("latin-1") + b"\r\n"
        except UnicodeEncodeError:
            super().compute_headers_buffer(header_filter)


def _request_headers(result: FetchResult) -> StatusAndHeaders:
    parts = urlsplit(result.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = list(result.request_headers)
    if not any(name.lower() == "host" for name, _ in headers):
        headers.insert(0, ("Host", parts.netloc))
    return _WireHeaders(
        f"{result.request.method} {target}", headers, protocol=_protocol(result), is_http_request=True
    )


def _response_headers(result: FetchResult) -> StatusAndHeaders:
    """The response's status line and headers as sent; a chunked Transfer-Encoding is renamed, its chunks
    being undone in the record."""
    headers = [
        (f"X-Crawlkit-Orig-{name}", value) if name.lower() == "transfer-encoding" else (name, value)
        for name, value in result.headers
    ]
    protocol, _, status = result.status_line.partition(" ")
    return _WireHeaders(status or str(result.status), headers, protocol=protocol or "HTTP/1.1")


def _protocol(result: FetchResult) -> str:
    return result.status_line.partition(" ")[0] or "HTTP/1.1"
