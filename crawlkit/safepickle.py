"""Pickles crawlkit reads back from places others can write: a job directory and a shared crawl's Redis.

Whoever can write a job directory's database or the Redis of a shared crawl must not be able
to make crawlkit run code or exhaust memory by what it reads back there. Two guards:

- No code: the unpickler builds the built-in types that need no lookup (str, bytes, bytearray,
  numbers, lists, tuples, dicts, sets, frozensets: protocol 5 has opcodes for all of them) and
  the few classes of ``_CONSTRUCTORS`` (``Request``, ``FormRequest``, ``JsonRequest`` and their
  ``Headers``, dates, decimals); a
  pickle naming any other class or function (which is how a pickle runs code) is refused.
- No amplification: nothing read may allocate more than a small multiple of its own size.
  Pickle allows three ways around that, each closed here. A declared length: the C unpickler
  allocates what a ``BINBYTES``/``BINBYTES8``/``BYTEARRAY8`` opcode declares before reading it
  (10 GB for a 14-byte blob; its other counted opcodes read first and fail short), so ``loads``
  first walks the opcodes of a blob that may hold one (``pickletools.genops`` reads lengths
  against the bytes really there). A blob without any of their three bytes holds none, and is
  not walked: the walk, in Python, cost five times the unpickling itself (a recrawl reads every
  known page's request back, 30 ms for 2,000 of them). A constructor's argument: ``bytearray(10**10)`` or
  ``set(range)``-like calls are not allowed at all (protocol 5 needs none of them). And the
  memo, which lets a pickle name one big object many times for 2 bytes each: every allowed
  constructor copies nothing that grows with its arguments (a ``Request`` or ``Headers`` is built
  empty and given its fields as they are; a ``Decimal`` takes a short string; dates are fixed-size).

A refused or broken pickle raises ``pickle.UnpicklingError`` with a one-line reason.
"""

from __future__ import annotations

import datetime
import decimal
import io
import pickle
import pickletools
from collections.abc import Callable
from typing import Any

from crawlkit.forms import FormRequest, JsonRequest
from crawlkit.http import Headers, Request

MAX_DECIMAL_CHARS = 64  # a Decimal in a request's meta is a price or an amount, not a number of a million digits
# The opcodes whose declared length the C unpickler allocates before reading: BINBYTES, BINBYTES8, BYTEARRAY8.
_ALLOCATING = (pickle.BINBYTES, pickle.BINBYTES8, pickle.BYTEARRAY8)


class _EmptyRequest:
    """What a pickle gets when it names ``Request``: an empty one, filled by ``Request.__setstate__``
    with the fields as they are in the pickle (``Request.__init__`` would copy them)."""

    request_class: type[Request] = Request

    def __new__(cls, *args: Any, **kwargs: Any) -> Request:  # type: ignore[misc]
        made = cls.request_class
        if args or kwargs:
            raise pickle.UnpicklingError(f"it calls {made.__name__} with arguments; crawlkit pickles requests without")
        return made.__new__(made)


class _EmptyFormRequest(_EmptyRequest):
    request_class = FormRequest  # once built, a plain request: its state is Request's


class _EmptyJsonRequest(_EmptyRequest):
    request_class = JsonRequest


class _EmptyHeaders:
    """What a pickle gets when it names ``Headers``: empty ones, which ``Headers.__setstate__``
    checks and fills with the pickle's dicts as they are (``Headers.__init__`` would copy them)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Headers:  # type: ignore[misc]
        if args or kwargs:
            raise pickle.UnpicklingError("it calls Headers with arguments; crawlkit pickles headers without")
        return Headers.__new__(Headers)


def _complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    if not all(isinstance(part, (int, float)) for part in (real, imag)):
        raise pickle.UnpicklingError("it builds a complex from something other than numbers")
    return complex(real, imag)


def _decimal(value: Any = "0") -> decimal.Decimal:
    if not isinstance(value, str) or len(value) > MAX_DECIMAL_CHARS:
        raise pickle.UnpicklingError(
            f"it builds a Decimal from something other than a string of up to {MAX_DECIMAL_CHARS} characters"
        )
    return decimal.Decimal(value)


# What a pickle may name, and what it gets. The datetime types build fixed-size values from
# fixed-size state whatever they are given (or raise).
_CONSTRUCTORS: dict[tuple[str, str], Callable[..., Any]] = {
    ("crawlkit.http", "Request"): _EmptyRequest,
    ("crawlkit.forms", "FormRequest"): _EmptyFormRequest,
    ("crawlkit.forms", "JsonRequest"): _EmptyJsonRequest,
    ("crawlkit.http", "Headers"): _EmptyHeaders,
    ("builtins", "complex"): _complex,
    ("decimal", "Decimal"): _decimal,
    ("datetime", "datetime"): datetime.datetime,
    ("datetime", "date"): datetime.date,
    ("datetime", "time"): datetime.time,
    ("datetime", "timedelta"): datetime.timedelta,
    ("datetime", "timezone"): datetime.timezone,
}


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _CONSTRUCTORS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which is not plain data") from None


def dumps(value: Any) -> bytes:
    """Pickle ``value`` so that ``loads`` takes it back; UnpicklingError if it would not (a class
    that is not plain data anywhere inside)."""
    blob = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    _DataUnpickler(io.BytesIO(blob)).load()  # lengths are honest in a pickle made here: no walk needed
    return blob


def loads(blob: Any) -> Any:
    """Unpickle what came from outside, refusing code and amplification; UnpicklingError if refused."""
    if not isinstance(blob, bytes):
        raise pickle.UnpicklingError(f"it is {type(blob).__name__}, not bytes")
    try:
        if any(opcode in blob for opcode in _ALLOCATING):  # perhaps one: check every length
            for _ in pickletools.genops(blob):
                pass
        return _DataUnpickler(io.BytesIO(blob)).load()
    except pickle.UnpicklingError:
        raise
    except Exception as exc:  # whatever a malformed pickle makes the parser or a constructor raise
        raise pickle.UnpicklingError(f"it is not a valid pickle ({type(exc).__name__}: {exc})"[:300]) from None


def load_request(blob: Any) -> Request:
    """A Request from ``blob`` with fields of the types the engine relies on; UnpicklingError if not."""
    request = loads(blob)
    if isinstance(request, Request) and isinstance(getattr(request, "_headers", None), dict):
        # Written by crawlkit 0.1 (a job directory or shared crawl older than Headers): its
        # headers are a plain dict, and its journal row id rode in meta; a resume takes them in.
        try:
            request.headers = request._headers
        except TypeError as exc:
            raise pickle.UnpicklingError(f"its headers are not text: {exc}") from None
        if isinstance(request.meta, dict):
            request.meta.pop("_job", None)
    if not (
        isinstance(request, Request) and all(hasattr(request, name) for name in Request.__slots__)
        and isinstance(request.url, str) and isinstance(request.method, str) and isinstance(request.headers, Headers)
        and isinstance(request.meta, dict) and isinstance(request.body, bytes)
        and isinstance(request.callback, (str, type(None))) and isinstance(request.errback, (str, type(None)))
        and (request._cb_kwargs is None
             or type(request._cb_kwargs) is dict and all(type(name) is str for name in request._cb_kwargs))
        and isinstance(request.depth, int) and isinstance(request.priority, int)
        and isinstance(request.dont_filter, bool) and isinstance(request.referer, (str, type(None)))
    ):
        raise pickle.UnpicklingError(f"it is a {type(request).__name__}, not a well-formed Request")
    return request
