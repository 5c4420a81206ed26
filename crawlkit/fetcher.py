"""The fetcher processes: a ``multiprocessing.Pool`` whose workers run HTTP requests with ``requests``.

Each Pool worker starts, in its initializer, ``threads`` fetch threads with one keep-alive
``requests.Session`` each (so ``concurrency`` is independent of the number of processes). A
thread takes a ``FetchTask`` from the shared fetch queue, runs the exchange under the time and
size caps, releases the host's semaphore the moment the exchange is over, and sends a
``FetchResult`` down a Pipe to a parser process. The Pool's job is process lifetime: a worker
that dies is replaced, and the replacement starts its threads the same way.

Each worker makes its own Pipe to every parser and hands the parser the read end through that
parser's registration queue. Results go to the parsers in turn. Redirects are *not* followed
here: a 3xx goes to the parser, which queues its target through dedup, robots and the per-host
limiter like any other link (robots.txt requests are the exception, see ``robots.py``).
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import threading
import time
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.reduction import ForkingPickler
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from .http import Request
from .messages import FetchResult, FetchTask
from .process import child_setup

log = logging.getLogger("crawlkit.fetcher")

CHUNK = 64 * 1024


@dataclass(slots=True)
class FetcherConfig:
    threads: int
    user_agent: str
    connect_timeout: float
    read_timeout: float
    download_timeout: float
    max_body: int
    max_redirects: int
    log_level: str
    log_file: str | None


class _Outbox:
    """One Pipe to a parser; fetch threads of this process share it, one message at a time."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, result: FetchResult) -> None:
        data = pickle.dumps(result, pickle.HIGHEST_PROTOCOL)
        with self.lock:
            self.conn.send_bytes(data)


def worker_init(config: FetcherConfig, fetch_queue: Any, registrations: list[Any], semaphores: list[Any]) -> None:
    """Pool initializer: connect to every parser and start the fetch threads."""
    child_setup(config.log_level, config.log_file)
    outboxes = []
    for registration in registrations:
        reader, writer = Pipe(duplex=False)
        # Pickle now, not in the queue's feeder thread: the read end is duplicated for the
        # parser at pickling time, after which this process's copy can be closed.
        registration.put((os.getpid(), bytes(ForkingPickler.dumps(reader))))
        reader.close()
        outboxes.append(_Outbox(writer))
    for index in range(config.threads):
        args = (config, fetch_queue, outboxes, semaphores, index)
        threading.Thread(target=_fetch_loop, args=args, name=f"fetch-{index}").start()


def _fetch_loop(config: FetcherConfig, fetch_queue: Any, outboxes: list[_Outbox], semaphores: list[Any], index: int) -> None:
    session = new_session(config)
    turn = itertools.count(index)
    pid = os.getpid()
    while True:
        task: FetchTask | None = fetch_queue.get()
        if task is None:  # one STOP sentinel per thread
            break
        try:
            result = fetch(session, task.request, config)
        finally:
            semaphores[task.slot].release()
        result.req_id = task.req_id
        result.fetcher_pid = pid
        try:
            outboxes[next(turn) % len(outboxes)].send(result)
        except OSError as exc:
            log.error("could not hand %s to a parser: %s", task.request.url, exc)
    session.close()


def new_session(config: FetcherConfig) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=16, pool_maxsize=4, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = config.user_agent
    session.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    session.max_redirects = min(config.max_redirects, 5)  # only robots.txt follows redirects here
    return session


def fetch(session: requests.Session, request: Request, config: FetcherConfig) -> FetchResult:
    """Run one HTTP exchange; never raises: failures come back as ``FetchResult.error``."""
    started = time.monotonic()
    result = FetchResult(req_id=0, request=request, url=request.url)
    meta = request.meta
    max_body = meta.get("max_body", config.max_body)
    try:
        response = session.request(
            request.method,
            request.url,
            headers=request.headers or None,
            data=request.body or None,
            timeout=(config.connect_timeout, config.read_timeout),
            allow_redirects=bool(meta.get("follow_redirects")),
            stream=True,
        )
    except Exception as exc:  # every failure is data for the stats, never a crash
        result.error, result.message = classify(exc)
        result.elapsed = time.monotonic() - started
        return result
    try:
        result.url = response.url
        result.status = response.status_code
        result.headers = list(response.headers.items())
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > max_body and not meta.get("truncate"):
            result.error, result.message = "body_too_large", f"Content-Length {length} > max_body {max_body}"
        else:
            result.body, result.error, result.message = _read_body(
                response.raw, max_body, started + config.download_timeout, bool(meta.get("truncate"))
            )
    except Exception as exc:
        result.error, result.message = classify(exc)
    finally:
        response.close()
    result.elapsed = time.monotonic() - started
    return result


def _read_body(raw: Any, max_body: int, deadline: float, truncate: bool) -> tuple[bytes, str | None, str]:
    """Read the decompressed body in pieces, so size and time caps hold against bombs and slow drips.

    ``read1`` returns whatever has arrived (at most one read timeout of waiting), unlike
    ``read(n)``, which a server dripping a byte a second could hold for hours.
    """
    body = bytearray()
    while True:
        chunk = raw.read1(CHUNK, decode_content=True)
        if chunk:
            body += chunk
            if len(body) > max_body:
                if truncate:
                    return bytes(body[:max_body]), None, ""
                return b"", "body_too_large", f"body over max_body {max_body} bytes"
        elif raw.closed:
            return bytes(body), None, ""
        if time.monotonic() > deadline:
            return b"", "download_timeout", f"body not complete after download_timeout, {len(body)} bytes read"


def classify(exc: BaseException) -> tuple[str, str]:
    """A stats key and a one-line message for a failed exchange."""
    text = f"{type(exc).__name__}: {exc}"
    chain = repr(exc) + repr(exc.__context__) + repr(exc.__cause__)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        kind = "connect_timeout"
    elif isinstance(exc, requests.exceptions.ReadTimeout) or "ReadTimeout" in chain or "timed out" in chain:
        kind = "read_timeout"
    elif "Connection refused" in chain or "ConnectionRefused" in chain:
        kind = "connection_refused"
    elif "reset" in chain.lower() or "RemoteDisconnected" in chain or "aborted" in chain.lower():
        kind = "connection_reset"
    elif isinstance(exc, requests.exceptions.TooManyRedirects):
        kind = "too_many_redirects"
    elif isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema)):
        kind = "invalid_url"
    elif "Decode" in chain or "decompress" in chain.lower():
        kind = "decoding_error"
    elif isinstance(exc, requests.exceptions.ConnectionError) or "ProtocolError" in chain or "IncompleteRead" in chain:
        kind = "connection_error"
    else:
        kind = "fetch_error"
    return kind, text[:300]
