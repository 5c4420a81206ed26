"""WARC files of the raw responses (``--warc DIR``), for archivists, written with warcio.

Each parser process writes files of its own (the body is already there; sending it to one
writer process would move every body across processes a second time):
``DIR/crawlkit-<UTC time>-<pid>-<n>.warc.gz``, each opening with a ``warcinfo`` record, then a
``request`` and a ``response`` record (linked by ``WARC-Concurrent-To``) for every fetch that
got an HTTP answer: pages, redirects, errors statuses, retried attempts, robots.txt and
sitemaps. A file is named ``....warc.gz.open`` while written, renamed when closed, and a new
one begun past ``warc_max_size`` bytes. Records are flushed one pair at a time, so a killed
process leaves whole records behind.

What is stored is what crawlkit received after undoing the transfer: ``requests`` removes
``Content-Encoding`` (gzip, br...) and chunking, so the record holds the decoded body, with
``Content-Length`` set to its length and the original ``Content-Encoding``,
``Transfer-Encoding`` and ``Content-Length`` kept as ``X-Crawlkit-Orig-*`` headers: a WARC
reader replays exactly the bytes in the record.

A 304 answering a recrawl's conditional revisit (``meta["revisit"]``, see ``crawlkit.recrawl``)
is written as a ``revisit`` record of the server-not-modified profile (WARC 1.1, 6.7.3): its
headers and no payload, referring to the same URI, whose content an earlier crawl recorded.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from crawlkit.errors import ConfigError
from crawlkit.messages import FetchResult

log = logging.getLogger("crawlkit.warc")

_REWRITTEN = ("content-encoding", "transfer-encoding", "content-length")
NOT_MODIFIED_PROFILE = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"


def check_warc_dir(path: str) -> None:
    """Create the WARC directory, or raise a ConfigError saying why it cannot be (main process)."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"warc directory {path!r}: cannot create it: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"warc directory {path!r} is not writable; give another --warc DIR")


class WarcWriter:
    """The WARC files of one parser process; not thread-safe (a parser has one thread)."""

    def __init__(self, directory: str, max_size: int, info: dict[str, str]) -> None:
        self.directory = Path(directory)
        self.max_size = max_size
        self.info = info
        self.serial = 0
        self.stream: BinaryIO | None = None
        self.writer: Any = None
        self.path: Path | None = None

    def write(self, result: FetchResult) -> None:
        """Append the request and response records of one fetch (one that got an HTTP answer)."""
        stream = self.stream if self.stream is not None else self._open()
        writer = self.writer
        request = writer.create_warc_record(
            result.url, "request", payload=io.BytesIO(result.request.body),
            http_headers=_request_headers(result), length=len(result.request.body),
        )
        if result.status == 304 and result.request.meta.get("revisit"):
            response = writer.create_warc_record(
                result.url, "revisit", payload=io.BytesIO(b""), http_headers=_response_headers(result), length=0,
                warc_headers_dict={"WARC-Profile": NOT_MODIFIED_PROFILE, "WARC-Refers-To-Target-URI": result.url},
            )
        else:
            response = writer.create_warc_record(
                result.url, "response", payload=io.BytesIO(result.body),
                http_headers=_response_headers(result), length=len(result.body),
            )
        writer.write_request_response_pair(request, response)
        stream.flush()
        if stream.tell() >= self.max_size:
            self.close()

    def close(self) -> None:
        """Close the current file and drop its ``.open`` suffix; the next write begins a new one."""
        if self.stream is None or self.path is None:
            return
        self.stream.close()
        self.stream = None
        final = self.path.with_suffix("")  # "x.warc.gz.open" -> "x.warc.gz"
        os.replace(self.path, final)
        log.info("WARC file %s written", final)

    def _open(self) -> BinaryIO:
        """Begin the next ``.open`` file with its warcinfo record; returns its stream."""
        self.serial += 1
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        name = f"crawlkit-{stamp}-{os.getpid()}-{self.serial:05d}.warc.gz"
        self.path = self.directory / f"{name}.open"
        self.stream = open(self.path, "wb")
        self.writer = WARCWriter(self.stream, gzip=True, warc_version="1.1")
        info = {"hostname": socket.gethostname(), "format": "WARC File Format 1.1", **self.info}
        self.writer.write_record(self.writer.create_warcinfo_record(name, info))
        return self.stream


def _request_headers(result: FetchResult) -> StatusAndHeaders:
    parts = urlsplit(result.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = list(result.request_headers)
    if not any(name.lower() == "host" for name, _ in headers):
        headers.insert(0, ("Host", parts.netloc))
    return StatusAndHeaders(
        f"{result.request.method} {target}", headers, protocol=_protocol(result), is_http_request=True
    )


def _response_headers(result: FetchResult) -> StatusAndHeaders:
    """The response's status line and headers, rewritten to describe the decoded body stored."""
    headers = []
    for name, value in result.headers:
        if name.lower() in _REWRITTEN:
            if name.lower() != "content-length" or value != str(len(result.body)):
                headers.append((f"X-Crawlkit-Orig-{name}", value))
        else:
            headers.append((name, value))
    headers.append(("Content-Length", str(len(result.body))))
    protocol, _, status = result.status_line.partition(" ")
    return StatusAndHeaders(status or str(result.status), headers, protocol=protocol or "HTTP/1.1")


def _protocol(result: FetchResult) -> str:
    return result.status_line.partition(" ")[0] or "HTTP/1.1"
