"""The Spider base class users subclass, and the built-in spider used when none is given.

A spider object exists once in the engine (for ``start()``/``start_requests``, and
``closed(reason)`` at the end), once in each parser process (for callbacks and errbacks) and,
with middlewares, once in each fetcher process. Each is built from the same keyword arguments
(``-a NAME=VALUE``) and given the same ``settings``. Keep per-crawl state that must be shared
out of spider attributes: with ``parsers > 1`` each parser process has its own instance.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from crawlkit.errors import SpiderError
from crawlkit.http import Request, Response
from crawlkit.urls import default_port, port_of

if TYPE_CHECKING:
    from crawlkit.linkextractors import LinkExtractor
    from crawlkit.render.screenshots import ScreenshotFiles
    from crawlkit.settings import Settings


def seed_sites(urls: Iterable[str]) -> list[str]:
    """``allowed_domains`` entries that keep a crawl on the sites of ``urls``: ``host:port`` each.

    Another port is another site (another server, often another owner), so a link from
    127.0.0.2:8001 to 127.0.0.2:8002 is offsite. A URL on its scheme's default port gives
    both 80 and 443, so a site that moves from http to https stays on site.
    """
    sites: set[str] = set()
    for url in urls:
        parts = urlsplit(url)
        if not parts.hostname:
            continue
        port = port_of(parts)
        if port is None:
            continue
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        sites.update(f"{host}:{p}" for p in ((80, 443) if port == default_port(parts.scheme) else (port,)))
    return sorted(sites)


class Spider:
    """Subclass this: set ``name`` and ``start_urls``, write ``parse(response)``.

    Callbacks return or yield items (dicts, dataclasses, attrs classes, ``crawlkit.Item``) and
    ``Request`` objects; a request's ``cb_kwargs`` become keyword arguments of its callback,
    and its ``errback`` gets a ``crawlkit.Failure`` when the fetch fails. Both are methods of
    the spider. ``allowed_domains`` limits which hosts are followed (subdomains included;
    ``host:port`` for that port only, a bare host matches every port); redirects obey it too.
    ``custom_settings`` overrides a config file but not the command line. Keyword arguments
    (``-a NAME=VALUE``) become attributes. A ``closed(reason)`` method, if defined, is called
    once, on the engine's instance, after the crawl (``reason`` as in the stats: "finished",
    "interrupted"...).
    """

    name: str = "spider"
    start_urls: list[str] = []
    allowed_domains: list[str] = []
    custom_settings: dict[str, Any] = {}
    #: Call callbacks for non-2xx final responses too (by default they are only counted).
    handle_error_statuses: bool = False
    #: The crawl's settings: set after ``__init__`` in every process, before ``start()`` and the first callback.
    settings: Settings

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)

    @property
    def logger(self) -> logging.Logger:
        """A logger named after the spider: its lines go where crawlkit's go, from every process."""
        return logging.getLogger(self.name)

    async def start(self) -> AsyncIterator[Any]:
        """The first requests of the crawl, as an async generator (Scrapy 2.13's ``start``); by
        default those of ``start_requests()``. Driven by the engine a request at a time, as the
        frontier has room (``crawlkit.core.start``): it may ``await`` between them."""
        for request in self.start_requests():
            yield request

    def start_requests(self) -> Iterable[Request]:
        """The first requests of the crawl; by default one per ``start_urls`` entry, parsed by ``parse``."""
        for url in self.start_urls:
            yield Request(url)

    def parse(self, response: Response) -> Any:
        """The default callback."""
        raise NotImplementedError(f"{type(self).__name__}.parse() is not defined")


def has_parse(spider_cls: type[Spider]) -> bool:
    """Whether the class defines ``parse``, the callback of requests that name none."""
    return spider_cls.parse is not Spider.parse


def check_spider(spider: Spider) -> None:
    """SpiderError before the crawl when the spider's start requests could only fail: ``start`` is
    not an async generator, or they come from ``start_urls`` (neither ``start()`` nor
    ``start_requests()`` is overridden), so they name no callback, and the spider has no ``parse``."""
    cls = type(spider)
    if not inspect.isasyncgenfunction(cls.start):
        raise SpiderError(f"spider {cls.__name__}: start() must be an async generator: "
                          "async def start(self): ... yield Request(...)")
    if cls.start is Spider.start and cls.start_requests is Spider.start_requests and not has_parse(cls):
        raise SpiderError(f"spider {cls.__name__} has start_urls but no parse() method to call on their pages; "
                          "define parse(self, response), or start_requests() yielding Requests with a callback")


class CallbackCheck:
    """Whether a request's callback and errback are methods of the spider, checked where the request is
    made (the parser, for a callback's requests; the engine, for start requests).

    A name is looked up once and remembered, so the check costs two set look-ups a request.
    """

    def __init__(self, spider: Spider) -> None:
        self.spider = spider
        self.known: set[str | None] = {None} if has_parse(type(spider)) else set()

    def problem(self, request: Request) -> str | None:
        """Why ``request`` cannot be handled by the spider (one line, with its URL), or None."""
        known = self.known
        if request.callback in known and (request.errback is None or request.errback in known):
            return None
        name = type(self.spider).__name__
        for role, method in (("callback", request.callback), ("errback", request.errback)):
            if method is None:
                if role == "callback" and None not in known:
                    return f"request for {request.url} names no callback and spider {name} has no parse() method"
            elif method not in known:
                if not callable(getattr(self.spider, method, None)):
                    return f"request for {request.url}: its {role} {method!r} is not a method of spider {name}"
                known.add(method)
        return None


def close_spider(spider: Spider, reason: str) -> None:
    """Call the spider's ``closed(reason)``, if it has one; what it raises is logged, not raised."""
    closed = getattr(spider, "closed", None)
    if not callable(closed):
        return
    try:
        closed(reason)
    except Exception as exc:
        logging.getLogger("crawlkit.spider").error("spider %s: closed() raised %s: %s", spider.name,
                                                   type(exc).__name__, exc)


class LinkSpider(Spider):
    """The built-in spider: follows every link within the seeds' sites, one item per page.

    Each item: url, status, title, depth, referer, content_type, size (bytes), canonical (the URL
    the page names as its canonical one, or None: ``parse/directives.py``), links (absolute
    outgoing links, the first ``max_links_per_page`` of them, none over ``max_url_length``), and with
    ``render_screenshots`` set, screenshot (the name of the file holding the rendered page's PNG, or
    None: ``render/screenshots.py``).
    Offsite links are listed in ``links`` but not followed; so are those the ``follow`` setting's
    link rules leave out, when it sets some.
    """

    name = "crawlkit"
    handle_error_statuses = True  # an archive wants the 404s listed too
    # Set by the parser from max_links_per_page and max_url_length (0 = no limit): ``links``
    # then lists no link the crawl drops as too long, and no more links than a page may yield.
    max_links = 0
    max_url_length = 0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.allowed_domains:
            self.allowed_domains = seed_sites(self.start_urls)

    def parse(self, response: Response) -> Iterable[Any]:
        links = response.links()
        listed = [url for url in links if len(url) <= self.max_url_length] if self.max_url_length else links
        title = None
        if response.is_html:
            found = response.xpath("//title/text()").get()
            title = " ".join(found.split()) if found is not None else None
        item = {
            "url": response.url,
            "status": response.status,
            "title": title,
            "depth": response.depth,
            "referer": response.request.referer,
            "content_type": response.content_type,
            "size": len(response.body),
            "canonical": response.meta.get("canonical"),
            "links": listed[:self.max_links] if self.max_links else listed,
        }
        if self.screenshots is not None:
            shot = response.meta.get("screenshot")
            item["screenshot"] = self.screenshots.save(response.url, shot) if shot else None
        yield item
        rules = self.follow_rules
        for url in links if rules is None else rules.urls(response):
            yield Request(url)

    @functools.cached_property
    def screenshots(self) -> ScreenshotFiles | None:
        """Where rendered pages' screenshots go (``render_screenshots``); None when the setting is off."""
        if not self.settings.render_screenshots:
            return None
        from crawlkit.render.screenshots import ScreenshotFiles

        return ScreenshotFiles(self.settings.render_screenshots)

    @functools.cached_property
    def follow_rules(self) -> LinkExtractor | None:
        """The ``follow`` setting's link rules, made on the first page; None without rules (every ``<a href>``)."""
        if not self.settings.follow:  # the default: the module need not be imported
            return None
        from crawlkit.linkextractors import follow_rules

        return follow_rules(self.settings.follow)
