"""How crawlkit starts its child processes, and what every child does first.

The start method is chosen explicitly: ``forkserver``, a clean single-threaded parent for every
child (the engine runs threads, which ``fork`` would copy half-held) at a fraction of
``spawn``'s start-up cost, since the fetcher and parser modules are imported once in the server.
"""

from __future__ import annotations

import gc
import logging
import math
import multiprocessing
import os
import resource
import signal
import sys
import threading
from multiprocessing import forkserver
from multiprocessing.context import BaseContext

from crawlkit.errors import ConfigError
from crawlkit.log import LogConfig, setup_logging

# What the children run, and what unpickling the engine's channels imports in them (shared
# arrays, semaphores, queues, passing a Pipe's end, the local limiter's permits): imported once
# in the fork server, their pages are shared by every child instead of ~3 MB private in each.
# First, crawlkit.preload: the garbage collector off for the rest.
_PRELOAD = [
    "crawlkit.preload", "crawlkit.fetch.fetcher", "crawlkit.parse.parser", "crawlkit.backends.local.seen",
    "crawlkit.backends.local.limiter", "multiprocessing.sharedctypes", "multiprocessing.synchronize",
    "multiprocessing.queues", "multiprocessing.resource_sharer", "multiprocessing.popen_forkserver",
]

log = logging.getLogger("crawlkit.process")

# Fetch threads a fetcher process runs before another process is worth its memory: fetching is
# waiting, and one process per CPU keeps up with that many (a process more costs ~8 MB and the
# switching between processes, for no more CPU).
THREADS_PER_FETCHER = 32

# The name each kind of child shows in ps, top and psutil (Linux keeps 15 characters of it), by
# role; ``crawlkit bench`` splits CPU time by these names.
PROCESS_NAMES = {"fetcher": "crawlkit-fetch", "parser": "crawlkit-parse", "seen-manager": "crawlkit-seen",
                 "renderer": "crawlkit-render"}


def context() -> BaseContext:
    """The forkserver context, with the server started now, deaf to SIGTERM.

    Every child's exit code reaches the engine through the fork server, so the server must
    outlive a SIGTERM sent to the whole process group, or the engine would take its living
    children for dead. An ignored signal stays ignored across ``exec``, so the server is
    started while SIGTERM is ignored here (it sets SIGINT aside itself).
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            forkserver.ensure_running()
        finally:
            signal.signal(signal.SIGTERM, previous)
    return ctx


def leave_main_alone() -> None:
    """Start this process's children without running its main script again in each: for the ``crawlkit`` command.

    multiprocessing runs the parent's ``__main__`` file again in every child (as ``__mp_main__``),
    in case a target or argument was defined there, and leaves it alone when that module has no
    ``__file__`` (as in the interactive interpreter). The command's ``__main__`` is its console
    script, which defines nothing and imports ``crawlkit.cli``: click, rich, yaml and the engine,
    none of which a child runs. Imported anew in the seen store, every parser and every fetcher,
    it cost about 0.15 s on the way to the first request and 7 MB of memory per process. A
    crawl started from a script of one's own (tests, benchmarks) keeps the default.
    """
    main = sys.modules["__main__"]
    if getattr(main, "__spec__", None) is None:
        main.__dict__.pop("__file__", None)


def fetcher_processes(workers: int, concurrency: int, cpus: int) -> int:
    """How many fetcher processes to start for the ``workers`` setting: that many at most, one per
    CPU, more only to keep each under ``THREADS_PER_FETCHER`` fetch threads.

    More processes than CPUs add no CPU to fetch with: on 2 CPUs, 8 fetchers of 2 threads each
    took 40% more memory than 2 of 8 threads (PSS of the whole crawl, ``crawlkit bench``), for
    no lower CPU per page and no more pages a second.
    """
    wanted = max(cpus, math.ceil(concurrency / THREADS_PER_FETCHER))
    if wanted >= workers:
        return workers
    log.info("starting %d fetcher processes of the %d allowed (workers): %d CPUs, concurrency %d",
             wanted, workers, cpus, concurrency)
    return wanted


def reserve_open_files(needed: int, what: str) -> None:
    """Make room for ``needed`` open files per process, before any child starts; ConfigError if the system cannot.

    The soft limit (often 1024) is raised up to the hard one; children, the fork server
    included, inherit it. Without this a large crawl dies mid-start with "Too many open
    files"; ``what`` names the settings that need them, for the message.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise ConfigError(
            f"{what} need about {needed} open files, over this system's limit of {hard} (ulimit -Hn); lower them"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def child_setup(log: LogConfig, role: str) -> None:
    """Run first in every child: the engine alone handles Ctrl-C and SIGTERM, and no child outlives it.

    Ctrl-C reaches the whole process group, and so does SIGTERM from a service manager
    (systemd's and Docker's stop signal the whole group); children ignore both, so the engine
    can let the requests in flight finish and drain its children in order. If the engine dies
    (even by SIGKILL), a watchdog thread sees the parent's sentinel
    close and ends the child, so no crawlkit process is left behind.

    The child takes its ``role``'s name from ``PROCESS_NAMES``, so ps and top tell the
    fetchers, parsers and seen store apart (all are ``python`` otherwise). It first puts what it
    inherited from the fork server out of the garbage collector's reach (``gc.freeze``, as the
    ``gc`` docs advise after a fork): the first full collection would write to every one of
    those objects, turning their shared pages into 8 MB of private copies in each child. Then
    it turns the collector on, which the fork server imported without (``crawlkit.preload``).
    """
    gc.freeze()
    gc.enable()
    _name_process(PROCESS_NAMES[role])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    setup_logging(log)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent.sentinel,), name="parent-watchdog", daemon=True).start()


def _name_process(name: str) -> None:
    """Set the process's name as ps shows it (Linux: the main thread's ``comm``); elsewhere it stays ``python``."""
    try:
        with open("/proc/self/comm", "w", encoding="ascii") as comm:
            comm.write(name)
    except OSError:
        pass


def _exit_with_parent(sentinel: int) -> None:
    from multiprocessing.connection import wait

    wait([sentinel])
    os._exit(1)
