"""Canonical URLs and their fingerprints: how the crawl decides two links are the same page.

``canonicalize`` builds on w3lib's ``canonicalize_url`` (Scrapy's), which lower-cases the scheme
and host, upper-cases and minimises percent-escapes (``%7e`` -> ``~``), resolves ``.``/``..``,
drops the fragment and **sorts the query arguments** by key, then value. Sorting merges
``?a=1&b=2`` with ``?b=2&a=1``, which is what sites almost always mean; the rare site whose pages
depend on argument order (or on the order of repeated keys) gets them merged too, and we accept
that. w3lib also leaves the ``;params`` of the last path segment as written, so ``/x;p=%7e`` and
``/x;p=~`` stay apart; rare enough to accept.

On top of w3lib this module drops the scheme's default port, encodes non-ASCII hosts with the
same IDNA rules as requests (UTS #46, non-transitional: ``straße.de`` -> ``xn--strae-oqa.de``,
where w3lib alone says ``strasse.de``), so the canonical host is the one actually contacted, and
rejects what the crawl cannot fetch: other schemes, and hosts that are not DNS names or IP
addresses. URLs are split with w3lib's ``parse_url``, which follows browsers where
``urllib.parse`` does not: the host of ``http://a.example\\@b.example/`` is ``a.example``.

``fingerprint`` hashes the canonical URL to an unsigned 64-bit int: small to send between
processes and to store in the seen-URL set. The parser meets the same navigation links on every
page, so it keeps one ``Fingerprinter`` (a per-process cache) rather than calling w3lib each time.
"""

from __future__ import annotations

import hashlib
import re
from ipaddress import IPv6Address
from urllib.parse import ParseResult, SplitResult, quote, urlsplit, urlunparse, urlunsplit

import idna
from w3lib.url import canonicalize_url, parse_url

_PLAIN_NETLOC = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::([1-9][0-9]{0,4}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What DNS names and IPv4 addresses are made of (the underscore occurs in real host names).
# Anything else, such as "%", a space or "<", makes a URL no resolver can fetch.
_HOST_NAME = re.compile(r"[a-z0-9._-]+")
# Browsers strip C0 controls and spaces around a URL, but keep other white space (NBSP, U+0085).
_C0_OR_SPACE = "".join(map(chr, range(0x21)))
# A "%" that starts no escape; it must be sent as "%25".
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"  # what requests leaves unescaped in a URL ("%" once every one starts an escape)


def is_http(url: str) -> bool:
    """True for an http(s) URL with a host: the only URLs crawlkit fetches.

    A cheap first filter for links; ``canonicalize`` may still reject a bad port or host.
    """
    try:
        parts = parse_url(url.strip(_C0_OR_SPACE))
    except ValueError:
        return False
    return parts.scheme in _DEFAULT_PORTS and bool(parts.hostname)


def canonicalize(url: str) -> str:
    """The canonical form of an absolute http(s) URL; the same for every spelling of one page.

    Raises ``ValueError`` for another scheme, a URL without a host, a bad port or a host that
    is not a valid (internationalised) domain name.
    """
    url = url.strip(_C0_OR_SPACE)
    parts = parse_url(url)
    netloc = _netloc(parts)
    if netloc != parts.netloc.lower():
        # A default port to drop or a host to encode. w3lib would encode it by the older
        # IDNA 2003 mapping (ß -> ss), so hand it a host it leaves alone. (Case alone is
        # left to w3lib: rebuilding the URL costs more than the rest of this function.)
        url = urlunparse((parts.scheme, netloc, parts.path, parts.params, parts.query, ""))
    return canonicalize_url(url, keep_fragments=False)


def default_port(scheme: str) -> int | None:
    """80 for http, 443 for https, None for other schemes."""
    return _DEFAULT_PORTS.get(scheme.lower())


def port_of(parts: SplitResult) -> int | None:
    """The port a split http(s) URL connects to: its own, else its scheme's default; None when invalid."""
    try:
        port = parts.port
    except ValueError:
        return None
    return port or default_port(parts.scheme)


def keep_escapes(prepared: str, url: str) -> str:
    """``prepared`` (requests' form of ``url``) with the path and query of ``url`` escaped only where needed.

    requests unescapes ``%41`` to ``A``, and when one ``%`` starts no escape (``%zz``) it
    escapes every ``%`` of the URL, turning ``%2F`` into ``%252F``: another URL. Here escapes
    stay as written, a stray ``%`` becomes ``%25``, and what may not appear in a request (space,
    non-ASCII, ``<``...) is escaped as requests does. Scheme and host stay requests' own (IDNA).
    For URLs holding a ``%``; without one requests changes nothing of this kind.
    """
    sent, own = urlsplit(prepared), urlsplit(url.strip(_C0_OR_SPACE))
    path = quote(_STRAY_PERCENT.sub("%25", own.path), safe=_TARGET_SAFE) or sent.path
    query = quote(_STRAY_PERCENT.sub("%25", own.query), safe=_TARGET_SAFE)
    return urlunsplit((sent.scheme, sent.netloc, path, query, ""))


def host_of(url: str) -> str:
    """The ``host[:port]`` that per-host limits and robots.txt are keyed by.

    Lower-case, IDNA-encoded, without user info or the default port: the host part of
    ``canonicalize(url)``, found without paying for the rest of it. Raises ``ValueError`` like
    ``canonicalize``.
    """
    fast = _plain_netloc(url)
    if fast is not None:
        return fast
    return _netloc(parse_url(url.strip(_C0_OR_SPACE))).rpartition("@")[2]


def _plain_netloc(url: str) -> str | None:
    """``host_of`` by string slicing for the common URL (the engine asks several times per request).

    Only for ``http(s)://`` URLs whose netloc is lower-case ASCII letters, digits, dots,
    hyphens and one port, which parse the same under every rule; anything else: None.
    """
    if url.startswith("http://"):
        rest, default = url[7:], ":80"
    elif url.startswith("https://"):
        rest, default = url[8:], ":443"
    else:
        return None
    end = len(rest)
    for mark in "/?#":
        i = rest.find(mark, 0, end)
        if i != -1:
            end = i
    netloc = rest[:end]
    match = _PLAIN_NETLOC.fullmatch(netloc)
    if match is None or (match.group(1) and int(match.group(1)) > 65535):
        return None
    return netloc[: -len(default)] if netloc.endswith(default) else netloc


def fingerprint(url: str, method: str = "GET", body: bytes = b"") -> int:
    """An unsigned 64-bit fingerprint of the request: canonical URL, method, and body if any.

    Raises ``ValueError`` like ``canonicalize``. A parser process should use a ``Fingerprinter``.
    """
    return _hash(canonicalize(url), method, body)


class Fingerprinter:
    """A per-process cache of raw URL -> (canonical URL, GET fingerprint).

    Not shared between processes and not thread-safe; each parser process builds its own. The
    cache is bounded by emptying it when full: cheaper than LRU bookkeeping on every hit, and a
    site's navigation links are back in it after a page or two. Invalid URLs are not cached.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._cache: dict[str, tuple[str, int]] = {}
        self._max_entries = max_entries

    def lookup(self, url: str) -> tuple[str, int]:
        """``(canonicalize(url), fingerprint(url))``, from the cache when seen before."""
        hit = self._cache.get(url)
        if hit is not None:
            return hit
        canonical = canonicalize(url)
        entry = (canonical, _hash(canonical, "GET", b""))
        if len(self._cache) >= self._max_entries:
            self._cache.clear()
        self._cache[url] = entry
        return entry

    def __contains__(self, url: str) -> bool:
        """Whether ``url`` is in the cache (and so a valid http(s) URL)."""
        return url in self._cache

    def fingerprint(self, url: str, method: str = "GET", body: bytes = b"") -> int:
        """Same as the module's ``fingerprint``, with the canonical URL from the cache."""
        canonical, get_fingerprint = self.lookup(url)
        if method == "GET" and not body:
            return get_fingerprint
        return _hash(canonical, method, body)


def _netloc(parts: ParseResult) -> str:
    """``parts.netloc`` with the host lower-case and IDNA-encoded and the default port dropped."""
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(f"not an http(s) URL: {urlunparse(parts)!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"URL has no host: {urlunparse(parts)!r}")
    port = parts.port  # raises ValueError for a port that is not a number in 0-65535
    if ":" in host:
        host = f"[{IPv6Address(host.split('%')[0]).compressed}]"
    else:
        if not host.isascii():
            try:
                host = idna.encode(host, uts46=True).decode("ascii")
            except idna.IDNAError as exc:
                raise ValueError(f"invalid host {host!r}: {exc}") from None
        if not _HOST_NAME.fullmatch(host):
            raise ValueError(f"invalid host {host!r}")
    userinfo, at, _ = parts.netloc.rpartition("@")
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{userinfo}{at}{host}"


def _hash(canonical: str, method: str, body: bytes) -> int:
    # The method is hashed for every request, so a GET's fingerprint is not a HEAD's or a POST's.
    # A NUL cannot occur in a canonical URL (w3lib percent-encodes it), so the parts cannot run
    # into each other.
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{method.upper()} {canonical}".encode())
    if body:
        digest.update(b"\0")
        digest.update(body)
    return int.from_bytes(digest.digest(), "big")
