"""The seen-URL store: which request fingerprints the crawl has met already.

The local store is served by a ``multiprocessing`` Manager process, so every parser process
shares one exact set. Each parser calls ``add_many`` once per page with all of the page's
fingerprints; the answer is the ones that were new, in one atomic call (never "check, then
mark", which races between parsers).

Fingerprints are 64-bit ints kept in an open-addressing table inside one ``array('Q')``:
8 bytes a slot at a load factor between 3/8 and 3/4, so 11-22 bytes per URL, against ~120 for
a set of hex strings.
"""

from __future__ import annotations

import logging
import os
from array import array
from collections.abc import Iterable
from multiprocessing.managers import BaseManager
from typing import Protocol

from crawlkit.log import LogConfig
from crawlkit.process import child_setup

log = logging.getLogger("crawlkit.seen")


class SeenStore(Protocol):
    """What the parser and the engine need of a seen-URL store (local or Redis)."""

    def add_many(self, fingerprints: list[int]) -> list[int]:
        """Add all; return those that were not there before, in the given order."""
        ...

    def count(self) -> int: ...


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

    def count(self) -> int:
        return self._count

    def nbytes(self) -> int:
        return self._table.itemsize * len(self._table)


class SeenManager(BaseManager):
    """The Manager process that serves one FingerprintSet to the engine and every parser."""


def serve_setup(config: LogConfig) -> None:
    """The Manager process's initializer: ``child_setup``, then its pid in the log (a Manager has no public pid)."""
    child_setup(config, "seen-manager")
    log.debug("seen-URL store process %d started", os.getpid())


SeenManager.register("FingerprintSet", FingerprintSet, exposed=("add_many", "count", "nbytes"))
