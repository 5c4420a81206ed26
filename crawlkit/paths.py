"""Output paths, checked before a crawl starts: a crawl must not find out at its first write, or its last.

Every file and directory a crawl writes besides the output feed (stats file, report, log file,
HTTP cache, screenshots) is checked here in the main process, before any other process starts,
and a problem is a one-line ConfigError naming the setting, the path and what to do.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from crawlkit.errors import ConfigError


def check_writable(key: str, path: str | None) -> None:
    """A ConfigError now, before any process starts, if ``path`` cannot be written.

    The directory must exist and take a new file (a file is made and removed there, as
    ``write_atomic`` will: a read-only or special directory fails here, not at the crawl's
    end); an existing file must be writable, as the log file is appended to.
    """
    if path is None:
        return
    target = Path(path)
    parent = target.resolve().parent
    if not parent.is_dir():
        raise ConfigError(f"{key} {path!r}: directory {str(parent)!r} does not exist; create it or choose another path")
    if target.is_dir():
        raise ConfigError(f"{key} {path!r} is a directory; give a file name")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{target.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise ConfigError(f"{key} {path!r} cannot be written: {exc.strerror}; choose another path") from None
    if target.exists() and not os.access(target, os.W_OK):
        raise ConfigError(f"{key} {path!r} cannot be written: permission denied; choose another path")


def make_writable_dir(key: str, path: str) -> None:
    """Create the directory the setting ``key`` names, or raise a ConfigError saying why it cannot be
    (main process, before any other starts: a crawl must not find out at its first write)."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{key} {path!r}: cannot create the directory ({exc.strerror}); "
                          "give a directory crawlkit may write") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"{key} {path!r}: the directory is not writable; give a directory crawlkit may write")
