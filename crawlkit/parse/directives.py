"""The directives stage: what a page tells crawlers about itself (robots meta, X-Robots-Tag, nofollow, canonical).

Before the callback it reads the ``<meta name="robots">`` and ``<meta name="crawlkit">`` tags
(the robots product token of ``user_agent``, or of the host's own in the ``hosts`` setting, as
robots.txt groups are matched), the
``X-Robots-Tag`` headers (``noindex``, or ``crawlkit: noindex`` for this crawler only), the
``rel="nofollow"`` of ``<a>`` and ``<area>`` links, and the canonical URL (``<link
rel="canonical">`` or a ``Link: <...>; rel="canonical"`` header). The spider sees them as
``response.meta["robots"]`` (a frozenset: ``{"noindex", "nofollow"}``, ``none`` read as both)
and ``response.meta["canonical"]``. With ``robots_meta`` on (the default) the crawl honours
them: a ``noindex`` page's items are not written (nor seen by the pipelines: ``items_noindex``);
a ``nofollow`` page's requests, whichever way its callback made them, are dropped after it
(``dropped_nofollow``), and so are a page's requests for the URLs it links with
``rel="nofollow"``. The canonical URL is read whatever ``robots_meta`` says; with
``skip_duplicate_canonical`` its fingerprint goes to the engine in ``PageDone.canonical``,
which alone can tell whether it was seen (``Engine._drop_if_duplicate``).

It runs on every page, so it looks before it parses: a header lookup, then, in an HTML page,
substring checks of the lower-cased ``<head>`` bytes for ``robots``, the product token and
``canonical``; only a page that has one is looked at in its lxml tree, the one the callback
then uses (built here a moment earlier, not twice), and of that tree only the children of
``<head>``. The ``rel="nofollow"`` links are read after the callback, and only when it made
requests: from the tree it built (a walk over the ``<a>`` and ``<area>`` elements costs less
than a search of the page's bytes), or, when it built none, from a tree built only if the
lower-cased bytes hold ``nofollow``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin

from crawlkit.extensions.robots import product_token
from crawlkit.http import Request, Response
from crawlkit.parse.stages import Page, StageSetup
from crawlkit.sites import SiteRules
from crawlkit.urls import host_of

log = logging.getLogger("crawlkit.parser")

NOINDEX, NOFOLLOW = "noindex", "nofollow"
# X-Robots-Tag directives with a value after a colon: "max-snippet: 20" names no crawler.
_VALUED = frozenset({"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"})
# One link of a Link header, <url>; params (up to the next "<"), and the rel param's value.
_LINK = re.compile(r"<([^>]*)>([^<]*)")
_REL = re.compile(r"""\brel\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s;,]*))""", re.IGNORECASE)


@dataclass(slots=True)
class PageRobots:
    """What a page's directives ask of its requests: none followed, or none to the URLs its ``rel="nofollow"``
    links name (``links_of``: the response whose links are read when it made requests)."""

    nofollow: bool
    links_of: Response | None = None


class DirectivesStage:
    """Reads a page's robots directives and canonical URL before the callback; drops its nofollow requests after."""

    def __init__(self, setup: StageSetup) -> None:
        settings = setup.config.settings
        self.obey: bool = settings.robots_meta
        self.skip_duplicates: bool = settings.skip_duplicate_canonical
        self.agent = product_token(settings.user_agent).strip().lower()
        self.agent_bytes = self.agent.encode("utf-8", "replace")
        self.fingerprints = setup.fingerprints
        # Hosts with a user agent of their own are addressed by its name, as their robots.txt is (sites.py).
        sites = SiteRules(settings.hosts)
        self.sites = sites if any("user_agent" in rule for rule in sites.setting.values()) else None
        self._agents: dict[str, tuple[str, bytes]] = {}  # host -> its name, lower-case, as str and bytes

    def on_response(self, page: Page, response: Response) -> Response | None:
        headers = response.headers
        directives: frozenset[str] = frozenset()
        canonical: str | None = None
        agent, agent_bytes = (self.agent, self.agent_bytes) if self.sites is None else self._agent_of(page.done.host)
        if self.obey:
            tags = headers.getlist("X-Robots-Tag")
            if tags:
                directives = header_directives(tags, agent)
        link = headers.get("Link")
        if link is not None and "canonical" in link.lower():
            canonical = header_canonical(link, response.url)
        html = response.is_html
        if html:
            head = _head(response.body)
            if (self.obey and (b"robots" in head or (agent_bytes and agent_bytes in head))) or b"canonical" in head:
                meta, linked = head_directives(response, agent)
                if self.obey:
                    directives |= meta
                canonical = canonical or linked
        meta_dict = response.meta
        if self.obey and (directives or html):
            self._honour(page, directives, response if html else None)
        if directives:
            meta_dict["robots"] = directives
        elif meta_dict:
            meta_dict.pop("robots", None)  # one copied from the page that linked here
        if canonical is not None:
            meta_dict["canonical"] = canonical
            if self.skip_duplicates:
                page.done.canonical = self._foreign(canonical, response.url, page)
        elif meta_dict:
            meta_dict.pop("canonical", None)
        return response

    def _agent_of(self, host: str) -> tuple[str, bytes]:
        """The name ``host``'s pages address this crawler by: its rule's user agent's product token, or the crawl's."""
        known = self._agents.get(host)
        if known is None:
            assert self.sites is not None  # asked only when a rule has a user agent
            user_agent = self.sites.for_host(host).user_agent
            if user_agent is None:
                known = self.agent, self.agent_bytes
            else:
                agent = product_token(user_agent).strip().lower()
                known = agent, agent.encode("utf-8", "replace")
            self._agents[host] = known
        return known

    def _honour(self, page: Page, directives: frozenset[str], html: Response | None) -> None:
        if NOINDEX in directives:
            page.counts["pages_noindex"] += 1
            page.drop_items = NOINDEX
        if NOFOLLOW in directives:
            page.counts["pages_nofollow"] += 1
            page.robots = PageRobots(True)
        elif html is not None:
            page.robots = PageRobots(False, html)

    def _foreign(self, canonical: str, url: str, page: Page) -> int | None:
        """The fingerprint of ``canonical`` when it names another page of ``url``'s host; None when the same,
        invalid, or on another host (counted): a page may speak for its own site's URLs, but a hostile one
        naming another site's would mark them seen, and they would never be fetched."""
        fingerprint = self.fingerprints.fingerprint
        try:
            if host_of(canonical) != host_of(url):
                page.counts["canonical_other_host"] += 1
                return None
            fp = fingerprint(canonical)
            return None if fp == fingerprint(url) else fp
        except ValueError:
            return None

    def on_links(self, page: Page, requests: list[Request]) -> list[Request]:
        robots = page.robots
        if robots is None or not requests:
            return requests
        if robots.nofollow:
            kept: list[Request] = []
        else:
            assert robots.links_of is not None  # set for every HTML page not wholly nofollow
            urls = nofollow_links(robots.links_of)
            if not urls:
                return requests
            kept = [r for r in requests if r.url.partition("#")[0] not in urls]
        if len(kept) != len(requests):
            page.counts["dropped_nofollow"] += len(requests) - len(kept)
            log.debug("dropped (nofollow): %d requests of %s", len(requests) - len(kept), page.request.url)
        return kept


def _head(body: bytes) -> bytes:
    """The page's bytes up to ``</head>``, lower-cased (all of them when it has no ``</head>``)."""
    end = body.find(b"</head>")
    if end < 0:
        end = body.find(b"</HEAD>")
    return (body if end < 0 else body[:end]).lower()


def parse_directives(text: str) -> set[str]:
    """The directives of a robots meta ``content`` or an X-Robots-Tag value, lower-cased; ``none`` adds both."""
    found = {part.strip().lower() for part in text.split(",")}
    found.discard("")
    if "none" in found:
        found |= {NOINDEX, NOFOLLOW}
    return found


def header_directives(values: list[str], agent: str) -> frozenset[str]:
    """The directives of ``X-Robots-Tag`` headers for crawler ``agent``: those for all, and those named for it.

    A ``name:`` before a directive addresses it and the rest of that header to one crawler
    (``googlebot: noindex, nofollow``); directives before any name are for all.
    """
    found: set[str] = set()
    for value in values:
        scope = ""  # all crawlers
        for part in value.split(","):
            name, colon, rest = part.partition(":")
            name = name.strip().lower()
            if colon and name and name not in _VALUED and " " not in name:
                scope, part = name, rest
            if not scope or scope == agent:
                found |= parse_directives(part)
    return frozenset(found)


def head_directives(response: Response, agent: str) -> tuple[frozenset[str], str | None]:
    """The robots directives of the page's ``<meta>`` tags for ``agent`` and its ``<link rel="canonical">`` URL."""
    head = response.tree.find("head")
    found: set[str] = set()
    canonical = None
    if head is None:
        return frozenset(), None
    for element in head.iterchildren("meta", "link"):
        if element.tag == "meta":
            name = (element.get("name") or "").strip().lower()
            if name == "robots" or name == agent:
                found |= parse_directives(element.get("content") or "")
        elif canonical is None and "canonical" in (element.get("rel") or "").lower().split():
            href = (element.get("href") or "").strip()
            if href:
                try:
                    canonical = urldefrag(response.urljoin(href))[0]
                except ValueError:  # a malformed URL is no canonical
                    pass
    return frozenset(found), canonical


def header_canonical(link: str, base: str) -> str | None:
    """The URL of the ``rel="canonical"`` link of a ``Link`` header, absolute against ``base``."""
    for url, params in _LINK.findall(link):
        for rel in _REL.finditer(params):
            if "canonical" in "".join(rel.groups(default="")).lower().split():
                try:
                    return urldefrag(urljoin(base, url.strip()))[0]
                except ValueError:
                    return None
    return None


def nofollow_links(response: Response) -> frozenset[str]:
    """Absolute URLs (without fragments) of the page's ``<a>`` and ``<area>`` links whose ``rel`` has ``nofollow``.

    A tree the callback built is walked (about 6 µs for a 20 kB page: less than a search of its
    bytes); without one, the page is parsed only if its lower-cased bytes hold ``nofollow``.
    """
    if response._tree is None and b"nofollow" not in response.body.lower():
        return frozenset()
    urls = set()
    for element in response.tree.iter("a", "area"):
        rel = element.get("rel")
        href = element.get("href")
        if rel and href is not None and NOFOLLOW in rel.lower().split():
            try:
                urls.add(urldefrag(response.urljoin(href.strip()))[0])
            except ValueError:
                continue
    return frozenset(urls)
