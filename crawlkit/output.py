"""Item feeds: JSON Lines (default), CSV, or JSON Lines on stdout.

Written only by the engine process, so lines never interleave, and flushed after every batch
of items so a crawl that dies leaves whole records behind.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterable, TextIO

from .errors import ConfigError

log = logging.getLogger("crawlkit.output")


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class JsonLinesWriter:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, items: Iterable[dict[str, Any]]) -> None:
        self.stream.write("".join(json.dumps(item, ensure_ascii=False, default=_json_default) + "\n" for item in items))
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not sys.stdout:
            self.stream.close()
        else:
            self.stream.flush()


class CsvWriter:
    """CSV with the first item's keys as columns, in their order; later new keys are dropped with one warning."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.writer: csv.DictWriter | None = None
        self.warned: set[str] = set()

    def write(self, items: Iterable[dict[str, Any]]) -> None:
        for item in items:
            if self.writer is None:
                self.writer = csv.DictWriter(self.stream, fieldnames=list(item), extrasaction="ignore")
                self.writer.writeheader()
            extra = set(item) - set(self.writer.fieldnames) - self.warned
            if extra:
                self.warned |= extra
                log.warning("CSV output has no column for %s (columns come from the first item); use .jsonl to keep them", sorted(extra))
            self.writer.writerow({k: _cell(v) for k, v in item.items()})
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()


def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict, tuple, set)):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return value


def open_output(path: str | None) -> JsonLinesWriter | CsvWriter | None:
    """The writer for ``path`` (``-`` = stdout); None when items are not wanted."""
    if path is None:
        return None
    if path == "-":
        return JsonLinesWriter(sys.stdout)
    suffix = Path(path).suffix.lower()
    if suffix not in (".jsonl", ".csv", ".ndjson", ".jl"):
        raise ConfigError(f"output {path!r}: unknown format {suffix or '(no extension)'!r}; use .jsonl, .csv or - for stdout")
    try:
        stream: TextIO = open(path, "w", encoding="utf-8", newline="" if suffix == ".csv" else None)
    except OSError as exc:
        raise ConfigError(f"output {path!r}: cannot open for writing: {exc.strerror}") from None
    return CsvWriter(stream) if suffix == ".csv" else JsonLinesWriter(stream)
