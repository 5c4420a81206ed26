"""Supervision: start, watch, replace and stop the fetcher Pool and the parser processes.

Runs in the engine process. A death is seen the moment it happens, as CPython's
``ProcessPoolExecutor`` sees one: the engine's loop waits on every process's sentinel in the
same ``multiprocessing.connection.wait()`` as the notice and parser Pipes (``sentinels``). A
parser's is its ``Process.sentinel``; a fetcher, a Pool worker whose ``Process`` object the
Pool keeps to itself, is known by the pid it writes into ``channels.owners`` when it claims a
fetch queue (it then sends a JOINED notice), and watched through a pidfd (``os.pidfd_open``,
Linux 5.3 and later), which becomes readable when that process exits, whoever its parent is.

What a dead process held goes back through ``Dispatch``; a dead fetcher's queue is emptied and
freed for a later fetcher, unless it died inside ``Queue.get`` (see ``fetcher.py``), and the
Pool starts the replacement. A dead parser is restarted on the same registration queue, after
what it sent before dying is read. Two timed checks (``check``) find the processes that are
alive but stuck: a fetcher that stops beating (its watchdog writes a heartbeat into shared
memory) or has a fetch thread past its task's deadline by ``STALL_GRACE``, and a parser that
has spent more than ``callback_timeout`` on one page; each is killed, and its death handled
like any other. Processes of one kind that keep dying with no page done in between stop the
crawl (``Respawns``).

The renderer processes (``render/pool.py``) are fetchers of another kind, on the last fetch
queues: watched, checked, buried and stopped the same way; ``RenderProcesses`` starts them at
the first page to render and a dead one's replacement (no Pool does it for them).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.pool import Pool
from multiprocessing.process import BaseProcess
from typing import Any

from crawlkit.core.dispatch import Dispatch, InFlight
from crawlkit.errors import CrashLoopError
from crawlkit.fetch.channels import CLOSED, RETIRED, FetchChannels, FetcherConfig, start_fetcher
from crawlkit.parse.parser import ParserConfig, parser_main
from crawlkit.render.pool import QUEUES_PER_RENDERER, RenderProcesses
from crawlkit.stats import Stats

log = logging.getLogger("crawlkit.engine")

CHECK_EVERY = 0.25  # seconds between the timed checks for stuck processes (deaths need none: see sentinels)
QUEUES_PER_WORKER = 4  # fetch queues made per fetcher process: the spares serve replacements
RECYCLE_WAIT = 5.0  # seconds to wait for the tasks put on a dead fetcher's queue, to drop them before reuse
STALL_GRACE = 10.0  # seconds a fetcher may miss its heartbeat, or a fetch thread overrun its task's deadline
# Deaths of one process kind (fetchers, parsers, the seen store) with no page done in between
# that stop the crawl, if they come within RESPAWN_WINDOW seconds: a process that dies as soon
# as it starts would otherwise be replaced for ever.
RESPAWN_LIMIT = 5
RESPAWN_WINDOW = 60.0


class Respawns:
    """The recent deaths of each process kind, forgotten at every page done."""

    def __init__(self, limit: int = RESPAWN_LIMIT, window: float = RESPAWN_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self.times: dict[str, list[float]] = {}  # process kind -> times of its last deaths since a page was done

    def died(self, kind: str, now: float) -> None:
        """Count a death of ``kind`` at ``now``; CrashLoopError if ``limit`` came within ``window`` seconds."""
        times = self.times.setdefault(kind, [])
        times.append(now)
        del times[:-self.limit]
        if len(times) == self.limit and now - times[0] <= self.window:
            raise CrashLoopError(
                f"{kind} processes died {self.limit} times in {now - times[0]:.0f}s with no page done in between; "
                "stopping (see the log for why they died)"
            )

    def page_done(self) -> None:
        """The crawl moves on: the processes that died so far were not dying as they started."""
        if self.times:
            self.times.clear()


def open_channels(ctx: BaseContext, workers: int, parsers: int, permits: Any,
                  tickets: int, renderers: int = 0) -> tuple[FetchChannels, Connection]:
    """The channels every fetcher inherits, for ``workers`` fetcher processes, ``renderers`` renderer
    processes and ``parsers`` parsers, with the limiter's ``permits`` and ``tickets`` request tickets;
    and the read end of the fetchers' notice Pipe, which the engine waits on."""
    queues = [ctx.Queue() for _ in range(workers * QUEUES_PER_WORKER + renderers * QUEUES_PER_RENDERER)]
    notices, notices_writer = ctx.Pipe(duplex=False)
    channels = FetchChannels(
        queues=queues,
        ready=[ctx.Semaphore(0) for _ in queues],
        reads=ctx.RawArray("q", len(queues)),
        owners=ctx.Array("i", len(queues)),
        registrations=[ctx.Queue() for _ in range(parsers)],
        permits=permits,
        released=ctx.RawArray("b", tickets),
        notices=notices_writer,
        deadlines=ctx.RawArray("d", tickets),
        heartbeats=ctx.RawArray("d", len(queues)),
        renderers=renderers * QUEUES_PER_RENDERER,
    )
    return channels, notices


def stalled_fetchers(claimed: Sequence[int], heartbeats: Sequence[float], deadlines: Sequence[float],
                     released: Sequence[int], inflight: Mapping[int, InFlight],
                     now: float) -> dict[int, tuple[str, set[int]]]:
    """The fetchers to kill, by pid: why, and the requests to blame for their deaths.

    ``claimed`` is ``channels.owners`` (a pid by fetch queue), ``heartbeats``, ``deadlines`` and
    ``released`` the shared arrays of the same names. A fetcher that missed its heartbeat by
    ``STALL_GRACE`` blames none of its requests (a frozen process); one with a fetch thread past
    its task's deadline by ``STALL_GRACE`` blames the overdue requests alone: the others its
    threads had taken were merely there.
    """
    stalled: dict[int, tuple[str, set[int]]] = {}
    for index, pid in enumerate(claimed):
        beat = heartbeats[index]
        if pid > 0 and beat and now - beat > STALL_GRACE:
            stalled[pid] = (f"has not answered for {now - beat:.0f}s", set())
    for req_id, entry in inflight.items():
        deadline = deadlines[entry.ticket]
        if entry.fetching and deadline and now - deadline > STALL_GRACE and not released[entry.ticket]:
            pid = claimed[entry.queue]
            if pid > 0:
                late = f"is {now - deadline:.0f}s past the deadline of {entry.request.url}"
                stalled.setdefault(pid, (late, set()))[1].add(req_id)
    return stalled


def slow_parsers(working: Sequence[int], watched: list[tuple[int, float]], now: float,
                 limit: float) -> list[tuple[int, float]]:
    """The parsers seen on one request for more than ``limit`` seconds: (index, seconds on it).

    ``working`` is the parsers' shared marks (the request id each is on, 0 none); ``watched``
    holds, by parser, the mark seen at the last check and since when, and is updated here (a
    parser returned is watched afresh). Read at each check, so it costs nothing per page.
    """
    slow = []
    for index, req_id in enumerate(working):
        seen, since = watched[index]
        if not req_id or req_id != seen:
            watched[index] = (req_id, now)
        elif now - since > limit:
            slow.append((index, now - since))
            watched[index] = (0, now)
    return slow


class Supervisor:
    """The fetcher Pool and the parser processes of one crawl, and what to do when one dies.

    ``drain`` reads what a parser sent (the engine's handler of its Pipe), called on a dead
    parser's Pipe before its work is taken back; ``drop`` is given the requests dropped as
    poison, whose leases and journal rows the engine finishes.
    """

    def __init__(self, ctx: BaseContext, channels: FetchChannels, notices: Connection, dispatch: Dispatch,
                 stats: Stats, respawns: Respawns, *, workers: int, callback_timeout: float,
                 drain: Callable[[Connection], None], drop: Callable[[list[InFlight]], None],
                 renderers: RenderProcesses | None = None) -> None:
        self.ctx = ctx
        self.channels = channels
        self.notices = notices
        self.dispatch = dispatch
        self.stats = stats
        self.respawns = respawns
        self.workers = workers
        self.callback_timeout = callback_timeout
        self.drain = drain
        self.drop = drop
        self.renderers = renderers
        parsers = len(channels.registrations)
        self.working = ctx.RawArray("q", parsers)  # by parser: the request id it is handling, 0 none
        self.parsers: list[BaseProcess | None] = [None] * parsers
        self.pipes: list[Connection | None] = [None] * parsers  # by parser: the read end of its Pipe to the engine
        self.watched: list[tuple[int, float]] = [(0, 0.0)] * parsers  # by parser: (request id, first seen on it)
        self.pool: Pool | None = None
        self.parser_config: ParserConfig | None = None
        self.fetchers: dict[int, tuple[int, int]] = {}  # pidfd of a fetcher -> (its fetch queue, its pid)
        self.killed: dict[int, set[int]] = {}  # fetcher pid killed for stalling -> the requests to blame
        self.sentinels: list[int] = []  # what the engine's wait() watches besides its Pipes: a death wakes it

    def start(self, fetcher: FetcherConfig, parser: ParserConfig) -> None:
        """Start the parsers, then the fetcher Pool (its workers connect to the parsers)."""
        self.parser_config = parser
        for index in range(len(self.parsers)):
            self._start_parser(index)
        self.pool = self.ctx.Pool(self.workers, initializer=start_fetcher, initargs=(fetcher, self.channels))

    def joined(self) -> None:
        """Take in the fetchers that claimed a fetch queue since last time: watch them, and open their queues.

        Called on a JOINED notice, and at each timed check (a notice is dropped when the Pipe is full).
        """
        self._take_in(self._claimed())

    def check(self, now: float) -> None:
        """The timed checks: take in new fetchers, kill the stalled ones and the parsers past ``callback_timeout``."""
        claimed = self._claimed()
        self._take_in(claimed)
        channels = self.channels
        stalled = stalled_fetchers(claimed, channels.heartbeats, channels.deadlines, channels.released,
                                   self.dispatch.inflight, now)
        for pid, (why, overdue) in stalled.items():
            if pid in self.killed:
                continue
            log.error("fetcher process %d %s; killing it (another takes its place)", pid, why)
            self.stats.incr("error_fetcher_stalled")
            self.killed[pid] = overdue
            _kill(next(fd for fd, (_, watched) in self.fetchers.items() if watched == pid))
        if self.callback_timeout:
            self._kill_slow_parsers(now)

    def bury(self, fired: list[int]) -> None:
        """Handle the deaths whose sentinels ``fired`` (from the engine's wait()): take back what
        each process held, free or retire a fetcher's queue, start another parser.

        CrashLoopError when a kind keeps dying, or no fetch queue is left.
        """
        parsers = {p.sentinel: i for i, p in enumerate(self.parsers) if p is not None}
        for sentinel in fired:
            if sentinel in self.fetchers:
                self._fetcher_died(sentinel)
            else:
                self._parser_died(parsers[sentinel])
        self._rebuild_sentinels()
        if all(pid == RETIRED for pid in self.channels.owners):
            raise CrashLoopError(
                f"fetcher processes died {len(self.channels.owners)} times reading their fetch queues and no fetch "
                "queue is left; see the log for why they died"
            )

    def pipe_closed(self, conn: Connection) -> None:
        """A parser's Pipe reached its end (the parser died; its sentinel says so too): stop reading it."""
        self.pipes[self.pipes.index(conn)] = None
        conn.close()

    def stop(self, idle: bool, hurry: Callable[[], bool]) -> None:
        """Stop every process, gently when the crawl is ``idle``, at once when not; ``hurry()`` turns
        True (a second Ctrl-C) to stop waiting. Then close the channels."""
        if self.pool is not None:
            self._stop_pool(self.pool, 30.0 if idle else 0.0 if hurry() else 2.0, hurry)
        if self.renderers is not None:  # their STOPs were sent with the fetchers'; most have left already
            self.renderers.join(0.0 if hurry() else 5.0)
        channels = self.channels
        for registration, process in zip(channels.registrations, self.parsers):
            if process is None:
                continue
            registration.put(None)
            process.join(timeout=5 if idle else 0.5)
            if process.is_alive():
                process.kill()
                process.join()
        for q in (*channels.queues, *channels.registrations):
            q.cancel_join_thread()
            q.close()
        channels.notices.close()
        self.notices.close()
        for pidfd in self.fetchers:
            os.close(pidfd)
        self.fetchers.clear()

    def _start_parser(self, index: int) -> None:
        assert self.parser_config is not None  # set by start(), before any parser
        reader, writer = self.ctx.Pipe(duplex=False)
        process = self.ctx.Process(  # type: ignore[attr-defined]  # typeshed puts Process on each concrete context only
            target=parser_main,
            args=(self.parser_config, self.channels.registrations[index], writer, self.working, index),
            name=f"crawlkit-parser-{index}",
        )
        process.start()
        writer.close()  # the parser holds the only write end: its death reads as EOF here
        self.parsers[index] = process
        self.pipes[index] = reader
        self._rebuild_sentinels()

    def _claimed(self) -> list[int]:
        """``channels.owners`` as it is now: by fetch queue, the pid of its reader, 0, RETIRED or CLOSED."""
        owners = self.channels.owners
        with owners.get_lock():
            return list(owners.get_obj())

    def _take_in(self, claimed: list[int]) -> None:
        watching = {pid for _, pid in self.fetchers.values()}
        for index, pid in enumerate(claimed):
            if pid > 0 and pid not in watching:
                self._watch(index, pid)
                self.dispatch.queue_claimed(index)

    def _watch(self, index: int, pid: int) -> None:
        """Watch fetcher ``pid``, the reader of queue ``index``; one already gone is buried on the next wait."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # dead before it could be watched: a pipe that is always readable stands in
            pidfd, writer = os.pipe()
            os.close(writer)
        self.fetchers[pidfd] = (index, pid)
        self._rebuild_sentinels()

    def _rebuild_sentinels(self) -> None:
        self.sentinels = [*self.fetchers, *(p.sentinel for p in self.parsers if p is not None)]

    def _fetcher_died(self, pidfd: int) -> None:
        """Take back the work of a dead fetcher and free its queue for a later one (the Pool starts it)."""
        index, pid = self.fetchers.pop(pidfd)
        os.close(pidfd)
        channels = self.channels
        channels.owners[index] = RETIRED  # no new fetcher claims it before it is emptied
        dropped = self.dispatch.fetcher_died(index, pid, self.killed.pop(pid, None))
        renderer = index >= self.dispatch.first_render
        if renderer and self.renderers is not None:
            self.renderers.bury(pid)  # its browser, before another renderer starts one
        self.stats.incr("render_crashed" if renderer else "error_fetcher_died")
        if dropped:
            self.drop(dropped)
            self.respawns.page_done()  # the crawl moves on past them
        if channels.recycle(index, self.dispatch.sent[index], RECYCLE_WAIT):
            self.dispatch.queue_freed(index)
            channels.owners[index] = 0
        else:
            log.warning("fetcher process %d died reading fetch queue %d; that queue is retired", pid, index)
        if not renderer:
            self.respawns.died("fetcher", time.monotonic())
        elif self.renderers is not None:  # counts the death as it starts another
            self.renderers.start()

    def _parser_died(self, index: int) -> None:
        """Read what a dead parser sent, take back the pages it had, and start another on its registration queue.

        Only the request it was working on is blamed; those still being fetched go to its successor.
        """
        process = self.parsers[index]
        assert process is not None  # only a started parser has a sentinel
        log.error("parser process %s died (exit code %s); starting another", process.pid, process.exitcode)
        self.stats.incr("error_parser_died")
        culprit, self.working[index] = self.working[index], 0
        pipe = self.pipes[index]
        if pipe is not None and pipe.poll():
            self.drain(pipe)  # what it finished before dying counts (and why it could not start, if so)
        pipe = self.pipes[index]
        if pipe is not None:
            pipe.close()
        dropped = self.dispatch.parser_died(index, process.pid, culprit)
        if dropped:
            self.drop(dropped)
            self.respawns.page_done()
        self.respawns.died("parser", time.monotonic())
        self._start_parser(index)

    def _kill_slow_parsers(self, now: float) -> None:
        """SIGKILL a parser seen on one page for more than ``callback_timeout`` seconds.

        A callback, hook or pipeline that never returns would otherwise hold its page, and so
        the end of the crawl, for ever. Its death is then handled like any other: the page
        counts a process death (dropped as poison at ``max_process_deaths``), the parser's other
        pages are re-queued, and a new parser starts.
        """
        for index, spent in slow_parsers(self.working, self.watched, now, self.callback_timeout):
            process = self.parsers[index]
            assert process is not None  # the mark is that of a running parser
            entry = self.dispatch.inflight.get(self.working[index])
            url = entry.request.url if entry is not None else f"request {self.working[index]}"
            log.error("parser process %s has spent %.0fs on %s (callback_timeout %gs); killing it",
                      process.pid, spent, url, self.callback_timeout)
            self.stats.incr("error_callback_timeout")
            process.kill()

    def _stop_pool(self, pool: Pool, grace: float, hurry: Callable[[], bool]) -> None:
        """One STOP per fetch thread, then close; workers still busy after ``grace`` seconds are killed.

        ``Pool.terminate`` is not used: it takes the Pool's task-queue lock, which a worker
        killed while holding it never gives back. A worker that claimed no queue sees CLOSED and
        leaves, or takes the Pool's own exit sentinel after ``close``.
        """
        pool.close()  # first, so that workers leaving on their STOPs are not replaced
        owners = self.channels.owners
        with owners.get_lock():  # close the unclaimed queues, so a worker still starting up just leaves
            claimed = list(owners.get_obj())
            for index, pid in enumerate(claimed):
                if pid == 0:
                    owners[index] = CLOSED
        self._take_in(claimed)
        dispatch = self.dispatch
        for index, pid in enumerate(claimed):
            slots = dispatch.threads if index < dispatch.first_render else dispatch.render_pages
            for _ in range(slots if pid > 0 else 0):
                self.channels.send(index, None)
        deadline = time.monotonic() + grace
        running = list(self.fetchers)
        # In slices, so that a second Ctrl-C while waiting ends the wait at once.
        while running and not hurry() and time.monotonic() < deadline:
            gone = wait(running, min(0.1, max(0.0, deadline - time.monotonic())))
            running = [pidfd for pidfd in running if pidfd not in gone]
        for pidfd in running:
            _kill(pidfd)
        pool.join()


def _kill(pidfd: int) -> None:
    """SIGKILL the fetcher watched through ``pidfd``: by its pidfd, never by a pid that may have been reused."""
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:  # gone meanwhile, or dead before it was watched (its stand-in is a pipe)
        pass
