"""The spider's start requests as one plain iterator: ``async def start()``, ``start_requests()`` or ``start_urls``.

The engine's loop is synchronous and takes start requests a batch at a time, as the frontier has
room (``admission.py``). A spider that overrides Scrapy 2.13's ``async def start()`` is driven on
a private event loop, one ``__anext__`` at a time: the loop runs only while the spider's code
does (an ``await`` in ``start()`` works), never beside the crawl. A spider that does not is read
from ``start_requests()`` directly, which is what the default ``start()`` yields anyway: a
seeds file of a million lines costs no event-loop step per seed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from crawlkit.spider import Spider


def start_objects(spider: Spider) -> Iterator[Any]:
    """What the spider starts with, in order: requests (and anything else it yields, for the caller to judge).

    ``check_spider`` made sure before the crawl that an overridden ``start`` is an async generator.
    """
    if type(spider).start is Spider.start:
        return iter(spider.start_requests())
    return _drive(spider.start())


def _drive(generator: AsyncIterator[Any]) -> Iterator[Any]:
    """The items of ``generator``, each awaited on a loop of its own; the loop is closed with the iterator."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(generator.__anext__())
            except StopAsyncIteration:
                return
    finally:
        if hasattr(generator, "aclose"):  # stopped early (max_pages, Ctrl-C): run its finally blocks
            loop.run_until_complete(generator.aclose())
        loop.close()
