"""Link: one link of a page, as a link extractor gives it (Scrapy's ``scrapy.link.Link``).

Its own module, as in Scrapy, because two sides take it: ``crawlkit.linkextractors`` makes
Links, and ``Response.follow`` follows one, without either importing the other.
"""

from __future__ import annotations


class Link:
    """A link found on a page: its absolute ``url`` (fragment included, as in Scrapy), the ``text``
    of its element, and ``nofollow``, true when the element's ``rel`` lists ``nofollow``.

    ``fragment`` is Scrapy's field, kept for code that reads it; extraction leaves it empty,
    since the fragment stays in ``url``. Links are equal when all four fields are.
    """

    __slots__ = ("url", "text", "fragment", "nofollow")

    def __init__(self, url: str, text: str = "", fragment: str = "", nofollow: bool = False) -> None:
        if not isinstance(url, str):
            raise TypeError(f"Link url must be a str, got {type(url).__name__}")
        self.url = url
        self.text = text
        self.fragment = fragment
        self.nofollow = nofollow

    def _key(self) -> tuple[str, str, str, bool]:
        return self.url, self.text, self.fragment, self.nofollow

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Link) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Link(url={self.url!r}, text={self.text!r}, fragment={self.fragment!r}, nofollow={self.nofollow!r})"
