"""Reading a seeds file: one URL a line, ``#`` comments and blank lines skipped.

A line that is not an http(s) URL is reported with its line number and skipped, so one typo
does not stop a long list; a file with no usable URL at all is an error. Two spellings of one
page (``HTTP://A.test:80/``, ``http://a.test/#top``) are one seed: the first is kept.

The file is streamed, never held: a list of a million seeds took 37 s to check before the
first request, and was copied into every child process with the spider's arguments. The
engine reads seeds as its frontier has room (``SeedFile`` is the engine spider's
``start_urls``), while the children get only ``sites()``, one URL per site of the file, which
is all the built-in spider needs to know which hosts it may follow.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from crawlkit.errors import SeedsError
from crawlkit.urls import canonicalize

log = logging.getLogger("crawlkit.seeds")

# The scheme and netloc of a line that starts like an http(s) URL (checked properly when read).
_SITE = re.compile(rb"^(?:\xef\xbb\xbf)?[^\S\n]*(https?://[^/?#\s]+)", re.M | re.I)
_CHUNK = 1 << 22  # bytes the sites() scan reads at once
_BINARY_CHECK = 1 << 16  # bytes at the start of the file looked at for a NUL


class SeedFile:
    """The seed URLs of ``path`` in file order, without repeats, read once as they are iterated.

    Opening it finds the first valid seed, so a file that is missing, unreadable or has no
    http(s) URL raises ``SeedsError`` here, before the crawl starts; junk lines further on are
    logged as they are met. Repeats are found by a 64-bit hash of each seed's canonical form
    (a set of ints in the engine process, about 60 bytes a seed); their count is
    logged at the end of the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._file: BinaryIO = open(path, "rb")
        except FileNotFoundError:
            raise SeedsError(
                f"seeds file {self.path!r} does not exist; give a text file with one URL per line"
            ) from None
        except OSError as exc:
            raise SeedsError(f"seeds file {self.path!r} cannot be read: {exc.strerror}") from None
        self._data: bytes | None = None  # the whole file, if it can be read only once
        mode = os.fstat(self._file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            if not stat.S_ISFIFO(mode):  # a device such as /dev/zero never ends
                self._file.close()
                raise SeedsError(
                    f"seeds file {self.path!r} is not a regular file or a pipe; give a text file with one URL per line"
                )
            # A pipe (``<(grep ... urls.txt)``) can be read only once, and sites() reads it too.
            with self._file as f:
                self._data = f.read()
            self._file = io.BytesIO(self._data)
        self._refuse_binary()
        self._urls = self._read()
        self._first = next(self._urls, None)  # raises SeedsError if there is none

    def _refuse_binary(self) -> None:
        """A NUL in the first block means a binary file: each of its "lines" would be one more warning."""
        head = self._data[:_BINARY_CHECK] if self._data is not None else os.pread(self._file.fileno(), _BINARY_CHECK, 0)
        nul = head.find(b"\0")
        if nul >= 0:
            self._file.close()
            raise SeedsError(
                f"seeds file {self.path!r} is binary (a NUL at byte {nul}); give a text file with one URL per line"
            )

    def __iter__(self) -> Iterator[str]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._urls

    def sites(self) -> list[str]:
        """One URL (``scheme://netloc/``) for each site the file names, in first-seen order.

        A scan in C over the raw bytes (0.2 s for a million lines): the built-in spider's
        allowed hosts depend on nothing else. A junk line may add a site no seed has; the spider
        then allows one host more, never one less.
        """
        sites: dict[str, None] = {}
        with open(self.path, "rb") if self._data is None else io.BytesIO(self._data) as f:
            while chunk := f.read(_CHUNK):
                chunk += f.readline()
                for site in _SITE.findall(chunk):
                    sites.setdefault(site.decode("utf-8", "replace").lower() + "/")
        return list(sites)

    def _read(self) -> Iterator[str]:
        seen: set[int] = set()
        good = bad = repeats = first_repeat = not_utf8 = 0
        undecodable = (0, 0)  # the line and file offset of the first byte that is not UTF-8
        offset = 0
        with self._file as f:
            for number, raw in enumerate(f, 1):
                start, offset = offset, offset + len(raw)
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    if not not_utf8:
                        undecodable = (number, start + exc.start)
                    bad += 1
                    not_utf8 += 1
                    continue
                url = line.strip()
                if not url or url.startswith("#"):
                    continue
                try:
                    if url.partition(":")[0].lower() not in ("http", "https"):
                        raise ValueError("not an http(s) URL")
                    key = hash(canonicalize(url))  # its message names a bad host or port
                except ValueError as exc:
                    bad += 1
                    log.warning("%s, line %d: %r skipped: %s", self.path, number, url[:200], exc)
                    continue
                if key in seen:
                    repeats += 1
                    first_repeat = first_repeat or number
                    continue
                seen.add(key)
                good += 1
                yield url
        if not good:
            if not_utf8:
                raise SeedsError(f"seeds file {self.path!r} is not UTF-8 text (byte {undecodable[1]}); "
                                 "save it as UTF-8 with one URL per line")
            detail = f"{bad} line(s) are not http(s) URLs" if bad else "it has no URL lines"
            raise SeedsError(f"seeds file {self.path!r} has no valid seed ({detail}); put one http(s) URL per line")
        if repeats:
            log.warning("%s: %d line(s) repeat an earlier seed (first on line %d); skipped",
                        self.path, repeats, first_repeat)
        if not_utf8:
            log.warning("%s: %d line(s) are not UTF-8 text (first on line %d, byte %d); skipped",
                        self.path, not_utf8, *undecodable)
