"""Logging set-up, the same in every crawlkit process.

Each process logs to stderr (inherited from the CLI) and, with ``log_file``, appends to the
same file; lines are short and written whole, so processes do not interleave within a line.
"""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s[%(process)d]: %(message)s"


def setup_logging(level: str = "INFO", log_file: str | None = None) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(os.fspath(log_file), mode="a", encoding="utf-8"))
    formatter = logging.Formatter(FORMAT, "%H:%M:%S")
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    # urllib3 warns about every broken connection we already count and log ourselves.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
