"""Request, Response and their Headers: what spiders yield and what their callbacks receive.

A ``Request`` crosses process boundaries (parser -> engine -> fetcher -> parser), so it is plain
data that pickles cheaply: the callback travels as its *name*, resolved on the spider in the
parser process. A ``Response`` lives only inside a parser process; its parsed forms (text, lxml
tree, parsel selector, BeautifulSoup) are built lazily, on first use, so a spider that never
asks for the soup never pays for it. Both carry their headers as one ``Headers`` type. The
names and meanings are Scrapy's (``css("a::attr(href)").getall()``, ``follow_all``,
``cb_kwargs``), so a Scrapy callback runs unchanged.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from functools import lru_cache
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import lxml.html
from w3lib.encoding import html_body_declared_encoding, http_content_type_encoding, read_bom, resolve_encoding

from crawlkit.link import Link as FoundLink

if TYPE_CHECKING:
    from parsel import Selector, SelectorList

    Link = str | FoundLink | Selector | lxml.html.HtmlElement  # what follow() takes: a URL, or what names one

# parsel is imported where a selector is first made, not with this module: the engine and the
# crawlkit command import Request from here and never select anything (30 ms of start-up).

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


def _render_options(options: dict[str, Any]) -> dict[str, Any]:
    """A request's render options checked (``render/actions.py``); ValueError "'render' ..." for wrong ones."""
    from crawlkit.render.actions import check_actions

    return check_actions(options)


class Request:
    """A request for a URL, yielded by a spider (``Request(url, callback=self.parse_item)``).

    ``callback`` and ``errback`` may be methods of the spider or their names; only the names are
    kept, because the request is pickled to other processes. ``cb_kwargs`` become keyword
    arguments of the callback, as in Scrapy; they and ``meta`` travel with the request, so they
    must pickle (and, to survive a resume or a shared crawl, be plain data: str, numbers, lists,
    dicts...). ``headers`` may be given as a dict (or any ``Headers`` input) and reads back as
    ``Headers``. ``depth`` and ``referer`` are filled in by crawlkit when a callback yields the
    request. ``dont_filter=True`` skips the seen-URL check. ``render=True`` (or a dict of render
    options) has a browser render the page, ``render=False`` fetches it plainly whatever the
    settings say (``meta["render"]``; see ``render/choose.py``).
    """

    # _headers and _cb_kwargs are None until first read or set: the links a page yields, most
    # requests of a crawl, carry neither, and a None builds, pickles and unpickles for free.
    __slots__ = ("url", "callback", "method", "_headers", "meta", "priority", "dont_filter", "body", "depth", "referer",
                 "_cb_kwargs", "errback")

    def __init__(
        self,
        url: str,
        callback: Callback = None,
        method: str = "GET",
        headers: HeadersInput | None = None,
        meta: dict[str, Any] | None = None,
        priority: int = 0,
        dont_filter: bool = False,
        body: bytes | str = b"",
        depth: int = 0,
        referer: str | None = None,
        cb_kwargs: dict[str, Any] | None = None,
        errback: Callback = None,
        render: bool | dict[str, Any] | None = None,
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
        self._cb_kwargs = dict(cb_kwargs) if cb_kwargs else None
        self.errback = _callback_name(errback)
        if render is not None:  # in meta, where the plain path's requests carry nothing for it
            self.meta["render"] = render if isinstance(render, bool) else _render_options(render)

    @property
    def headers(self) -> Headers:
        """The headers to send on top of the crawl's (User-Agent, Accept); changes in place are kept."""
        if self._headers is None:
            self._headers = Headers()
        return self._headers

    @headers.setter
    def headers(self, headers: HeadersInput | None) -> None:
        self._headers = Headers(headers) if headers else None

    @property
    def cb_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the callback; changes in place are kept."""
        if self._cb_kwargs is None:
            self._cb_kwargs = {}
        return self._cb_kwargs

    @cb_kwargs.setter
    def cb_kwargs(self, cb_kwargs: dict[str, Any] | None) -> None:
        self._cb_kwargs = dict(cb_kwargs) if cb_kwargs else None

    def __getstate__(self) -> tuple:
        return (self.url, self.callback, self.method, self._headers or None, self.meta, self.priority,
                self.dont_filter, self.body, self.depth, self.referer, self._cb_kwargs or None, self.errback)

    def __setstate__(self, state: tuple) -> None:
        if len(state) == 10:  # journaled before cb_kwargs and errback (a job directory or shared crawl to resume)
            state = (*state, None, None)
        (self.url, self.callback, self.method, self._headers, self.meta, self.priority,
         self.dont_filter, self.body, self.depth, self.referer, self._cb_kwargs, self.errback) = state

    def replace(self, **changes: Any) -> Request:
        """A copy of the same class with some fields changed (any ``__init__`` argument), as Scrapy's.

        Retries and redirects are made this way, so they keep the callback, errback and
        ``cb_kwargs``; ``meta``, ``headers`` and ``cb_kwargs`` are copied, not shared.
        """
        fields: dict[str, Any] = {
            "url": self.url, "callback": self.callback, "method": self.method, "headers": self._headers,
            "meta": self.meta, "priority": self.priority, "dont_filter": self.dont_filter, "body": self.body,
            "depth": self.depth, "referer": self.referer, "cb_kwargs": self._cb_kwargs, "errback": self.errback,
        }
        fields.update(changes)
        return type(self)(**fields)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} {self.url}>"


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


@lru_cache(maxsize=1)
def _html_parser() -> lxml.html.HTMLParser:
    # huge_tree lifts libxml2's depth limit from 256 to 2048 elements (as parsel does): deeper
    # than 256 unclosed tags, a page would lose everything after them.
    return lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, huge_tree=True)


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
    ``selector`` (and ``css``/``xpath``/``jmespath`` through it) is parsel's, on the lxml
    ``tree`` for HTML (the one parse a page gets), on the text for JSON and XML bodies; ``soup``
    is BeautifulSoup on lxml. Each is built on first use and kept.

    To test a callback without a server, build one from a string, as Scrapy's ``HtmlResponse``:
    ``Response("http://a.test/", body="<p>...</p>")``. Without ``headers``, a body that starts
    with ``{`` or ``[`` is ``application/json`` and any other ``text/html``; ``request`` defaults
    to ``Request(url)``; ``encoding`` decodes the body (and encodes a ``str`` one), outranking
    what the headers or the page declare.
    """

    def __init__(
        self,
        url: str,
        status: int = 200,
        headers: HeadersInput | None = None,
        body: bytes | str = b"",
        request: Request | None = None,
        *,
        encoding: str | None = None,
    ) -> None:
        if isinstance(body, str):
            body = body.encode(encoding or "utf-8")
            encoding = encoding or "utf-8"
        if headers is None:
            headers = {"Content-Type": "application/json" if body.lstrip()[:1] in (b"{", b"[") else "text/html"}
        self.url = url
        self.status = status
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body
        self.request = request if request is not None else Request(url)
        self._encoding: str | None = encoding and (resolve_encoding(encoding) or encoding)
        self._text: str | None = None
        self._tree: Any = None
        self._selector: Selector | None = None
        self._json: Any = _NOT_LOADED
        self._soup: Any = None
        self._base_url: str | None = None
        self._base_directory = ""  # the base URL up to the last "/" of its path, set with _base_url
        self.too_deep = False  # set when the tree is built

    meta = property(lambda self: self.request.meta, doc="The request's ``meta`` dict.")
    cb_kwargs = property(lambda self: self.request.cb_kwargs, doc="The request's ``cb_kwargs`` dict.")
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
        """The lxml HTML root element, for lxml's own API (``.cssselect()``, ``.xpath()``, ``.text_content()``)."""
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
            from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

            with warnings.catch_warnings():  # XHTML parsed as HTML is what a crawl wants: no 12 lines a parser
                warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
                self._soup = BeautifulSoup(self.text, "lxml")
        return self._soup

    @property
    def selector(self) -> Selector:
        """parsel's ``Selector`` of the page: on ``tree`` for HTML (no second parse), on the text for
        JSON (``jmespath``) and XML bodies (XPath with their namespaces, tags in their case)."""
        if self._selector is None:
            from parsel import Selector

            ctype = self.content_type
            if ctype in _JSON_TYPES or ctype.endswith("+json"):
                self._selector = Selector(text=self.text, type="json")
            elif ctype.endswith(("/xml", "+xml")) and ctype != "application/xhtml+xml":
                self._selector = Selector(text=self.text, type="xml")
            else:
                self._selector = Selector(root=self.tree, type="html")
        return self._selector

    def css(self, query: str) -> SelectorList[Selector]:
        """``selector.css(query)``: parsel's CSS, with ``::text`` and ``::attr(name)``."""
        return self.selector.css(query)

    def xpath(self, query: str, **variables: Any) -> SelectorList[Selector]:
        """``selector.xpath(query)``; keyword arguments are XPath variables (``$name``), or ``namespaces``."""
        return self.selector.xpath(query, **variables)

    def jmespath(self, query: str, **kwargs: Any) -> SelectorList[Selector]:
        """``selector.jmespath(query)``: a JMESPath query on a JSON body (``"items[].name"``)."""
        return self.selector.jmespath(query, **kwargs)

    def json(self) -> Any:
        """The body parsed as JSON (whatever the Content-Type), kept; ``ValueError`` if it is not JSON."""
        if self._json is _NOT_LOADED:
            self._json = json.loads(self.text)
        return self._json

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

    def follow(self, url: Link, callback: Callback = None, **kwargs: Any) -> Request:
        """A Request for ``url`` to yield from a callback, as Scrapy's.

        ``url`` is relative to this page, a ``Link`` of a ``LinkExtractor``, or a selector: an
        ``<a>`` or ``<link>`` element is followed by its ``href``, an attribute selector
        (``a::attr(href)``, ``//img/@src``) by its value. The other arguments are ``Request``'s
        (``callback``, ``cb_kwargs``, ``meta``, ``errback``...).
        """
        # A str first, without a call: a light spider follows a few dozen links a page this way.
        return Request(self.urljoin(url.strip() if isinstance(url, str) else _link_url(url)), callback, **kwargs)

    def follow_all(
        self,
        urls: Iterable[Link] | None = None,
        callback: Callback = None,
        *,
        css: str | None = None,
        xpath: str | None = None,
        **kwargs: Any,
    ) -> Iterator[Request]:
        """Requests for several links, as ``follow`` makes them; give exactly one of ``urls``, ``css``, ``xpath``.

        ``css``/``xpath`` select the links on this page (``css="ul.pager a"``). As in Scrapy, an
        element of a ``SelectorList`` (selected here or given as ``urls``) that names no URL (an
        ``<a>`` without ``href``, a ``<div>``) is skipped; given in any other iterable, it raises
        ``ValueError``.
        """
        if sum(arg is not None for arg in (urls, css, xpath)) != 1:
            raise ValueError("follow_all() takes exactly one of urls, css, xpath")
        if css is not None:
            urls = self.css(css)
        elif xpath is not None:
            urls = self.xpath(xpath)
        from parsel import SelectorList

        if isinstance(urls, SelectorList):
            urls = [url for url in map(_link_url_or_none, urls) if url is not None]
        assert urls is not None  # one of the three was given
        return (self.follow(url, callback, **kwargs) for url in urls)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url}>"


_NOT_LOADED = object()  # Response._json before json(): None is a JSON value
_JSON_TYPES = frozenset({"application/json", "text/json", "application/x-json"})

def _link_url(link: FoundLink | Selector | lxml.html.HtmlElement) -> str:
    """The URL a link that is no str names: a Link's, a string selector's value, an ``<a>``/``<link>`` element's
    ``href``."""
    url = _link_url_or_none(link)
    if url is None:
        from parsel import SelectorList

        if isinstance(link, SelectorList):
            raise ValueError(f"follow() takes one link, not a list of {len(link)}: use follow_all()")
        raise ValueError(f"follow() takes a URL, a Link, an <a> or <link> element or its ::attr(href), not {link!r}")
    return url


def _link_url_or_none(link: object) -> str | None:
    if isinstance(link, FoundLink):
        return link.url
    root = getattr(link, "root", link)  # a parsel Selector's root: its element, or the string it selected
    if isinstance(root, str):
        return root.strip()
    if isinstance(root, lxml.html.HtmlElement) and root.tag in ("a", "link"):
        href = root.get("href")
        return href.strip() if href is not None else None
    return None


# Links whose join with a base depends only on the base's scheme, host and directory: a path
# relative to the directory (no scheme before its first "/", "?" or "#"), a path from the root,
# or an absolute URL with a host. Anything else (an empty link, "?q", "#f", "//", "http:",
# leading white space...) may take the base's own last segment or query, and is joined in full.
_DIRECTORY_RELATIVE = re.compile(r"/(?!/)|[A-Za-z0-9._~%-][^:/?#]*(?:[/?#]|$)|[A-Za-z][A-Za-z0-9+.-]*://[^/?#]")


@lru_cache(maxsize=32768)
def _join_in_directory(directory: str, url: str) -> str:
    return urljoin(directory, url)
