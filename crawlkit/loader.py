"""Load user code named by a string: ``path/to/file.py:Name``, ``package.module:Name``, or a bare ``file.py``.

One loader for spiders, pipelines and backends, so every "cannot import" reads the same way. It
runs in every process that needs the object (engine and parsers each import the spider
themselves), which is why objects travel between processes as these strings.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

from crawlkit.errors import SpiderError
from crawlkit.spider import Spider

#: Modules that ``_import_path`` loads from a file are named with this prefix (and so cannot be imported by name).
_FILE_MODULE = "crawlkit_user_"


def _import_path(path: Path, what: str) -> ModuleType:
    if not path.is_file():
        raise SpiderError(f"{what} file {str(path)!r} does not exist; give a path to a .py file or a module:Class")
    name = f"{_FILE_MODULE}{path.stem}_{zlib.crc32(str(path.resolve()).encode()):08x}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SpiderError(f"cannot load {str(path)!r} as Python; is it a .py file?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.resolve().parent))  # let the file import its neighbours
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # a file that calls sys.exit() on import is a broken spider too
        del sys.modules[name]
        line = _line_in(path, exc)
        where = f"{path}, line {line}" if line else str(path)
        raise SpiderError(f"{where}: importing it raised {one_line(exc)}") from exc
    return module


def _line_in(path: Path, exc: BaseException) -> int | None:
    """The line of ``path`` where ``exc`` was raised (the innermost frame in that file)."""
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).resolve() == path.resolve():
        return exc.lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == path.resolve():
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (the CLI prints errors as a single line)."""
    if isinstance(exc, SyntaxError):
        text = exc.msg  # its str() repeats the file and line we already give
    else:
        text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_object(spec: str, what: str = "object") -> Any:
    """The object named by ``spec``; raises SpiderError with a one-line reason when it cannot."""
    target, _, attr = spec.partition(":")
    if target.endswith(".py"):
        module = _import_path(Path(target), what)
    elif not all(part.isidentifier() for part in target.split(".")):
        # Not a module name (a path without .py, say): importlib would answer with a TypeError about packages.
        hint = f"; did you mean {target}.py?" if Path(target + ".py").is_file() else ""
        raise SpiderError(f"{what} {spec!r} is neither a .py file nor a module name: give path/to/file.py, "
                          f"path/to/file.py:Class or package.module:Class{hint}")
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:
            raise SpiderError(f"cannot import module {target!r} for {what} {spec!r}: {one_line(exc)}") from exc
    if not attr:
        return module
    try:
        return getattr(module, attr)
    except AttributeError:
        raise SpiderError(f"{target} has no {attr!r} for {what} {spec!r}; check the name after ':'") from None


def load_spider(spec: str | None) -> type[Spider]:
    """The Spider subclass named by ``spec``; ``None`` is the built-in LinkSpider.

    ``file.py`` without ``:Class`` takes the one Spider subclass defined in that file.
    """
    if spec is None:
        from crawlkit.spider import LinkSpider

        return LinkSpider
    obj = load_object(spec, "spider")
    if inspect.ismodule(obj):
        found = [
            v for v in vars(obj).values()
            if inspect.isclass(v) and issubclass(v, Spider) and v.__module__ == obj.__name__
        ]
        if len(found) != 1:
            names = ", ".join(c.__name__ for c in found) or "none"
            raise SpiderError(
                f"{spec}: expected exactly one Spider subclass, found {names}; name one as {spec}:ClassName"
            )
        obj = found[0]
    if not (inspect.isclass(obj) and issubclass(obj, Spider)):
        raise SpiderError(f"{spec} is not a subclass of crawlkit.Spider")
    return obj


def spider_spec(cls: type[Spider]) -> str:
    """The string other processes load ``cls`` by (``load_spider`` gives it back): ``module:Class``, or
    ``path/to/file.py:Class`` for a class of a script (``__main__``) or of a file this loader read.

    SpiderError when there is none: a class made in a function, or in an interactive session.
    """
    name, module = cls.__qualname__, sys.modules.get(cls.__module__)
    if "." in name:
        raise SpiderError(f"spider class {name} is defined inside a function or class; parser processes load the "
                          "spider by its importable name: define it at the top level of a module or script")
    if cls.__module__ == "__main__" or cls.__module__.startswith(_FILE_MODULE):
        path = getattr(module, "__file__", None)
        if path is None:
            raise SpiderError(f"spider class {name} is defined in an interactive session; parser processes load the "
                              "spider by its importable name: define it in a .py file")
        return f"{path}:{name}"
    spec = f"{cls.__module__}:{name}"
    if load_object(spec, "spider") is not cls:
        raise SpiderError(f"{spec} names another class than the spider given (was the module reloaded, or the "
                          "class replaced?); parser processes would load that one")
    return spec
