"""Link extraction rules: which links of a page to follow, as Scrapy's ``LinkExtractor``.

A ``LinkExtractor`` picks the URLs out of chosen tags and attributes (``<a href>`` and ``<area
href>`` by default; ``tags=["link"]`` and ``attrs=["href"]`` for ``<link rel=next>``), within
chosen regions of the page (``restrict_css``, ``restrict_xpaths``), and keeps those its rules
allow: regular expressions on the URL (``allow``, ``deny``), domains (``allow_domains``,
``deny_domains``), extensions (``deny_extensions``, Scrapy's ``IGNORED_EXTENSIONS`` unless given)
and the link's text (``restrict_text``). The names and their meaning are Scrapy's, so a Scrapy
rule works unchanged; where crawlkit differs (only http(s) links, domains matched as crawlkit's
``allowed_domains`` are, ``unique`` by the URL as written) the README's "Coming from Scrapy" says so.

It runs in the parser process for every page a ``CrawlSpider`` rule (or the built-in spider's
``follow`` setting) looks at, so it is built for that: regular expressions, XPath and CSS are
compiled once, when the extractor is made (a mistake in one fails there, not on the first page);
it walks the one lxml tree the page already has (``Response.tree``), joins links with the
page's cached ``urljoin``, and asks only the questions its rules ask (no domain parsing without
domain rules, no link text without ``restrict_text`` or ``Link``).

The built-in spider reads the same rules from the ``follow`` setting (a mapping of the
arguments above that are plain data), checked by ``check_follow`` and made into an extractor
by ``follow_rules``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import lxml.etree
from w3lib.url import canonicalize_url, safe_url_string

from crawlkit.link import Link
from crawlkit.parse.links import AllowedDomains

if TYPE_CHECKING:
    from lxml.html import HtmlElement

    from crawlkit.http import Response

#: Extensions of links not followed unless ``deny_extensions`` says otherwise: Scrapy's list
#: (archives, images, audio, video, office documents, and others a crawl rarely wants to parse).
IGNORED_EXTENSIONS = [
    # archives
    "7z", "7zip", "bz2", "rar", "tar", "tar.gz", "xz", "zip",
    # images
    "mng", "pct", "bmp", "gif", "jpg", "jpeg", "png", "pst", "psp", "tif", "tiff", "ai", "drw", "dxf", "eps", "ps",
    "svg", "cdr", "ico", "webp",
    # audio
    "mp3", "wma", "ogg", "wav", "ra", "aac", "mid", "au", "aiff",
    # video
    "3gp", "asf", "asx", "avi", "mov", "mp4", "mpg", "qt", "rm", "swf", "wmv", "m4a", "m4v", "flv", "webm",
    # office suites
    "xls", "xlsm", "xlsx", "xltm", "xltx", "potm", "potx", "ppt", "pptm", "pptx", "pps", "doc", "docb", "docm",
    "docx", "dotm", "dotx", "odt", "ods", "odg", "odp",
    # other
    "css", "pdf", "exe", "bin", "rss", "dmg", "iso", "apk", "jar", "sh", "rb", "js", "hta", "bat", "cpl", "msi",
    "msp", "py",
]

Regexes = str | re.Pattern[str] | Iterable[str | re.Pattern[str]]
_HTML5_SPACE = " \t\n\r\x0c"  # what browsers strip around a URL attribute (w3lib's strip_html5_whitespace)
# A URL that needs percent-encoding before it is sent (safe_url_string's work): a character
# outside printable ASCII, one of those RFC 3986 never allows, or a "%" that starts no escape.
# Most links have none, and skip the call.
_UNSAFE = re.compile(r"[^\x21-\x7e]|[\"<>\\^`{|}]|%(?![0-9A-Fa-f]{2})")
_TEXT = lxml.etree.XPath("string()", smart_strings=False)
_NAME = re.compile(r"[A-Za-z_][\w.:-]*")  # a tag or attribute name, as an XPath name test takes it
_NETLOC = re.compile(r"[^/?#]*")
_HOSTS_KEPT = 10_000  # hosts whose domain-rule answer an extractor remembers (then it starts afresh)
_T = TypeVar("_T")
_ELEMENT = lxml.etree._Element


class LinkExtractor:
    """The links of a page that rules allow, as Scrapy's ``LinkExtractor`` (its arguments, its meaning).

    - ``allow``, ``deny``: regular expressions (strings or compiled) searched in the absolute
      URL; a link must match one of ``allow`` (if any) and none of ``deny``.
    - ``allow_domains``, ``deny_domains``: a link's host must be (or be a subdomain of) one of
      ``allow_domains`` (if any) and none of ``deny_domains``; ``host:port`` entries name that
      port only, as in ``allowed_domains``.
    - ``deny_extensions``: extensions (``pdf``, ``tar.gz``) whose links are left out, matched
      at the end of the path, any case; None (the default) is ``IGNORED_EXTENSIONS``, ``[]`` none.
    - ``restrict_xpaths``, ``restrict_css``: only links inside the elements these select.
    - ``restrict_text``: regular expressions one of which the link's text must match.
    - ``tags``, ``attrs``: the elements and attributes links are read from (``a``, ``area``; ``href``).
    - ``canonicalize``: give each URL in w3lib's canonical form (sorted query, no fragment).
    - ``unique``: each URL once (the first of its links, in page order).
    - ``process_value``: a function of each absolute URL, returning the URL to use or None to
      leave the link out (to dig a URL out of ``javascript:`` links, say).
    - ``strip``: taken for Scrapy's signature; white space around a URL goes whatever it says,
      as the URL standard wants (Python's ``urljoin`` and w3lib strip it, in Scrapy too).

    A bad regular expression, XPath or CSS selector raises ``ValueError`` here, naming it.
    """

    def __init__(
        self,
        allow: Regexes = (),
        deny: Regexes = (),
        allow_domains: str | Iterable[str] = (),
        deny_domains: str | Iterable[str] = (),
        restrict_xpaths: str | Iterable[str] = (),
        tags: str | Iterable[str] = ("a", "area"),
        attrs: str | Iterable[str] = ("href",),
        canonicalize: bool = False,
        unique: bool = True,
        process_value: Callable[[str], str | None] | None = None,
        deny_extensions: str | Iterable[str] | None = None,
        restrict_css: str | Iterable[str] = (),
        strip: bool = True,
        restrict_text: Regexes | None = None,
    ) -> None:
        self.allow_res = _regexes("allow", allow)
        self.deny_res = _regexes("deny", deny)
        self.allow_domains = AllowedDomains(_strings(allow_domains))
        self.deny_domains = AllowedDomains(_strings(deny_domains))
        self.restrict = [_xpath("restrict_xpaths", path) for path in _strings(restrict_xpaths)]
        self.restrict += [_css("restrict_css", css) for css in _strings(restrict_css)]
        self.restrict_text = _regexes("restrict_text", restrict_text or ())
        self.tags = tuple(_strings(tags))
        self.attrs = tuple(_strings(attrs))
        self.canonicalize = canonicalize
        self.unique = unique
        self.process_value = process_value
        extensions = IGNORED_EXTENSIONS if deny_extensions is None else _strings(deny_extensions)
        self.deny_extensions = tuple("." + e.lower().lstrip(".") for e in extensions)
        # One regex for all the extensions, at the end of the path (after the host, before ? or #).
        self._extensions = re.compile(
            r"[^:]+://[^/?#]*/[^?#]*(?:" + "|".join(re.escape(e) for e in self.deny_extensions) + r")(?:[?#]|$)",
            re.IGNORECASE) if self.deny_extensions else None
        if not (self.tags and self.attrs):
            raise ValueError("tags, attrs: each must name at least one (the defaults are a, area and href)")
        for name in (*self.tags, *self.attrs):
            if not _NAME.fullmatch(name):
                raise ValueError(f"tags, attrs: {name!r} is not a tag or attribute name")
        self._attributes = lxml.etree.XPath(" | ".join(
            f"descendant-or-self::{tag}/@{attr}" for tag in self.tags for attr in self.attrs), smart_strings=False)
        self._hosts: dict[str, bool] = {}  # netloc -> allowed by the domain rules

    def extract_links(self, response: Response) -> list[Link]:
        """The page's links these rules allow, in page order; none for a page that is not HTML."""
        if not response.is_html:
            return []
        texts = self.restrict_text
        links = []
        for url, element in self._allowed(response, self._elements(response.tree)):
            text = _TEXT(element)
            if texts and not any(regex.search(text) for regex in texts):
                continue
            links.append(Link(url, text, nofollow=_has_nofollow(element.get("rel"))))
        return links

    def urls(self, response: Response) -> list[str]:
        """The URLs ``extract_links`` gives, without fragments or repeats: what the built-in spider follows.

        Without ``restrict_text`` it reads the attribute values alone, by one XPath: no element
        objects, no link text, about a third of the time.
        """
        if self.restrict_text:
            found = [link.url for link in self.extract_links(response)]
        elif response.is_html:
            found = [url for url, _ in self._allowed(response, self._values(response.tree))]
        else:
            return []
        return list(dict.fromkeys(url.partition("#")[0] for url in found))

    def matches(self, url: str) -> bool:
        """Whether ``url`` passes the URL and domain rules (``allow``, ``deny``, the domains), as Scrapy's."""
        return bool(url.startswith(("http://", "https://")) and self._url_allowed(url))

    def _allowed(self, response: Response, values: Iterable[tuple[_T, str]]) -> Iterator[tuple[str, _T]]:
        """(absolute URL, what came with it) of each of ``values`` the rules on URLs allow, once each if ``unique``."""
        seen: set[str] = set()
        canonicals: set[str] = set()  # with canonicalize, two URLs as written can be one canonical URL
        unique, process, canonical, extensions = self.unique, self.process_value, self.canonicalize, self._extensions
        url_rules = bool(self.allow_res or self.deny_res or self.allow_domains or self.deny_domains)
        urljoin = response.urljoin
        for element, value in values:
            try:
                url = urljoin(value.strip(_HTML5_SPACE))
                if process is not None:
                    processed = process(url)
                    if processed is None:
                        continue
                    url = urljoin(processed)  # a processed value may be relative again
                if _UNSAFE.search(url):
                    url = safe_url_string(url, encoding=response.encoding)
            except ValueError:  # a malformed link (``http://[::1``) must not cost the page its others
                continue
            if unique:
                if url in seen:
                    continue
                seen.add(url)
            if (not url.startswith(("http://", "https://")) or (url_rules and not self._url_allowed(url))
                    or (extensions is not None and extensions.match(url))):
                continue
            if canonical:
                url = canonicalize_url(url)
                if unique:
                    if url in canonicals:
                        continue
                    canonicals.add(url)
            yield url, element

    def _regions(self, tree: HtmlElement) -> list[lxml.etree._Element]:
        if not self.restrict:
            return [tree]
        # Elements only: an XPath may select text or attributes, which hold no links.
        return [found for path in self.restrict for found in path(tree) if isinstance(found, _ELEMENT)]

    def _elements(self, tree: HtmlElement) -> Iterator[tuple[lxml.etree._Element, str]]:
        """(element, attribute value) of the chosen tags and attributes, in page order, within the regions."""
        tags, attrs = self.tags, self.attrs
        one = attrs[0] if len(attrs) == 1 else None
        for region in self._regions(tree):
            for element in region.iter(*tags):  # lxml picks the tags, and includes the region itself
                if one is not None:
                    value = element.get(one)
                    if value is not None:
                        yield element, value
                else:
                    for name, value in element.items():
                        if name in attrs:
                            yield element, value

    def _values(self, tree: HtmlElement) -> Iterator[tuple[None, str]]:
        """``_elements``'s values alone, as one XPath gives them (in page order; no element objects made)."""
        for region in self._regions(tree):
            for value in self._attributes(region):
                yield None, value

    def _url_allowed(self, url: str) -> bool:
        """The regular expressions and the domains (an http(s) URL); a host's answer is remembered."""
        if self.allow_res and not any(regex.search(url) for regex in self.allow_res):
            return False
        if self.deny_res and any(regex.search(url) for regex in self.deny_res):
            return False
        if not (self.allow_domains or self.deny_domains):
            return True
        start = url.find("//") + 2
        netloc = _NETLOC.match(url, start).group()  # type: ignore[union-attr]  # [^/?#]* matches anywhere
        allowed = self._hosts.get(netloc)
        if allowed is None:
            allowed = ((not self.allow_domains or self.allow_domains.allows(url))
                       and not (self.deny_domains and self.deny_domains.allows(url)))
            if len(self._hosts) >= _HOSTS_KEPT:
                self._hosts.clear()
            self._hosts[netloc] = allowed
        return allowed


def _has_nofollow(rel: str | None) -> bool:
    return rel is not None and "nofollow" in rel.lower().replace(",", " ").split()


def _strings(value: str | Iterable[str]) -> list[str]:
    """One string or several, as a list (Scrapy's ``arg_to_iter``)."""
    return [value] if isinstance(value, str) else list(value)


def _regexes(name: str, value: Regexes) -> list[re.Pattern[str]]:
    items = [value] if isinstance(value, (str, re.Pattern)) else list(value)
    compiled = []
    for item in items:
        try:
            compiled.append(item if isinstance(item, re.Pattern) else re.compile(item))
        except re.error as exc:
            raise ValueError(f"{name}: {item!r} is not a regular expression ({exc})") from None
    return compiled


def _xpath(name: str, path: str) -> lxml.etree.XPath:
    try:
        return lxml.etree.XPath(path, smart_strings=False)
    except lxml.etree.XPathError as exc:
        raise ValueError(f"{name}: {path!r} is not an XPath expression ({exc})") from None


def _css(name: str, css: str) -> lxml.etree.XPath:
    from cssselect import SelectorError
    from parsel.csstranslator import HTMLTranslator

    try:
        path = HTMLTranslator().css_to_xpath(css)
    except SelectorError as exc:
        raise ValueError(f"{name}: {css!r} is not a CSS selector ({exc})") from None
    return _xpath(name, path)


#: The keys of the ``follow`` setting: the ``LinkExtractor`` arguments that are plain data.
FOLLOW_KEYS = ("allow", "deny", "allow_domains", "deny_domains", "restrict_css", "restrict_xpaths", "restrict_text",
               "tags", "attrs", "deny_extensions")
#: The ``follow`` setting's word for Scrapy's list in ``deny_extensions``.
SCRAPY_LIST = "IGNORED_EXTENSIONS"


def check_follow(value: Any) -> dict[str, Any]:
    """The ``follow`` setting checked (see ``settings._SHAPES``): each key's value as a list of strings
    (one string is a list of one; ``deny_extensions`` may be ``IGNORED_EXTENSIONS``), plain data still.

    Each regular expression, XPath and CSS selector is compiled here, so a mistake is a one-line
    ValueError naming the key and the value, before the crawl starts.
    """
    if not isinstance(value, Mapping):
        raise ValueError(f"'follow' must be a mapping of link rules ({', '.join(FOLLOW_KEYS)}), got {value!r}")
    checked: dict[str, Any] = {}
    for key, item in value.items():
        if key not in FOLLOW_KEYS:
            close = difflib.get_close_matches(str(key), FOLLOW_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"'follow': unknown key {key!r}; {hint}the link rules are {', '.join(FOLLOW_KEYS)}")
        if key == "deny_extensions" and item == SCRAPY_LIST:
            checked[key] = item
            continue
        items = [item] if isinstance(item, str) else item
        if not isinstance(items, list) or not all(isinstance(one, str) and one.strip() for one in items):
            also = f" or {SCRAPY_LIST} (Scrapy's list)" if key == "deny_extensions" else ""
            raise ValueError(f"'follow' → '{key}' must be a list of non-empty strings{also}, got {item!r}")
        checked[key] = list(items)
    try:
        follow_rules(checked)
    except ValueError as exc:
        raise ValueError(f"'follow' → {exc}") from None
    return checked


def follow_rules(setting: Mapping[str, Any]) -> LinkExtractor | None:
    """The built-in spider's extractor for the checked ``follow`` setting; None when it sets no rule,
    for the spider then follows every ``<a href>`` (``Response.links()``, the cheaper path).

    Unlike a ``LinkExtractor`` made in code, it denies no extension unless ``deny_extensions``
    says so (see the setting's comment in default.yaml: an archive wants the PDFs).
    """
    if not setting:
        return None
    extensions = setting.get("deny_extensions", [])
    rules = {**setting, "deny_extensions": None if extensions == SCRAPY_LIST else extensions}
    return LinkExtractor(**rules)
