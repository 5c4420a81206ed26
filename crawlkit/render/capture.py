"""The network responses a browser received for one page, as FetchResults for the WARC (``--warc``).

Browser-based archivers (Browsertrix, Webrecorder's ArchiveWeb.page) record every response a page
loads (the document, its scripts, the XHR and fetch() answers, images unless blocked), so a replay
tool can rebuild the page; the rendered DOM alone would replay as a page whose scripts are missing.
``NetworkCapture`` listens to the page's ``response`` events from before its navigation, and
``finish`` turns them into ``FetchResult`` objects in the order the responses arrived: the URL,
status line, headers and request headers as Chromium reports them (as received: the names' case
kept, a repeated header repeated in its order; but listed sorted by name, the order on the wire
being lost), the body, the server's address and the time taken.

Chromium hands bodies over decoded (gzip, br undone) and de-chunked, and a redirect's without its
body. The headers are made to describe the body stored: when an answer had a Content-Encoding or
Transfer-Encoding, or a Content-Length other than the body's, those headers are kept renamed
``X-Crawlkit-Orig-<name>`` (as warcio and pywb name what they rewrite) and a Content-Length of the
body stored is added, so a WARC reader neither decodes the body twice nor finds it short. An HTTP/2
answer is written as an HTTP/1.1 message (a WARC response record holds one), as those archivers do.

A page may load a thousand resources: at most ``max_resources`` responses and ``max_bytes`` of
bodies are kept per page; what is left out past either cap, a response still loading when the page
is done and a body Chromium no longer holds are counted in ``skipped`` (and logged), not stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, NamedTuple

from crawlkit.http import Request
from crawlkit.messages import FetchResult

if TYPE_CHECKING:
    from playwright.async_api import Page, Response

log = logging.getLogger("crawlkit.render")

MAX_RESOURCES = 1_000  # responses kept per page
MAX_BYTES = 64 * 1024 * 1024  # bytes of bodies kept per page
BODY_WAIT = 2.0  # seconds ``finish`` waits for the bodies of responses still loading, all together
_REWRITTEN = ("content-encoding", "transfer-encoding", "content-length")


class NetworkCapture:
    """The responses of one page; make it before the page navigates, ``finish`` it once it is rendered.

    The event handler only keeps the Response objects (the bodies stay in the browser until
    ``finish`` asks for them), so the capture costs the renderer nothing but a list per page.
    """

    def __init__(self, page: Page, max_resources: int = MAX_RESOURCES, max_bytes: int = MAX_BYTES) -> None:
        self.page = page
        self.max_resources = max_resources
        self.max_bytes = max_bytes
        self.responses: list[Response] = []
        self.skipped = 0  # responses not stored: past a cap, unfinished, or their body gone
        page.on("response", self._received)

    def _received(self, response: Response) -> None:
        if not response.url.startswith(("http://", "https://")):
            return  # data: and blob: URLs are not network responses
        if len(self.responses) < self.max_resources:
            self.responses.append(response)
        else:
            self.skipped += 1

    def stop(self) -> None:
        """Listen to the page no more (``finish`` does it too): a tab's page outlives the visit it captured."""
        self.page.remove_listener("response", self._received)

    async def finish(self) -> list[FetchResult]:
        """The page's responses as FetchResults, in the order received, within the caps; stops listening.

        Waits at most ``BODY_WAIT`` seconds in all for bodies still loading (a stream that never
        ends is left out, counted in ``skipped``). The small parts of every response are asked for
        at once; the bodies one by one, so that no more than the byte budget is ever brought over.
        """
        self.stop()
        until = time.monotonic() + BODY_WAIT
        heads = await asyncio.gather(*(_head(response) for response in self.responses), return_exceptions=True)
        results: list[FetchResult] = []
        budget = self.max_bytes
        for response, head in zip(self.responses, heads):
            try:
                if isinstance(head, BaseException):
                    raise head
                result = await _result(response, head, budget, until)
            except Exception as exc:  # an unfinished answer, a body evicted: the others are still worth storing
                log.debug("response %s of %s not captured: %s", response.url, self.page.url, exc)
                result = None
            if result is None:
                self.skipped += 1
                continue
            budget -= len(result.body)
            results.append(result)
        if self.skipped:
            log.warning("%d network responses of %s not stored in the WARC (over %d responses or %d bytes, "
                        "unfinished, or no longer held by the browser)", self.skipped, self.page.url,
                        self.max_resources, self.max_bytes)
        return results


class _Head(NamedTuple):
    """What the browser tells of a response besides its body."""

    headers: list[tuple[str, str]]
    request_headers: list[tuple[str, str]]
    version: str
    peer: str


async def _head(response: Response) -> _Head:
    headers, request_headers, version, address = await asyncio.gather(
        response.headers_array(), response.request.headers_array(), response.http_version(), response.server_addr())
    return _Head(
        [(h["name"], h["value"]) for h in headers if not h["name"].startswith(":")],  # HTTP/2's pseudo-headers
        [(h["name"], h["value"]) for h in request_headers if not h["name"].startswith(":")],
        version, address["ipAddress"].strip("[]") if address else "",
    )


async def _result(response: Response, head: _Head, budget: int, until: float) -> FetchResult | None:
    """One response as a FetchResult, or None when its body would pass the byte budget."""
    sent = _header(head.headers, "content-length")
    if sent is not None and sent.isdigit() and int(sent) > budget:
        return None  # not brought over from the browser at all
    request = response.request
    if request.redirected_to is not None:
        body = b""  # Chromium keeps no body of a redirect
    else:
        body = await asyncio.wait_for(response.body(), max(until - time.monotonic(), 0.001))
    if len(body) > budget:
        return None
    return FetchResult(
        req_id=0,  # not a request the engine dispatched: the page's own is the RenderResult's
        request=Request(response.url, method=request.method, body=request.post_data_buffer or b""),
        url=response.url,
        status=response.status,
        status_line=f"{'HTTP/1.0' if head.version.upper() == 'HTTP/1.0' else 'HTTP/1.1'} {response.status} "
                    f"{response.status_text}".rstrip(),
        headers=_as_stored(head.headers, body),
        request_headers=head.request_headers,
        body=body,
        peer=head.peer,
        elapsed=max(request.timing["responseEnd"], 0.0) / 1000,
    )


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((value.strip() for key, value in headers if key.lower() == name), None)


def _as_stored(headers: list[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
    """The headers describing ``body`` as the browser gave it (see the module docstring)."""
    length = _header(headers, "content-length")
    encoded = any(key.lower() in _REWRITTEN[:2] for key, _ in headers)
    if not encoded and length in (None, str(len(body))):
        return headers  # the body is as sent
    stored = [(f"X-Crawlkit-Orig-{key}", value) if key.lower() in _REWRITTEN else (key, value)
              for key, value in headers]
    stored.append(("Content-Length", str(len(body))))
    return stored
