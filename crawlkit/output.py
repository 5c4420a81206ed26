"""Item feeds: JSON Lines (default), CSV, or JSON Lines on stdout.

Written only by the engine process, so records never interleave, and flushed after every batch
so a crawl that dies leaves whole records behind. Writers count the bytes they have written:
with a job directory the engine commits that length beside the crawl state, and a resumed
crawl cuts the file back to it (``open_output(..., resume_at=N)``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from .errors import ConfigError

log = logging.getLogger("crawlkit.output")


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class _Writer:
    def __init__(self, stream: BinaryIO, size: int) -> None:
        self.stream = stream
        self.size = size  # bytes in the file that belong to this crawl

    def _emit(self, text: str) -> None:
        data = text.encode("utf-8")
        self.stream.write(data)
        self.stream.flush()
        self.size += len(data)

    def close(self) -> None:
        if self.stream is sys.stdout.buffer:
            self.stream.flush()
        else:
            self.stream.close()


class JsonLinesWriter(_Writer):
    def write(self, items: Iterable[dict[str, Any]]) -> None:
        self._emit("".join(json.dumps(item, ensure_ascii=False, default=_json_default) + "\n" for item in items))


class CsvWriter(_Writer):
    """CSV with the first item's keys as columns, in their order; later new keys are dropped with one warning."""

    def __init__(self, stream: BinaryIO, size: int, fieldnames: list[str] | None) -> None:
        super().__init__(stream, size)
        self.fieldnames = fieldnames
        self.warned: set[str] = set()

    def write(self, items: Iterable[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        for item in items:
            if self.fieldnames is None:
                self.fieldnames = list(item)
                csv.writer(buffer).writerow(self.fieldnames)
            extra = set(item) - set(self.fieldnames) - self.warned
            if extra:
                self.warned |= extra
                log.warning("CSV output has no column for %s (columns come from the first item); use .jsonl to keep them", sorted(extra))
            csv.writer(buffer).writerow([_cell(item.get(name, "")) for name in self.fieldnames])
        self._emit(buffer.getvalue())


def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict, tuple, set)):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return value


def open_output(path: str | None, resume_at: int | None = None) -> JsonLinesWriter | CsvWriter | None:
    """The writer for ``path`` (``-`` = stdout); None when items are not wanted.

    ``resume_at``: keep the file's first N bytes (what a job directory committed) and append.
    """
    if path is None:
        return None
    if path == "-":
        return JsonLinesWriter(sys.stdout.buffer, 0)
    suffix = Path(path).suffix.lower()
    if suffix not in (".jsonl", ".csv", ".ndjson", ".jl"):
        raise ConfigError(f"output {path!r}: unknown format {suffix or '(no extension)'!r}; use .jsonl, .csv or - for stdout")
    try:
        if resume_at is not None and os.path.exists(path):
            os.truncate(path, resume_at)
            stream = open(path, "ab")
        else:
            resume_at = 0
            stream = open(path, "wb")
    except OSError as exc:
        raise ConfigError(f"output {path!r}: cannot open for writing: {exc.strerror}") from None
    if suffix != ".csv":
        return JsonLinesWriter(stream, resume_at)
    fieldnames = None
    if resume_at:
        with open(path, encoding="utf-8", newline="") as existing:
            fieldnames = next(csv.reader(existing), None)
    return CsvWriter(stream, resume_at, fieldnames)
