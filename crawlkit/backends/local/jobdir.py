"""The journal: a crawl's state on disk (the job directory), so the same command resumes it after any stop.

One SQLite database in WAL mode (``DIR/crawl.sqlite``) holds every request the crawl has
admitted (pending or done, with its fingerprint: the seen-URL set is the fingerprint column),
the robots.txt answers, the stats, and how many bytes of the output file belong to committed work.

The engine journals as it goes and commits in batches (``commit``), always in this order:
flush the output file, then commit the rows that say which requests are done together with
the new output length. So after a SIGKILL at any moment the database describes a consistent
past: on resume the output is cut back to the committed length (dropping whole records of
pages that were not committed as done), and those pages, still pending, are fetched again.
Nothing is lost; at most the requests in flight since the last commit are fetched twice; no
item appears twice and no record is truncated.

The database is read back as untrusted: whoever can write the directory must not make a
resume run code or exhaust memory. Requests are read with ``safepickle`` (plain data only, no
amplification); a row it refuses, or a robots.txt row of the wrong types, is skipped, logged
and counted (``error_unreadable_jobdir_data``). A request whose ``meta`` is not plain data is
not journaled (``unresumable_request``): it is crawled, but a resume would not have it. A
database SQLite cannot read (garbage, truncated) is a ConfigError naming the directory.

When the system refuses a write (disk full, read-only), the output file is cut back to its
last complete record and the journal is not committed again: the transaction in progress is
rolled back, so ``output_bytes`` only ever names bytes that were written, and the same command
resumes from the last commit once there is room (``WriteFailed``, raised by every writing method).

Every fetched page's row also keeps what a recrawl needs (``crawlkit.recrawl``): the status it
answered, its ``ETag`` and ``Last-Modified``, when it was fetched, and with adaptive refetch its
interval, written by the same UPDATE that marks it done; and whether it is a sitemap or a page a
sitemap listed with a ``lastmod`` (``sitemap``), which a round leaves to that sitemap (``relist``).
When a run opens a finished crawl (nothing pending) and the ``RecrawlPolicy`` begins a round, the
known pages that are due (all of them without adaptive refetch, and every sitemap; never the gone
ones, nor the pages left to a sitemap) are made pending again, read back with ``If-None-Match``
/ ``If-Modified-Since`` and ``meta["revisit"]`` set, the kept robots.txt answers are dropped (the
round asks each host again), and the round's stats start from zero; a round cut short is
resumed as any crawl is. Each time a run ends with nothing pending,
``finished_at`` is noted, from which ``recrawl_after`` counts.

A request's row id travels beside it, as its frontier entry's job and then its lease (see
``crawlkit.backends.base``), never in its ``meta``. A crawl without a job directory journals
into a ``NullJournal``, which keeps nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeGuard

from crawlkit import safepickle
from crawlkit.backends.base import Entry
from crawlkit.errors import ConfigError, WriteFailed
from crawlkit.extensions.sitemaps import SITEMAP_CALLBACKS
from crawlkit.http import Request
from crawlkit.messages import Validators
from crawlkit.recrawl import CONDITIONAL_HEADERS, GONE, RecrawlPolicy

log = logging.getLogger("crawlkit.jobdir")

PENDING, DONE = 0, 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    fp INTEGER,              -- signed 64-bit view of the fingerprint; NULL for dont_filter
    state INTEGER NOT NULL,  -- 0 pending, 1 done (fetched, failed for good, or dropped)
    request BLOB NOT NULL,
    status INTEGER,          -- of the last fetch (0: no answer); NULL: never fetched
    etag TEXT,               -- the validators the last answer carried, for a recrawl's conditional request
    modified TEXT,
    fetched REAL,            -- when it was last fetched (epoch seconds), and with adaptive refetch
    interval REAL,           -- the seconds after which a round revisits it
    sitemap INTEGER          -- 1: a page a sitemap listed with a lastmod; 2: a sitemap (see LISTED, SITEMAP)
);
CREATE INDEX IF NOT EXISTS requests_pending ON requests(state) WHERE state = 0;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS robots (host TEXT PRIMARY KEY, status INTEGER NOT NULL, body BLOB NOT NULL);
"""


_MAX_VALIDATOR = 4_096  # characters of an ETag or Last-Modified sent back; a longer one is no server's

# Columns added since the first schema: a job directory written before them gains them on opening.
_ADDED = {"status": "INTEGER", "etag": "TEXT", "modified": "TEXT", "fetched": "REAL", "interval": "REAL",
          "sitemap": "INTEGER"}
# The sitemap column: a page a sitemap listed with a lastmod, which a round leaves to the sitemap (relist), and
# a sitemap, which every round revisits, whatever its interval, as its lastmods decide about those pages.
LISTED, SITEMAP = 1, 2
# A listed page a round leaves to its sitemap: one whose last answer was good (a failed one is due as any page).
_LEFT_TO_SITEMAP = f"(sitemap IS {LISTED} AND coalesce(status, 0) BETWEEN 200 AND 399)"

# Marking a page done, with what its answer says (?1 status, ?2 ETag, ?3 Last-Modified, ?4 row id): the
# validators of new content (a 2xx) replace the stored ones; any other answer (a 304, an error) keeps
# those stored unless it sent new ones.
_DONE = ("UPDATE requests SET state = 1, status = ?1, "
         "etag = CASE WHEN ?1 BETWEEN 200 AND 299 THEN ?2 ELSE coalesce(?2, etag) END, "
         "modified = CASE WHEN ?1 BETWEEN 200 AND 299 THEN ?3 ELSE coalesce(?3, modified) END")
_DONE_PLAIN = _DONE + ", fetched = ?5 WHERE id = ?4"  # when (?5): what a sitemap's lastmod is compared with
# With adaptive refetch, also the interval the schedule gives next.
_DONE_ADAPTIVE = _DONE + ", fetched = ?5, interval = refetch(interval, ?1) WHERE id = ?4"


def _header_value(value: object) -> TypeGuard[str]:
    """Whether a validator read back can be sent as a header value (a damaged row's junk is not sent)."""
    return isinstance(value, str) and len(value) <= _MAX_VALIDATOR and value.isprintable()


def _signed(fp: int) -> int:
    return fp - (1 << 64) if fp >= 1 << 63 else fp


class JobDir:
    """The journal of one crawl in a job directory; used by the engine process only."""

    durable = True

    def __init__(self, path: str | os.PathLike[str], count: Callable[[str], None] | None = None,
                 recrawl: RecrawlPolicy | None = None) -> None:
        """Open (or create) the journal in ``path``; ConfigError if its database cannot be read.

        ``count`` adds one to a stats counter (rows skipped, requests not journaled); ``recrawl``
        says whether a finished crawl begins a new round, and the refetch schedule (None: never, none).
        """
        self.path = Path(path)
        self.count = count or (lambda key: None)
        self.policy = recrawl or RecrawlPolicy(False, None, None)
        self.idle = False  # a run of a finished crawl that began no round: it leaves finished_at as it was
        self.recrawling = False  # a round has begun, in this run or the one it resumes: sitemaps relist pages
        self._by_fp = False  # whether the index by fingerprint that relist reads is known to exist
        self._warned_unresumable = False
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"jobdir {str(path)!r}: cannot create it: {exc.strerror}") from None
        db = self.path / "crawl.sqlite"
        self.file = str(db)
        self.resuming = db.exists()
        self.broken = False  # a write was refused: nothing is committed any more
        try:
            self.db = sqlite3.connect(db, isolation_level=None)
            if self.resuming:  # reads every page once: a cut or overwritten file fails here, not mid-crawl
                problems = [row[0] for row in self.db.execute("PRAGMA quick_check").fetchall()]
                if problems != ["ok"]:
                    raise sqlite3.DatabaseError("; ".join(problems[:3]))
        except sqlite3.OperationalError as exc:  # cannot open or read it (permissions, I/O)
            raise ConfigError(f"jobdir {str(path)!r}: cannot open {db.name}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"jobdir {str(path)!r}: {db.name} is damaged or not a crawlkit job database ({exc}); "
                "it cannot be resumed: move the directory away and start again with a new --jobdir"
            ) from None
        with self._writing():
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            have = {row[1] for row in self.db.execute("PRAGMA table_info(requests)")}
            for column, kind in _ADDED.items():
                if column not in have:
                    self.db.execute(f"ALTER TABLE requests ADD COLUMN {column} {kind}")
            self.db.execute("BEGIN")
        schedule = self.policy.schedule
        if schedule is not None:
            self.db.create_function("refetch", 2, schedule.next, deterministic=True)
        self._done_sql = _DONE_PLAIN if schedule is None else _DONE_ADAPTIVE
        self._next_id = (self.db.execute("SELECT max(id) FROM requests").fetchone()[0] or 0) + 1

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a refused write into WriteFailed naming the database; what is not committed is dropped."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._refused(exc) from None

    def _refused(self, exc: sqlite3.Error) -> WriteFailed:
        """Drop the transaction in progress and commit nothing more; the error to raise."""
        self.broken = True
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("ROLLBACK")
        error = WriteFailed(self.file, str(exc))
        error.resumable = True  # the last commit stands: the same command resumes from it
        return error

    # ------------------------------------------------------------ journaling (engine loop)

    def begin(self, output: str) -> tuple[int, dict[str, int]] | None:
        """Start a run writing to ``output`` ("" for none); when resuming, (output bytes of committed
        work, stats committed last, or none when a recrawl round begins). ConfigError if the crawl
        journaled here wrote elsewhere."""
        started_with = self.meta("output")
        if self.resuming and started_with is not None and started_with != output:
            raise ConfigError(
                f"jobdir {str(self.path)!r} belongs to a crawl writing to {started_with or '(no output)'!r}; "
                f"resume it with the same -o, or use a new --jobdir"
            )
        self.set_meta("output", output)
        if not self.resuming:
            return None
        counts = self.counts()
        if not self.pending_count() and self._new_round(time.time()):
            counts = {}  # a round's stats are its own
        self.recrawling = self.meta("rounds") is not None
        return self.output_bytes(), counts

    def _new_round(self, now: float) -> bool:
        """Begin a round of recrawling if the policy says so (else log why not): the due known pages pending again."""
        value = self.meta("finished_at")
        finished_at = float(value) if isinstance(value, str) and value.replace(".", "", 1).isdigit() else None
        why = self.policy.starts(finished_at, now)
        if why is None:
            self.idle = True
            log.info("jobdir %s: %s", self.path, self.policy.not_started(finished_at))
            return False
        due = f"state = 1 AND (status IS NULL OR status NOT IN {GONE}) AND NOT {_LEFT_TO_SITEMAP}"
        with self._writing():
            listed = self.db.execute(f"SELECT count(*) FROM requests WHERE state = 1 AND {_LEFT_TO_SITEMAP}"
                                     ).fetchone()[0]
            if self.policy.schedule is None:
                later = 0
                revisits = self.db.execute(f"UPDATE requests SET state = 0 WHERE {due}").rowcount
            else:
                later = self.db.execute(f"SELECT count(*) FROM requests WHERE {due} AND fetched + interval > ? "
                                        f"AND sitemap IS NOT {SITEMAP}", (now,)).fetchone()[0]
                revisits = self.db.execute(
                    f"UPDATE requests SET state = 0 WHERE {due} "
                    f"AND (sitemap IS {SITEMAP} OR coalesce(fetched + interval <= ?, 1))", (now,)
                ).rowcount
            self.db.execute("DELETE FROM robots")  # a round may come days later: robots.txt is asked anew (RFC 9309)
            counted = self.meta("rounds", "0")
            rounds = (int(counted) if isinstance(counted, str) and counted.isdigit() else 0) + 1
            self.set_meta("rounds", str(rounds))
        log.info("jobdir %s: recrawl round %d (%s): %d known pages to revisit%s%s", self.path, rounds, why, revisits,
                 f", {later} not due yet (refetch_interval)" if self.policy.schedule is not None else "",
                 f", {listed} left to their sitemaps' lastmod" if listed else "")
        return True

    def add(self, items: Iterable[tuple[int | None, Request]]) -> list[Entry]:
        """Journal newly admitted requests as pending; their frontier entries, each with its row id.

        A request that a resume could not read back (its ``meta`` holds objects that are not
        plain data) is left out (row 0), counted and, the first time, logged.
        """
        rows = []
        entries: list[Entry] = []
        for fp, request in items:
            try:
                blob = safepickle.dumps(request)
            except pickle.UnpicklingError as exc:
                self._unresumable(request, exc)
                entries.append((0, request))
                continue
            sitemap = (SITEMAP if request.callback in SITEMAP_CALLBACKS
                       else LISTED if "sitemap_lastmod" in request.meta and fp is not None else None)
            rows.append((self._next_id, None if fp is None else _signed(fp), blob, sitemap))
            entries.append((self._next_id, request))
            self._next_id += 1
        with self._writing():
            self.db.executemany("INSERT INTO requests (id, fp, state, request, sitemap) VALUES (?, ?, 0, ?, ?)", rows)
        return entries

    def relist(self, listed: list[tuple[int, Request]]) -> list[Entry]:
        """Known pages a sitemap lists again, each with its ``meta["sitemap_lastmod"]``: the frontier entries
        of those to revisit now.

        A page is marked as left to its sitemap the first time one lists it with a lastmod (found
        by a link first, it was not marked when it was added). In a recrawl, a page left to its
        sitemap and not pending is made pending again as a revisit when its lastmod is after its
        last fetch (or it was never fetched), counted ``sitemap_changed``, whatever its refetch
        interval; otherwise it is counted ``sitemap_unchanged`` and not fetched.
        """
        if not self._by_fp:  # made once a sitemap relists a page: a crawl without sitemaps never pays for it
            with self._writing():
                self.db.execute("CREATE INDEX IF NOT EXISTS requests_fp ON requests(fp)")
            self._by_fp = True
        entries: list[Entry] = []
        for fp, listing in listed:
            row = self.db.execute("SELECT id, request, state, status, etag, modified, fetched, sitemap FROM requests "
                                  "WHERE fp = ?", (_signed(fp),)).fetchone()
            if row is None:
                continue
            row_id, blob, state, status, etag, modified, fetched, sitemap = row
            if sitemap is None:
                with self._writing():
                    self.db.execute(f"UPDATE requests SET sitemap = {LISTED} WHERE id = ?", (row_id,))
            elif sitemap != LISTED:
                continue
            if not self.recrawling or state != DONE:
                continue
            lastmod = listing.meta["sitemap_lastmod"]
            answered = isinstance(status, int) and 200 <= status < 400  # else its last fetch failed: fetch it
            if answered and isinstance(fetched, float) and isinstance(lastmod, float) and lastmod <= fetched:
                self.count("sitemap_unchanged")
                continue
            request = self._read(row_id, blob)
            if request is None:
                continue
            self.count("sitemap_changed")
            request.meta["sitemap_lastmod"] = lastmod
            with self._writing():
                self.db.execute("UPDATE requests SET state = 0 WHERE id = ?", (row_id,))
            entries.append((row_id, _revisit(request, status, etag, modified)))
        return entries

    def _unresumable(self, request: Request, exc: Exception) -> None:
        self.count("unresumable_request")
        if not self._warned_unresumable:
            self._warned_unresumable = True
            log.warning("not journaled in %s, so a resume would not fetch it: %s: %s; a job directory keeps only plain "
                        "data in a request's meta (str, numbers, bytes, lists, dicts, sets, dates); counted as "
                        "unresumable_request from now on", self.path, request.url, exc)

    def done(self, job: int, status: int | None = None, validators: Validators | None = None) -> None:
        """Mark journal row ``job`` finished (0, robots.txt and other unjournaled requests, is ignored),
        with the ``status`` and (ETag, Last-Modified) ``validators`` of its answer when it was fetched."""
        if job:
            try:  # once a page: a bare try, not _writing()
                if status is None:
                    self.db.execute("UPDATE requests SET state = 1 WHERE id = ?", (job,))
                else:
                    etag, modified = validators or (None, None)
                    self.db.execute(self._done_sql, (status, etag, modified, job, time.time()))
            except sqlite3.Error as exc:
                raise self._refused(exc) from None

    def commit(self, output_bytes: int, stats: dict[str, int]) -> None:
        """Make everything journaled so far durable, with the output length it corresponds to
        (bytes written already: the engine flushes the output first)."""
        with self._writing():
            self.db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("output_bytes", str(output_bytes)), ("stats", json.dumps(stats))],
            )
            self.db.execute("COMMIT")
            self.db.execute("BEGIN")

    # ------------------------------------------------------------ resuming

    def meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def output_bytes(self) -> int:
        """How many bytes of the output file belong to committed work; ConfigError if unreadable."""
        value = self.meta("output_bytes", "0")
        if not (isinstance(value, str) and value.isdigit()):
            raise self._damaged(f"its output length {value!r:.40} is not a number")
        return int(value)

    def _damaged(self, problem: str) -> ConfigError:
        return ConfigError(f"jobdir {str(self.path)!r} is damaged: {problem}; it cannot be resumed: "
                           "move the directory away and start again with a new --jobdir")

    def set_meta(self, key: str, value: str) -> None:
        with self._writing():
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def fingerprints(self, batch: int = 100_000) -> Iterator[list[int]]:
        """Every fingerprint ever admitted, in batches, to refill the seen-URL store."""
        cursor = self.db.execute("SELECT fp FROM requests WHERE typeof(fp) = 'integer'")
        while rows := cursor.fetchmany(batch):
            yield [fp & 0xFFFFFFFFFFFFFFFF for (fp,) in rows]

    def pending_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM requests WHERE state = 0").fetchone()[0]

    def pending(self, batch: int = 2_000) -> Iterator[list[Entry]]:
        """The requests that were pending when this run opened the journal, in the order they
        were admitted, in batches of frontier entries (row id, request).

        Each batch is a query of its own (by row id, from where the last one ended), so the
        engine can take them while it crawls and journals new requests (which come after the
        last row of the run's start and are not read again).

        A request fetched before (in an earlier round) comes back as a revisit: ``meta["revisit"]``
        set, with ``If-None-Match`` / ``If-Modified-Since`` from the validators of its last answer.
        """
        last, end = 0, self._next_id - 1
        while rows := self.db.execute(
            "SELECT id, request, status, etag, modified FROM requests WHERE state = 0 AND id > ? AND id <= ? "
            "ORDER BY id LIMIT ?",
            (last, end, batch),
        ).fetchall():
            last = rows[-1][0]
            entries: list[Entry] = []
            for row_id, blob, status, etag, modified in rows:
                request = self._read(row_id, blob)
                if request is not None:
                    entries.append((row_id, _revisit(request, status, etag, modified)))
            yield entries

    def _read(self, row_id: int, blob: bytes) -> Request | None:
        """The request of row ``row_id``; None (marked done, logged, counted) when crawlkit did not write it:
        never run, never retried."""
        try:
            return safepickle.load_request(blob)
        except pickle.UnpicklingError as exc:
            log.error("skipped request row %d of %s, which crawlkit did not write (%s)", row_id, self.path, exc)
            self.count("error_unreadable_jobdir_data")
            self.db.execute("UPDATE requests SET state = 1 WHERE id = ?", (row_id,))
            return None

    def save_robots(self, host: str, status: int, body: bytes) -> None:
        """Keep a host's robots.txt answer, so a resumed crawl need not wait for it again."""
        with self._writing():
            self.db.execute("INSERT OR REPLACE INTO robots (host, status, body) VALUES (?, ?, ?)", (host, status, body))

    def robots(self) -> Iterator[tuple[str, int, bytes]]:
        """The robots.txt answers kept; a row of the wrong types is skipped and counted (its host is asked again)."""
        for host, status, body in self.db.execute("SELECT host, status, body FROM robots").fetchall():
            if isinstance(host, str) and isinstance(status, int) and isinstance(body, bytes):
                yield host, status, body
            else:
                log.error("skipped the robots.txt row of %.100r in %s, which crawlkit did not write", host, self.path)
                self.count("error_unreadable_jobdir_data")

    def counts(self) -> dict[str, int]:
        """The stats committed last; ConfigError if they are not counters."""
        try:
            stats = json.loads(self.meta("stats", "{}"))
        except (TypeError, ValueError):
            stats = None
        if not (isinstance(stats, dict) and all(isinstance(k, str) and type(v) is int for k, v in stats.items())):
            raise self._damaged("its stats are not a JSON object of counters")
        return stats

    def close(self, commit: bool = True) -> None:
        """Close the database, committing unless told not to or a write was refused (the
        transaction in progress is then dropped). Never raises: a refused final commit leaves
        the last one standing, which is consistent with the output. A run that leaves nothing
        pending notes when it finished, from which ``recrawl_after`` counts."""
        try:
            if commit and not self.broken:
                if not self.idle and not self.pending_count():
                    self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('finished_at', ?)",
                                    (repr(time.time()),))
                self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("jobdir %s: the last commit failed (%s); a resume starts from the one before", self.file, exc)
        finally:
            self.db.close()  # an open transaction is rolled back


def _revisit(request: Request, status: int | None, etag: object, modified: object) -> Request:
    """``request`` read back from its row: a revisit (``meta["revisit"]``, the stored validators as
    ``If-None-Match`` / ``If-Modified-Since``) when it was fetched before (``status`` not None)."""
    if status is not None:
        request.meta["revisit"] = True
        for name, value in zip(CONDITIONAL_HEADERS, (etag, modified)):
            if _header_value(value):
                request.headers[name] = value
    return request


class NullJournal:
    """The journal of a crawl without a job directory: keeps nothing, resumes nothing."""

    durable = False
    resuming = False

    def begin(self, output: str) -> None:
        return None

    def add(self, items: Iterable[tuple[int | None, Request]]) -> list[Entry]:
        return [(0, request) for _, request in items]

    def done(self, job: int, status: int | None = None, validators: Validators | None = None) -> None:
        return None

    def commit(self, output_bytes: int, stats: dict[str, int]) -> None:
        return None

    def relist(self, listed: list[tuple[int, Request]]) -> list[Entry]:
        return []

    def fingerprints(self) -> Iterator[list[int]]:
        return iter(())

    def pending(self, batch: int = 2_000) -> Iterator[list[Entry]]:
        return iter(())

    def pending_count(self) -> int:
        return 0

    def robots(self) -> Iterator[tuple[str, int, bytes]]:
        return iter(())

    def save_robots(self, host: str, status: int, body: bytes) -> None:
        return None

    def close(self, commit: bool = True) -> None:
        return None
