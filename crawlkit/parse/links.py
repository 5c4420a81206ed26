"""The link stages: which candidate requests a page may send the engine (scheme, length, depth, traps, offsite).

Each filter takes a page's whole list at once, in one comprehension, rather than being called
once per link: a page's links pass several filters, and a call per link and filter would cost
more than the checks themselves. A filter whose setting turns it off is not active, so it
costs nothing. Drops are routine on most sites: counted as ``dropped_<reason>`` for the
summary, logged at DEBUG only.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from urllib.parse import urlsplit

from crawlkit.http import Request
from crawlkit.parse.stages import Page, StageSetup
from crawlkit.urls import is_http, port_of

log = logging.getLogger("crawlkit.parser")


class SchemeFilter:
    """Only http(s) URLs with a host: ``mailto:``, ``javascript:``, ``ftp:`` links are dropped."""

    def __init__(self, setup: StageSetup) -> None:
        self.fingerprints = setup.fingerprints

    def on_links(self, page: Page, requests: list[Request]) -> list[Request]:
        known = self.fingerprints  # a URL fingerprinted before is http(s): no need to parse it again
        kept = [r for r in requests if r.url in known or is_http(r.url)]
        return _dropped(page, requests, kept, "scheme")


class LengthFilter:
    """URLs longer than ``max_url_length`` characters."""

    def __init__(self, setup: StageSetup) -> None:
        self.limit = setup.config.max_url_length

    def on_links(self, page: Page, requests: list[Request]) -> list[Request]:
        limit = self.limit
        return _dropped(page, requests, [r for r in requests if len(r.url) <= limit], "url_too_long")


class DepthFilter:
    """Requests more than ``max_depth`` hops from a seed; active only when max_depth is set."""

    def __init__(self, setup: StageSetup) -> None:
        self.limit = setup.config.max_depth
        self.active = self.limit > 0

    def on_links(self, page: Page, requests: list[Request]) -> list[Request]:
        limit = self.limit
        return _dropped(page, requests, [r for r in requests if r.depth <= limit], "depth")


class RepeatedSegmentsFilter:
    """Paths that repeat one segment more than ``max_repeated_segments`` times (a spider trap)."""

    def __init__(self, setup: StageSetup) -> None:
        self.limit = setup.config.max_repeated_segments
        self.active = self.limit > 0

    def on_links(self, page: Page, requests: list[Request]) -> list[Request]:
        limit = self.limit
        kept = [r for r in requests if not repeats_segment(r.url, limit)]
        return _dropped(page, requests, kept, "repeated_segments")


class OffsiteFilter:
    """Hosts outside the allowed domains (the spider's ``allowed_domains`` and the setting's); none: all allowed."""

    def __init__(self, setup: StageSetup) -> None:
        self.allowed = AllowedDomains([*getattr(setup.spider, "allowed_domains", []), *setup.config.allowed_domains])
        self.active = bool(self.allowed)

    def on_links(self, page: Page, requests: list[Request]) -> list[Request]:
        allows = self.allowed.allows
        return _dropped(page, requests, [r for r in requests if allows(r.url)], "offsite")


def _dropped(page: Page, requests: list[Request], kept: list[Request], reason: str) -> list[Request]:
    """``kept``, after counting and logging the requests of ``requests`` it lacks."""
    if len(kept) != len(requests):
        page.counts[f"dropped_{reason}"] += len(requests) - len(kept)
        if log.isEnabledFor(logging.DEBUG):
            left = {id(r) for r in kept}
            for request in requests:
                if id(request) not in left:
                    url = request.url
                    log.debug("dropped (%s): %s%s", reason, url[:200], "..." if len(url) > 200 else "")
    return kept


class AllowedDomains:
    """The offsite rule for links and redirects (used by ``crawlkit fetch``/``parse`` too);
    false when empty, allowing all.

    An entry matches its host and subdomains: ``a.com`` on any port (as in Scrapy), ``a.com:8080``
    and ``[::1]:8080`` on that port only (``::1`` is an IPv6 address without a port). An entry
    written as a URL (``https://a.com/``, a common slip that would match no host) stands for its
    host, and its port if it names one.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self.rules: list[tuple[str, int | None]] = []
        for entry in entries:
            entry = entry.lower().lstrip(".")
            if "/" in entry:
                entry = _site_of(entry)
            domain, colon, port = entry.rpartition(":")
            if colon and port.isdigit() and (":" not in domain or domain.startswith("[")):
                self.rules.append((domain.strip("[]"), int(port)))
            else:
                self.rules.append((entry.strip("[]"), None))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def allows(self, url: str) -> bool:
        """Whether ``url``'s host is an allowed domain or a subdomain of one, on the entry's port if it names one."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port: int | None = None
        for domain, wanted in self.rules:
            if host == domain or host.endswith("." + domain):
                if wanted is None:
                    return True
                port = port or port_of(parts)
                if port == wanted:
                    return True
        return False


def _site_of(url: str) -> str:
    """``host[:port]`` of an allowed_domains entry written as a URL (``a.com/path`` too)."""
    parts = urlsplit(url if "//" in url else "//" + url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port is not None else host


def repeats_segment(url: str, limit: int) -> bool:
    """True when one path segment occurs more than ``limit`` times: /a/a/a/a/, /x/y/x/y/x/y/x/y/.

    Such a path is a spider trap: relative links that re-append themselves (/a/ -> /a/a/ -> ...),
    as Heritrix's and Nutch's default filters judge.
    """
    path_slashes_at_most = url.count("/") - (2 if url.startswith(("http://", "https://")) else 0)
    if path_slashes_at_most <= limit:  # too few segments to repeat one that often (known without parsing)
        return False
    path = urlsplit(url).path
    counts = Counter(segment for segment in path.split("/") if segment)
    return bool(counts) and max(counts.values()) > limit
