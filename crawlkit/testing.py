"""Run a spider's callback on a page built in a test, without a server or a crawl: ``run_callback``.

Scrapy users test a callback with ``list(spider.parse(HtmlResponse(url, body=...)))``; the same
works here with ``crawlkit.Response``. ``run_callback`` does what the crawl's parser does around
the call, so a test sees what the crawl would: the callback the request names (``parse`` if none)
called with its ``cb_kwargs``, the errback for a ``Failure``, the spider's ``settings`` set (from
its ``custom_settings``) when the test did not set them, and the yielded requests checked the way
the parser checks them (a callback that is not a method of the spider fails the test here, where
the crawl would log and drop the request). An exception in the callback propagates, traceback
and all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crawlkit.errors import Failure, SpiderError
from crawlkit.http import Request, Response
from crawlkit.items import is_item
from crawlkit.parse.parser import callback_output
from crawlkit.settings import load_settings
from crawlkit.spider import CallbackCheck, Spider


@dataclass
class CallbackOutput:
    """What a callback yielded: its items as yielded (dicts, dataclasses, ``Item``...), and its requests."""

    items: list[Any]
    requests: list[Request]


def run_callback(spider: Spider, page: Response | Failure) -> CallbackOutput:
    """Call the callback of ``page.request`` (``parse`` if it names none) with its ``cb_kwargs``, or, for a
    ``Failure``, the request's errback; return the items and requests it yields.

    SpiderError when the callback is missing, yields a request whose callback or errback is not a
    method of the spider, or yields something that is neither an item nor a Request.
    """
    if not hasattr(spider, "settings"):
        spider.settings = load_settings(None, type(spider).custom_settings)
    request = page.request
    if isinstance(page, Failure):
        name, kwargs = request.errback, {}
    else:
        name, kwargs = request.callback or "parse", request.cb_kwargs
    method = getattr(spider, name or "", None)
    if not callable(method):
        raise SpiderError(f"spider {type(spider).__name__} has no {'errback' if name is None else repr(name)} "
                          f"for {request.url}")
    check = CallbackCheck(spider)
    out = CallbackOutput([], [])
    for obj in callback_output(method(page, **kwargs)):
        if isinstance(obj, Request):
            problem = check.problem(obj)
            if problem is not None:
                raise SpiderError(f"{name} yielded a request the crawl would drop: {problem}")
            out.requests.append(obj)
        elif is_item(obj):
            out.items.append(obj)
        else:
            raise SpiderError(f"{name} yielded a {type(obj).__name__} on {request.url}; "
                              "yield items (dicts, dataclasses, attrs, Item) or Requests")
    return out
