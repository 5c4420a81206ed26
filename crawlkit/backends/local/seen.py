"""The seen-URL store: which request fingerprints the crawl has met already.

The local store is served by a ``multiprocessing`` Manager process (``ManagedSeen``), which
keeps the set's memory out of the engine's process and is started again, refilled from the
journal, if it dies. The engine calls ``add_many`` once per batch of candidates; the answer is
the ones that were new, in one atomic call (never "check, then mark").

Fingerprints are 64-bit ints kept in an open-addressing table inside one ``array('Q')``:
8 bytes a slot at a load factor between 3/8 and 3/4, so 11-22 bytes per URL, against ~120 for
a set of hex strings.
"""

from __future__ import annotations

import logging
import os
from array import array
from collections.abc import Callable, Iterable
from multiprocessing.context import BaseContext
from multiprocessing.managers import BaseManager

from crawlkit.backends.base import Journal, SeenStore
from crawlkit.log import LogConfig
from crawlkit.process import child_setup

log = logging.getLogger("crawlkit.seen")


class FingerprintSet:
    """An exact set of 64-bit fingerprints in a flat array (linear probing, 0 marks an empty slot)."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        size = 8
        while size < capacity:
            size <<= 1
        self._resize(size)

    def _resize(self, size: int) -> None:
        self._table = array("Q", bytes(8 * size))
        self._mask = size - 1
        self._limit = size * 3 // 4
        self._count = 0

    def add_many(self, fingerprints: Iterable[int]) -> list[int]:
        new: list[int] = []
        for fp in fingerprints:
            if self._count >= self._limit:
                self._grow()
            key = fp or 1  # 0 is the empty marker; folding it onto 1 costs one in 2**64
            table, mask = self._table, self._mask
            i = key & mask
            while True:
                value = table[i]
                if value == 0:
                    table[i] = key
                    self._count += 1
                    new.append(fp)
                    break
                if value == key:
                    break
                i = (i + 1) & mask
        return new

    def _grow(self) -> None:
        old, count = self._table, self._count
        self._resize(2 * len(old))
        table, mask = self._table, self._mask
        for key in old:
            if key:
                i = key & mask
                while table[i]:
                    i = (i + 1) & mask
                table[i] = key
        self._count = count

    def claim(self, fingerprint: int) -> bool:
        return bool(self.add_many([fingerprint]))

    def count(self) -> int:
        return self._count

    def nbytes(self) -> int:
        return self._table.itemsize * len(self._table)


class SeenManager(BaseManager):
    """The Manager process that serves one FingerprintSet to the engine."""

    FingerprintSet: Callable[[], SeenStore]  # set by ``register`` below: a proxy of a new set


def serve_setup(config: LogConfig) -> None:
    """The Manager process's initializer: ``child_setup``, then its pid in the log (a Manager has no public pid)."""
    child_setup(config, "seen-manager")
    log.debug("seen-URL store process %d started", os.getpid())


SeenManager.register("FingerprintSet", FingerprintSet, exposed=("add_many", "count", "nbytes"))


class ManagedSeen:
    """The local seen store: a FingerprintSet in a Manager process, started again if that process dies.

    The new store is refilled from the journal, which holds every fingerprint admitted so far
    (committed or not: this process wrote them). Without a job directory what was seen before
    is gone: pages met again may be fetched again, and the log says so.
    """

    def __init__(self, ctx: BaseContext, log_config: LogConfig, journal: Journal, count: Callable[[str], None],
                 died: Callable[[str], None]) -> None:
        """Start the Manager process; ``count`` adds to a stats counter, ``died(kind)`` counts towards a crash loop."""
        self._ctx, self._log_config, self._journal, self._count, self._died = ctx, log_config, journal, count, died
        self._start()

    def _start(self) -> None:
        self._manager = SeenManager(ctx=self._ctx)
        self._manager.start(serve_setup, (self._log_config,))
        self._store = self._manager.FingerprintSet()

    def add_many(self, fingerprints: list[int]) -> list[int]:
        try:
            return self._store.add_many(fingerprints)
        except (EOFError, OSError) as exc:  # the Manager's connection broke: its process is gone
            log.error("seen-URL store process died (%s); starting another", type(exc).__name__)
            self._count("error_seen_store_died")
            self._died("seen-URL store")
            self._manager.shutdown()
            self._start()
            refilled = sum(len(self._store.add_many(batch)) for batch in self._journal.fingerprints())
            if self._journal.durable:
                log.warning("seen-URL store refilled from the job directory with %d fingerprints", refilled)
            else:
                log.warning("without --jobdir the URLs seen so far are forgotten: pages met again may be fetched again")
            return self._store.add_many(fingerprints)

    def claim(self, fingerprint: int) -> bool:
        return bool(self.add_many([fingerprint]))

    def count(self) -> int:
        return self._store.count()

    def close(self) -> None:
        self._manager.shutdown()
