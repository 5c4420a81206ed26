"""Request, Response and their Headers: what spiders yield and what their callbacks receive.

A ``Request`` crosses process boundaries (parser -> engine -> fetcher -> parser), so it is plain
data that pickles cheaply: the callback travels as its *name*, resolved on the spider in the
parser process. A ``Response`` lives only inside a parser process; its parsed forms (text, lxml
tree, BeautifulSoup) are built lazily, on first use, so a spider that never asks for the soup
never pays for it. Both carry their headers as one ``Headers`` type.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from functools import lru_cache
from html.parser import HTMLParser
from typing import Any, TypeVar, overload
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import lxml.html
from lxml.cssselect import CSSSelector
from w3lib.encoding import html_body_declared_encoding, http_content_type_encoding, read_bom, resolve_encoding

Callback = str | Callable[..., Any] | None
_T = TypeVar("_T")
HeaderText = str | bytes  # a header name or value as given; bytes are read as Latin-1, as they travel
HeaderValues = HeaderText | list[HeaderText] | tuple[HeaderText, ...]  # a list or tuple gives repeats
HeadersInput = Mapping[str, HeaderValues] | Mapping[bytes, HeaderValues] | Iterable[tuple[HeaderText, HeaderText]]


def _text(data: object) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, bytes):
        return data.decode("latin-1")
    raise TypeError(f"a header name or value must be str or bytes, got {type(data).__name__}: {data!r:.80}")


class Headers(MutableMapping[str, str]):
    """HTTP headers, looked up whatever the case of the name, a repeated header kept as sent.

    ``headers["content-type"]`` and ``get`` give one value a name, repeats joined by ", " (as
    requests does); ``getlist("Set-Cookie")`` gives each one apart (a cookie's Expires holds a
    comma, so the joined form cannot be split again). Setting a name replaces all its values;
    ``add`` appends a repeat. A name keeps the case it came in (the first of its repeats, or
    the one last set), for display and sending. Built from a mapping (a value may be a list of
    repeats) or from (name, value) pairs, as the fetcher receives them; names and values are
    ``str`` (bytes are decoded as Latin-1, the charset of HTTP headers).
    """

    __slots__ = ("_names", "_values")

    def __init__(self, headers: HeadersInput | None = None) -> None:
        self._names: dict[str, str] = {}  # lower-cased name -> the name as first given
        self._values: dict[str, list[str]] = {}  # lower-cased name -> its values, in order (never empty)
        if headers is None:
            return
        if isinstance(headers, Headers):
            self._names = dict(headers._names)
            self._values = {key: list(values) for key, values in headers._values.items()}
            return
        if isinstance(headers, (str, bytes)):
            raise TypeError(f"headers must be a mapping or (name, value) pairs, got {type(headers).__name__}")
        if isinstance(headers, Mapping):
            headers = [(name, one) for name, value in headers.items()
                       for one in (value if isinstance(value, (list, tuple)) else (value,))]
        # The fetcher's pairs, for every page: one pass, no method call per header.
        names, values = self._names, self._values
        for name, value in headers:
            name, value = _text(name), _text(value)
            key = name.lower()
            known = values.get(key)
            if known is None:
                values[key] = [value]
                names[key] = name
            else:
                known.append(value)

    def add(self, name: HeaderText, value: HeaderText) -> None:
        """Append a value to ``name``'s (a second Set-Cookie), keeping those it has."""
        name, value = _text(name), _text(value)
        key = name.lower()
        known = self._values.get(key)
        if known is None:
            self._values[key] = [value]
            self._names[key] = name
        else:
            known.append(value)

    def getlist(self, name: str) -> list[str]:
        """Every value of ``name``, in the order received; ``[]`` when it is absent."""
        return list(self._values.get(name.lower(), ()))

    @overload
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: str | _T) -> str | _T: ...

    def get(self, name: str, default: object = None) -> object:  # Mapping.get, without its try/except
        values = self._values.get(name.lower())
        if values is None:
            return default
        return values[0] if len(values) == 1 else ", ".join(values)

    def __getitem__(self, name: str) -> str:
        values = self._values[name.lower()]
        return values[0] if len(values) == 1 else ", ".join(values)

    def __setitem__(self, name: HeaderText, value: HeaderText) -> None:
        name = _text(name)
        key = name.lower()
        self._values[key] = [_text(value)]
        self._names[key] = name

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        del self._values[key]
        del self._names[key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        """Equal to headers, or a mapping, with the same values under the same names in any case."""
        if not isinstance(other, Mapping):
            return NotImplemented
        if not isinstance(other, Headers):
            try:
                other = Headers(other)
            except TypeError:  # a value that is no header value
                return False
        return self._values == other._values

    def __getstate__(self) -> tuple[dict[str, str], dict[str, list[str]]]:
        return self._names, self._values

    def __setstate__(self, state: tuple[dict[str, str], dict[str, list[str]]]) -> None:
        # The state is taken as it is, not copied (safepickle's rule against a memo multiplying
        # one big value), and checked: a job directory or a Redis is writable by others.
        names, values = state
        if not (
            type(names) is dict and type(values) is dict and names.keys() == values.keys()
            and all(type(name) is str and name.lower() == key for key, name in names.items())
            and all(type(vs) is list and vs and all(type(v) is str for v in vs) for vs in values.values())
        ):
            raise TypeError("Headers state is not (dict of names, dict of lists of values) under lower-cased names")
        self._names, self._values = names, values

    def __repr__(self) -> str:
        pairs = [(self._names[key], value) for key, values in self._values.items() for value in values]
        return f"Headers({pairs!r})"


class Request:
    """A request for a URL, yielded by a spider (``Request(url, callback=self.parse_item)``).

    ``callback`` may be a method of the spider or its name; only the name is kept, because the
    request is pickled to other processes. ``headers`` may be given as a dict (or any
    ``Headers`` input) and reads back as ``Headers``. ``depth`` and ``referer`` are filled in by
    crawlkit when a callback yields the request. ``dont_filter=True`` skips the seen-URL check.
    ``cb_kwargs`` become keyword arguments of the callback; ``errback`` (a method of the spider
    or its name, kept as the name like ``callback``) is called instead when the fetch fails.
    """

    # _headers is None until the headers are first read or set: the links a page yields, most
    # requests of a crawl, carry none, and a None builds, pickles and unpickles for free.
    __slots__ = ("url", "callback", "method", "_headers", "meta", "priority", "dont_filter", "body", "depth", "referer",
                 "cb_kwargs", "errback")

    def __init__(
        self,
        url: str,
        callback: Callback = None,
        method: str = "GET",
        headers: HeadersInput | None = None,
        meta: dict[str, Any] | None = None,
        priority: int = 0,
        dont_filter: bool = False,
        body: bytes = b"",
        depth: int = 0,
        referer: str | None = None,
        cb_kwargs: dict[str, Any] | None = None,
        errback: Callback = None,
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"Request url must be a str, got {type(url).__name__}")
        self.url = url
        self.callback = _callback_name(callback)
        self.method = method.upper()
        self._headers = Headers(headers) if headers else None
        self.meta = dict(meta) if meta else {}
        self.priority = int(priority)
        self.dont_filter = bool(dont_filter)
        self.body = body.encode() if isinstance(body, str) else bytes(body)
        self.depth = depth
        self.referer = referer
        self.cb_kwargs = dict(cb_kwargs) if cb_kwargs else {}
        self.errback = _callback_name(errback)

    @property
    def headers(self) -> Headers:
        """The headers to send on top of the crawl's (User-Agent, Accept); changes in place are kept."""
        if self._headers is None:
            self._headers = Headers()
        return self._headers

    @headers.setter
    def headers(self, headers: HeadersInput | None) -> None:
        self._headers = Headers(headers) if headers else None

    def __getstate__(self) -> tuple:
        return (self.url, self.callback, self.method, self._headers or None, self.meta, self.priority,
                self.dont_filter, self.body, self.depth, self.referer, self.cb_kwargs, self.errback)

    def __setstate__(self, state: tuple) -> None:
        # A job directory or shared crawl written before cb_kwargs and errback holds ten fields.
        (self.url, self.callback, self.method, self._headers, self.meta, self.priority,
         self.dont_filter, self.body, self.depth, self.referer, *later) = state
        self.cb_kwargs, self.errback = later if later else ({}, None)

    def replace(self, **changes: Any) -> Request:
        """A copy with some fields changed (used for retries and redirects)."""
        fields: dict[str, Any] = {
            "url": self.url, "callback": self.callback, "method": self.method, "headers": self._headers,
            "meta": self.meta, "priority": self.priority, "dont_filter": self.dont_filter, "body": self.body,
            "depth": self.depth, "referer": self.referer, "cb_kwargs": self.cb_kwargs, "errback": self.errback,
        }
        fields.update(changes)
        return Request(**fields)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


def _callback_name(callback: Callback) -> str | None:
    """The name a callback travels by. A lambda or a function defined inside another has no name
    the spider could be asked for in another process: refused here, where the request is made."""
    if callback is None or isinstance(callback, str):
        return callback
    name = getattr(callback, "__name__", None)
    if name is None or not callable(callback) or "<" in getattr(callback, "__qualname__", ""):
        raise TypeError(f"a Request's callback or errback must be a method of the spider or its name "
                        f"(it is called by name in a parser process), got {callback!r}")
    return name


class _Selectable:
    """Mixed into every lxml element so that ``element.css("span.text")`` works like ``response.css``."""

    def css(self, selector: str) -> list:
        return _css(selector)(self)


@lru_cache(maxsize=512)
def _css(selector: str) -> CSSSelector:
    # Compiling a selector to XPath costs far more than running it; spiders reuse a handful.
    return CSSSelector(selector)


class _SelectableElement(_Selectable, lxml.html.HtmlElement):
    """The class of every element that lxml has no special class for (div, span, a, ...)."""


class _SelectableLookup(lxml.html.HtmlElementClassLookup):
    """lxml's HTML class lookup, with ``_Selectable`` on every element.

    Its ``("*", mixin)`` reaches only the elements it has classes of its own for (forms,
    inputs, labels...): every other element came back as a plain ``HtmlElement``, so
    ``quote.css("span.text")`` raised AttributeError in the README's own spider.
    """

    def __init__(self) -> None:
        # types-lxml wants an HtmlElement subclass for a mixin; lxml takes any class.
        super().__init__(mixins=[("*", _Selectable)])  # type: ignore[list-item]
        self._by_tag: dict[str, type] = {}  # one dict look-up per element, as lxml's own lookup costs

    def lookup(self, node_type: Any, document: Any, namespace: Any, name: Any) -> Any:
        if node_type == "element":
            known = self._by_tag.get(name)
            if known is None:
                lxmls = super().lookup(node_type, document, namespace, name)
                known = self._by_tag[name] = _SelectableElement if lxmls in (None, lxml.html.HtmlElement) else lxmls
            return known
        return super().lookup(node_type, document, namespace, name)


@lru_cache(maxsize=1)
def _html_parser() -> lxml.html.HTMLParser:
    # huge_tree lifts libxml2's depth limit from 256 to 2048 elements (as parsel does): deeper
    # than 256 unclosed tags, a page would lose everything after them.
    parser = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, huge_tree=True)
    parser.set_element_class_lookup(_SelectableLookup())
    return parser


MAX_HTML_DEPTH = 2048  # elements libxml2 keeps open, with huge_tree; it drops the rest of a deeper page


def _too_deep(parser: lxml.html.HTMLParser) -> bool:
    """Whether the last parse stopped at ``MAX_HTML_DEPTH``: a fatal error, which only a few limits
    raise in recovering HTML parsing (so the usual page, with none, costs a fraction of a µs)."""
    return any(e.type == lxml.etree.ErrorTypes.ERR_RESOURCE_LIMIT for e in parser.error_log.filter_from_fatals())


class _LinkScanner(HTMLParser):
    """The ``<a href>`` values of a page in order, from Python's HTML tokenizer: no tree, so no depth limit."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = next((value for name, value in attrs if name == "href"), None)
            if href is not None:
                self.hrefs.append(href)


def _scan_hrefs(text: str) -> list[str]:
    scanner = _LinkScanner()
    scanner.feed(text)
    scanner.close()
    return scanner.hrefs


@lru_cache(maxsize=64)
def _decodes(encoding: str) -> bool:
    """Whether ``bytes.decode(encoding, "replace")`` takes any bytes.

    A charset label is the server's to choose, and Python knows codecs no page is written in:
    bytes-to-bytes ones (``base64``, ``zlib``) and ``idna``, ``punycode``, ``undefined`` raise
    instead of replacing; such a label counts as none.
    """
    try:
        b"<p>\xff\x80\x00</p>".decode(encoding, "replace")
    except (LookupError, UnicodeError, ValueError):
        return False
    return True


def _wide_claim_holds(body: bytes, encoding: str) -> bool:
    """Whether a declared UTF-16 or UTF-32 can be the body's (any other charset: True).

    Such a claim on ASCII-compatible bytes (a server's wrong default) turns the whole page into
    CJK-looking garbage and loses every link. HTML in these encodings is mostly ASCII markup,
    so at least one byte in eight is NUL, and the bytes decode without error.
    """
    if not encoding.startswith(("utf-16", "utf-32")):
        return True
    if body.count(b"\x00") * 8 < len(body):
        return False
    try:
        body.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


class Response:
    """A fetched page as a spider callback sees it.

    ``body`` is the raw (decompressed) bytes; ``text`` decodes it with the charset of a BOM,
    else the one declared in the headers, else a ``<meta>`` declaration, else UTF-8 (falling
    back to cp1252 when the bytes are not UTF-8); a charset name Python cannot decode text
    with (``klingon``, ``base64``) counts as none, and so does a UTF-16 or UTF-32 in the header
    that the bytes belie (no NULs, or errors); bytes that do not decode become U+FFFD.
    ``css``/``xpath`` run on an lxml tree; ``soup`` is BeautifulSoup on lxml. All three are
    built on first use and kept.
    """

    def __init__(
        self,
        url: str,
        status: int,
        headers: HeadersInput,
        body: bytes,
        request: Request,
    ) -> None:
        self.url = url
        self.status = status
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body
        self.request = request
        self._encoding: str | None = None
        self._text: str | None = None
        self._tree: Any = None
        self._soup: Any = None
        self._base_url: str | None = None
        self._base_directory = ""  # the base URL up to the last "/" of its path, set with _base_url
        self.too_deep = False  # set when the tree is built

    meta = property(lambda self: self.request.meta, doc="The request's ``meta`` dict.")
    depth = property(lambda self: self.request.depth, doc="Link hops from a start URL (0 for seeds).")

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased (``text/html``), or ``""``."""
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    @property
    def is_html(self) -> bool:
        ctype = self.content_type
        return ctype in ("text/html", "application/xhtml+xml") or (not ctype and b"<html" in self.body[:1024].lower())

    @property
    def encoding(self) -> str:
        if self._encoding is None:
            self._encoding = self._detect_encoding()
        return self._encoding

    def _detect_encoding(self) -> str:
        # A BOM outranks the header, as in browsers (and w3lib's html_to_unicode): a server's
        # default charset is more often wrong than the bytes that open the file.
        bom, _ = read_bom(self.body)
        if bom:
            return bom
        declared = http_content_type_encoding(self.headers.get("Content-Type"))
        if declared and _decodes(declared) and _wide_claim_holds(self.body, declared):
            return declared
        meta = html_body_declared_encoding(self.body[:4096])
        meta = meta and resolve_encoding(meta)
        # A <meta> that could be read as ASCII is wrong when it says UTF-16 (the WHATWG rule).
        if meta and _decodes(meta) and not meta.startswith(("utf-16", "utf-32")):
            return meta
        try:
            self.body.decode("utf-8")
            return "utf-8"
        except UnicodeDecodeError:
            return "cp1252"

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.body.decode(self.encoding, "replace")
        return self._text

    @property
    def tree(self) -> Any:
        """The lxml HTML root element; elements support ``.css()``, ``.xpath()``, ``.text_content()``."""
        if self._tree is None:
            # libxml2 is given the text decoded here, as UTF-8: decoding the bytes itself, it
            # stops at the first one its codec rejects (a stray 0x81 in a cp1252 page, binary
            # junk) and silently drops the rest of the page, links included.
            data = self.text.encode("utf-8", "replace")
            parser = _html_parser()
            try:
                self._tree = lxml.html.document_fromstring(data, parser=parser)
            except lxml.etree.ParserError:  # nothing but white space, comments or an XML declaration
                self._tree = lxml.html.document_fromstring(b"<html></html>", parser=parser)
            self.too_deep = _too_deep(parser)
        return self._tree

    @property
    def soup(self) -> Any:
        """BeautifulSoup of the page, parsed with lxml."""
        if self._soup is None:
            from bs4 import BeautifulSoup

            self._soup = BeautifulSoup(self.text, "lxml")
        return self._soup

    def css(self, selector: str) -> list:
        return _css(selector)(self.tree)

    def xpath(self, expr: str, **variables: Any) -> list:
        return self.tree.xpath(expr, **variables)

    @property
    def base_url(self) -> str:
        """What relative links are resolved against: the page's ``<base href>``, else its URL.

        Kept after the first look: ``follow`` asks for it once per link, and the look is a
        search of the whole tree.
        """
        if self._base_url is None:
            url = self.url
            base = self.tree.xpath("//base/@href") if self.is_html else []
            if base:
                try:
                    url = urljoin(url, base[0].strip())
                except ValueError:  # a malformed <base> (``http://[x``) is ignored, as browsers do
                    pass
            parts = urlsplit(url)
            directory = parts.path[: parts.path.rfind("/") + 1]
            self._base_directory = urlunsplit((parts.scheme, parts.netloc, directory, "", ""))
            self._base_url = url
        return self._base_url

    def urljoin(self, url: str) -> str:
        """``urllib.parse.urljoin(self.base_url, url)``, from a per-process cache for most links.

        The pages of a directory share their navigation links, and ``urljoin`` was a quarter of
        a light spider's parse time, so the joins that depend only on the base's directory are
        cached by (directory, link).
        """
        base = self.base_url
        if _DIRECTORY_RELATIVE.match(url):
            return _join_in_directory(self._base_directory, url)
        return urljoin(base, url)

    def links(self) -> list[str]:
        """Absolute http(s) URLs of the page's ``<a href>`` links, in page order, without fragments or repeats."""
        if not self.is_html:
            return []
        seen: dict[str, None] = {}
        tree = self.tree  # built now, which tells whether it was cut short
        # A cut tree lost what comes after the cut; plain str from xpath: a tenth of the memory.
        hrefs = _scan_hrefs(self.text) if self.too_deep else tree.xpath("//a/@href", smart_strings=False)
        for href in hrefs:
            try:
                url = urldefrag(self.urljoin(href.strip()))[0]
            except ValueError:  # one malformed href (``http://[::1``) must not cost the page its links
                continue
            if url.startswith(("http://", "https://")):
                seen.setdefault(url)
        return list(seen)

    def follow(self, url: Any, callback: Callback = None, **kwargs: Any) -> Request:
        """A Request for ``url`` (relative to this page, or an ``<a>`` element) to yield from a callback."""
        if not isinstance(url, str):
            href = url.get("href") if hasattr(url, "get") else None
            if href is None:
                raise TypeError(f"follow() takes a URL or an <a> element, got {url!r}")
            url = href
        return Request(self.urljoin(url.strip()), callback=callback, **kwargs)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url}>"


# Links whose join with a base depends only on the base's scheme, host and directory: a path
# relative to the directory (no scheme before its first "/", "?" or "#"), a path from the root,
# or an absolute URL with a host. Anything else (an empty link, "?q", "#f", "//", "http:",
# leading white space...) may take the base's own last segment or query, and is joined in full.
_DIRECTORY_RELATIVE = re.compile(r"/(?!/)|[A-Za-z0-9._~%-][^:/?#]*(?:[/?#]|$)|[A-Za-z][A-Za-z0-9+.-]*://[^/?#]")


@lru_cache(maxsize=32768)
def _join_in_directory(directory: str, url: str) -> str:
    return urljoin(directory, url)
