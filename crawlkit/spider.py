"""The Spider base class users subclass, and the built-in spider used when none is given.

A spider object exists once in the engine (for ``start_requests`` and settings) and once in each
parser process (for callbacks). Keep per-crawl state that must be shared out of spider
attributes: with ``parsers > 1`` each parser process has its own instance.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from crawlkit.http import Request, Response
from crawlkit.urls import default_port, port_of

if TYPE_CHECKING:
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

    Callbacks return or yield dicts (items) and ``Request`` objects. ``allowed_domains`` limits
    which hosts are followed (subdomains included; ``host:port`` for that port only, a bare
    host matches every port); redirects obey it too. ``custom_settings`` overrides a config
    file but not the command line.
    """

    name: str = "spider"
    start_urls: list[str] = []
    allowed_domains: list[str] = []
    custom_settings: dict[str, Any] = {}
    #: Call callbacks for non-2xx final responses too (by default they are only counted).
    handle_error_statuses: bool = False
    #: The crawl's settings: set on the engine's spider before ``start_requests``, not in parser processes.
    settings: Settings

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)

    def start_requests(self) -> Iterable[Request]:
        """The first requests of the crawl; by default one per ``start_urls`` entry, parsed by ``parse``."""
        for url in self.start_urls:
            yield Request(url)

    def parse(self, response: Response) -> Any:
        """The default callback."""
        raise NotImplementedError(f"{type(self).__name__}.parse() is not defined")


class LinkSpider(Spider):
    """The built-in spider: follows every link within the seeds' sites, one item per page.

    Each item: url, status, title, depth, referer, content_type, size (bytes), links (absolute
    outgoing links, the first ``max_links_per_page`` of them, none over ``max_url_length``).
    Offsite links are listed in ``links`` but not followed.
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
        yield {
            "url": response.url,
            "status": response.status,
            "title": title,
            "depth": response.depth,
            "referer": response.request.referer,
            "content_type": response.content_type,
            "size": len(response.body),
            "links": listed[:self.max_links] if self.max_links else listed,
        }
        for url in links:
            yield Request(url)
