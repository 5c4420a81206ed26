"""robots.txt, fetched once per host and obeyed, with Protego for the rules.

The rules (``RobotsRules``) live in the engine, whose ``RobotsGate`` filters requests before
they are queued. A host whose robots.txt is not known yet gets one robots request (sent through
the fetchers like any other, under the same per-host cap) and its other requests wait beside
it until the answer arrives.

What an answer means, per RFC 9309: 2xx, the rules; 4xx, no rules (allow all); 5xx or no
answer after the usual retries, disallow all "for a while": the host's requests keep waiting
and robots.txt is asked for again later (``robots_rechecks`` times, the engine decides when),
so a host that is down for maintenance when the crawl meets it is not lost for the whole
crawl. When the rechecks are spent too, its requests are dropped and counted as
``robots_unavailable``.

A host that refuses the connection, or whose name does not resolve, is given up as soon as
the usual retries of its robots.txt are spent, without rechecks: nothing listens there, and
waiting minutes for it holds the end of the crawl. A timeout is rechecked like a 5xx: the host
is there but slow or overloaded, which is what "for a while" is for.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from protego import Protego

from crawlkit.errors import FetchErrorKind
from crawlkit.http import Request
from crawlkit.sites import SiteRules
from crawlkit.urls import host_of

if TYPE_CHECKING:  # the Redis backend imports this module's constants
    from crawlkit.backends.base import CrawlBackend, Entry
    from crawlkit.stats import Stats

log = logging.getLogger("crawlkit.robots")

ROBOTS_CALLBACK = "__robots__"
ROBOTS_WAIT = 0.25  # seconds a host waits before this node looks again for the answer another node asked for
MAX_ROBOTS_BYTES = 512 * 1024  # what Google reads of a robots.txt; the rest is ignored
PICKLED_KEPT = 256  # hosts whose rules the engine keeps pickled for the renderers (RobotsRules.rules_of)

# The "status" of a robots.txt that got no HTTP answer (an HTTP status is 100-599): it travels
# in PageDone.robots and is kept in the job directory and in Redis like one.
NO_ANSWER = 0  # a timeout or a broken exchange: asked again later
#: fetch error kind -> (status, what it reads as) for a host that cannot be reached at all: given up at once
UNREACHABLE = {
    FetchErrorKind.CONNECTION_REFUSED: (-1, "connection refused"),
    FetchErrorKind.UNRESOLVABLE_HOST: (-2, "could not resolve host"),
}
_UNREACHABLE_TEXT = dict(UNREACHABLE.values())
# The "status" of a robots.txt the fetcher refused to ask for (allow_private_addresses: false):
# no rules, so the host's requests go on to the fetcher, which refuses and counts each one.
ROBOTS_BLOCKED = -3

_ALLOW_ALL = "allow"
_DISALLOW_ALL = "disallow"


def product_token(user_agent: str) -> str:
    """The name robots rules address this crawler by: the User-Agent's product token (``crawlkit`` of
    ``crawlkit/0.1 (+https://...)``), for robots.txt groups and ``<meta name="crawlkit">`` alike."""
    return user_agent.split("/", 1)[0]


class RobotsRules:
    """Rules per host for the crawl's user agent, or a host's own (``sites``); ``None`` state means not asked yet."""

    def __init__(self, user_agent: str, rechecks: int = 0, sites: SiteRules | None = None) -> None:
        self._agent = product_token(user_agent)
        self._sites = sites if sites else None
        self._agents: dict[str, str] = {}  # host -> the product token its rules are matched for, with ``sites``
        self._rules: dict[str, Any] = {}  # host -> Protego | _ALLOW_ALL | _DISALLOW_ALL
        self._asked: set[str] = set()
        self._pickled: dict[str, bytes] = {}  # host -> its rules pickled for the renderers, the last PICKLED_KEPT
        self.rechecks = rechecks  # how many times an unavailable robots.txt is asked again
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
        """For an unavailable answer (5xx, or ``NO_ANSWER``) while rechecks remain: which
        recheck comes next (1, 2, ...), after which the caller asks again with ``request_again``.
        None when the answer is to be learnt as it is (an unreachable host's too)."""
        if status < NO_ANSWER or NO_ANSWER < status < 500:
            return None
        failures = self._failures.get(host, 0)
        if failures >= self.rechecks:
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
        self._pickled.pop(host, None)
        if 200 <= status < 300:
            rules = Protego.parse(body.decode("utf-8", "replace"))
            self._rules[host] = rules
            delay = rules.crawl_delay(self._agent_of(host))
            return float(delay) if delay else None
        if 400 <= status < 500 or status == ROBOTS_BLOCKED:
            self._rules[host] = _ALLOW_ALL
        elif status in _UNREACHABLE_TEXT:
            log.warning("%s: %s (robots.txt); not crawling this host", _UNREACHABLE_TEXT[status], host)
            self._rules[host] = _DISALLOW_ALL
        else:
            log.warning("robots.txt of %s unavailable (%s); not crawling this host", host, status or "no answer")
            self._rules[host] = _DISALLOW_ALL
        return None

    def allowed(self, url: str, host: str | None = None) -> bool:
        """Whether the rules of ``url``'s host (``host``, when the caller has it already) let us fetch it."""
        host = host or host_of(url)
        rules = self._rules[host]
        if rules is _ALLOW_ALL:
            return True
        if rules is _DISALLOW_ALL:
            return False
        return rules.can_fetch(url, self._agent_of(host))

    def rules_of(self, host: str) -> bytes | None:
        """``host``'s parsed robots.txt and the product token it is matched for, pickled (None: nothing to obey, or
        not known), for a renderer to obey with the page's sub-resources: sent with a page to render only.

        Pickled once per host (rules, not text, are what the engine keeps: a robots.txt of 8,000 rules
        pickles in about 0.3 s, as long as its parse took), for the last ``PICKLED_KEPT`` hosts asked.
        """
        rules = self._rules.get(host)
        if not isinstance(rules, Protego):
            return None
        blob = self._pickled.pop(host, None)
        if blob is None:
            blob = pickle.dumps((rules, self._agent_of(host)), pickle.HIGHEST_PROTOCOL)
        self._pickled[host] = blob  # the most recent last
        if len(self._pickled) > PICKLED_KEPT:
            del self._pickled[next(iter(self._pickled))]
        return blob

    def _agent_of(self, host: str) -> str:
        """The product token robots.txt groups are matched against for ``host``: its own user agent's, if it has one."""
        if self._sites is None:
            return self._agent
        agent = self._agents.get(host)
        if agent is None:
            user_agent = self._sites.for_host(host).user_agent
            agent = self._agents[host] = self._agent if user_agent is None else product_token(user_agent)
        return agent

    def unavailable(self, host: str) -> bool:
        return self._rules.get(host) is _DISALLOW_ALL


class RobotsGate:
    """The engine's door to the frontier: every new request passes here, and none of a host
    goes in before the host's robots.txt is known (then only those it allows).

    Runs in the engine's process, on its backend's frontier and limiter. Final answers are kept
    by the backend (in the job directory, so a resumed crawl does not ask again; in Redis, for
    the other nodes). A backend whose requests other nodes may take (``robots_checked_on_take``)
    has requests queued at once instead of held (a node that dies must not lose them), and
    robots.txt checked when a node takes one (``may_start``).
    """

    def __init__(self, rules: RobotsRules | None, backend: CrawlBackend, stats: Stats, recheck_after: float) -> None:
        self.rules, self.backend, self.stats = rules, backend, stats
        self.frontier, self.limiter, self.journal = backend.frontier, backend.limiter, backend.journal
        self.recheck_after = recheck_after
        self.waiting: dict[str, list[Entry]] = defaultdict(list)  # host -> entries held for its answer

    def admit(self, entries: Iterable[Entry]) -> None:
        """Queue new frontier entries, holding those of hosts whose robots.txt is not known yet."""
        rules = self.rules
        if rules is None:
            self.frontier.push(entries)
            return
        queue_unknown = self.backend.robots_checked_on_take
        allowed: list[Entry] = []
        for entry in entries:
            request = entry[1]
            host = host_of(request.url)
            if rules.known(host):
                if rules.allowed(request.url, host):
                    allowed.append(entry)
                else:
                    self._drop_disallowed(host, entry)
                continue
            if queue_unknown:  # robots.txt is checked when it is taken
                allowed.append(entry)
            else:
                self.waiting[host].append(entry)
            robots_request = rules.request_for(request.url)
            if robots_request is not None:
                allowed.append((0, robots_request))
        self.frontier.push(allowed)

    def answer(self, host: str, url: str, status: int, body: bytes) -> None:
        """A robots.txt answer arrived: learn it, or (unavailable) ask again later while the host's requests wait."""
        rules = self.rules
        assert rules is not None  # only the robots.txt requests that rules made are answered
        recheck = rules.recheck(host, status)
        if recheck is None:
            self.learn(host, status, body)
            return
        wait = self.recheck_after * 2 ** (recheck - 1)
        log.warning(
            "robots.txt of %s unavailable (%s); asking again in %.0fs (recheck %d of %d), its %d requests waiting",
            host, status or "no answer", wait, recheck, rules.rechecks, len(self.waiting.get(host, ())),
        )
        self.stats.incr("robots_rechecks")
        self.frontier.push([(0, rules.request_again(url))], not_before=time.monotonic() + wait)

    def learn(self, host: str, status: int, body: bytes) -> None:
        """Take ``host``'s answer as final (also from a job directory or another node) and queue what it allows."""
        rules = self.rules
        assert rules is not None  # answers are learnt only in a crawl that obeys robots.txt
        # A refusal is kept for this run only: a crawl resumed with the setting on asks.
        if status != ROBOTS_BLOCKED:
            self.backend.save_robots(host, status, body)
        delay = rules.learn(host, status, body)
        if delay:
            log.info("robots.txt of %s asks for Crawl-delay %.2fs", host, delay)
            self.limiter.set_delay(host, delay)
        self.admit(self.waiting.pop(host, []))

    def rules_of(self, host: str) -> bytes | None:
        """``host``'s robots.txt rules and agent, pickled, if it has rules to obey (``RobotsRules.rules_of``)."""
        return self.rules.rules_of(host) if self.rules is not None else None

    def may_start(self, host: str, lease: int, request: Request, now: float) -> bool:
        """Whether a request just taken may be sent; finishes or gives back those that may not.

        Only a backend with ``robots_checked_on_take`` says no: another node may have queued the
        request before this node knew the host's robots.txt (otherwise requests are filtered when
        queued). The answer may already be kept by the backend; if not, the request goes back and
        this node asks once.
        """
        if not self.backend.robots_checked_on_take or self.rules is None:
            return True
        is_robots = request.callback == ROBOTS_CALLBACK
        if not self.rules.known(host):
            answer = self.backend.robots_answer(host)
            if answer is not None:
                self.learn(host, *answer)
            elif is_robots:
                return True
            else:
                self.frontier.reclaim(lease, request)
                robots_request = self.rules.request_for(request.url)
                if robots_request is not None:
                    self.frontier.push([(0, robots_request)])
                self.frontier.park(host, now + ROBOTS_WAIT)
                return False
        if is_robots:  # another node's answer came first
            self.frontier.done([lease])
            return False
        if self.rules.allowed(request.url, host):
            return True
        self.frontier.done([lease])
        self._drop_disallowed(host, (lease, request))
        return False

    def _drop_disallowed(self, host: str, entry: Entry) -> None:
        job, request = entry
        self.journal.done(job)
        assert self.rules is not None  # only rules disallow
        if self.rules.unavailable(host):
            self.stats.incr("robots_unavailable")
        else:
            self.stats.incr("robots_disallowed")
            log.debug("robots.txt disallows %s", request.url)
