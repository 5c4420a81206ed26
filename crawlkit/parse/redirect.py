"""The redirect stage: a 3xx with a Location becomes a request for its target, or is dropped and counted.

A redirect is followed as a new request for its target, like any link, so it passes the link
stages (offsite, depth, ...), the seen-URL store, robots.txt and the per-host limits of its own
host. A redirect to the page itself plus what URL normalisation drops (a session id) is the
exception to the seen-URL store: followed again. ``redirect_target`` and
``redirect_request`` are also what ``crawlkit fetch`` follows.
"""

from __future__ import annotations

import logging
from urllib.parse import urljoin, urlsplit

from crawlkit.errors import FetchErrorKind, fetch_error
from crawlkit.http import Request, Response
from crawlkit.parse.stages import Page, StageSetup
from crawlkit.recrawl import forget_revisit
from crawlkit.urlnorm import UrlNormalizer
from crawlkit.urls import Fingerprinter, is_http, port_of

log = logging.getLogger("crawlkit.parser")

# Request headers that carry the user's identity; a redirect to another origin drops them.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


class RedirectStage:
    """Follows a redirect unless its target is no http(s) URL, the chain is too long, or it loops."""

    def __init__(self, setup: StageSetup) -> None:
        self.max_redirects = setup.config.max_redirects
        self.fingerprints: Fingerprinter = setup.fingerprints
        settings = setup.config.settings
        self.normalizer = UrlNormalizer(settings.strip_query_params, settings.url_rewrites)

    def on_response(self, page: Page, response: Response) -> Response | None:
        if not 300 <= response.status < 400 or "location" not in response.headers:
            return response
        request = response.request
        target = redirect_target(response.url, response.headers["location"])
        chain = request.meta.get("redirect_urls", []) + [request.url]
        counts = page.counts
        counts["redirects"] += 1
        if not target.startswith(("http://", "https://")):
            counts["dropped_redirect_scheme"] += 1
            log.warning("redirect to a non-http(s) URL dropped: %s -> %s", request.url, target[:200])
            return None
        if len(chain) > self.max_redirects:
            counts["error_too_many_redirects"] += 1
            log.warning("too many redirects (%d) at %s", len(chain), request.url)
            page.failure = fetch_error(FetchErrorKind.TOO_MANY_REDIRECTS, f"too many redirects ({len(chain)})")
            return None
        try:
            target_fp = self.fingerprints.fingerprint(target)
        except ValueError as exc:
            counts["dropped_invalid_url"] += 1
            log.warning("redirect to an invalid URL dropped: %s -> %s (%s)", request.url, target[:200], exc)
            return None
        if any(target_fp == self.fingerprints.fingerprint(u) for u in chain if is_http(u)):
            counts["error_redirect_loop"] += 1
            log.warning("redirect loop: %s -> %s", request.url, target)
            page.failure = fetch_error(FetchErrorKind.TOO_MANY_REDIRECTS, f"redirect loop to {target}")
            return None
        follow = redirect_request(request, target)
        if self.normalizer and self._to_itself(request.url, target):
            # A page that redirects to itself plus what normalisation drops (Tomcat's ;jsessionid=, with its
            # cookie): fetched again, as its normal URL, rather than dropped as seen; max_redirects bounds it.
            follow.dont_filter = True
        page.candidates = [follow]
        return None

    def _to_itself(self, url: str, target: str) -> bool:
        """Whether ``target`` is ``url`` (a normal URL, as fetched) once normalised."""
        fingerprint = self.fingerprints.fingerprint
        try:
            return fingerprint(self.normalizer.normalize(target)) == fingerprint(url)
        except ValueError:  # a rewrite made it invalid: the link stages drop it
            return False


def redirect_target(url: str, location: str) -> str:
    """The URL a redirect from ``url`` names, as the server meant it (used by ``crawlkit fetch`` too).

    HTTP headers arrive as Latin-1, but servers send UTF-8 bytes in Location (``/päge``), which
    requests' redirect code decodes the same way. A Location urllib cannot even split
    (``http://[::1``) comes back as it is, for the caller to reject.
    """
    try:
        location = location.encode("latin-1").decode("utf-8")
    except UnicodeError:
        pass
    try:
        return urljoin(url, location.strip())
    except ValueError:
        return location


def redirect_request(request: Request, target: str) -> Request:
    """The request that follows ``request``'s redirect to ``target`` (used by ``crawlkit fetch`` too).

    When the redirect changes scheme, host or port, the spider's Authorization, Cookie and
    Proxy-Authorization headers are left behind: they were meant for the origin that sent
    the redirect, not for wherever it points (Scrapy does the same since 2.11.1/2.11.2,
    CVE-2024-1968). ``user:password@`` in a URL stays with its origin by itself: a Location
    naming another origin replaces the whole authority. The cookies of crawlkit's jar are
    not headers of the request; the engine picks them for the target's host at dispatch.
    """
    chain = request.meta.get("redirect_urls", []) + [request.url]
    follow = request.replace(url=target, meta={**request.meta, "redirect_urls": chain, "retry_times": 0})
    forget_revisit(follow)
    if _origin(target) != _origin(request.url):
        for name in CREDENTIAL_HEADERS:
            follow.headers.pop(name, None)
    return follow


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of an http(s) URL."""
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port_of(parts)
