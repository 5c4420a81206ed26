"""The fetch queues between the engine and the fetcher (and renderer) processes: both ends, the notices, the config.

The engine builds ``FetchChannels`` and ``FetcherConfig``, sends tasks and reads the notices
(``JOINED``, ``UNCHANGED``); a fetcher or renderer claims a queue (``claim``), reads it through
an ``_Inbox``, sends results to the parsers through its ``_Outbox``es, notifies the engine
(``_notify``) and has its exchanges watched (``_WATCHDOG``). See ``fetcher.py`` for why each
piece is the way it is.

Apart from ``fetcher.py`` so that the engine process, which needs only this, never imports
``requests`` and urllib3 (about 40 ms of CPU in every ``crawlkit crawl`` command): the fetcher
Pool's initializer is ``start_fetcher``, which imports the fetcher in the fetcher process, where
the fork server has it imported already.
"""

from __future__ import annotations

import os
import pickle
import socket
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import Pipe
from multiprocessing.reduction import ForkingPickler
from queue import Empty
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from crawlkit.backends.base import Permits
from crawlkit.errors import ConfigError
from crawlkit.fetch.cache import HttpCache
from crawlkit.fetch.content_types import ContentTypes
from crawlkit.log import LogConfig
from crawlkit.messages import FetchResult, FetchTask, RevalidateTask
from crawlkit.sites import SiteRules

if TYPE_CHECKING:
    from crawlkit.settings import Settings

JOINED = 0  # the notice of a fetcher that has claimed its queue (request ids start at 1)
RETIRED = -1  # an owners entry whose reader died inside get (its queue's lock may be held for ever)
CLOSED = -2  # an owners entry the engine closed at shutdown
# The flag of a notice saying its request (a revalidation batch's entry) was answered 304 with the validators it
# was sent with: the page is done, unchanged, and no FetchResult follows (request ids stay far below it).
UNCHANGED = 1 << 62
WATCH_EVERY = 0.5  # seconds between the watchdog's rounds (heartbeat, cutting exchanges past their deadline)


@dataclass(slots=True)
class FetcherConfig:
    threads: int
    user_agent: str
    connect_timeout: float
    read_timeout: float
    download_timeout: float
    max_body: int
    max_redirects: int
    log: LogConfig
    proxy: str | None  # for every request without meta["proxy"]
    middlewares: list[str]
    spider: str | None  # the spider the middlewares are given, built in the fetcher only when they need it
    spider_kwargs: dict[str, Any]
    allow_private_addresses: bool = True  # False: connect to public addresses only (see destinations.py)
    settings: Settings | None = None  # the crawl's, for the spider the middlewares are given
    content_types: ContentTypes = field(default_factory=lambda: ContentTypes(()))  # what to download (empty: all)
    sites: SiteRules | None = None  # the ``hosts`` setting: a host's own user agent and headers
    # ``warc`` is on: keep the body as transferred, the headers in their order and the peer address
    archive: bool = False
    http_cache: HttpCache | None = None  # answers served from disk without the server (see cache.py)

    @classmethod
    def from_settings(cls, s: Any, threads: int, log: LogConfig, spider: str | None = None,
                      spider_kwargs: dict[str, Any] | None = None) -> FetcherConfig:
        """The fetcher's part of the settings (the engine's pool and ``crawlkit fetch`` alike)."""
        return cls(
            threads=threads, user_agent=s.user_agent, connect_timeout=s.connect_timeout, read_timeout=s.read_timeout,
            download_timeout=s.download_timeout, max_body=s.max_body, max_redirects=s.max_redirects, log=log,
            proxy=s.proxy, middlewares=list(s.middlewares), spider=spider, spider_kwargs=spider_kwargs or {},
            allow_private_addresses=s.allow_private_addresses, settings=s, content_types=ContentTypes(s.content_types),
            sites=SiteRules(s.hosts) if s.hosts else None,
            archive=bool(s.warc),
            http_cache=HttpCache.from_settings(s),
        )


def check_proxy(url: str | None) -> None:
    """Raise a ConfigError unless ``url`` (the ``proxy`` setting) is a usable http(s) proxy URL; main process."""
    if url is None:
        return
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - reading it raises ValueError for a port that is not a number in range
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"proxy {url!r} is not a proxy URL; write it as http://host:port or http://user:password@host:port"
        )


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
    ready: list[Any]  # a multiprocessing.Semaphore per fetch queue: one permit per task put on it
    reads: Any  # RawArray('q') by fetch queue: +1 as a thread enters Queue.get, +1 as it leaves (odd: inside)
    owners: Any  # multiprocessing.Array('i'): pid of the process reading each queue, 0 free, RETIRED, CLOSED
    registrations: list[Any]  # one per parser process
    permits: Permits  # the limiter's fetcher side, inherited
    released: Any  # multiprocessing.RawArray('b'): set to 1 once a ticket's permit is released
    notices: Any  # write end of a Pipe to the engine: a request id (8 bytes) once its exchange is over
    # RawArray('d') by ticket: monotonic time a fetch thread that took the task must be done by; 0 untaken
    deadlines: Any
    heartbeats: Any  # RawArray('d') by fetch queue: monotonic time its process's watchdog last ran
    renderers: int = 0  # the last queues are the renderer processes' (render/pool.py): no fetcher claims them

    def send(self, index: int, task: FetchTask | RevalidateTask | None) -> None:
        """Put ``task`` (None: a STOP) on fetch queue ``index`` and give its reader a permit; engine."""
        self.queues[index].put(task)
        self.ready[index].release()

    def recycle(self, index: int, sent: int, timeout: float) -> bool:
        """Make the queue of a dead reader fit for another: True once emptied, False if it must be retired.

        ``sent`` is the number of tasks put on it since it was last claimed; those its reader
        did not take are read out and dropped here (the engine has re-queued them), waiting up
        to ``timeout`` seconds for the ones this process's feeder thread has not written yet.
        A reader that died inside ``get`` may hold the queue's lock or have read half a message:
        False. Engine only, after the reader's death, while no process owns the queue.
        """
        reads = self.reads[index]
        if reads % 2:
            return False
        queue, deadline = self.queues[index], time.monotonic() + timeout
        for _ in range(sent - reads // 2):
            try:
                queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                return False
        while self.ready[index].acquire(False):  # the permits of the tasks just dropped
            pass
        self.reads[index] = 0
        self.heartbeats[index] = 0.0  # its next reader's watchdog beats afresh
        return True


class _Inbox:
    """This process's fetch queue, read by its fetch threads one at a time.

    A thread waits on the queue's ``ready`` semaphore, then reads the task that permit stands
    for with ``get``, which waits only until the engine's feeder thread has written it (a
    fraction of a millisecond), so a process is almost never killed inside ``get``. ``reads`` is
    incremented before ``get`` and after it, under a lock of this process's own, so an even count
    at this process's death means no thread was inside ``get``, and it counts the tasks taken.
    """

    def __init__(self, channels: FetchChannels, index: int) -> None:
        self.queue = channels.queues[index]
        self.ready = channels.ready[index]
        self.reads = channels.reads
        self.index = index
        self.lock = threading.Lock()

    def get(self) -> FetchTask | RevalidateTask | None:
        self.ready.acquire()  # an idle thread waits here, not inside get, which waits holding the queue's lock
        with self.lock:
            self.reads[self.index] += 1
            task: FetchTask | RevalidateTask | None = self.queue.get()
            self.reads[self.index] += 1
        return task


def claim(channels: FetchChannels, first: int, end: int, pid: int) -> int | None:
    """Claim the first free queue among ``first`` to ``end`` for process ``pid``: its index, or None if none is free."""
    with channels.owners.get_lock():
        for index in range(first, end):
            if channels.owners[index] == 0:
                channels.owners[index] = pid
                return index
    return None


def _notify(fd: int, req_id: int) -> None:
    """Tell the engine that ``req_id``'s exchange is over, so it can send the host's next request now
    (or, for ``JOINED``, that a fetcher has claimed a queue).

    One 8-byte write to a non-blocking pipe shared by all fetch threads: writes this small are
    atomic, so notices never interleave. A notice is only a head start (the request's PageDone
    settles it anyway), so one that does not fit because the engine is busy is dropped.
    """
    try:
        os.write(fd, req_id.to_bytes(8, "little"))
    except (BlockingIOError, BrokenPipeError):
        pass


class _Exchange:
    """One exchange the watchdog keeps an eye on: its deadline, and its socket once the request is sent."""

    __slots__ = ("deadline", "sock", "cut")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.sock: socket.socket | None = None
        self.cut = False  # the watchdog shut the socket down: the deadline passed


class _Watchdog:
    """A thread per process that cuts exchanges past their ``download_timeout`` (and beats, in a fetcher).

    Each fetch thread registers its exchange under its thread id (``watch``/``done``: a dict
    store each, nothing more on the hot path); the watched connection classes of ``fetcher.py`` add the
    socket when the request has been sent, before the response head is read. Shutting a
    socket down from another thread wakes the ``recv`` blocked on it, which then fails; the
    fetch thread sees ``cut`` and reports a ``download_timeout``. The base class's
    ``shutdown`` is called even on a TLS socket: ``SSLSocket.shutdown`` would also drop its
    TLS state under the thread still reading it.
    """

    def __init__(self) -> None:
        self.exchanges: dict[int, _Exchange] = {}
        self.beat: tuple[Any, int] | None = None  # (heartbeats array, index) in a fetcher process
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, beat: tuple[Any, int] | None = None) -> None:
        """Start the thread in this process, once (a fetcher starts it beating; ``crawlkit fetch`` on first use)."""
        with self._lock:
            if beat is not None:
                self.beat = beat
                beat[0][beat[1]] = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fetch-watchdog", daemon=True)
                self._thread.start()

    def watch(self, deadline: float) -> _Exchange:
        if self._thread is None:
            self.start()
        exchange = self.exchanges[threading.get_ident()] = _Exchange(deadline)
        return exchange

    def done(self) -> None:
        self.exchanges.pop(threading.get_ident(), None)

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            if self.beat is not None:
                self.beat[0][self.beat[1]] = now
            for exchange in list(self.exchanges.values()):
                if now > exchange.deadline and exchange.sock is not None and not exchange.cut:
                    exchange.cut = True
                    try:
                        socket.socket.shutdown(exchange.sock, socket.SHUT_RDWR)
                    except OSError:
                        pass  # closed meanwhile
            time.sleep(WATCH_EVERY)


_WATCHDOG = _Watchdog()


def start_fetcher(config: FetcherConfig, channels: FetchChannels) -> None:
    """The fetcher Pool's initializer (``fetcher.worker_init``), named here so the engine need not import it."""
    from crawlkit.fetch.fetcher import worker_init

    worker_init(config, channels)
