"""Sitemaps as a source of URLs (``use_sitemaps: true``).

Where they come from: the engine adds ``/sitemap.xml`` of every seed host to the start
requests, and the parser adds the ``Sitemap:`` lines of every robots.txt it reads. Both are
ordinary requests with the callback ``SITEMAP_CALLBACK``: deduplicated, robots-checked and
rate-limited like any other, never counted as pages. A fetched sitemap is read here, in the
parser process: a ``<sitemapindex>`` yields more sitemap requests, a ``<urlset>`` (or a plain
text sitemap, one URL a line) yields page requests for the spider's ``parse``, which then go
through the same filters, dedup, robots rules and limits as links. Pages listed in a sitemap
count as start URLs (depth 0).

Each entry of a sitemap is read as a dict, as Scrapy's ``Sitemap`` gives it: ``loc``, and when
present ``lastmod``, ``changefreq``, ``priority`` and ``alternate`` (the ``xhtml:link
rel="alternate"`` URLs of other languages). ``changed_since`` keeps the entries changed since a
date (the ``sitemap_since`` setting, and a recrawl's "since the last crawl"): an entry without
``lastmod`` is kept, since nothing says it did not change. ``crawlkit.sitemap_spider`` is the
spider that maps entries to callbacks.

With a job directory, a page request made from an entry with a ``lastmod`` carries it
(``dated_request``: ``meta["sitemap_lastmod"]``, epoch seconds). A recrawl leaves such pages to
their sitemap: it revisits the sitemap, and a page only when the sitemap says it changed after
its last fetch, even if its refetch interval has not come (``crawlkit.backends.local.jobdir``).

The XML comes from strangers: entities are not expanded, no DTD or network access, and the
body (gzip-compressed files included) is capped at ``max_body`` bytes after decompression.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

from lxml import etree

from crawlkit.errors import SitemapError
from crawlkit.http import Callback, Request
from crawlkit.urls import host_of

SITEMAP_CALLBACK = "__sitemap__"
SPIDER_SITEMAP_CALLBACK = "_parse_sitemap"  # SitemapSpider's, a callback of the spider (crawlkit.sitemap_spider)
SITEMAP_CALLBACKS = (SITEMAP_CALLBACK, SPIDER_SITEMAP_CALLBACK)  # a request for a sitemap, of either
GZIP_MAGIC = b"\x1f\x8b"


def seed_sitemaps(urls: Iterable[str]) -> list[Request]:
    """One ``/sitemap.xml`` request for each host among ``urls``, in first-seen order."""
    hosts: dict[str, str] = {}
    for url in urls:
        hosts.setdefault(host_of(url), url.split(":", 1)[0].lower())
    return [sitemap_request(f"{scheme}://{host}/sitemap.xml") for host, scheme in hosts.items()]


def sitemap_request(url: str) -> Request:
    return Request(url, callback=SITEMAP_CALLBACK)


def read_sitemap(body: bytes, max_body: int, since: datetime | None = None) -> tuple[list[str], list[str]]:
    """(sitemap URLs, page URLs) listed in ``body``, those changed before ``since`` left out;
    raises SitemapError when it is no sitemap."""
    kind, parsed = _parse(body, max_body)
    if kind == "text":
        locs = parsed
    elif since is None:  # the URLs alone, in one XPath: twice as fast as reading whole entries
        locs = [text.strip() for text in parsed.xpath(f"{_ENTRIES}/*[local-name()='loc']/text()")]
        locs = [loc for loc in locs if loc]
    else:
        locs = [entry["loc"] for entry in changed_since(_entries(parsed), since)]
    return (locs, []) if kind == "sitemapindex" else ([], locs)


def read_entries(body: bytes, max_body: int) -> tuple[str, list[dict[str, Any]]]:
    """The kind of sitemap in ``body`` ("sitemapindex", "urlset" or "text") and its entries, each a dict
    with ``loc`` and whatever else the entry gives (see the module docstring); SitemapError when it is no sitemap."""
    kind, parsed = _parse(body, max_body)
    if kind == "text":
        return kind, [{"loc": url} for url in parsed]
    return kind, _entries(parsed)


_ENTRIES = "./*[local-name()='sitemap' or local-name()='url']"


def _parse(body: bytes, max_body: int) -> tuple[str, Any]:
    """("text", its URLs) for a plain text sitemap, else ("sitemapindex" or "urlset", the XML root element)."""
    if body.startswith(GZIP_MAGIC):
        body = _gunzip(body, max_body)
    start = body.lstrip()[:1]
    if start != b"<" and not body.startswith(b"\xef\xbb\xbf<"):
        return "text", _text_urls(body)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, recover=True,
                             remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise SitemapError(f"not XML: {exc}") from None
    if root is None:
        raise SitemapError("not XML")
    kind = etree.QName(root).localname.lower()
    if kind not in ("sitemapindex", "urlset"):
        raise SitemapError(f"the root element is <{etree.QName(root).localname}>, not <urlset> or <sitemapindex>")
    return kind, root


def _entries(root: Any) -> list[dict[str, Any]]:
    """The entries under a sitemap's root element, each a dict of its children's text by local name."""
    entries = []
    for element in root.xpath(_ENTRIES):
        entry: dict[str, Any] = {}
        for child in element:
            tag = child.tag
            if not isinstance(tag, str):
                continue
            name = tag.rpartition("}")[2]
            if name == "link":
                href = child.get("href")
                if child.get("rel") == "alternate" and href:
                    entry.setdefault("alternate", []).append(href.strip())
            elif name not in entry:
                entry[name] = (child.text or "").strip()
        if entry.get("loc"):
            entries.append(entry)
    return entries


def dated_request(entry: dict[str, Any], callback: Callback = None) -> Request:
    """The request for a sitemap entry's page, with its ``lastmod`` (epoch seconds) as ``meta["sitemap_lastmod"]``
    when it has a readable one: in a recrawl, what decides whether the page is fetched again (``JobDir.relist``)."""
    changed = parse_lastmod(entry.get("lastmod"))
    meta = {"sitemap_lastmod": changed.timestamp()} if changed is not None else None
    return Request(entry["loc"], callback=callback, meta=meta)


def changed_since(entries: Iterable[dict[str, Any]], since: datetime) -> Iterator[dict[str, Any]]:
    """The entries whose ``lastmod`` is ``since`` or later, and those without a readable one.

    ``since`` without a time zone is taken as UTC, as a ``lastmod`` without one is.
    """
    since = _utc(since)
    for entry in entries:
        changed = parse_lastmod(entry.get("lastmod"))
        if changed is None or changed >= since:
            yield entry


_W3C = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def parse_lastmod(text: str | None) -> datetime | None:
    """A sitemap's W3C datetime (``2026``, ``2026-01``, ``2026-01-31``, ``2026-01-31T08:00:00+01:00``) in UTC;
    None when absent or unreadable."""
    if not text:
        return None
    text = text.strip()
    short = _W3C.match(text)
    try:
        if short:
            year, month, day = short.groups()
            return datetime(int(year), int(month or 1), int(day or 1), tzinfo=timezone.utc)
        return _utc(datetime.fromisoformat(text))
    except (ValueError, OverflowError):  # OverflowError: a time zone moves it outside years 1 to 9999
        return None


def check_since(value: Any) -> str | None:
    """The ``sitemap_since`` setting: null, or a W3C datetime (returned as written); ValueError otherwise."""
    if type(value) is int:  # YAML reads a bare year as a number
        value = str(value)
    if value is not None and (not isinstance(value, str) or parse_lastmod(value) is None):
        raise ValueError(f"'sitemap_since' must be a date or time as sitemaps write them (2026-01-31 or "
                         f"2026-01-31T08:00:00Z) or null, got {value!r}")
    return value


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress a gzip file, refusing to produce more than ``limit`` bytes (gzip bombs)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise SitemapError(f"bad gzip data: {exc}") from None
    if len(out) > limit:
        raise SitemapError(f"over max_body ({limit} bytes) once decompressed")
    return out


def _text_urls(body: bytes) -> list[str]:
    lines = (line.strip() for line in body.decode("utf-8", "replace").splitlines())
    return [line for line in lines if line.startswith(("http://", "https://"))]
