"""The content-type filter: which responses a fetcher downloads, judged by their Content-Type before the body.

A crawl for HTML need not download a site's PDFs, videos and archives only to throw them away:
with ``content_types`` set, ``fetcher.fetch`` reads a 2xx response's headers, and when its media
type matches none of the setting's patterns it closes the connection instead of reading (or
draining) the body. The request ends as ``FetchErrorKind.CONTENT_TYPE``: counted as
``dropped_content_type``, logged at DEBUG, never retried, not an error and not sent to the
spider's errback (like a link another filter dropped).

What is never dropped: other statuses (a redirect is followed whatever its type, a 503 is
retried, an error page goes where error pages go), robots.txt and sitemaps (their answers
matter whatever type a server gives them), and a response without a Content-Type header.
RFC 9110 lets a client sniff such a body or take it as ``application/octet-stream``; sniffing
needs the body, and old servers that omit the header mostly serve HTML, so it is downloaded
(``max_body`` still bounds it).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Any

# type/subtype as RFC 9110's tokens allow, with the glob characters * ? [ ] too.
_MEDIA_GLOB = re.compile(r"[!#$%&'*+.^_`|~0-9a-z?\[\]-]+/[!#$%&'*+.^_`|~0-9a-z?\[\]-]+")


class ContentTypes:
    """The ``content_types`` setting as a test of a Content-Type header; false when empty (everything wanted).

    ``wanted`` remembers each media type it has judged: a crawl meets a handful.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        globs = [fnmatch.translate(pattern.lower()) for pattern in self.patterns]
        self._match = re.compile("|".join(globs)).fullmatch if globs else None
        self._judged: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return self._match is not None

    def __reduce__(self) -> tuple[type[ContentTypes], tuple[tuple[str, ...]]]:
        return (ContentTypes, (self.patterns,))

    def wanted(self, header: str | None) -> bool:
        """Whether a response with this Content-Type header is downloaded (``None``: no such header)."""
        if self._match is None or header is None:
            return True
        media = header.partition(";")[0].strip().lower()
        judged = self._judged.get(media)
        if judged is None:
            if len(self._judged) >= 1_000:  # types a hostile server makes up, one per response
                self._judged.clear()
            judged = self._judged[media] = self._match(media) is not None
        return judged


def check_content_types(value: Any) -> list[str]:
    """The ``content_types`` setting checked (see ``settings._SHAPES``): a list of type/subtype patterns.

    ValueError with a one-line message naming the entry and what a valid one looks like.
    """
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"'content_types' must be a list of media types such as [text/html, text/*], got {value!r}")
    checked = []
    for entry in value:
        if not isinstance(entry, str) or not _MEDIA_GLOB.fullmatch(entry.strip().lower()):
            raise ValueError(f"'content_types': {entry!r} is not a media type; write type/subtype, as text/html, "
                             "or a glob such as text/* (no parameters such as charset)")
        checked.append(entry.strip().lower())
    return checked
