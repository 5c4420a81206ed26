"""robots.txt, fetched once per host and obeyed, with Protego for the rules.

The rules live in the engine, which filters requests before they are queued. A host whose
robots.txt is not known yet gets one robots request (sent through the fetchers like any other,
under the same per-host cap) and its other requests wait beside it until the answer arrives.

What an answer means, per RFC 9309: 2xx, the rules; 4xx, no rules (allow all); 5xx or no
answer after the usual retries, disallow all "for a while": the host's requests keep waiting
and robots.txt is asked for again later (``robots_rechecks`` times, the engine decides when),
so a host that is down for maintenance when the crawl meets it is not lost for the whole
crawl. When the rechecks are spent too, its requests are dropped and counted as
``robots_unavailable``.
"""

from __future__ import annotations

import logging
from typing import Any

from protego import Protego

from .http import Request
from .urls import host_of

log = logging.getLogger("crawlkit.robots")

ROBOTS_CALLBACK = "__robots__"
MAX_ROBOTS_BYTES = 512 * 1024  # what Google reads of a robots.txt; the rest is ignored

_ALLOW_ALL = "allow"
_DISALLOW_ALL = "disallow"


class RobotsRules:
    """Rules per host for one user agent; ``None`` state means not asked yet."""

    def __init__(self, user_agent: str, rechecks: int = 0) -> None:
        self._agent = user_agent.split("/", 1)[0]  # robots groups match the product token
        self._rules: dict[str, Any] = {}  # host -> Protego | _ALLOW_ALL | _DISALLOW_ALL
        self._asked: set[str] = set()
        self._rechecks = rechecks
        self._failures: dict[str, int] = {}  # host -> unavailable answers so far

    def known(self, host: str) -> bool:
        return host in self._rules

    def request_for(self, url: str) -> Request | None:
        """The robots.txt request for ``url``'s host, the first time the host is met; else None."""
        host = host_of(url)
        if host in self._asked:
            return None
        self._asked.add(host)
        return self._request(url.split(":", 1)[0].lower(), host)

    def recheck(self, host: str, status: int) -> int | None:
        """For an unavailable answer (5xx, or ``status`` 0: none) while rechecks remain: which
        recheck comes next (1, 2, ...), after which the caller asks again with ``request_again``.
        None when the answer is to be learnt as it is."""
        if status and status < 500:
            return None
        failures = self._failures.get(host, 0)
        if failures >= self._rechecks:
            return None
        self._failures[host] = failures + 1
        return failures + 1

    def request_again(self, url: str) -> Request:
        """The robots.txt request for ``url`` (a robots.txt URL) once more."""
        return self._request(url.split(":", 1)[0].lower(), host_of(url))

    def _request(self, scheme: str, host: str) -> Request:
        return Request(
            f"{scheme}://{host}/robots.txt",
            callback=ROBOTS_CALLBACK,
            dont_filter=True,
            meta={"max_body": MAX_ROBOTS_BYTES, "truncate": True, "follow_redirects": True},
        )

    def learn(self, host: str, status: int, body: bytes) -> float | None:
        """Record the answer for ``host``; returns its Crawl-delay, if it sets one."""
        self._asked.add(host)  # answers also come from a job directory, without a request
        if 200 <= status < 300:
            rules = Protego.parse(body.decode("utf-8", "replace"))
            self._rules[host] = rules
            delay = rules.crawl_delay(self._agent)
            return float(delay) if delay else None
        if 400 <= status < 500:
            self._rules[host] = _ALLOW_ALL
        else:
            log.warning("robots.txt of %s unavailable (%s); not crawling this host", host, status or "no answer")
            self._rules[host] = _DISALLOW_ALL
        return None

    def allowed(self, url: str, host: str | None = None) -> bool:
        """Whether the rules of ``url``'s host (``host``, when the caller has it already) let us fetch it."""
        rules = self._rules[host or host_of(url)]
        if rules is _ALLOW_ALL:
            return True
        if rules is _DISALLOW_ALL:
            return False
        return rules.can_fetch(url, self._agent)

    def unavailable(self, host: str) -> bool:
        return self._rules.get(host) is _DISALLOW_ALL
