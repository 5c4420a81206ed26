"""The development HTTP cache (``http_cache: DIR``): answers kept on disk and served again without the server.

A spider author reruns a crawl while writing callbacks; with the cache, the second run asks
the server nothing it answered before. The cache sits in the fetch thread, after the request
hooks and before the exchange (``fetcher._fetch_loop``), so everything after it is unchanged:
a cached answer is a ``FetchResult`` like a fetched one and goes down the same Pipe to the
same parser stages (robots.txt answers, each redirect hop, the spider's callbacks; the WARC
stage alone leaves it out, as it did not come over the wire: ``parse/archive.py``).
A hit is not an exchange: it neither takes one of the host's permits nor waits for its
``delay``. The engine cannot read files on its loop, so at the start it lists the cache once
(``StoredAnswers``: the names of the files and their times, no contents) and dispatches a
request whose answer is stored and not expired without a permit (``NO_GRANT``); the fetcher
then serves it from the file (``HttpCache.hit``) and never sends it. Should the file be gone
or unreadable by then, the request comes back as a retryable ``http_cache_evicted`` failure
and is sent again as any request is. With ``http_cache_rfc9111`` whether an answer is fresh
depends on its headers, which the listing does not read: every request takes its turn.

Storage: one file per request (method, URL as sent, body), named by its SHA-256, under two
levels of directories. A file is a JSON line (status, headers, URL, when stored) followed by
the body bytes; nothing read back can run code (no pickle), and a file longer than ``max_body``
allows is a miss, not read whole. The request's Cookie and Authorization headers are not kept
(``SECRET``): a cache directory is copied and kept, and the credentials would outlive the crawl.
It is written to a temporary name and renamed over the old one, so several fetcher processes
may write at once, and a process killed mid-write leaves the old answer or none, never half of
one. A file that does not read back as an answer for its request is a miss.

Two policies. By default every stored answer is served until it is ``http_cache_ttl`` seconds
old (0: for ever), as Scrapy's DummyPolicy. With ``http_cache_rfc9111`` one is served only
while HTTP's caching rules (RFC 9111) call it fresh (``Cache-Control: max-age``, ``Expires``, a
tenth of the time since ``Last-Modified``); a stale one with an ``ETag`` or ``Last-Modified`` is
revalidated with ``If-None-Match`` / ``If-Modified-Since``, and a 304 is answered from the cache.
``no-store`` (request or response) is neither stored nor served, ``no-cache`` always revalidated.
Statuses in ``http_cache_ignore_statuses`` are never stored; failed exchanges never are.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from crawlkit.http import Headers, Request
from crawlkit.messages import FetchResult
from crawlkit.paths import make_writable_dir

FORMAT = 1  # the "v" of a cache file's head line; files of another version are misses
HITS, MISSES, REVALIDATED = "http_cache_hits", "http_cache_misses", "http_cache_revalidated"
EXPIRY_MARGIN = 60.0  # seconds: an answer expiring sooner is not dispatched as a hit (StoredAnswers)
HEAD_MAX = 1 << 20  # bytes of a cache file's head line (status, headers, URLs) at most
# Request headers a cache file leaves out: a cache directory is shared, copied and kept, and a
# credential in it would outlive the crawl (a hit sends nothing, so nothing needs them).
SECRET = frozenset({"cookie", "authorization", "proxy-authorization"})
UNWRITTEN = "http_cache_unwritten"  # answers that could not be stored (a full disk, a directory made read-only)
# Statuses RFC 9111 lets a cache keep fresh by heuristic (section 4.2.2: "heuristically cacheable").
_HEURISTIC = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
# Headers of a 304 that do not replace the stored ones (RFC 9111 section 3.2: they describe the 304's own body).
_KEEP_STORED = frozenset({"content-length", "content-encoding", "transfer-encoding", "content-range"})

Send = Callable[[Request], FetchResult]


@dataclass(frozen=True, slots=True)
class HttpCache:
    """The cache's settings; its methods run in the fetch threads and touch only files."""

    directory: str
    ttl: float  # seconds a stored answer is served for; 0 = for ever
    ignore_statuses: frozenset[int]
    rfc9111: bool
    max_body: int  # a file longer than this and its head line is a miss, never read whole (one edited by someone else)

    @classmethod
    def from_settings(cls, s: Any) -> HttpCache | None:
        """The cache the settings ask for (its directory made by ``check_cache_dir``); None without ``http_cache``."""
        if s.http_cache is None:
            return None
        return cls(str(Path(s.http_cache).resolve()), s.http_cache_ttl, frozenset(s.http_cache_ignore_statuses),
                   s.http_cache_rfc9111, s.max_body)

    def hit(self, request: Request) -> FetchResult | None:
        """The stored answer to ``request`` (counted as a hit) when the default policy serves it; None: a miss."""
        stored = self.load(request)
        if stored is None:
            return None
        answer = stored[1]
        answer.counts[HITS] = 1
        return answer

    def fetch(self, request: Request, send: Send) -> FetchResult:
        """The answer to ``request``: from the cache when the policy allows, else from ``send`` (then stored)."""
        revisit = bool(request.meta.get("revisit"))  # a recrawl's revisit asks the server, whatever is stored
        if not self.rfc9111:
            answer = None if revisit else self.hit(request)
            return answer if answer is not None else self._keep(request, send(request), {})
        asked = _directives(request.headers.get("Cache-Control"))
        stored = None if "no-store" in asked or revisit else self.load(request)
        if stored is not None:
            when, answer = stored
            age = time.time() - when + _seconds(_header(answer.headers, "Age"))
            lifetime = _lifetime(answer, when)
            if "max-age" in asked:  # the request's own limit on the age it accepts
                lifetime = min(lifetime, _seconds(asked["max-age"]))
            if "no-cache" not in asked and age < lifetime:
                answer.counts[HITS] = 1
                return answer
            validators = _validators(answer.headers)
            if validators:
                headers = Headers(request.headers)
                headers.update(validators)
                result = send(request.replace(headers=headers))
                if result.status == 304 and result.error is None:
                    answer = _refreshed(answer, result)
                    answer.counts[REVALIDATED] = 1
                    if not self.store(request, answer):
                        answer.counts[UNWRITTEN] = 1
                    return answer
                return self._keep(request, result, asked)
        return self._keep(request, send(request), asked)

    def _keep(self, request: Request, result: FetchResult, asked: dict[str, str | None]) -> FetchResult:
        """``result``, fetched from the server: counted as a miss, and stored when it may be."""
        result.counts[MISSES] = 1
        if (result.error is None and result.status != 304 and result.status not in self.ignore_statuses
                and not (self.rfc9111 and ("no-store" in asked or "no-store" in _response_directives(result)))
                and not self.store(request, result)):
            result.counts[UNWRITTEN] = 1
        return result

    def path(self, request: Request) -> Path:
        """The file of ``request``'s answer: named by the SHA-256 of its method, URL and body."""
        name = key(request)
        return Path(self.directory, name[:2], name)

    def stored_answers(self, now: float) -> StoredAnswers | None:
        """What the engine dispatches as hits (the files in the cache now, not expired by ``now``, epoch
        seconds); None with ``http_cache_rfc9111``, whose freshness needs each file's headers."""
        if self.rfc9111:
            return None
        # A file is served for ttl seconds from when it was stored (its time, as it is renamed into place
        # at once); one expiring within EXPIRY_MARGIN seconds may expire before its turn, so it takes one.
        newest = now - self.ttl + EXPIRY_MARGIN
        names: set[str] = set()
        try:
            folders = [entry for entry in os.scandir(self.directory) if len(entry.name) == 2 and entry.is_dir()]
            for folder in folders:
                with os.scandir(folder.path) as files:
                    names.update(entry.name for entry in files if len(entry.name) == 64 and (
                        not self.ttl or entry.stat().st_mtime > newest))
        except OSError:  # a directory removed meanwhile: those answers are misses, fetched with a turn
            pass
        return StoredAnswers(names)

    def load(self, request: Request) -> tuple[float, FetchResult] | None:
        """(when stored, the answer) for ``request``, or None: none stored, older than ``ttl``, of an ignored
        status, or unreadable."""
        try:
            with open(self.path(request), "rb") as file:
                data = file.read(self.max_body + HEAD_MAX + 1)
            if len(data) > self.max_body + HEAD_MAX:
                return None
            head_line, _, body = data.partition(b"\n")
            head = json.loads(head_line)
            if head["v"] != FORMAT or head["method"] != request.method or head["request_url"] != request.url:
                return None
            when = float(head["stored"])
            answer = FetchResult(
                req_id=0, request=request, url=str(head["url"]), status=int(head["status"]),
                status_line=str(head["status_line"]), headers=[(str(k), str(v)) for k, v in head["headers"]],
                request_headers=[(str(k), str(v)) for k, v in head["request_headers"]], body=body,
            )
        except (OSError, ValueError, KeyError, TypeError):  # none stored, or not a file this module wrote
            return None
        if (self.ttl and time.time() - when > self.ttl) or answer.status in self.ignore_statuses:
            return None  # expired, or stored before its status was ignored
        return when, answer

    def store(self, request: Request, result: FetchResult) -> bool:
        """Write ``result`` as the answer to ``request``, atomically (a temporary file renamed over the old);
        False when it could not be written (a full disk costs the cache an entry, never the crawl a page)."""
        head = {
            "v": FORMAT, "method": request.method, "request_url": request.url, "stored": time.time(),
            "url": result.url, "status": result.status, "status_line": result.status_line,
            "headers": result.headers,
            "request_headers": [(name, value) for name, value in result.request_headers if name.lower() not in SECRET],
        }
        path = self.path(request)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as file:
                file.write(json.dumps(head, separators=(",", ":")).encode() + b"\n")
                file.write(result.body)
            os.replace(temporary, path)
        except OSError:
            temporary.unlink(missing_ok=True)
            return False
        return True


class StoredAnswers:
    """The engine's list of the cache's answers: which requests to dispatch as hits, without a permit.

    Each is taken out once it is dispatched: another request of the same key (a retry, a
    ``dont_filter`` one) takes its turn, as does one whose file was gone at the fetcher.
    """

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def take(self, request: Request) -> bool:
        """Whether ``request``'s answer is stored (then no longer listed): dispatch it as a hit. Never a
        recrawl's revisit, which asks the server whether the page changed."""
        if request.meta.get("revisit"):
            return False
        name = key(request)
        if name in self.names:
            self.names.discard(name)
            return True
        return False


def key(request: Request) -> str:
    """The name of ``request``'s cache file: the SHA-256 of its method, URL and body, in hex."""
    digest = hashlib.sha256(b"\0".join((request.method.encode(), request.url.encode(), request.body or b"")))
    return digest.hexdigest()


def check_cache_dir(path: str) -> None:
    """Create the cache's directory, or raise a ConfigError saying why it cannot be (main process, before the crawl)."""
    make_writable_dir("http_cache", path)


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    """Every value of header ``name`` (any case), joined with ", " as HTTP allows; None when absent."""
    name = name.lower()
    values = [value for key, value in headers if key.lower() == name]
    return ", ".join(values) if values else None


def _directives(value: str | None) -> dict[str, str | None]:
    """A Cache-Control header's directives by lower-case name: ``max-age=60, no-cache`` gives
    ``{"max-age": "60", "no-cache": None}``."""
    found: dict[str, str | None] = {}
    for part in (value or "").split(","):
        name, sep, argument = part.strip().partition("=")
        if name:
            found[name.lower()] = argument.strip().strip('"') if sep else None
    return found


def _response_directives(result: FetchResult) -> dict[str, str | None]:
    return _directives(_header(result.headers, "Cache-Control"))


def _seconds(value: str | None) -> float:
    """A delta-seconds value (``max-age``, ``Age``); 0 when absent or not a number."""
    try:
        return max(0.0, float(value)) if value is not None else 0.0
    except ValueError:
        return 0.0


def _date(value: str | None) -> float | None:
    """An HTTP date as a Unix time; None when absent or unreadable (an invalid Expires means already expired)."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _lifetime(answer: FetchResult, stored: float) -> float:
    """Seconds ``answer`` stays fresh after it was sent (RFC 9111 section 4.2.1); 0 when it must be revalidated."""
    directives = _response_directives(answer)
    if "no-cache" in directives or "no-store" in directives:
        return 0.0
    if "max-age" in directives:
        return _seconds(directives["max-age"])
    sent = _date(_header(answer.headers, "Date")) or stored
    expires = _header(answer.headers, "Expires")
    if expires is not None:
        at = _date(expires)
        return max(0.0, at - sent) if at is not None else 0.0
    modified = _date(_header(answer.headers, "Last-Modified"))
    if modified is not None and answer.status in _HEURISTIC:
        return max(0.0, (sent - modified) / 10)
    return 0.0


def _validators(headers: list[tuple[str, str]]) -> dict[str, str]:
    """The conditional headers that revalidate a stored answer: If-None-Match from its ETag, If-Modified-Since."""
    validators = {}
    etag = _header(headers, "ETag")
    if etag:
        validators["If-None-Match"] = etag
    modified = _header(headers, "Last-Modified")
    if modified:
        validators["If-Modified-Since"] = modified
    return validators


def _refreshed(answer: FetchResult, not_modified: FetchResult) -> FetchResult:
    """The stored ``answer`` with the headers of the 304 that confirmed it (RFC 9111 section 4.3.4)."""
    fresh = {key.lower() for key, _ in not_modified.headers} - _KEEP_STORED
    answer.headers = [(k, v) for k, v in answer.headers if k.lower() not in fresh] + [
        (k, v) for k, v in not_modified.headers if k.lower() in fresh
    ]
    answer.elapsed = not_modified.elapsed
    return answer
