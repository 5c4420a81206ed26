"""Logging set-up, the same in every crawlkit process.

Every component logs to its own logger (``crawlkit.engine``, ``crawlkit.fetcher``,
``crawlkit.parser``...). Each process sets up the same handlers from one ``LogConfig``:

- the console (stderr): text lines, or one JSON object per line with ``log_json``; with
  ``quiet`` only warnings and errors. While the live view runs, children do not write to the
  terminal themselves (their lines would tear the view): they send their lines down
  ``LogConfig.forward``, a Pipe the engine drains and prints above the view.
- the ``log_file``, appended to directly by every process (lines are short and written whole, so
  processes do not interleave within a line), at ``log_level`` even when the console is quiet.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s[%(process)d]: %(message)s"

#: ``extra`` marking the periodic progress line, which the live view shows by itself.
PROGRESS = {"progress": True}

# A forwarded line is sent in pieces of at most this many characters (4 UTF-8 bytes each at
# worst), so each write stays under PIPE_BUF (4096 bytes on Linux) and is atomic.
FORWARD_CHARS = 1000


@dataclass(frozen=True)
class LogConfig:
    """How a process logs; plain data, handed to every child process (``child_setup``)."""

    level: str = "INFO"
    file: str | None = None
    json: bool = False
    quiet: bool = False  # console: warnings and errors only
    forward: Any = None  # write end of a multiprocessing Pipe: children send console lines here (live view)

    @classmethod
    def from_settings(cls, settings: Any, forward: Any = None) -> LogConfig:
        return cls(settings.log_level, settings.log_file, settings.log_json, settings.quiet, forward)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, process, message, url.

    ``url`` is the record's ``url`` attribute when a call passes ``extra={"url": ...}``, else
    the first http(s) URL among the message's arguments (crawlkit's messages pass the URL
    they are about as an argument); it is left out when there is none.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            message += "\n" + record.exc_text
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": message,
        }
        url = url_of(record)
        if url:
            out["url"] = url
        return json.dumps(out, ensure_ascii=False)


def url_of(record: logging.LogRecord) -> str | None:
    """The URL a record is about (see JsonFormatter)."""
    url = getattr(record, "url", None)
    if url is None and isinstance(record.args, tuple):
        url = next((a for a in record.args if isinstance(a, str) and a.startswith(("http://", "https://"))), None)
    return url


class ConsoleFilter(logging.Filter):
    """What reaches the console: warnings and up when quiet; no progress lines under the live view."""

    def __init__(self, quiet: bool, live: bool = False) -> None:
        super().__init__()
        self.min_level = logging.WARNING if quiet else 0
        self.live = live

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.min_level:
            return False
        return not (self.live and getattr(record, "progress", False))


class _Forward(logging.Handler):
    """Sends a child's console lines to the engine over ``LogConfig.forward``, a Pipe all children share.

    Each message is one write of at most FORWARD_BYTES, under the pipe's atomic-write size, so
    lines of different processes never interleave, and no lock is held that a process killed
    mid-write could leave taken (as a multiprocessing.Queue's would).
    """

    def __init__(self, conn: Any) -> None:
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            for line in self.format(record).splitlines() or [""]:
                for start in range(0, max(len(line), 1), FORWARD_CHARS):
                    self.conn.send_bytes(line[start:start + FORWARD_CHARS].encode("utf-8"))
        except Exception:
            self.handleError(record)


class _LogFile(logging.FileHandler):
    """The ``log_file``. When the system refuses a write (disk full, read-only), one line on
    stderr says so and this process stops writing the file, instead of logging's traceback
    for every record; the crawl goes on (its output is what matters, and is checked itself)."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        self.failed = True
        sys.stderr.write(f"crawlkit: cannot write the log file {self.baseFilename}: {exc.strerror}; "
                         f"this process no longer logs to it\n")


def formatter(config: LogConfig) -> logging.Formatter:
    return JsonFormatter() if config.json else logging.Formatter(FORMAT, "%H:%M:%S")


def setup_logging(config: LogConfig, console: logging.Handler | None = None) -> None:
    """Install the handlers of ``config`` on the root logger of this process.

    ``console`` replaces the stderr handler (the live view passes one that prints above it);
    in a child with ``config.forward`` set, console lines go to that Pipe instead.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    if console is None:
        console = _Forward(config.forward) if config.forward is not None else logging.StreamHandler(sys.stderr)
    console.addFilter(ConsoleFilter(config.quiet, live=config.forward is not None))
    handlers: list[logging.Handler] = [console]
    if config.file:
        handlers.append(_LogFile(os.fspath(config.file), mode="a", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter(config))
        root.addHandler(handler)
    root.setLevel(config.level)
    # urllib3 warns about every broken connection we already count and log ourselves.
    logging.getLogger("urllib3").setLevel(logging.ERROR)


def summary_text(summary: str, config: LogConfig) -> str:
    """The closing summary as printed on stderr: as is, or as one JSON log line with ``log_json``."""
    if not config.json:
        return summary
    record = logging.makeLogRecord({
        "name": "crawlkit.stats", "levelno": logging.INFO, "levelname": "INFO", "msg": summary, "process": os.getpid(),
    })
    return JsonFormatter().format(record)
