"""User classes named in a setting (``pipelines``, ``middlewares``): loaded, checked, opened, closed.

The same classes are loaded three times over: once in the main process before the crawl starts
(``check_components``, so a typo is a one-line error and exit code 2, not a crawl that writes
nothing), then in every process that runs them, each with instances of its own (objects never
cross a process boundary; the setting carries the dotted names). ``Components`` holds one
process's instances and calls their optional ``open(spider)`` and ``close(spider)``; a hook
that raises there is logged and counted, never fatal.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from crawlkit.errors import SpiderError
from crawlkit.loader import load_object, one_line

log = logging.getLogger("crawlkit.components")


def load_components(specs: Iterable[str], what: str, methods: tuple[str, ...]) -> list[tuple[str, type]]:
    """(spec, class) for each of ``specs``; SpiderError when one cannot be imported or has none of ``methods``."""
    loaded = []
    for spec in specs:
        obj = load_object(spec, what)
        if not inspect.isclass(obj) or not any(callable(getattr(obj, name, None)) for name in methods):
            raise SpiderError(
                f"{what} {spec!r} must name a class (path.py:Class or module:Class) "
                f"with a {' or '.join(m + '()' for m in methods)} method"
            )
        loaded.append((spec, obj))
    return loaded


def check_components(loaded: list[tuple[str, type]], what: str) -> None:
    """Instantiate each loaded class once, in the main process, so mistakes stop the crawl before it starts.

    The instances are thrown away: ``__init__`` must take no arguments and should be cheap
    (open files and connections in ``open(spider)``, which runs in the processes doing the work).
    """
    for spec, cls in loaded:
        try:
            cls()
        except Exception as exc:
            raise SpiderError(f"{what} {spec!r} could not be created: {one_line(exc)}") from exc


class Components:
    """The instances of one process (or fetch thread), in the order the setting lists them.

    Built from classes loaded beforehand (``load_components``): a fetcher process loads them
    once, before its threads start, since two threads importing one file at once could see it
    half executed.
    """

    def __init__(self, loaded: list[tuple[str, type]], what: str, spider: Any) -> None:
        self.what = what
        self.spider = spider
        self.errors: Counter[str] = Counter()  # open/close failures, for the next stats message
        self.instances: list[tuple[str, Any]] = []
        for spec, cls in loaded:
            try:
                self.instances.append((spec, cls()))
            except Exception as exc:
                self._failed(spec, "__init__", exc)
                self.instances.append((spec, _Broken(exc, cls)))

    def __bool__(self) -> bool:
        return bool(self.instances)

    def hooks(self, method: str) -> list[tuple[str, Any]]:
        """(spec, bound method) of every instance that defines ``method``, in order."""
        return [(spec, getattr(obj, method)) for spec, obj in self.instances if callable(getattr(obj, method, None))]

    def open(self) -> None:
        """Call ``open(spider)`` on each instance that has it; failures are logged and counted."""
        self._call_all("open")

    def close(self) -> None:
        """Call ``close(spider)`` on each instance that has it, even after a failure in another."""
        self._call_all("close")

    def _call_all(self, *methods: str) -> None:
        """Call each instance's ``methods`` that it has, in order, one instance after the other."""
        for spec, obj in self.instances:
            for method in methods:
                hook = getattr(obj, method, None)
                if not callable(hook):
                    continue
                try:
                    hook(self.spider)
                except Exception as exc:
                    self._failed(spec, method, exc)

    def _failed(self, spec: str, method: str, exc: BaseException) -> None:
        self.errors[f"error_{self.what}"] += 1
        log.error("%s %s: %s() raised %s", self.what, spec, method, one_line(exc))


class _Broken:
    """Stands in for an instance whose ``__init__`` raised in this process: each of the class's
    hooks fails the same way (counted per item or request), so items do not silently skip it."""

    def __init__(self, exc: BaseException, cls: type) -> None:
        self.exc = exc
        self.cls = cls

    def __getattr__(self, name: str) -> Any:
        if name in ("open", "close", "open_spider", "close_spider") or not callable(getattr(self.cls, name, None)):
            raise AttributeError(name)
        return self._fail

    def _fail(self, *args: Any) -> Any:
        raise RuntimeError(f"it could not be created: {one_line(self.exc)}")
