"""Request and response hooks (middlewares): headers, proxies, custom retry rules.

A middleware is any class named in the ``middlewares`` setting with some of these methods::

    process_request(request, spider)    return None to go on with the request (changed in place
                                        or not), a Request to send instead (a new one made with
                                        request.replace()), a Response to use without fetching, or
                                        raise crawlkit.IgnoreRequest not to send it (Scrapy's meanings,
                                        but a returned Request is sent, not scheduled anew)
    process_response(response, spider)  return the Response to go on with, or None (or raise
                                        crawlkit.IgnoreRequest) to drop it,
                                        or raise crawlkit.RetryRequest("why") to fetch it again
    open(spider) / close(spider)        around the first and after the last hook call

Where each hook runs, and why:

- ``process_request`` runs in the **fetcher** thread, just before the request is sent. That is
  the one place every attempt passes exactly once (start requests, links, retries, redirect
  targets, requests resumed from a job directory, robots.txt and sitemaps), and what it adds
  (an ``Authorization`` header, ``meta["proxy"]``) is applied to that send only: it does not
  travel into the seen-URL fingerprints, the job directory, retries or redirects to another
  host (the hook runs again for those). Each fetch thread has its own instances, so a hook is
  never called on one instance from two threads at once.
- ``process_response`` runs in the **parser** process, before retries, redirects and the
  callback, on a full ``Response`` (``status``, ``headers``, ``text``, ``css()``...). A retry
  rule needs the parsed page, and the parser already owns the retry budget and backoff.

The two hooks of one class therefore run in different processes, on different instances: pass
what the response side must know in ``request.meta`` from the spider, not in attributes.
A hook that raises is counted (``error_middleware``) and logged with the middleware and URL;
the request is not sent, or the response is dropped, and the crawl goes on. An ``open`` that
raises is counted once per instance (each fetch thread's and each parser's); a ``close`` that
raises at the end of the crawl is logged only, the stats being final by then.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from crawlkit.errors import FetchErrorKind, IgnoreRequest, RetryRequest
from crawlkit.extensions.components import Components, load_components
from crawlkit.http import Request, Response
from crawlkit.loader import one_line
from crawlkit.messages import FetchResult

log = logging.getLogger("crawlkit.middlewares")

HOOKS = ("process_request", "process_response")  # a middleware defines one or both
DROPPED = FetchErrorKind.DROPPED.value  # the stats key of a request a hook ignored, or of a response it dropped


def load_middlewares(specs: list[str]) -> list[tuple[str, type]]:
    """(spec, class) of each middleware; SpiderError naming the one that cannot be loaded."""
    return load_components(specs, "middleware", HOOKS)


class RequestHooks(Components):
    """The ``process_request`` hooks of one fetch thread."""

    def __init__(self, loaded: list[tuple[str, type]], spider: Any) -> None:
        super().__init__(loaded, "middleware", spider)
        self.stages = self.hooks("process_request")

    def process(self, request: Request) -> Request | FetchResult:
        """The request to send, or the FetchResult to hand on instead of a fetch: the response a hook
        returned, or why none is sent. A hook that returns a Response ends the chain, as in Scrapy."""
        for spec, process_request in self.stages:
            try:
                changed = process_request(request, self.spider)
            except IgnoreRequest as exc:
                why = f": {exc}" if str(exc) else ""
                return _unsent(request, FetchErrorKind.DROPPED, f"ignored by middleware {spec}{why}")
            except Exception as exc:
                return _unsent(request, FetchErrorKind.MIDDLEWARE,
                               f"middleware {spec} process_request raised {one_line(exc)}")
            if changed is None:
                continue
            if isinstance(changed, Response):
                return _answered(request, changed)
            if not isinstance(changed, Request):
                return _unsent(request, FetchErrorKind.MIDDLEWARE, f"middleware {spec} process_request returned a "
                               f"{type(changed).__name__}, not None, a Request or a Response")
            request = changed
        return request


def _unsent(request: Request, kind: FetchErrorKind, message: str) -> FetchResult:
    return FetchResult(req_id=0, request=request, url=request.url, error=kind.value, message=message)


def _answered(request: Request, response: Response) -> FetchResult:
    """A hook's Response as if it had been fetched: the parser's stages and callback take it from here."""
    headers = response.headers
    pairs = [(name, value) for name in headers for value in headers.getlist(name)]
    return FetchResult(req_id=0, request=request, url=response.url, status=response.status, headers=pairs,
                       body=response.body)


class ResponseHooks(Components):
    """The ``process_response`` hooks of one parser process."""

    def __init__(self, loaded: list[tuple[str, type]], spider: Any) -> None:
        super().__init__(loaded, "middleware", spider)
        self.stages = self.hooks("process_response")

    def process(self, response: Response, counts: Counter[str]) -> Response | RetryRequest | None:
        """The response to go on with; a RetryRequest when a hook asks for another fetch; None to drop it."""
        for spec, process_response in self.stages:
            try:
                changed = process_response(response, self.spider)
            except RetryRequest as retry:
                return retry
            except IgnoreRequest:  # Scrapy's way to drop a response; None is crawlkit's
                counts[DROPPED] += 1
                log.debug("middleware %s ignored the response of %s", spec, response.url)
                return None
            except Exception as exc:
                counts["error_middleware"] += 1
                log.error("middleware %s process_response raised %s on %s; response dropped",
                          spec, one_line(exc), response.url, exc_info=log.isEnabledFor(logging.DEBUG))
                return None
            if changed is None:
                counts[DROPPED] += 1
                log.debug("middleware %s dropped the response of %s", spec, response.url)
                return None
            if not isinstance(changed, Response):
                counts["error_middleware"] += 1
                log.error("middleware %s process_response returned a %s on %s, "
                          "not a Response or None; response dropped", spec, type(changed).__name__, response.url)
                return None
            response = changed
        return response
