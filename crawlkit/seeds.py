"""Reading a seeds file: one URL a line, ``#`` comments and blank lines skipped.

A line that is not an http(s) URL is reported with its line number and skipped, so one typo
does not stop a long list; a file with no usable URL at all is an error.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .errors import SeedsError
from .urls import canonicalize

log = logging.getLogger("crawlkit.seeds")


def read_seeds(path: str | Path) -> list[str]:
    """The seed URLs of ``path`` in file order, without repeats; raises SeedsError when there are none."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise SeedsError(f"seeds file {str(path)!r} does not exist; give a text file with one URL per line") from None
    except OSError as exc:
        raise SeedsError(f"seeds file {str(path)!r} cannot be read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SeedsError(f"seeds file {str(path)!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8 with one URL per line") from None
    seeds: dict[str, str] = {}
    bad = 0
    for number, line in enumerate(text.splitlines(), 1):
        url = line.strip()
        if not url or url.startswith("#"):
            continue
        try:
            key = canonicalize(url)
        except ValueError:
            bad += 1
            log.warning("%s, line %d: %r is not an http(s) URL; skipped", path, number, url[:200])
            continue
        seeds.setdefault(key, url)
    if not seeds:
        detail = f"{bad} line(s) are not http(s) URLs" if bad else "it has no URL lines"
        raise SeedsError(f"seeds file {str(path)!r} has no valid seed ({detail}); put one http(s) URL per line")
    return list(seeds.values())
