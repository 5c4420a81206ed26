"""Choosing what to render: per request, per host, for the whole crawl, or when a plainly fetched page fails a check.

A browser costs a hundred times the CPU of a plain fetch, so rendering is asked for, never
assumed. The engine asks ``RenderChoice.wants`` of each page it dispatches, first match wins:

1. the request's own ``meta["render"]`` (``Request(url, render=True)``, or a dict of render
   options; False fetches it plainly whatever the rules say), or scrapy-playwright's
   ``meta["playwright"]``, so Scrapy spiders keep working;
2. the hosts it learned need a browser (below);
3. the ``render`` key of the host's rule in the ``hosts`` setting;
4. the crawl-wide ``render`` setting.

robots.txt and sitemaps are always fetched plainly. Adaptive rendering: with ``render_when``
(a CSS selector that must find something, a least amount of text) or a spider method
``needs_render(response)`` returning true, a parser stage (``RenderCheck``) checks each plainly
fetched 2xx HTML page; one that fails is not given to the callback but queued again with
``meta["render_auto"]`` set, which tells the engine, as it dispatches it, that its host needs a
browser: that host's later pages go straight to one, so each host pays for one plain fetch at
most. The choice is made on the request's meta, so the plain path pickles nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crawlkit.extensions.robots import ROBOTS_CALLBACK
from crawlkit.extensions.sitemaps import SITEMAP_CALLBACK, SPIDER_SITEMAP_CALLBACK
from crawlkit.http import Request, Response
from crawlkit.parse.stages import Page, StageSetup
from crawlkit.render.actions import check_actions
from crawlkit.sites import SiteRules

AUTO = "render_auto"  # meta key of a request queued again because its plain page failed the check
WHEN_KEYS = ("missing", "min_text")
# Playwright's resource types a page may do without ("document", the page itself, is not one of them).
RESOURCE_TYPES = ("stylesheet", "image", "media", "font", "script", "texttrack", "xhr", "fetch", "eventsource",
                  "websocket", "manifest", "other")
_PLAIN_ONLY = (ROBOTS_CALLBACK, SITEMAP_CALLBACK, SPIDER_SITEMAP_CALLBACK)


def check_render(value: object) -> bool | dict[str, Any]:
    """The ``render`` setting (and a host rule's ``render``) checked: a bool, or a dict of render options."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"'render' must be true, false or a map of page actions, got {value!r}")
    return check_actions(value)


def check_render_when(value: object) -> dict[str, Any]:
    """The ``render_when`` setting checked: ``{}`` (off), or ``missing`` (a CSS selector) and/or ``min_text``."""
    if not isinstance(value, Mapping):
        raise ValueError(f"'render_when' must be a mapping with {' and/or '.join(WHEN_KEYS)}, got {value!r}")
    unknown = sorted(set(value) - set(WHEN_KEYS), key=str)
    if unknown:
        raise ValueError(f"'render_when': unknown key {unknown[0]!r}; it may set {', '.join(WHEN_KEYS)}")
    checked: dict[str, Any] = {}
    if "missing" in value:
        selector = value["missing"]
        if not isinstance(selector, str) or not selector.strip():
            raise ValueError(f"'render_when': 'missing' must be a CSS selector, got {selector!r}")
        from cssselect import GenericTranslator, SelectorError

        try:
            GenericTranslator().css_to_xpath(selector)
        except SelectorError as exc:
            raise ValueError(f"'render_when': 'missing' is not a valid CSS selector ({selector!r}: {exc})") from None
        checked["missing"] = selector
    if "min_text" in value:
        least = value["min_text"]
        if isinstance(least, bool) or not isinstance(least, int) or least < 0:
            raise ValueError(f"'render_when': 'min_text' must be a number of characters (0 or more), got {least!r}")
        checked["min_text"] = least
    return checked


def check_render_block(value: object) -> tuple[str, ...]:
    """The ``render_block`` setting checked: a list of Playwright resource types, never the page's own document."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(kind, str) for kind in value):
        raise ValueError(f"'render_block' must be a list of resource types ({', '.join(RESOURCE_TYPES)}), "
                         f"got {value!r}")
    for kind in value:
        if kind not in RESOURCE_TYPES:
            raise ValueError(f"'render_block': {kind!r} is not a resource type that may be blocked; "
                             f"use {', '.join(RESOURCE_TYPES)}")
    return tuple(value)


def asked(request: Request) -> bool | None:
    """What the request itself asks: True (render), False (fetch plainly) or None (the rules decide)."""
    meta = request.meta
    if not meta:
        return None
    value = meta.get("render")
    if value is None:
        value = meta.get("playwright")
    return None if value is None else bool(value)


class RenderChoice:
    """The engine's choice of path for each page it dispatches; remembers the hosts that turned out to need a browser.

    ``crawl`` is the ``render`` setting, ``sites`` the ``hosts`` rules (their ``render`` keys).
    """

    def __init__(self, crawl: bool | Mapping[str, Any], sites: SiteRules) -> None:
        self.crawl = bool(crawl)
        self.sites = sites if any("render" in rule for rule in sites.setting.values()) else None
        self.learned: set[str] = set()  # hosts whose plain pages failed the adaptive check

    @property
    def by_settings(self) -> bool:
        """Whether the settings alone may render pages (then the browser must be there at the start)."""
        rules = self.sites.setting.values() if self.sites is not None else ()
        return self.crawl or any(rule.get("render") for rule in rules)

    def wants(self, request: Request, host: str) -> bool:
        """Whether page ``request`` of ``host`` goes to a renderer (never a spider's sitemap; robots.txt and the
        crawl's sitemaps are not asked about)."""
        own = asked(request)
        if own is not None:
            if own and request.meta.get(AUTO):
                self.learned.add(host)
            return own
        if host in self.learned:
            chosen = True
        elif self.sites is not None and self.sites.for_host(host).render is not None:
            chosen = bool(self.sites.for_host(host).render)
        else:
            chosen = self.crawl
        return chosen and request.callback != SPIDER_SITEMAP_CALLBACK


def options_for(request: Request, sites: SiteRules | None, crawl: bool | Mapping[str, Any]) -> dict[str, Any]:
    """The render options of a request chosen for rendering: its own dict, else its host rule's, else the crawl's.

    Renderer side; ValueError "'render' ..." for a request's own options that ``check_actions`` refuses.
    """
    own = request.meta.get("render")
    if isinstance(own, Mapping):
        return check_actions(own)
    if sites is not None:
        from crawlkit.urls import host_of

        rule = sites.for_host(host_of(request.url)).render
        if isinstance(rule, Mapping):
            return dict(rule)
    return dict(crawl) if isinstance(crawl, Mapping) else {}


class RenderCheck:
    """The adaptive check (parser stage): a plain 2xx HTML page failing ``render_when`` or the spider's
    ``needs_render`` is queued again to be rendered, instead of reaching the callback."""

    def __init__(self, setup: StageSetup) -> None:
        when = setup.config.settings.render_when
        self.missing: str | None = when.get("missing")
        self.min_text: int | None = when.get("min_text")
        method = getattr(setup.spider, "needs_render", None)
        self.spider_check = method if callable(method) else None
        self.active = bool(when) or self.spider_check is not None

    def on_response(self, page: Page, response: Response) -> Response | None:
        request = response.request
        if (not 200 <= response.status < 300 or asked(request) is not None or request.meta.get("rendered")
                or request.callback in _PLAIN_ONLY or "html" not in (response.headers.get("Content-Type") or "")):
            return response
        if not self.needs_render(response):
            return response
        page.counts["render_adaptive"] += 1
        page.done.retry = request.replace(meta={**request.meta, "render": True, AUTO: True}, dont_filter=True)
        return None

    def needs_render(self, response: Response) -> bool:
        """Whether the plainly fetched ``response`` fails the check: the page needs a browser."""
        if self.missing is not None and not response.css(self.missing):
            return True
        if self.min_text is not None:
            text = " ".join(response.xpath("//body//text()[not(ancestor::script or ancestor::style)]").getall())
            if len(" ".join(text.split())) < self.min_text:
                return True
        return self.spider_check is not None and bool(self.spider_check(response))
