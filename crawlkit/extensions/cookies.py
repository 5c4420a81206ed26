"""The crawl's cookie jar, kept in the engine, so every fetcher sends what any server set.

Fetches run in several processes and threads, each with its own ``requests.Session``; a jar in
each session would send a cookie back only on the thread that happened to receive it. So the
sessions keep no cookies. Parsers pass on the ``Set-Cookie`` headers of every response (in
``PageDone.set_cookies``); the engine keeps them here, with the standard library's
``http.cookiejar`` rules (domain, path, Secure, expiry), and attaches the ``Cookie`` header a
request should carry to its ``FetchTask`` at dispatch. A cookie is thus sent on every request
dispatched after the response that set it was parsed (requests already in flight go without,
as in a browser loading several pages at once).

Cookies live as long as the crawl; a crawl resumed from a job directory starts without them.
"""

from __future__ import annotations

import http.cookiejar
import urllib.request
from typing import Any


class _Message:
    """The header access ``http.cookiejar`` asks of a response."""

    def __init__(self, set_cookies: list[str]) -> None:
        self.set_cookies = set_cookies

    def get_all(self, name: str, default: Any = None) -> Any:
        return self.set_cookies if name.lower() == "set-cookie" else default


class _Response:
    def __init__(self, set_cookies: list[str]) -> None:
        self.message = _Message(set_cookies)

    def info(self) -> _Message:
        return self.message


class CookieJar:
    """Cookies by the rules of RFC 6265 as ``http.cookiejar`` applies them; engine process only."""

    def __init__(self) -> None:
        self.jar = http.cookiejar.CookieJar()

    def learn(self, url: str, set_cookies: list[str]) -> None:
        """Keep the cookies a response from ``url`` set (its raw ``Set-Cookie`` header values)."""
        self.jar.extract_cookies(_Response(set_cookies), urllib.request.Request(url))  # type: ignore[arg-type]

    def header_for(self, url: str) -> str:
        """The ``Cookie`` header a request for ``url`` should carry now; "" when none."""
        if not len(self.jar):
            return ""
        request = urllib.request.Request(url)
        self.jar.add_cookie_header(request)
        return request.get_header("Cookie", "")
