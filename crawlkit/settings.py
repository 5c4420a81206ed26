"""Settings: defaults from ``default.yaml``, merged with a config file, the spider and the CLI.

Layers, lowest first (a later one wins, key by key)::

    default.yaml  <  --config FILE  <  Spider.custom_settings  <  flags and -s KEY=VALUE

``default.yaml`` (this package's file; ``configs/default.yaml`` is a copy for users to read, kept
identical by a test) is the only place a setting is declared: its default, its type (the default's
type, or a ``(int or null)``-style prefix on the comment where the default cannot show it) and
its documentation (the comment line directly above it), from which the README's settings table
(``settings_table``) and the ``--help`` of the flags (``flag_help``) are built. This module adds
only what YAML cannot say: bounds of numeric values, the choice of log levels, and what a config
file may be (a regular file of at most ``MAX_CONFIG_BYTES``, without YAML aliases, so no file can
make the loader hang or expand a few hundred bytes into gigabytes).

Every mistake becomes a ``ConfigError`` with a one-line message that names where the value came
from (file and line, the spider, or the ``-s`` argument), the key, the bad value and the fix.
``load_settings`` runs in the main process; the resulting ``Settings`` pickles cheaply to the
fetcher and parser processes.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import math
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawlkit.errors import ConfigError

DEFAULTS_FILE = Path(__file__).with_name("default.yaml")

#: Shown in "unknown setting" messages: where a user finds the full list.
_SEE_ALL = "(see configs/default.yaml for every setting)"

# Numeric settings must be >= 0; these must be >= 1 (a zero here would crawl nothing).
_AT_LEAST_ONE = frozenset(
    {"workers", "concurrency", "per_host", "parsers", "max_url_length", "max_body", "lease_time", "max_process_deaths"}
)
# Timeouts of 0 would fail every fetch: these must be more than 0.
_MORE_THAN_ZERO = frozenset({"connect_timeout", "read_timeout", "download_timeout"})
# Upper bounds where a larger value fails the crawl at start: every fetcher receives both ends
# of every fetch queue (4 per fetcher) and parser channel, and a process can be handed at most
# 256 descriptors at its start (multiprocessing's forkserver); a unit of concurrency is a
# thread, a semaphore and a socket. The comments in default.yaml say so.
MAX_WORKERS = 24
_AT_MOST: dict[str, float] = {"workers": MAX_WORKERS, "parsers": 16, "concurrency": 1024}
# Absurd values that would not fail at start but stall or sink the crawl later: a delay or a
# timeout of 1e300 s waits for ever, a million retries hammer a server, a body of a terabyte is
# held in a fetcher's memory. A day, a hundred tries and a gibibyte are past any real need.
_AT_MOST.update(dict.fromkeys(
    ("delay", "robots_recheck_after", "retry_backoff", "retry_after_max", "connect_timeout", "read_timeout",
     "download_timeout", "progress_interval", "shutdown_timeout", "lease_time", "callback_timeout"), 86_400))
_AT_MOST.update(dict.fromkeys(("retries", "robots_rechecks", "max_redirects", "max_process_deaths"), 100))
_AT_MOST.update(max_body=1 << 30, max_url_length=65_536)
_CHOICES = {"log_level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")}

_TYPE_PREFIX = re.compile(r"^\((?:(int|str) or null|list of (int|str)|(map) of str to int or null)\)")
_TYPE_NAMES = {"int": int, "str": str}

#: A settings file is a page of YAML; more than this is not one (and is not read further).
MAX_CONFIG_BYTES = 1_000_000


@dataclass(frozen=True)
class _Spec:
    """One setting as declared in default.yaml."""

    key: str
    default: Any
    kind: type  # int, float, bool, str, list or dict
    item: type | None  # element type of a list setting
    nullable: bool
    comment: str

    @property
    def minimum(self) -> int:
        """The least value of a numeric setting (for a timeout: the bound it must exceed)."""
        return 1 if self.key in _AT_LEAST_ONE else 0

    @property
    def maximum(self) -> float:
        """The greatest value of a numeric setting."""
        return _AT_MOST.get(self.key, math.inf)

    def expected(self) -> str:
        """What a valid value looks like, for error messages."""
        if self.key in _CHOICES:
            text = "one of " + ", ".join(_CHOICES[self.key])
        elif self.kind is bool:
            text = "true or false"
        elif self.kind in (int, float):
            noun = "an integer" if self.kind is int else "a finite number"
            most = f"{self.maximum:,}" if self.key in _AT_MOST else None
            if self.key in _MORE_THAN_ZERO:
                text = f"{noun} > {self.minimum}" + (f" and ≤ {most}" if most else "")
            elif most:
                text = f"{noun} from {self.minimum} to {most}"
            else:
                text = f"{noun} ≥ {self.minimum}"
        elif self.kind is list:
            text = "a list of " + ("integers" if self.item is int else "strings")
        elif self.kind is dict:
            text = "a mapping of names to integers or null"
        else:
            text = "a string"
        return text + " or null" if self.nullable else text

    def check(self, value: Any) -> Any:
        """Return ``value`` normalised (float for int, upper-case log level, tuple for list).

        Raises ``ValueError`` with "'key' must be ..., got ..." when the value is wrong.
        """
        if value is None and self.nullable:
            return None
        if self._valid(value):
            if self.kind is float:
                return float(value)
            if self.kind is list:
                return tuple(value)
            if self.kind is dict:
                return dict(value)
            if self.key in _CHOICES:
                return value.upper()
            return value
        raise ValueError(f"'{self.key}' must be {self.expected()}, got {_show(value)}")

    def _valid(self, value: Any) -> bool:
        if self.kind is bool or isinstance(value, bool):
            return isinstance(value, bool) and self.kind is bool
        if self.kind in (int, float):
            wanted = int if self.kind is int else (int, float)
            if not isinstance(value, wanted) or not math.isfinite(value):  # NaN and .inf are no bound
                return False
            if self.key in _MORE_THAN_ZERO:
                return self.minimum < value <= self.maximum
            return self.minimum <= value <= self.maximum
        if self.kind is list:
            assert self.item is not None  # _specs() gives every list setting its item type
            return isinstance(value, (list, tuple)) and all(
                isinstance(item, self.item) and not isinstance(item, bool) for item in value
            )
        if self.kind is dict:
            return isinstance(value, dict) and all(
                isinstance(key, str) and (item is None or type(item) is int) for key, item in value.items()
            )
        if self.key in _CHOICES:
            return isinstance(value, str) and value.upper() in _CHOICES[self.key]
        return isinstance(value, str)


class Settings(Mapping[str, Any]):
    """The merged, validated settings of one crawl: read-only, by attribute or by key.

    ``settings.per_host`` and ``settings["per_host"]`` are the same. List settings come back as
    tuples so no process can change them by accident. ``origin(key)`` says which layer set a
    value, for ``crawlkit config show``.
    """

    __slots__ = ("_values", "_origins")

    def __init__(self, values: Mapping[str, Any], origins: Mapping[str, str]) -> None:
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_origins", dict(origins))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no setting named {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Settings are read-only; pass new values to load_settings()")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __reduce__(self) -> tuple[type[Settings], tuple[dict[str, Any], dict[str, str]]]:
        # The default pickling of __slots__ would go through the blocked __setattr__.
        return (Settings, (self._values, self._origins))

    def __repr__(self) -> str:
        return f"Settings({self._values!r})"

    def origin(self, key: str) -> str:
        """The layer that set ``key``.

        One of "default", "config file PATH", "spider custom_settings" or "command line".
        """
        return self._origins[key]

    def as_dict(self) -> dict[str, Any]:
        """A plain, mutable copy (lists as lists), ready for YAML or JSON."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in self._values.items()
        }


def load_settings(
    config_file: str | Path | None = None,
    spider_settings: Mapping[str, Any] | None = None,
    cli: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the layers over the defaults, validating each value; ``ConfigError`` on the first mistake.

    ``cli`` holds both flags and ``-s KEY=VALUE`` pairs by setting name. A value of None means the
    flag was not given. A string is what ``-s`` passes: for a string setting it is taken as
    written (``null``, ``~`` or nothing clears a nullable one, so ``-s output=-`` works); for any
    other setting it is read as a YAML scalar (``-s robots=false``, ``-s allowed_domains=[a.com,
    b.com]``). Typed values, as click's typed flags give them, are checked as they are.
    """
    specs = _specs()
    values = {key: spec.check(spec.default) for key, spec in specs.items()}
    origins = dict.fromkeys(specs, "default")

    def put(key: str, value: Any, where: str, origin: str) -> None:
        spec = _spec_for(specs, key, where)
        try:
            values[key] = spec.check(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        origins[key] = origin

    if config_file is not None:
        for key, value, line in _read_file(config_file):
            put(key, value, f"{config_file}, line {line}", f"config file {config_file}")
    for key, value in (spider_settings or {}).items():
        put(key, value, "spider custom_settings", "spider custom_settings")
    for key, value in (cli or {}).items():
        if value is None:
            continue
        if isinstance(value, str):
            where = f"-s {key}={value}"
            value = _parse_cli_string(_spec_for(specs, key, where), value, where)
        else:
            where = "command line"
        put(key, value, where, "command line")
    return Settings(values, origins)


def explain(settings: Settings) -> list[tuple[str, Any, str]]:
    """Rows of (key, value, origin) in default.yaml's order, for ``crawlkit config show``."""
    return [(key, value, settings.origin(key)) for key, value in settings.as_dict().items()]


def settings_doc() -> list[tuple[str, Any, str]]:
    """Rows of (key, default, comment) in default.yaml's order, for the README's settings table."""
    return [(spec.key, copy.copy(spec.default), spec.comment) for spec in _specs().values()]


def settings_table() -> str:
    """The README's settings table (Markdown), a row per setting in default.yaml's order.

    tests/test_readme.py checks the README holds exactly this; after changing default.yaml,
    paste the output of ``python -c "from crawlkit.settings import settings_table as t; print(t())"``.
    """
    rows = [f"| `{key}` | `{json.dumps(default)}` | {comment} |" for key, default, comment in settings_doc()]
    return "\n".join(["| setting | default | meaning |", "|---|---|---|", *rows])


def flag_help(key: str, sets: bool | None = None, note: str = "") -> str:
    """The ``--help`` text of a flag that sets ``key``: its comment in default.yaml (without the
    type prefix), its name and its default, so the CLI cannot tell another story than the file.

    ``sets`` is the value an on/off flag gives the setting (``--no-robots``: False); ``note``
    says what the comment cannot (that a flag repeats).
    """
    spec = _specs()[key]
    about = " ".join(filter(None, (_TYPE_PREFIX.sub("", spec.comment).strip(), note)))
    setting = key if sets is None else f"{key} = {json.dumps(sets)}"
    return f"{about} [setting: {setting}; default: {json.dumps(spec.default)}]"


@functools.cache
def _specs() -> dict[str, _Spec]:
    """Read default.yaml once per process: values from the YAML, comments from the lines above."""
    text = DEFAULTS_FILE.read_text(encoding="utf-8")
    comments: dict[str, str] = {}
    block: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            block.append(line.lstrip("#").strip())
            continue
        named = re.match(r"([A-Za-z_]\w*):", line)
        if named:
            comments[named.group(1)] = " ".join(block)
        block = []

    specs = {}
    for key, default, number in _read_file(DEFAULTS_FILE):
        comment = comments.get(key, "")
        where = f"{DEFAULTS_FILE}, line {number}"
        prefix = _TYPE_PREFIX.match(comment)
        if prefix and prefix.group(1):
            spec = _Spec(key, default, _TYPE_NAMES[prefix.group(1)], None, True, comment)
        elif prefix and prefix.group(3):
            spec = _Spec(key, default, dict, None, False, comment)
        elif prefix:
            spec = _Spec(key, default, list, _TYPE_NAMES[prefix.group(2)], False, comment)
        elif default is None or default == []:
            raise ConfigError(
                f"{where}: the comment above '{key}' must start with its type, "
                "e.g. (int or null) or (list of str)"
            )
        else:
            item = type(default[0]) if isinstance(default, list) else None
            spec = _Spec(key, default, type(default), item, False, comment)
        try:
            spec.check(default)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        specs[key] = spec
    return specs


def _read_file(path: str | Path) -> list[tuple[str, Any, int]]:
    """The (key, value, line of the key) entries of a YAML settings file; an empty file has none."""
    try:
        # Checked before opening: opening a FIFO would wait for a writer, and a device such as
        # /dev/zero never ends.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigError(f"{path}: not a regular file; give a YAML settings file")
        with open(path, "rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES:,} bytes, too large for a settings file")
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None

    from crawlkit.yamlfile import read_entries  # here: processes that only unpickle Settings never load PyYAML

    entries = read_entries(text, str(path))
    for key, _, line in entries:
        if not isinstance(key, str):
            raise ConfigError(f"{path}, line {line}: setting names are words, got {_show(key)}")
    return entries



def _spec_for(specs: Mapping[str, _Spec], key: str, where: str) -> _Spec:
    """The spec of ``key``, or a ConfigError that suggests the closest known name."""
    if key in specs:
        return specs[key]
    close = difflib.get_close_matches(key, specs, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"{where}: unknown setting '{key}'{hint} {_SEE_ALL}")


def _parse_cli_string(spec: _Spec, text: str, where: str) -> Any:
    """Read a ``-s`` value: verbatim for string settings, as a YAML scalar or flow list otherwise."""
    if spec.kind is str:
        cleared = spec.nullable and text.strip() in ("", "~", "null", "Null", "NULL")
        return None if cleared else text
    from crawlkit.yamlfile import read_value  # here: processes that only unpickle Settings never load PyYAML

    return read_value(text, where)


def _show(value: Any) -> str:
    """A value as the user would write it in YAML: 'two', 0, true, null, [a, b]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_show(key)}: {_show(item)}" for key, item in value.items()) + "}"
    return repr(value)
