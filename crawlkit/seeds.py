"""Reading a seeds file: one URL a line, ``#`` comments and blank lines skipped.

A line that is not an http(s) URL is reported with its line number and skipped, so one typo
does not stop a long list; a file with no usable URL at all is an error. Two spellings of one
page (``HTTP://A.test:80/``, ``http://a.test/#top``) are one seed: the first is kept.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from .errors import SeedsError
from .urls import canonicalize

log = logging.getLogger("crawlkit.seeds")


def read_seeds(path: str | Path) -> list[str]:
    """The seed URLs of ``path`` in file order, without repeats; raises SeedsError when there are none."""
    try:
        mode = os.stat(path).st_mode
        # A device such as /dev/zero never ends. A pipe (``crawlkit crawl <(grep ... urls)``) ends with its writer.
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise SeedsError(f"seeds file {str(path)!r} is not a regular file or a pipe; give a text file with one URL per line")
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise SeedsError(f"seeds file {str(path)!r} does not exist; give a text file with one URL per line") from None
    except OSError as exc:
        raise SeedsError(f"seeds file {str(path)!r} cannot be read: {exc.strerror}") from None
    nul = data.find(b"\0")
    if nul >= 0:  # binary, though it may decode: each of its "lines" would be one more warning
        raise SeedsError(f"seeds file {str(path)!r} is binary (a NUL at byte {nul}); give a text file with one URL per line")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SeedsError(f"seeds file {str(path)!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8 with one URL per line") from None
    seeds: dict[str, str] = {}
    bad = 0
    repeats: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        url = line.strip()
        if not url or url.startswith("#"):
            continue
        try:
            if url.partition(":")[0].lower() not in ("http", "https"):
                raise ValueError("not an http(s) URL")
            key = canonicalize(url)  # its message names a bad host or port
        except ValueError as exc:
            bad += 1
            log.warning("%s, line %d: %r skipped: %s", path, number, url[:200], exc)
            continue
        if key in seeds:
            repeats.append(number)
        seeds.setdefault(key, url)
    if repeats:
        log.warning("%s: %d line(s) repeat an earlier seed (first on line %d); skipped", path, len(repeats), repeats[0])
    if not seeds:
        detail = f"{bad} line(s) are not http(s) URLs" if bad else "it has no URL lines"
        raise SeedsError(f"seeds file {str(path)!r} has no valid seed ({detail}); put one http(s) URL per line")
    return list(seeds.values())
