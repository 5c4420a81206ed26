"""The payload digests already archived, so that a payload is written once and later captures become revisits.

Every parser process writes WARC records of its own, and the same payload may reach two of them
at once, so the index lives where all of them (and a resumed crawl) see it: an SQLite table in
the WARC directory, ``DIR/.crawlkit-digests.sqlite``, of payload digest -> target URI and
WARC-Date of the record that stores the payload. Claiming a digest is one ``INSERT OR IGNORE``,
which SQLite makes atomic across processes: exactly one record holds each payload, whichever
process fetched it. The cost is one small write transaction (WAL, no fsync: a killed process
loses nothing the kernel has) per archived 2xx response, nothing on the fetch path and nothing
when ``warc`` is off; a row is some 100 bytes. The table stays with the WARCs, so a resumed
crawl (or another crawl into the same directory) refers to the payloads already there.
``warc_dedup`` names the WARC files, directories or CDXJ indexes of an earlier crawl: their
digests are added before the crawl starts (``seed``), and their records are referred to by URI
and date like this crawl's own.

A process killed between claiming a digest and flushing its record leaves a claim whose
record is missing; the revisits that refer to it name a capture no replay tool finds. That is
a window of one record write, and a record that fails to be written gives its claim back.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.timeutils import timestamp_to_iso_date

from crawlkit.errors import ConfigError

INDEX_FILE = ".crawlkit-digests.sqlite"
_WARC_SUFFIXES = (".warc", ".warc.gz")


class DigestIndex:
    """The claimed payload digests of one WARC directory; one connection per process, safe across processes."""

    def __init__(self, warc_dir: str | Path) -> None:
        self.path = Path(warc_dir) / INDEX_FILE
        self._db: sqlite3.Connection | None = None

    def claim(self, digest: str, uri: str, date: str) -> tuple[str, str] | None:
        """Claim ``digest`` for the record of ``uri`` at ``date``: None if it is now this caller's to write,
        else the (URI, WARC-Date) of the record that holds it."""
        db = self._connect()
        if db.execute("INSERT OR IGNORE INTO digests VALUES (?, ?, ?)", (digest, uri, date)).rowcount:
            return None
        row = db.execute("SELECT uri, date FROM digests WHERE digest = ?", (digest,)).fetchone()
        return (row[0], row[1]) if row else None  # None: released meanwhile, so write it in full

    def claim_all(self, captures: Iterable[tuple[str, str, str]]) -> int:
        """Claim many (digest, uri, date) at once, in one transaction (``seed``); returns how many were new."""
        db = self._connect()
        with db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO digests VALUES (?, ?, ?)", captures)
            return db.total_changes - before

    def release(self, digest: str) -> None:
        """Give back a claim whose record could not be written, so that a later capture stores the payload."""
        self._connect().execute("DELETE FROM digests WHERE digest = ?", (digest,))

    def create(self) -> None:
        """Make the index file (in WAL mode, with its table) before the parser processes open it: processes
        switching one new file to WAL at the same moment can fail at once with "database is locked", without
        the busy timeout, and the first records of the crawl (its robots.txt answers) would go unwritten."""
        self._connect()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            # Autocommit (each statement its own transaction); a writer waits for another's up to 60 s.
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # made so by create(), normally
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("CREATE TABLE IF NOT EXISTS digests (digest TEXT PRIMARY KEY, uri TEXT, date TEXT)")
            self._db = db
        return self._db


def seed(index: DigestIndex, sources: Sequence[str]) -> int:
    """Add the payload digests of an earlier crawl's WARCs or CDXJ indexes (``warc_dedup``) to ``index``;
    returns how many were new. Main process, before the crawl starts; raises ConfigError for a source
    that cannot be read."""
    return sum(index.claim_all(_captures(source)) for source in sources)


def check_sources(sources: Sequence[str]) -> None:
    """Raise a ConfigError naming the first ``warc_dedup`` entry that is neither a WARC file, a directory
    nor a CDXJ index."""
    for source in sources:
        path = Path(source)
        if not (path.is_dir() or (path.is_file() and (path.name.endswith(_WARC_SUFFIXES) or _is_cdxj(path)))):
            raise ConfigError(
                f"warc_dedup entry {source!r} is not a WARC file, a directory of them or a .cdxj index; "
                "list the WARCs (or their CDXJ index) of the earlier crawl"
            )


def _is_cdxj(path: Path) -> bool:
    return path.suffix in (".cdxj", ".cdx")


def _captures(source: str) -> Iterator[tuple[str, str, str]]:
    """(payload digest, target URI, WARC-Date) of every stored payload in ``source``."""
    path = Path(source)
    files: Iterable[Path] = sorted(path.rglob("*")) if path.is_dir() else [path]
    for file in files:
        try:
            if file.name.endswith(_WARC_SUFFIXES):
                yield from _warc_captures(file)
            elif _is_cdxj(file):
                yield from _cdxj_captures(file)
        except (OSError, ArchiveLoadFailed, ValueError) as exc:
            raise ConfigError(
                f"warc_dedup: cannot read {str(file)!r}: {exc}; give WARC files or CDXJ indexes"
            ) from None


def _warc_captures(path: Path) -> Iterator[tuple[str, str, str]]:
    with open(path, "rb") as stream:
        for record in ArchiveIterator(stream):
            digest = record.rec_headers.get_header("WARC-Payload-Digest")
            if record.rec_type == "response" and digest:
                yield digest, record.rec_headers.get_header("WARC-Target-URI"), record.rec_headers.get_header(
                    "WARC-Date"
                )


def _cdxj_captures(path: Path) -> Iterator[tuple[str, str, str]]:
    """The captures of a CDXJ index (``SURT TIMESTAMP {json}`` a line, as cdxj-indexer and pywb write it)."""
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            parts = line.split(" ", 2)
            if len(parts) < 3 or not line.strip() or line.startswith("!"):
                continue
            fields = json.loads(parts[2])
            digest, uri = fields.get("digest"), fields.get("url")
            if digest and uri and fields.get("mime") != "warc/revisit":
                yield (digest if ":" in digest else f"sha1:{digest}"), uri, timestamp_to_iso_date(parts[1])
