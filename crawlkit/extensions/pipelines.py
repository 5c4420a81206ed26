"""Item pipelines: user classes that check, change, store or drop every item, in the parser processes.

A pipeline is any class named in the ``pipelines`` setting (``path.py:Class`` or
``module:Class``) with some of these methods::

    open(spider)                  once, when the parser process starts (or Scrapy's open_spider(spider))
    process_item(item, spider)    return the item (changed or not), or raise crawlkit.DropItem
    close(spider)                 once, when the crawl ends, also after Ctrl-C (or Scrapy's close_spider(spider))

``process_item`` gets the item as the callback yielded it (a dict, a dataclass, an attrs
class, a ``crawlkit.Item``) and may return any of these; after the last pipeline it becomes a
dict for the feed (``crawlkit.items``). A class may define both ``open`` and ``open_spider``:
``open`` runs first, likewise ``close`` before ``close_spider``.

They run in the parser processes, where items are born, one instance set per process (with
``parsers: 4`` there are four instances of each class, each with its own ``open``/``close``):
an item goes from the callback through the pipelines to the engine's feed writer without an
extra trip between processes, and the engine's loop never waits on user code. A pipeline
that writes to a shared store must therefore cope with several writers.

``close`` runs when the engine tells the parser to stop, at the end of the crawl or after
Ctrl-C; the engine gives a parser 5 seconds to finish it before killing the process, so keep
it short (commit and close, do not start a long export there). A parser killed by SIGKILL
runs no ``close``.

An exception other than DropItem drops the item too; it is counted (``error_pipeline``) and
logged with the pipeline, the page's URL and the exception, and the crawl goes on.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from crawlkit.errors import DropItem
from crawlkit.extensions.components import Components, load_components
from crawlkit.items import is_item
from crawlkit.loader import one_line

log = logging.getLogger("crawlkit.pipelines")

HOOKS = ("process_item",)  # what a class must define to be a pipeline


def load_pipelines(specs: list[str]) -> list[tuple[str, type]]:
    """(spec, class) of each pipeline; SpiderError naming the one that cannot be loaded."""
    return load_components(specs, "pipeline", HOOKS)


class ItemPipelines(Components):
    """The pipelines of one parser process."""

    def __init__(self, loaded: list[tuple[str, type]], spider: Any) -> None:
        super().__init__(loaded, "pipeline", spider)
        self.stages = self.hooks("process_item")

    def open(self) -> None:
        """Call each pipeline's ``open(spider)``, then Scrapy's ``open_spider(spider)``; failures logged and counted."""
        self._call_all("open", "open_spider")

    def close(self) -> None:
        """Call each pipeline's ``close(spider)``, then Scrapy's ``close_spider(spider)``, even after a failure."""
        self._call_all("close", "close_spider")

    def process(self, items: list[Any], url: str, counts: Counter[str]) -> list[Any]:
        """The items that come out of the last pipeline; drops and failures are counted in ``counts``."""
        if not self.stages:
            return items
        kept = []
        for item in items:
            for spec, process_item in self.stages:
                try:
                    item = process_item(item, self.spider)
                except DropItem as exc:
                    counts["items_dropped"] += 1
                    log.debug("pipeline %s dropped an item from %s: %s", spec, url, exc)
                    break
                except Exception as exc:
                    self._item_failed(counts, spec, url, one_line(exc), exc_info=log.isEnabledFor(logging.DEBUG))
                    break
                if not is_item(item):
                    problem = (
                        "returned None; return the item or raise DropItem" if item is None
                        else f"returned a {type(item).__name__}, not an item"
                    )
                    self._item_failed(counts, spec, url, problem)
                    break
            else:
                kept.append(item)
        return kept

    def _item_failed(self, counts: Counter[str], spec: str, url: str, problem: str, exc_info: bool = False) -> None:
        counts["error_pipeline"] += 1
        counts["items_dropped"] += 1
        log.error("pipeline %s failed on an item from %s: %s; item dropped", spec, url, problem, exc_info=exc_info)
