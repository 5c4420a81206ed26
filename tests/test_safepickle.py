"""What crawlkit reads back from a job directory or Redis: no code runs, nothing is amplified.

Each crafted pickle is a few dozen bytes; it must be refused (UnpicklingError) with a
tracemalloc peak that stays near its own size, where the plain unpickler would allocate
gigabytes or run a command.
"""

from __future__ import annotations

import datetime
import decimal
import os
import pickle
import pickletools
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crawlkit import safepickle
from crawlkit.http import Headers, Request

GIB = 1 << 30


def _long(n: int) -> bytes:
    """The LONG1 opcode for ``n``."""
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _call(module: str, name: str, args: bytes) -> bytes:
    """A protocol-2 pickle calling module.name with the pickled ``args`` (already a tuple)."""
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n" + args + b"R."


def _memo_repeat(value: bytes, callable_: bytes, times: int, args: bytes = b"h\x01") -> bytes:
    """A list of ``times`` calls of ``callable_`` (a GLOBAL) with ``args`` naming one memoized ``value``
    (``h\x01``): a few bytes per call, however big the value."""
    body = callable_ + b"q\x00" + value + b"q\x01" + b"0]q\x02("  # memo 0: callable, 1: value; an empty list
    body += (b"h\x00(" + args + b"tR") * times  # BINGET callable, MARK, args, TUPLE, REDUCE
    return b"\x80\x05" + body + b"e."


BIG = b"X" * 100_000
BIG_STR = b"X\xa0\x86\x01\x00" + BIG  # BINUNICODE of 100,000 characters
INTS = pickletools.optimize(pickle.dumps(list(range(10_000)), 2))[2:-1]  # optimize: no memo use of its own
PAIRS = pickletools.optimize(pickle.dumps([(i, i) for i in range(10_000)], 2))[2:-1]
BOMBS: dict[str, bytes] = {
    "bytearray(10**10)": _call("builtins", "bytearray", _long(10**10) + b"\x85"),
    "bytes(10**10)": _call("builtins", "bytes", _long(10**10) + b"\x85"),
    "range(10**12) into a set": _call(
        "builtins", "set", _call("builtins", "range", _long(10**12) + b"\x85")[2:-1] + b"\x85"
    ),
    "BINBYTES8 declaring 10 GB": b"\x80\x05\x8e" + struct.pack("<Q", 10 * GIB) + b"abc.",
    "BYTEARRAY8 declaring 10 GB": b"\x80\x05\x96" + struct.pack("<Q", 10 * GIB) + b"abc.",
    "BINBYTES declaring 4 GB": b"\x80\x03B" + struct.pack("<I", 4 * GIB - 1) + b"abc.",
    # Not walked (no BINBYTES, BINBYTES8 or BYTEARRAY8 byte): the C unpickler reads these before allocating.
    "BINUNICODE8 declaring 10 GB": b"\x80\x05\x8d" + struct.pack("<Q", 10 * GIB) + b"abc.",
    "BINUNICODE declaring 4 GB": b"\x80\x03X" + struct.pack("<I", 4 * GIB - 1) + b"abc.",
    "BINSTRING declaring 2 GB": b"\x80\x02T" + struct.pack("<i", 2**31 - 1) + b"abc.",
    "LONG4 declaring 2 GB": b"\x80\x02\x8b" + struct.pack("<i", 2**31 - 1) + b"abc.",
    "FRAME declaring 10 GB": b"\x80\x05\x95" + struct.pack("<Q", 10 * GIB) + b"abc.",
    "Request('u', None, method) upper-casing one 100 kB string 1000 times": _memo_repeat(
        BIG_STR, b"ccrawlkit.http\nRequest\n", 1000, b"X\x01\x00\x00\x00uNh\x01"),
    "Decimal of a 100 kB string 1000 times": _memo_repeat(
        b"X\xa0\x86\x01\x00" + b"9" * 100_000, b"cdecimal\nDecimal\n", 1000
    ),
    "complex of a 100 kB string 1000 times": _memo_repeat(BIG_STR, b"cbuiltins\ncomplex\n", 1000),
    "frozenset of a 10,000-int list 200 times": _memo_repeat(INTS, b"cbuiltins\nfrozenset\n", 200),
    "OrderedDict of a 10,000-pair list 200 times": _memo_repeat(PAIRS, b"ccollections\nOrderedDict\n", 200),
}


def _peak(action: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        action()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("name", BOMBS)
def test_amplifying_pickles_are_refused_without_allocating(name: str) -> None:
    blob = BOMBS[name]

    def load() -> None:
        with pytest.raises(pickle.UnpicklingError):
            safepickle.loads(blob)

    assert _peak(load) < 10 * len(blob) + 1_000_000, name


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(pickle.UnpicklingError, match="posix.system"):
        safepickle.loads(pickle.dumps(_RunsCode(marker)))
    assert not marker.exists()


def test_plain_requests_round_trip_and_a_memo_cannot_multiply_them() -> None:
    when = datetime.datetime(2026, 11, 26, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=1), "CET"))
    meta = {"when": when, "day": when.date(), "at": when.time(), "took": datetime.timedelta(seconds=3), "tags": {"a"},
            "frozen": frozenset({1}), "raw": bytearray(b"\x00x"), "price": decimal.Decimal("9.99"), "z": 1 + 2j,
            "nested": [{"k": (1, 2.5, None, True)}]}
    request = Request("http://h.test/p", callback="parse_item", headers={"X": "1"}, meta=meta, priority=2, depth=3,
                      referer="http://h.test/")
    back = safepickle.load_request(safepickle.dumps(request))
    assert [getattr(back, name) for name in Request.__slots__] == [getattr(request, name) for name in Request.__slots__]
    # A list naming one big value many times holds references, not copies: a small multiple of the blob.
    blob = b"\x80\x02]q\x00(" + b"X\xa0\x86\x01\x00" + BIG + b"q\x01" + b"h\x01" * 100_000 + b"e."
    assert _peak(lambda: safepickle.loads(blob)) < 10 * len(blob)


def test_a_request_journaled_by_crawlkit_0_1_is_read_back_with_headers_and_without_its_row_id() -> None:
    # 0.1 pickled the same state tuple with a plain dict for headers and the journal row id in meta.
    old = Request("http://h.test/p", meta={"kept": 1})
    old._headers = {"Authorization": "Basic eDp5"}  # type: ignore[assignment]
    old.meta["_job"] = 7
    back = safepickle.load_request(pickle.dumps(old, pickle.HIGHEST_PROTOCOL))
    assert isinstance(back.headers, Headers) and back.headers["authorization"] == "Basic eDp5"
    assert back.meta == {"kept": 1}
    old._headers = {"X": 1}  # type: ignore[assignment]
    with pytest.raises(pickle.UnpicklingError, match="not text"):
        safepickle.load_request(pickle.dumps(old, pickle.HIGHEST_PROTOCOL))


def test_what_is_not_a_request_or_not_plain_data_is_refused() -> None:
    with pytest.raises(pickle.UnpicklingError, match="not a well-formed Request"):
        safepickle.load_request(pickle.dumps(["http://h.test/"]))
    broken = Request("http://h.test/")
    broken._headers = "not Headers"  # type: ignore[assignment]  # as a pickle written elsewhere may hold
    with pytest.raises(pickle.UnpicklingError, match="not a well-formed Request"):
        safepickle.load_request(pickle.dumps(broken, pickle.HIGHEST_PROTOCOL))
    with pytest.raises(pickle.UnpicklingError, match="not plain data"):
        safepickle.dumps(Request("http://h.test/", meta={"obj": _RunsCode(Path("x"))}))
    for junk in (b"", b"\x80\x05garbage", "a str"):
        with pytest.raises(pickle.UnpicklingError):
            safepickle.loads(junk)


def test_a_jobdir_journals_only_requests_it_can_read_back(tmp_path: Path) -> None:
    from crawlkit.backends.local.jobdir import JobDir

    counted: list[str] = []
    journal = JobDir(tmp_path / "job", count=counted.append)
    plain = Request("http://h.test/plain", meta={"n": 1})
    odd = Request("http://h.test/odd", meta={"obj": _RunsCode(tmp_path / "x")})
    entries = journal.add([(1, plain), (2, odd)])
    assert [job for job, _ in entries] == [1, 0]  # so done() marks no other row
    assert plain.meta == {"n": 1}  # the row rides beside the request, not in its meta
    assert counted == ["unresumable_request"]
    journal.commit(0, {})
    journal.close()
    resumed = JobDir(tmp_path / "job", count=counted.append)
    assert [[(job, r.url, r.meta) for job, r in batch] for batch in resumed.pending()] == [
        [(1, "http://h.test/plain", {"n": 1})]]
    resumed.close()
