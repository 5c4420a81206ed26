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

from array import array
from multiprocessing.managers import BaseManager
from typing import Iterable, Protocol


class SeenStore(Protocol):
    """What the parser and the engine need of a seen-URL store (local or Redis)."""

    def add_many(self, fingerprints: list[int]) -> list[int]:
        """Add all; return those that were not there before, in the given order."""
        ...

    def count(self) -> int: ...


class FingerprintSet:
    """An exact set of 64-bit fingerprints in a flat array (linear probing, 0 marks an empty slot)."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        size = 1
        while size < capacity:
            size <<= 1
        self._table = array("Q", bytes(8 * size))
        self._mask = size - 1
        self._count = 0

    def add_many(self, fingerprints: Iterable[int]) -> list[int]:
        new: list[int] = []
        table, mask = self._table, self._mask
        for fp in fingerprints:
            key = fp or 1  # 0 is the empty marker; folding it onto 1 costs one in 2**64
            i = key & mask
            while True:
                value = table[i]
                if value == 0:
                    table[i] = key
                    new.append(fp)
                    break
                if value == key:
                    break
                i = (i + 1) & mask
        self._count += len(new)
        if self._count * 4 > 3 * (mask + 1):
            self._grow()
        return new

    def _grow(self) -> None:
        old = self._table
        self._table = array("Q", bytes(16 * len(old)))
        self._mask = 2 * len(old) - 1
        self._count = 0
        self.add_many(v for v in old if v)

    def count(self) -> int:
        return self._count

    def nbytes(self) -> int:
        return self._table.itemsize * len(self._table)


class SeenManager(BaseManager):
    """The Manager process that serves one FingerprintSet to the engine and every parser."""


SeenManager.register("FingerprintSet", FingerprintSet, exposed=("add_many", "count", "nbytes"))
