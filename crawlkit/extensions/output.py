"""Item feeds, the format chosen by the output file's extension.

=================  =====================================================================
``.jsonl`` (also   one JSON object a line (the default; ``-`` writes it to stdout)
``.ndjson .jl``)
``.json``          one JSON array, closed after every batch, so the file is valid JSON
                   whenever it is read: during the crawl, after Ctrl-C, after a resume
``.csv``           a header row, then a row an item; columns as in ``export_fields``
``.sqlite .db``    a table ``items``, a column a key (nested values as JSON text)
=================  =====================================================================

An existing file is appended to, as Scrapy's ``-o`` does (``overwrite`` replaces it, ``-O``):
JSON Lines and CSV (no second header; the columns are the file's, and ``export_fields`` that
differ from them are refused) go on at its end, SQLite adds
rows to its table, and a JSON array is reopened before its closing ``]``, so the file stays one
valid array. A ``.json`` file that does not end in an array is refused rather than spoilt.

Written only by the engine process, so records never interleave. ``write`` buffers a page's
items, ``flush`` makes every buffered item durable (the engine calls it after each batch of
pages, before the job directory commits), so a crawl that dies leaves whole records behind.
A write the system refuses (disk full, read-only) cuts the file back to its last complete
record and raises ``WriteFailed`` naming the file; the writer is closed.
Writers count ``size``, how much of the file belongs to flushed work (bytes, or rows for
SQLite): with a job directory the engine commits it beside the crawl state, and a resumed
crawl cuts the file back to it (``open_output(..., resume_at=N)``), so no item is written twice.

Columns (CSV, SQLite) are ``export_fields`` when set, in that order; otherwise the first
item's keys, in its order. A later item's new key gets a new column in SQLite; in CSV, whose
header is already written, it is dropped with one warning (set ``export_fields`` to keep it).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from crawlkit.errors import ConfigError, WriteFailed

log = logging.getLogger("crawlkit.output")

JSON_LINES = (".jsonl", ".ndjson", ".jl")
SQLITE = (".sqlite", ".db")
FORMATS = (*JSON_LINES, ".json", ".csv", *SQLITE)


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default)


class _Writer:
    """A feed in a file or on stdout. Records are buffered here and written at ``flush``, one
    write a batch, so a failed write is known to the byte: the file is cut back to ``durable``,
    its last complete record, and ``WriteFailed`` names it."""

    TRAILER = b""  # written after the records at each flush, and over by the next batch

    def __init__(self, stream: BinaryIO, size: int, name: str) -> None:
        self.stream = stream  # unbuffered (FileIO) for a file; a failed write leaves nothing behind here
        self.name = name
        self.size = size  # bytes in the file that belong to this crawl, buffered ones included
        self.durable = size  # bytes written: where the next batch goes, and a failed one is cut back to
        self.pending: list[bytes] = []
        self.closed = False

    def _emit(self, text: str) -> None:
        data = text.encode("utf-8")
        self.pending.append(data)
        self.size += len(data)

    def flush(self) -> None:
        """Write the buffered records; WriteFailed (the file cut back to its last complete record) if the
        system refuses."""
        if not self.pending:
            return
        data = memoryview(b"".join(self.pending) + self.TRAILER)
        self.pending.clear()
        written = 0
        try:
            if self.stream is not sys.stdout.buffer:
                self.stream.seek(self.durable)
            while written < len(data):
                written += self.stream.write(data[written:])
            self.stream.flush()
        except OSError as exc:
            self._fail(exc, cut=written > 0)
        self.durable = self.size

    def _fail(self, exc: OSError, cut: bool) -> NoReturn:
        self.closed = True
        if self.stream is not sys.stdout.buffer:
            try:
                if cut:  # part of the batch is in the file: back to the last complete record
                    self.stream.truncate(self.durable)
                    self.stream.seek(self.durable)
                    self.stream.write(self.TRAILER)
            except OSError as again:
                log.error("%s could not be cut back to its last complete record at byte %d: %s",
                          self.name, self.durable, again.strerror)
            finally:
                self.stream.close()
        raise WriteFailed(self.name, exc.strerror or str(exc)) from None

    def close(self) -> None:
        if self.closed:
            return
        self.flush()
        self.closed = True
        if self.stream is not sys.stdout.buffer:
            self.stream.close()


class JsonLinesWriter(_Writer):
    def write(self, items: Iterable[dict[str, Any]]) -> int:
        """Buffer the items; returns how many could not be written (always 0 here: any value is
        written, as str at worst)."""
        self._emit("".join(_dumps(item) + "\n" for item in items))
        return 0


class JsonArrayWriter(_Writer):
    """``[``, then the items separated by ``,``; the closing ``]`` is written after each flush and
    written over by the next batch, so it is never counted in ``size``: cutting the file back
    to a committed size and closing it again gives a valid array. A file of ``size`` bytes
    (resumed, or appended to) was cut before its ``]``: the next item follows its last one."""

    TRAILER = b"\n]\n"

    def __init__(self, stream: BinaryIO, size: int, name: str) -> None:
        super().__init__(stream, size, name)
        if size == 0:
            self._emit("[")
            self.first = True  # the next item opens the array: no comma before it
        else:
            stream.seek(size - 1)
            self.first = stream.read(1) == b"["
            self.pending.append(b"")  # write the trailer back now
        self.flush()

    def write(self, items: Iterable[dict[str, Any]]) -> int:
        for item in items:
            self._emit(("\n" if self.first else ",\n") + _dumps(item))
            self.first = False
        return 0


def _array_end(path: str) -> int:
    """Where the items of the JSON array in ``path`` end (before its closing ``]``), to append
    after them; 0 for a missing or empty file. ConfigError when the file is not an array."""
    try:
        with open(path, "rb") as existing:
            size = existing.seek(0, os.SEEK_END)
            existing.seek(0)
            head = existing.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
            existing.seek(max(0, size - 4096))
            tail = existing.read()
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    body = tail.rstrip(b" \t\r\n")
    if not head.startswith(b"[") or not body.endswith(b"]"):
        raise ConfigError(f"output {path!r} exists and is not a JSON array, so items cannot be added to it; "
                          "use -O to overwrite it, or another file")
    return size - len(tail) + len(body[:-1].rstrip(b" \t\r\n"))


class CsvWriter(_Writer):
    """CSV with columns from ``export_fields`` or the first item's keys; later new keys are dropped with one warning."""

    def __init__(self, stream: BinaryIO, size: int, name: str, fieldnames: list[str] | None) -> None:
        super().__init__(stream, size, name)
        self.fieldnames = fieldnames
        self.warned: set[str] = set()

    def write(self, items: Iterable[dict[str, Any]]) -> int:
        buffer = io.StringIO()
        for item in items:
            if self.fieldnames is None:
                self.fieldnames = list(item)
            if self.size == 0 and not buffer.tell():
                csv.writer(buffer).writerow(self.fieldnames)
            extra = set(item) - set(self.fieldnames) - self.warned
            if extra:
                self.warned |= extra
                log.warning("CSV output has no column for %s (columns are fixed by the header); "
                            "list them in export_fields, or use .jsonl", sorted(extra))
            csv.writer(buffer).writerow([_cell(item.get(name, "")) for name in self.fieldnames])
        self._emit(buffer.getvalue())
        return 0


def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict, tuple, set)):
        return _dumps(value)
    return value


def _sql_value(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float)):  # bool is an int: stored as 0/1
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, dict, tuple, set)):
        return _dumps(value)
    return str(value)


def _refused_by_system(exc: sqlite3.Error) -> bool:
    """Whether SQLite failed for want of space or permission (SQLITE_FULL, _IOERR, _READONLY,
    _CANTOPEN), not because of one item."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (8, 10, 13, 14)
    return any(words in str(exc) for words in ("disk is full", "readonly", "disk I/O", "unable to open"))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqliteWriter:
    """A table ``items`` in a SQLite file: a row an item, committed at each flush.

    ``size`` is the number of rows (the table's highest rowid): a resumed crawl deletes the
    rows past the committed count; an ``append`` keeps an existing table. SQLite compares column
    names without regard to case, so a key that differs from a column only in case is written to
    that column.
    """

    def __init__(self, path: str, resume_at: int | None, fieldnames: list[str] | None, append: bool = False) -> None:
        if resume_at is None and not append:
            for suffix in ("", "-wal", "-shm", "-journal"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")  # commits without an fsync each; durable past a crash of ours
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.fixed = fieldnames is not None
        existing = [row[1] for row in self.db.execute("PRAGMA table_info(items)")]
        if not existing and fieldnames:
            self._create(fieldnames)
        self.columns = {name.lower(): name for name in existing or fieldnames or []}
        if resume_at is not None and existing:
            self.db.execute("DELETE FROM items WHERE _rowid_ > ?", (resume_at,))
        self.size = self.db.execute("SELECT coalesce(max(_rowid_), 0) FROM items").fetchone()[0] if self.columns else 0
        self.warned: set[str] = set()
        self.closed = False
        self.db.execute("BEGIN")

    def _create(self, names: list[str]) -> None:
        self.db.execute(f"CREATE TABLE items ({', '.join(_quote(name) for name in names)})")

    def write(self, items: Iterable[dict[str, Any]]) -> int:
        failed = 0
        for item in items:
            try:
                self._insert(item)
            except sqlite3.Error as exc:
                if _refused_by_system(exc):
                    self._fail(exc)
                failed += 1  # e.g. past SQLite's 2000 columns; the item is lost, the crawl is not
                log.error("an item cannot be written to the SQLite output (%s); keys: %s", exc, sorted(item)[:20])
        return failed

    def _insert(self, item: dict[str, Any]) -> None:
        if not self.columns:
            names = list(item) or ["value"]  # an empty first item still needs a table to count its row in
            self._create(names)
            self.columns = {name.lower(): name for name in names}
        new = [key for key in item if key.lower() not in self.columns]
        if new and self.fixed:
            if set(new) - self.warned:
                self.warned |= set(new)
                log.warning("SQLite output has no column for %s (not in export_fields); dropped", sorted(new))
        else:
            for key in new:
                self.db.execute(f"ALTER TABLE items ADD COLUMN {_quote(key)}")
                self.columns[key.lower()] = key
        columns = self.columns
        row = {columns[key.lower()]: _sql_value(value) for key, value in item.items() if key.lower() in columns}
        if row:
            sql = f"INSERT INTO items ({', '.join(map(_quote, row))}) VALUES ({', '.join('?' * len(row))})"
            cursor = self.db.execute(sql, list(row.values()))
        else:
            cursor = self.db.execute("INSERT INTO items DEFAULT VALUES")
        self.size = cursor.lastrowid

    def flush(self) -> None:
        """Commit the rows; WriteFailed (the table as the last commit left it) if the system refuses."""
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._fail(exc)
        self.db.execute("BEGIN")

    def _fail(self, exc: sqlite3.Error) -> NoReturn:
        self.closed = True
        try:
            self.db.close()  # what is not committed is rolled back: the table ends on a committed row
        except sqlite3.Error:
            pass
        raise WriteFailed(self.path, str(exc)) from None

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._fail(exc)
        self.closed = True
        try:
            self.db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file for whoever reads it next
        except sqlite3.OperationalError as exc:  # someone is reading it now: it stays in WAL mode, data intact
            log.info("SQLite output %s stays in WAL mode (%s)", self.path, exc)
        self.db.close()


Writer = JsonLinesWriter | JsonArrayWriter | CsvWriter | SqliteWriter


def open_output(path: str | None, resume_at: int | None = None, fields: list[str] | None = None,
                overwrite: bool = False) -> Writer | None:
    """The writer for ``path`` (``-`` = JSON Lines on stdout); None when items are not wanted.

    ``resume_at``: keep what the first N bytes (rows, for SQLite) hold, as a job directory
    committed them, and go on from there. Otherwise an existing file is appended to, or
    replaced with ``overwrite``. ``fields``: the columns of CSV and SQLite (None = the first
    item's keys, or the header of a CSV file appended to).
    """
    if path is None:
        return None
    if path == "-":
        return JsonLinesWriter(sys.stdout.buffer, 0, "stdout")
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(
            f"output {path!r}: unknown format {suffix or '(no extension)'!r}; "
            "use .jsonl, .json, .csv, .sqlite, .db or - for stdout"
        )
    kept = resume_at if resume_at is not None and os.path.exists(path) else None
    append = kept is None and not overwrite
    try:
        if suffix in SQLITE:
            return SqliteWriter(path, kept, fields, append)
        if kept is not None:
            os.truncate(path, kept)
            stream = open(path, "r+b", buffering=0)
        elif append:  # not O_APPEND: a failed batch is cut back, and a JSON array's "]" written over
            end = _array_end(path) if suffix == ".json" else None  # None: at the file's end
            stream = open(os.open(path, os.O_RDWR | os.O_CREAT, 0o666), "r+b", buffering=0)
            kept = stream.seek(0, os.SEEK_END) if end is None else end
            stream.truncate(kept)
            if kept:
                log.info("output %s exists: the items are added to it (-O FILE replaces it)", path)
        else:
            kept = 0
            stream = open(path, "w+b", buffering=0)
    except (OSError, sqlite3.Error) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"output {path!r}: cannot open for writing: {why}") from None
    if suffix == ".json":
        return JsonArrayWriter(stream, kept, path)
    if suffix != ".csv":
        return JsonLinesWriter(stream, kept, path)
    if kept:  # the file's header fixes the columns: rows under another header would be misread
        with open(path, encoding="utf-8", newline="") as existing:
            header = next(csv.reader(existing), None)
        if fields is not None and header != fields:
            stream.close()
            raise ConfigError(f"output {path!r} has the columns {header}, not export_fields {fields}; "
                              "use -O to overwrite it, or another file")
        fields = header
    return CsvWriter(stream, kept, path, fields)
