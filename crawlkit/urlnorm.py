"""URL normalisation rules: tracking parameters and session ids dropped, then the user's regex rewrites.

Dedup by canonical URL (``urls.canonicalize``) merges spellings of one page, but not the query
arguments sites and mailers add to a link without changing the page: ``?utm_source=news``,
``?fbclid=...``, or a session id (``;jsessionid=...``, ``?PHPSESSID=...``) that makes every
visit's links new URLs, an endless crawl of one site. ``UrlNormalizer`` rewrites a URL before
it is fingerprinted, and the rewritten URL is the one fetched, so ``a?utm_source=x`` and ``a``
are one page, fetched once, as ``a``:

1. query arguments whose key matches a ``strip_query_params`` glob (case-insensitive) are
   dropped, the others kept in their order; so are ``;key=value`` path parameters (Tomcat's
   ``;jsessionid=``) whose key matches;
2. then each ``url_rewrites`` rule, in order: ``re.sub(pattern, replace, url)``.

Every process that admits URLs builds one from the settings (the parser's link stage
``parse/normalize.py``, the engine's start requests), so all URLs are normalised the same way.
A URL with no ``?`` or ``;`` and no rewrite rules is returned at once, by two substring tests:
most links pay nothing more. The others are remembered (a per-process cache emptied when
full), because a site's navigation links recur on every page. w3lib's ``url_query_cleaner``
takes exact keys only, not globs such as ``utm_*``, and rebuilds even URLs it leaves alone,
so the query is split here.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: A user rule that rewrites a URL: what ``url_rewrites`` holds once checked.
Rewrite = tuple[re.Pattern[str], str]
#: URLs a normalizer remembers (a site's navigation links, met on every page), then forgets all at once.
CACHE_ENTRIES = 100_000


class UrlNormalizer:
    """The normalisation rules of one crawl; ``normalize(url)`` is the URL to fingerprint and fetch.

    Not shared between processes and not thread-safe (its cache); each process builds its own.
    """

    def __init__(self, strip: Iterable[str], rewrites: Iterable[Mapping[str, str]]) -> None:
        globs = [fnmatch.translate(glob.lower()) for glob in strip]
        self._strip = re.compile("|".join(globs), re.IGNORECASE).fullmatch if globs else None
        self._rewrites: list[Rewrite] = [(re.compile(rule["pattern"]), rule["replace"]) for rule in rewrites]
        self._cache: dict[str, str] = {}

    def __bool__(self) -> bool:
        """False when there is no rule: nothing to do at all."""
        return self._strip is not None or bool(self._rewrites)

    def normalize(self, url: str) -> str:
        """``url`` with the matching parameters dropped and the rewrites applied (``url`` itself if unchanged)."""
        if not self._rewrites and "?" not in url and ";" not in url:
            return url
        hit = self._cache.get(url)
        if hit is not None:
            return hit
        normal = self._strip_params(url) if self._strip is not None else url
        for pattern, replace in self._rewrites:
            normal = pattern.sub(replace, normal)
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        self._cache[url] = normal
        return normal

    def _strip_params(self, url: str) -> str:
        strip = self._strip
        assert strip is not None
        rest, hash_, fragment = url.partition("#")
        path, question, query = rest.partition("?")
        if ";" in path:
            scheme, slashes, after = path.partition("://")
            if not slashes:
                scheme, after = "", path
            authority, slash, tail = after.partition("/")
            if ";" in tail:
                segments = []
                for segment in tail.split("/"):
                    name, *params = segment.split(";")
                    kept = [p for p in params if not strip(p.partition("=")[0])]
                    segments.append(";".join([name, *kept]))
                path = f"{scheme}{slashes}{authority}{slash}{'/'.join(segments)}"
        if question:
            kept = [arg for arg in query.split("&") if arg and not strip(arg.partition("=")[0])]
            query = "&".join(kept)
            question = "?" if kept else ""
        return f"{path}{question}{query}{hash_}{fragment}"


def check_rewrites(value: Any) -> list[dict[str, str]]:
    """The ``url_rewrites`` setting checked (see ``settings._SHAPES``): a list of ``{pattern, replace}``.

    The pattern must compile and the replacement be one ``re.sub`` accepts for it (a group it
    names must exist), so a mistake is a one-line error before the crawl, not a crash of every
    parser. ValueError with a message that names the rule.
    """
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"'url_rewrites' must be a list of {{pattern: REGEX, replace: TEXT}} rules, got {value!r}")
    rules = []
    for number, rule in enumerate(value, 1):
        where = f"'url_rewrites' rule {number}"
        if not isinstance(rule, Mapping) or set(rule) != {"pattern", "replace"}:
            raise ValueError(f"{where} must be a mapping with exactly the keys pattern and replace, got {rule!r}")
        pattern, replace = rule["pattern"], rule["replace"]
        if not isinstance(pattern, str) or not isinstance(replace, str):
            raise ValueError(f"{where}: pattern and replace must be strings, got {pattern!r} and {replace!r}")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{where}: pattern {pattern!r} is not a regular expression ({exc})") from None
        try:
            compiled.sub(replace, "")  # re checks the replacement's escapes and groups even without a match
        except (re.error, IndexError) as exc:
            raise ValueError(f"{where}: replace {replace!r} does not fit the pattern {pattern!r} ({exc})") from None
        rules.append({"pattern": pattern, "replace": replace})
    return rules
