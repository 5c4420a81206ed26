"""Canonical URLs and fingerprints: examples, then properties checked with hypothesis."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawlkit.urls import Fingerprinter, canonicalize, fingerprint, host_of, is_http

# --- examples ---


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTP://ExAmple.COM:80/a%7eb/%7E?b=2&a=1#frag", "http://example.com/a~b/~?a=1&b=2"),
        ("https://EXAMPLE.com:443", "https://example.com/"),
        ("http://example.com:8080", "http://example.com:8080/"),
        ("https://example.com:80/", "https://example.com:80/"),
        ("http://example.com:/", "http://example.com/"),
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/%61%2D%5f%2e", "http://example.com/a-_."),
        ("http://example.com/a%2fb", "http://example.com/a%2Fb"),
        ("http://example.com/r\u00e9sum\u00e9", "http://example.com/r%C3%A9sum%C3%A9"),
        ("http://example.com/?q=a b", "http://example.com/?q=a+b"),
        ("http://example.com/?", "http://example.com/"),
        ("  http://example.com/x\n", "http://example.com/x"),
        ("http://example.com/x\u00a0", "http://example.com/x%C2%A0"),
        ("http://b\u00fccher.de/", "http://xn--bcher-kva.de/"),
        ("http://B\u00dcCHER.de:8080/", "http://xn--bcher-kva.de:8080/"),
        # Non-transitional IDNA, as requests sends it; w3lib alone would give strasse.de.
        ("http://stra\u00dfe.de/", "http://xn--strae-oqa.de/"),
        ("http://\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25\u3002com/", "http://example.com/"),
        ("http://[::0:1]:80/a", "http://[::1]/a"),
        ("http://user:pw@Ex.com:80/a", "http://user:pw@ex.com/a"),
        # A backslash ends the host, as in browsers (urllib.parse would say good.example).
        ("http://evil.example\\@good.example/", "http://evil.example/@good.example/"),
    ],
)
def test_canonicalize_examples(url, canonical):
    assert canonicalize(url) == canonical


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "mailto:someone@example.com",
        "javascript:void(0)",
        "/relative/path",
        "example.com/no-scheme",
        "http:///no-host",
        "http://example.com:99999/",
        "http://example.com:port/",
        "http://\u00e4..de/",
        "http://[not-ipv6]/",
        "http://exa mple.com/",
        "http://%41.com/",
    ],
)
def test_canonicalize_rejects_what_cannot_be_fetched(url):
    with pytest.raises(ValueError):
        canonicalize(url)
    with pytest.raises(ValueError):
        fingerprint(url)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://Example.COM/a", "example.com"),
        ("http://example.com:80/", "example.com"),
        ("https://example.com:443/", "example.com"),
        ("https://example.com:80/", "example.com:80"),
        ("http://example.com:8080/", "example.com:8080"),
        ("http://user:pw@example.com/", "example.com"),
        ("http://b\u00fccher.de/", "xn--bcher-kva.de"),
        ("http://[0:0::1]:8080/", "[::1]:8080"),
        ("http://evil.example\\@good.example/", "evil.example"),
    ],
)
def test_host_of(url, host):
    assert host_of(url) == host


def test_is_http():
    assert is_http("http://example.com/") and is_http("HTTPS://example.com")
    for url in ("ftp://example.com/", "mailto:a@b.c", "/a", "http:///a", "http://[bad/", ""):
        assert not is_http(url), url


def test_fingerprint_is_unsigned_64_bit_and_depends_on_method_and_body():
    url = "http://example.com/form"
    get = fingerprint(url)
    assert 0 <= get < 2**64
    assert get == fingerprint(url, "GET", b"") == fingerprint(url, "get")
    assert len({get, fingerprint(url, "HEAD"), fingerprint(url, "POST"), fingerprint(url, "POST", b"a=1")}) == 4
    assert fingerprint(url, "POST", b"a=1") != fingerprint(url, "POST", b"a=2")


# --- Fingerprinter ---


def test_fingerprinter_matches_the_module_functions():
    fingerprinter = Fingerprinter()
    url = "HTTP://Example.com:80/a?b=1&a=2#x"
    assert fingerprinter.lookup(url) == (canonicalize(url), fingerprint(url))
    assert fingerprinter.lookup(url) is fingerprinter.lookup(url)
    assert fingerprinter.fingerprint(url) == fingerprint(url)
    assert fingerprinter.fingerprint(url, "POST", b"q=1") == fingerprint(url, "POST", b"q=1")


def test_fingerprinter_cache_is_bounded():
    fingerprinter = Fingerprinter(max_entries=3)
    for i in range(3):
        fingerprinter.lookup(f"http://example.com/{i}")
    assert len(fingerprinter._cache) == 3
    fingerprinter.lookup("http://example.com/3")
    assert len(fingerprinter._cache) == 1
    assert fingerprinter.lookup("http://example.com/0") == (
        "http://example.com/0",
        fingerprint("http://example.com/0"),
    )


def test_fingerprinter_does_not_cache_invalid_urls():
    fingerprinter = Fingerprinter()
    with pytest.raises(ValueError):
        fingerprinter.lookup("mailto:a@b.c")
    assert not fingerprinter._cache


def test_cache_hit_does_not_canonicalize_again(monkeypatch):
    """A repeated link costs a dict lookup, not another parse (the speed itself is a benchmark's job)."""
    import crawlkit.urls as urls_module

    calls = []
    real = urls_module.canonicalize
    monkeypatch.setattr(urls_module, "canonicalize", lambda url: calls.append(url) or real(url))
    fingerprinter = Fingerprinter()
    urls = [f"https://docs.example.org/page/{i}?b=2&a=1" for i in range(100)]
    first = [fingerprinter.lookup(url) for url in urls]
    again = [fingerprinter.lookup(url) for url in urls * 3]
    assert len(calls) == 100
    assert again == first * 3


# --- properties ---

_LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
# Letters whose upper case maps back under IDNA (not ß, whose upper case is SS).
_IDN_LABEL = st.text("abcxyz\u00e4\u00f6\u00fc\u00e9\u00f1\u0436\u044f", min_size=1, max_size=8)
_HOSTS = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(_LABEL | _IDN_LABEL, min_size=1, max_size=3),
    st.sampled_from(["com", "org", "de", "io"]),
)
# Unreserved characters (the ones whose escaping does not change a URL) and a few others; not
# ";", whose parameters w3lib keeps as written (see test_last_segment_parameters_are_kept_as_written).
_SEGMENT = st.text("abcXYZ019-._~!$&'()*+,=:@\u00e9", max_size=8)
_QUERY_WORD = st.text("abcXYZ019-._~\u00e9", max_size=5)


@st.composite
def url_and_variant(draw):
    """An http(s) URL and an equivalent spelling of it, with the parts that must not matter changed."""
    scheme = draw(st.sampled_from(["http", "https"]))
    host = draw(_HOSTS)
    port = draw(st.sampled_from([None, 8080]))
    segments = draw(st.lists(_SEGMENT, max_size=4))
    keys = draw(st.lists(_QUERY_WORD.filter(bool), unique=True, max_size=4))
    pairs = [(key, draw(_QUERY_WORD)) for key in keys]

    def spell(scheme_case, host_case, default_port, order, escape, fragment):
        netloc = "".join(c.upper() if flip else c for c, flip in zip(host, host_case))
        if port:
            netloc += f":{port}"
        elif default_port:
            netloc += ":443" if scheme == "https" else ":80"
        path = "/" + "/".join(
            "".join(_escape(c) if e else c for c, e in zip(segment, escape)) for segment in segments
        )
        query = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in order)
        fixed = "".join(c.upper() if u else c for c, u in zip(scheme, scheme_case))
        return f"{fixed}://{netloc}{path}" + (f"?{query}" if query else "") + fragment

    flags = st.lists(st.booleans(), min_size=64, max_size=64)
    base = spell([False] * 5, [False] * len(host), False, pairs, [False] * 64, "")
    variant = spell(
        draw(flags),
        draw(st.lists(st.booleans(), min_size=len(host), max_size=len(host))),
        draw(st.booleans()),
        draw(st.permutations(pairs)),
        draw(flags),
        draw(st.sampled_from(["", "#", "#top", "#a/b?c"])),
    )
    return base, variant


def _escape(char: str) -> str:
    """Percent-escape an unreserved character, in either hex case; leave the others alone."""
    if char.isascii() and (char.isalnum() or char in "-._~"):
        return f"%{ord(char):02x}" if ord(char) % 2 else f"%{ord(char):02X}"
    return char


@given(url_and_variant())
def test_equivalent_urls_share_canonical_form_and_fingerprint(pair):
    base, variant = pair
    assert canonicalize(variant) == canonicalize(base)
    assert fingerprint(variant) == fingerprint(base)
    assert host_of(variant) == host_of(base)


_ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(
    st.sampled_from(["http", "https", "HTTP"]),
    _HOSTS | st.just("[::1]") | st.just("127.0.0.1"),
    st.sampled_from(["", ":80", ":443", ":8080", ":"]),
    _ANY_TEXT,
)
def test_canonicalize_is_idempotent(scheme, host, port, rest):
    url = f"{scheme}://{host}{port}/{rest}"
    canonical = canonicalize(url)
    assert canonicalize(canonical) == canonical
    assert canonical.isascii()
    assert "#" not in canonical
    assert host_of(url) == host_of(canonical) == canonical.split("/")[2]


@given(st.sampled_from(["http://", "HTTPS://"]), _ANY_TEXT | st.text("aB.:[]@%/\\?#;~-09\u00e4\u00df \t", max_size=30))
def test_any_url_is_rejected_or_canonicalized_idempotently(scheme, rest):
    try:
        canonical = canonicalize(scheme + rest)
    except ValueError:
        return
    assert canonicalize(canonical) == canonical
    assert host_of(scheme + rest) == host_of(canonical)


def test_last_segment_parameters_are_kept_as_written():
    # w3lib splits ";params" off the last segment and leaves their escapes alone, so these
    # three spellings of one URL stay apart. Rare enough to accept; this test notices if it changes.
    spellings = ["http://a.com/x;p=~", "http://a.com/x;p=%7e", "http://a.com/x;p=%7E"]
    assert [canonicalize(url) for url in spellings] == spellings
    assert canonicalize("http://a.com/x;p=%7e/y;q") == "http://a.com/x;p=~/y;q"


@given(st.sets(st.text("abcdefghijklmnopqrstuvwxyz0123456789-_~", min_size=1, max_size=12), min_size=2, max_size=50))
def test_distinct_paths_do_not_collide(paths):
    urls = [f"http://example.com/{path}" for path in paths]
    assert len({canonicalize(url) for url in urls}) == len(urls)
    assert len({fingerprint(url) for url in urls}) == len(urls)


def test_no_collisions_over_a_larger_sample():
    fingerprints = {fingerprint(f"https://example.com/item/{i}?page={i % 97}") for i in range(20_000)}
    assert len(fingerprints) == 20_000


@given(
    host=st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9.-]{0,20}[a-zA-Z0-9]", fullmatch=True),
    port=st.one_of(st.none(), st.integers(0, 70000), st.sampled_from(["080", "00443", ""])),
    scheme=st.sampled_from(["http", "https", "HTTP"]),
    tail=st.sampled_from(["", "/", "/a?b", "?q", "#f", "/x#y"]),
)
def test_host_of_fast_path_agrees_with_the_full_parse(host: str, port: object, scheme: str, tail: str) -> None:
    from w3lib.url import parse_url

    from crawlkit.urls import _netloc

    url = f"{scheme}://{host}" + ("" if port is None else f":{port}") + tail
    try:
        slow = _netloc(parse_url(url)).rpartition("@")[2]
    except ValueError:
        slow = None
    try:
        fast = host_of(url)
    except ValueError:
        fast = None
    assert fast == slow
