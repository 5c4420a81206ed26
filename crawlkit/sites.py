"""Per-site rules: the ``hosts`` setting, which gives hosts matched by name or glob their own politeness and headers.

A crawl over many sites is rarely polite by one rule: a large site takes 8 requests at once, a
small one on shared hosting takes one every 2 seconds, an intranet wiki wants another user agent.
The ``hosts`` setting maps a host pattern to the settings that differ for it::

    hosts:
      "*.example.org": {per_host: 1, delay: 2}
      "docs.example.com": {max_pages: 500, user_agent: "mybot/1.0 (+https://me.example/bot)"}
      "127.0.0.2:8001": {headers: {X-Token: abc}}

A pattern is matched, as ``fnmatch`` does (``*``, ``?``, ``[...]``; case-insensitive), against the
host of a URL as per-host limits key it (``host_of``: lower-case, IDNA, ``host:port`` unless the
port is the scheme's default; a pattern's non-ASCII labels are made IDNA likewise) and against
the bare host name; ``*.example.org`` matches ``a.example.org`` but not ``example.org`` (list
both if both are meant). One rule applies to a
host, never a merge of several: an exact pattern (no ``*?[``) beats every glob, and among globs the
first written wins, as in a firewall's rule list. What a rule leaves out keeps the crawl's value.

The keys and their meaning are the top-level settings of the same names, checked with the same
types and bounds (``settings.check_as``): ``per_host``, ``delay``, ``max_pages`` (pages of that
host, 0 = no limit of its own), ``user_agent`` (also the name robots.txt and the robots directives
of its pages are matched against for that host), ``headers`` (added to each request to the
host, a request's own headers win) and ``render`` (true, false or render options: whether its
pages are rendered in a browser, see ``render/choose.py``).

``SiteRules`` resolves a host once and remembers it, so asking per request costs a dict look-up;
it pickles small (the rules, not the cache), for the fetcher and parser processes.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import idna

#: A rule's keys: each is checked as the top-level setting of the same name (``headers`` apart).
RULE_KEYS = ("per_host", "delay", "max_pages", "user_agent", "headers", "render")
_GLOB = re.compile(r"[*?]|(?<!^)\[|^\[(?![0-9a-f:.]+\])")  # a leading [::1] is an IPv6 host, not a set
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
# A host pattern is a page of text at most; more rules than this are not a site list but a mistake.
MAX_RULES = 10_000


@dataclass(frozen=True, slots=True)
class SiteRule:
    """The settings one host differs by; None (or no headers) where it keeps the crawl's value."""

    pattern: str
    per_host: int | None = None
    delay: float | None = None
    max_pages: int | None = None
    user_agent: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    render: bool | dict[str, Any] | None = None  # render the host's pages (a dict: with these render options)


#: The rule of a host that no pattern matches.
NO_RULE = SiteRule("")


class SiteRules:
    """The ``hosts`` setting, resolved per host: ``for_host(host)`` is the one rule that applies."""

    def __init__(self, setting: Mapping[str, Mapping[str, Any]]) -> None:
        self.setting = setting  # as check_hosts left it: what pickles to other processes
        rules = [SiteRule(pattern, **{**fields, "headers": tuple(fields.get("headers", {}).items())})
                 for pattern, fields in setting.items()]
        self.exact = {rule.pattern: rule for rule in rules if not _GLOB.search(rule.pattern)}
        self.globs = [(re.compile(fnmatch.translate(rule.pattern)), rule) for rule in rules
                      if _GLOB.search(rule.pattern)]
        self._cache: dict[str, SiteRule] = {}

    def __bool__(self) -> bool:
        return bool(self.setting)

    def __reduce__(self) -> tuple[type[SiteRules], tuple[Mapping[str, Mapping[str, Any]]]]:
        return (SiteRules, (self.setting,))

    def limits(self, host: str, per_host: int, delay: float) -> tuple[int, float]:
        """``host``'s (per_host, delay): its rule's where the rule sets them, else the crawl's ``per_host`` and
        ``delay``; what both limiters (local and Redis) start a host from."""
        rule = self.for_host(host)
        return (per_host if rule.per_host is None else rule.per_host), (delay if rule.delay is None else rule.delay)

    def for_host(self, host: str) -> SiteRule:
        """The rule of ``host`` (as ``urls.host_of`` gives it), or ``NO_RULE``."""
        rule = self._cache.get(host)
        if rule is None:
            rule = self._cache[host] = self._resolve(host)
        return rule

    def _resolve(self, host: str) -> SiteRule:
        name = host[:host.find("]") + 1] if host.startswith("[") else host.partition(":")[0]
        for key in (host, name):
            if key in self.exact:
                return self.exact[key]
        for pattern, rule in self.globs:
            if pattern.match(host) or pattern.match(name):
                return rule
        return NO_RULE


def check_hosts(value: Any) -> dict[str, dict[str, Any]]:
    """The ``hosts`` setting checked (see ``settings._SHAPES``): lower-case pattern -> checked rule,
    plain data still, so ``crawlkit config show`` prints it as YAML.

    ValueError with a one-line message naming the pattern, the key and what is allowed.
    """
    from crawlkit.settings import check_as

    if not isinstance(value, Mapping):
        raise ValueError(f"'hosts' must be a mapping of host patterns to rules, got {type(value).__name__}")
    if len(value) > MAX_RULES:
        raise ValueError(f"'hosts' has {len(value):,} patterns; at most {MAX_RULES:,} are allowed")
    rules: dict[str, dict[str, Any]] = {}
    for pattern, rule in value.items():
        if not isinstance(pattern, str) or not pattern.strip() or any(c.isspace() for c in pattern):
            raise ValueError(f"'hosts': {pattern!r} is not a host pattern (a host, host:port or a glob such as "
                             "*.example.org)")
        where = f"'hosts' → {pattern!r}"
        if not isinstance(rule, Mapping):
            raise ValueError(f"{where} must be a mapping of settings ({', '.join(RULE_KEYS)}), got {rule!r}")
        unknown = sorted(set(rule) - set(RULE_KEYS), key=str)
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}; a host rule may set {', '.join(RULE_KEYS)}")
        fields: dict[str, Any] = {}
        for key, item in rule.items():
            if key == "headers":
                fields[key] = _check_headers(where, item)
                continue
            if item is None:
                raise ValueError(f"{where}: '{key}' must not be null (leave it out to keep the crawl's value)")
            try:
                fields[key] = check_as(key, item)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        rules[_idna(pattern.lower())] = fields
    return rules


def _idna(pattern: str) -> str:
    """``pattern`` with its non-ASCII labels IDNA-encoded, as ``urls.host_of`` gives hosts (``bücher.de`` is
    keyed ``xn--bcher-kva.de``): written in Unicode, it would match no host. ValueError for a label that
    cannot be encoded, or mixes glob characters into non-ASCII (no IDNA form says what it matches)."""
    if pattern.isascii():
        return pattern
    name, colon, port = pattern.partition(":")
    labels = []
    for label in name.split("."):
        if not label.isascii():
            if _GLOB.search(label):
                raise ValueError(f"'hosts': {pattern!r} mixes a glob into a non-ASCII label; write that label "
                                 "in its IDNA form (xn--...)")
            try:
                label = idna.encode(label, uts46=True).decode("ascii")
            except idna.IDNAError as exc:
                raise ValueError(f"'hosts': {pattern!r} is not a host pattern ({exc})") from None
        labels.append(label)
    return ".".join(labels) + colon + port


def _check_headers(where: str, headers: Any) -> dict[str, str]:
    if not isinstance(headers, Mapping):
        raise ValueError(f"{where}: 'headers' must be a mapping of header names to strings, got {headers!r}")
    checked = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"{where}: {name!r} is not an HTTP header name")
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise ValueError(f"{where}: header {name!r} must be a one-line string, got {value!r}")
        checked[name] = value
    return checked
