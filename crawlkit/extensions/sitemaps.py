"""Sitemaps as a source of URLs (``use_sitemaps: true``).

Where they come from: the engine adds ``/sitemap.xml`` of every seed host to the start
requests, and the parser adds the ``Sitemap:`` lines of every robots.txt it reads. Both are
ordinary requests with the callback ``SITEMAP_CALLBACK``: deduplicated, robots-checked and
rate-limited like any other, never counted as pages. A fetched sitemap is read here, in the
parser process: a ``<sitemapindex>`` yields more sitemap requests, a ``<urlset>`` (or a plain
text sitemap, one URL a line) yields page requests for the spider's ``parse``, which then go
through the same filters, dedup, robots rules and limits as links. Pages listed in a sitemap
count as start URLs (depth 0).

The XML comes from strangers: entities are not expanded, no DTD or network access, and the
body (gzip-compressed files included) is capped at ``max_body`` bytes after decompression.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from lxml import etree

from crawlkit.errors import SitemapError
from crawlkit.http import Request
from crawlkit.urls import host_of

SITEMAP_CALLBACK = "__sitemap__"
GZIP_MAGIC = b"\x1f\x8b"


def seed_sitemaps(urls: Iterable[str]) -> list[Request]:
    """One ``/sitemap.xml`` request for each host among ``urls``, in first-seen order."""
    hosts: dict[str, str] = {}
    for url in urls:
        hosts.setdefault(host_of(url), url.split(":", 1)[0].lower())
    return [sitemap_request(f"{scheme}://{host}/sitemap.xml") for host, scheme in hosts.items()]


def sitemap_request(url: str) -> Request:
    return Request(url, callback=SITEMAP_CALLBACK)


def read_sitemap(body: bytes, max_body: int) -> tuple[list[str], list[str]]:
    """(sitemap URLs, page URLs) listed in ``body``; raises SitemapError when it is no sitemap."""
    if body.startswith(GZIP_MAGIC):
        body = _gunzip(body, max_body)
    start = body.lstrip()[:1]
    if start != b"<" and not body.startswith(b"\xef\xbb\xbf<"):
        return [], _text_urls(body)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, recover=True,
                             remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise SitemapError(f"not XML: {exc}") from None
    if root is None:
        raise SitemapError("not XML")
    kind = etree.QName(root).localname.lower()
    entries = root.xpath("./*[local-name()='sitemap' or local-name()='url']/*[local-name()='loc']/text()")
    locs = [text.strip() for text in entries]
    locs = [loc for loc in locs if loc]
    if kind == "sitemapindex":
        return locs, []
    if kind == "urlset":
        return [], locs
    raise SitemapError(f"the root element is <{etree.QName(root).localname}>, not <urlset> or <sitemapindex>")


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
