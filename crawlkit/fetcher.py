"""The fetcher processes: a ``multiprocessing.Pool`` whose workers run HTTP requests with ``requests``.

Each Pool worker claims a fetch queue (a ``multiprocessing.Queue``) of its own and starts, in
its initializer, ``threads`` fetch threads with one keep-alive ``requests.Session`` each (so
``concurrency`` is independent of the number of processes). A thread takes a ``FetchTask``,
runs the exchange under the time and size caps, releases the host's semaphore the moment the
exchange is over, and sends a ``FetchResult`` down a Pipe to the parser the engine chose. The
Pool's job is process lifetime: a worker that dies is replaced, and the replacement claims a
fresh queue and starts its threads the same way.

Each worker makes its own Pipe to every parser and hands the parser the read end through that
parser's registration queue. Redirects are *not* followed
here: a 3xx goes to the parser, which queues its target through dedup, robots and the per-host
limiter like any other link (robots.txt requests are the exception, see ``robots.py``).
"""

from __future__ import annotations

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
    """This process's Pipe to one parser, shared by its fetch threads one message at a time.

    If the parser dies, the engine starts another on the same registration queue; the first
    send that fails makes a new Pipe, registers it there and sends again.
    """

    def __init__(self, registration: Any) -> None:
        self.registration = registration
        self.lock = threading.Lock()
        self.conn = self._connect()

    def _connect(self) -> Any:
        reader, writer = Pipe(duplex=False)
        # Pickle now, not in the queue's feeder thread: the read end is duplicated for the
        # parser at pickling time, after which this process's copy can be closed.
        self.registration.put((os.getpid(), bytes(ForkingPickler.dumps(reader))))
        reader.close()
        return writer

    def send(self, result: FetchResult) -> None:
        data = pickle.dumps(result, pickle.HIGHEST_PROTOCOL)
        with self.lock:
            try:
                self.conn.send_bytes(data)
            except OSError:
                self.conn.close()
                self.conn = self._connect()
                self.conn.send_bytes(data)


@dataclass(slots=True)
class FetchChannels:
    """What every fetcher process inherits (semaphores and queues can only travel this way)."""

    queues: list[Any]  # one fetch queue per fetcher process, and spares for replacements
    owners: Any  # multiprocessing.Array('i'): pid of the process reading each queue, 0 free, -1 retired
    registrations: list[Any]  # one per parser process
    semaphores: list[Any]  # the limiter's per-host slots
    released: Any  # multiprocessing.RawArray('b'): set to 1 once a ticket's permit is released


def worker_init(config: FetcherConfig, channels: FetchChannels) -> None:
    """Pool initializer, and the whole life of the worker: claim a fetch queue, connect to
    every parser, run the fetch threads until each has taken a STOP, then exit the process.

    Each process reads a queue of its own, so the engine knows which requests a dead process
    held, and a process killed while holding a queue's lock only ever blocks its own queue,
    which is retired with it.
    """
    child_setup(config.log_level, config.log_file)
    pid = os.getpid()
    with channels.owners.get_lock():
        free = [i for i, owner in enumerate(channels.owners) if owner == 0]
        if free:
            channels.owners[free[0]] = pid
    if not free:
        log.error("fetcher %d: no fetch queue left to claim (too many fetcher processes died)", pid)
        return
    fetch_queue = channels.queues[free[0]]
    outboxes = [_Outbox(registration) for registration in channels.registrations]
    threads = [
        threading.Thread(target=_fetch_loop, args=(config, fetch_queue, outboxes, channels, i), name=f"fetch-{i}")
        for i in range(config.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Never return into the Pool's task loop: it waits on the Pool's own task queue holding
    # that queue's lock, and a worker killed there would leave every other worker unable to
    # receive the Pool's exit sentinel. We end here once our threads have had their STOPs.
    raise SystemExit(0)


def _fetch_loop(config: FetcherConfig, fetch_queue: Any, outboxes: list[_Outbox], channels: FetchChannels, index: int) -> None:
    session = new_session(config)
    pid = os.getpid()
    while True:
        task: FetchTask | None = fetch_queue.get()
        if task is None:  # one STOP sentinel per thread
            break
        try:
            result = fetch(session, task.request, config)
        finally:
            channels.semaphores[task.slot].release()
            channels.released[task.ticket] = 1
        result.req_id = task.req_id
        result.fetcher_pid = pid
        try:
            outboxes[task.parser].send(result)
        except OSError as exc:
            log.error("could not hand %s to parser %d: %s", task.request.url, task.parser, exc)
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
