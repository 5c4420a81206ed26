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

Scrapy's names for the settings crawlkit has (``DOWNLOAD_DELAY``, ``ITEM_PIPELINES``...) are read
in every layer as the crawlkit setting they mean (``SCRAPY_SETTINGS``, one table, from which the
README's "Scrapy settings" table is built too), so a ported spider's ``custom_settings`` and a
``-s`` from a Scrapy habit work; a Scrapy name crawlkit has no setting for is an error that says
what to do instead (``SCRAPY_MISSING``), rather than a setting silently ignored.

Every mistake becomes a ``ConfigError`` with a one-line message that names where the value came
from (file and line, the spider, or the ``-s`` argument), the key, the bad value and the fix.
``load_settings`` runs in the main process; the resulting ``Settings`` pickles cheaply to the
fetcher and parser processes.
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib
import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawlkit.errors import ConfigError

DEFAULTS_FILE = Path(__file__).with_name("default.yaml")

#: Shown in "unknown setting" messages: where a user finds the full list.
_SEE_ALL = "(see configs/default.yaml for every setting)"

# Numeric settings must be >= 0; these must be >= 1 (a zero here would crawl nothing).
_AT_LEAST_ONE = frozenset(
    {"workers", "concurrency", "per_host", "parsers", "max_url_length", "max_body", "lease_time", "max_process_deaths",
     "refetch_grow", "render_processes", "render_pages"}
)
# Timeouts of 0 would fail every fetch, a memory check every 0 s would be all the engine did: these must be more than 0.
_MORE_THAN_ZERO = frozenset(
    {"connect_timeout", "read_timeout", "download_timeout", "memory_check_interval", "refetch_shrink", "render_timeout"}
)
# Upper bounds where a larger value fails the crawl at start: every fetcher receives both ends
# of every fetch queue (4 per fetcher) and parser channel, and a process can be handed at most
# 256 descriptors at its start (multiprocessing's forkserver); a unit of concurrency is a
# thread, a semaphore and a socket; per_host is a semaphore's count (a C int), and more than
# concurrency allows is never in flight. The comments in default.yaml say so.
MAX_WORKERS = 24
_AT_MOST: dict[str, float] = {"workers": MAX_WORKERS, "parsers": 16, "concurrency": 1024, "per_host": 1024}
# Absurd values that would not fail at start but stall or sink the crawl later: a delay or a
# timeout of 1e300 s waits for ever, a million retries hammer a server, a body of a terabyte is
# held in a fetcher's memory. A day, a hundred tries and a gibibyte are past any real need.
_AT_MOST.update(dict.fromkeys(
    ("delay", "robots_recheck_after", "retry_backoff", "retry_after_max", "connect_timeout", "read_timeout",
     "download_timeout", "progress_interval", "shutdown_timeout", "lease_time", "callback_timeout",
     "memory_check_interval", "render_timeout"), 86_400))
# A browser each, a tab each: past these a machine swaps. Each renderer's 2 fetch queues are handed to every
# fetcher too, so 24 workers and 4 renderers stay under the 256 descriptors a process is handed at its start.
_AT_MOST.update(render_processes=4, render_pages=64)
_AT_MOST.update(http_cache_ttl=10 * 365 * 86_400)  # ten years: longer is "for ever", which 0 says
_AT_MOST.update(dict.fromkeys(("retries", "robots_rechecks", "max_redirects", "max_process_deaths"), 100))
_AT_MOST.update(max_body=1 << 30, max_url_length=65_536, refetch_grow=100, refetch_shrink=1)
_AT_MOST.update(adaptive_max_delay=86_400)
_CHOICES = {"log_level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), "order": ("breadth-first", "depth-first")}

_TYPE_PREFIX = re.compile(r"^\((?:(int|str) or null|list of (int|str)|(map) of str to int or null|(rules))\)")
_TYPE_NAMES = {"int": int, "str": str}

# Settings whose value is a structure YAML's types cannot describe (a map of host globs to
# per-site rules, a list of link rules), marked "(rules)" in default.yaml: each is checked by a
# function named here as "module:function", imported only when such a setting is read. The
# function takes the value and returns it normalised (hashable parts, defaults filled in), or
# raises ValueError with a message that starts "'key' ..." and says what a valid value is.
_SHAPES: dict[str, str] = {
    "hosts": "crawlkit.sites:check_hosts",
    "url_rewrites": "crawlkit.urlnorm:check_rewrites",
    "content_types": "crawlkit.fetch.content_types:check_content_types",
    "follow": "crawlkit.linkextractors:check_follow",
    "sitemap_since": "crawlkit.extensions.sitemaps:check_since",
    "recrawl_after": "crawlkit.recrawl:check_recrawl_after",
    "refetch_interval": "crawlkit.recrawl:check_refetch_interval",
    "refetch_min": "crawlkit.recrawl:check_refetch_min",
    "refetch_max": "crawlkit.recrawl:check_refetch_max",
    "render": "crawlkit.render.choose:check_render",
    "render_when": "crawlkit.render.choose:check_render_when",
    "render_block": "crawlkit.render.choose:check_render_block",
}

#: A settings file is a page of YAML; more than this is not one (and is not read further).
MAX_CONFIG_BYTES = 1_000_000


def _by_order(name: str) -> Callable[[Any], list[str]]:
    """A converter of Scrapy's ``{path: order}`` mapping to crawlkit's ordered list of class specs.

    Entries are sorted by their numbers, ``None`` ones (Scrapy's "disable") are left out, and a
    dotted ``package.module.Class`` becomes ``package.module:Class``, crawlkit's way to name a class.
    """

    def convert(value: Any) -> list[str]:
        if not isinstance(value, dict) or not all(
            isinstance(path, str) and (order is None or type(order) is int) for path, order in value.items()
        ):
            raise ValueError(f"'{name}' must be a mapping of class paths to order numbers or null, got {_show(value)}")
        ordered = sorted((order, path) for path, order in value.items() if order is not None)
        return [path if ":" in path or "." not in path else ":".join(path.rsplit(".", 1)) for _, path in ordered]

    return convert


def _no_limit_is_most(key: str) -> Callable[[Any], Any]:
    """A converter of a Scrapy limit whose 0 means none (``DOWNLOAD_MAXSIZE``, ``URLLENGTH_LIMIT``) to
    crawlkit's ``key``, whose largest value stands for it (1 GiB of body, 65,536 characters of URL)."""

    def convert(value: Any) -> Any:
        return _AT_MOST[key] if value == 0 and not isinstance(value, bool) else value

    return convert


def _scrapy_cache_dir(value: Any) -> Any:
    """Scrapy's ``HTTPCACHE_ENABLED``: true caches in ``httpcache`` (Scrapy's HTTPCACHE_DIR default), false in none."""
    if not isinstance(value, bool):
        raise ValueError(f"'HTTPCACHE_ENABLED' must be true or false, got {_show(value)}")
    return "httpcache" if value else None


def _scrapy_cache_policy(value: Any) -> Any:
    """Scrapy's ``HTTPCACHE_POLICY`` class path: its RFC2616Policy is ``http_cache_rfc9111``, DummyPolicy not."""
    name = value.rsplit(".", 1)[-1] if isinstance(value, str) else None
    if name not in ("RFC2616Policy", "DummyPolicy"):
        raise ValueError(f"'HTTPCACHE_POLICY' must name Scrapy's RFC2616Policy or DummyPolicy, got {_show(value)}")
    return name == "RFC2616Policy"


@dataclass(frozen=True)
class ScrapyName:
    """A Scrapy setting crawlkit has under another name: the name, how a value converts, what differs."""

    key: str
    convert: Callable[[Any], Any] | None = None
    note: str = "same"


#: Scrapy's setting names that mean a crawlkit setting, accepted in every layer (the README's
#: "Scrapy settings" table is built from this and ``SCRAPY_MISSING``; a test keeps them in step).
SCRAPY_SETTINGS: dict[str, ScrapyName] = {
    "CONCURRENT_REQUESTS": ScrapyName("concurrency"),
    "CONCURRENT_REQUESTS_PER_DOMAIN": ScrapyName(
        "per_host", note="per host name, as Scrapy's download slots are; crawlkit's default is 2, Scrapy's 8"),
    "DOWNLOAD_DELAY": ScrapyName(
        "delay", note="seconds, between request starts to one host; exact (Scrapy varies it from 0.5 to 1.5 times)"),
    "ROBOTSTXT_OBEY": ScrapyName("robots", note="crawlkit's default is true (Scrapy's is false, its project "
                                                "template sets true)"),
    "USER_AGENT": ScrapyName("user_agent", note="also the name matched in robots.txt (Scrapy's "
                                                "ROBOTSTXT_USER_AGENT)"),
    "AUTOTHROTTLE_ENABLED": ScrapyName(
        "adaptive", note="per host, and moves a host's requests at once before its delay (Scrapy's, one delay per "
                         "download slot from the latency); AUTOTHROTTLE_TARGET_CONCURRENCY has no counterpart"),
    "AUTOTHROTTLE_MAX_DELAY": ScrapyName("adaptive_max_delay"),
    "CONCURRENT_REQUESTS_PER_IP": ScrapyName(
        "per_ip", bool, note="on or off: a number other than 0 turns it on, and the cap at one address is per_host "
                             "(CONCURRENT_REQUESTS_PER_DOMAIN), each host's own from the hosts setting"),
    "DEPTH_LIMIT": ScrapyName("max_depth"),
    "CLOSESPIDER_PAGECOUNT": ScrapyName("max_pages", note="counts the pages of every run of a resumed crawl"),
    "CLOSESPIDER_ITEMCOUNT": ScrapyName("max_items", note="counts the items of every run of a resumed crawl"),
    "CLOSESPIDER_ERRORCOUNT": ScrapyName("max_errors", note="counts every error_* counter (failed exchanges too, "
                                                            "which Scrapy does not count), of every run"),
    "CLOSESPIDER_TIMEOUT": ScrapyName("max_time", note="seconds of this run, from when its processes are up"),
    "CLOSESPIDER_TIMEOUT_NO_ITEM": ScrapyName("max_time_without_items",
                                              note="checked every quarter second (Scrapy checks every N seconds, "
                                                   "so stops after N to 2N)"),
    "MEMUSAGE_WARNING_MB": ScrapyName("memory_warning_mb", note="the sum of the PSS of every crawlkit process "
                                                                "(Scrapy: the peak RSS of its one process)"),
    "MEMUSAGE_LIMIT_MB": ScrapyName("memory_limit_mb", note="the same sum; the crawl stops as at max_items, with "
                                                            "exit code 0, the reason saying why"),
    "MEMUSAGE_CHECK_INTERVAL_SECONDS": ScrapyName("memory_check_interval", note="crawlkit's default is 5 s, "
                                                                                "Scrapy's 60"),
    "RETRY_TIMES": ScrapyName("retries"),
    "RETRY_HTTP_CODES": ScrapyName("retry_http_codes"),
    "DOWNLOAD_TIMEOUT": ScrapyName("download_timeout", note="seconds for the whole exchange; connect_timeout and "
                                                            "read_timeout bound its parts"),
    "DOWNLOAD_MAXSIZE": ScrapyName("max_body", _no_limit_is_most("max_body"),
                                   note="bytes of decompressed body; 0 (no limit) becomes 1 GiB, crawlkit's most"),
    "REDIRECT_MAX_TIMES": ScrapyName("max_redirects"),
    "URLLENGTH_LIMIT": ScrapyName("max_url_length", _no_limit_is_most("max_url_length"),
                                  note="characters; 0 (no limit) becomes 65,536, crawlkit's most"),
    "COOKIES_ENABLED": ScrapyName("cookies"),
    "LOG_LEVEL": ScrapyName("log_level"),
    "LOG_FILE": ScrapyName("log_file", note="the log goes to stderr as well"),
    "JOBDIR": ScrapyName("jobdir"),
    "FEED_EXPORT_FIELDS": ScrapyName("export_fields"),
    "EXTENSIONS": ScrapyName("extensions", _by_order("EXTENSIONS"),
                             note="classes built without arguments (no `from_crawler`), whose methods named after "
                                  "crawlkit's events are called in the engine process; `null` ones (Scrapy's "
                                  "built-ins turned off) are left out"),
    "ITEM_PIPELINES": ScrapyName("pipelines", _by_order("ITEM_PIPELINES"),
                                 note="run in the order of their numbers; `null` ones are left out; "
                                      "`package.module.Class` is read as `package.module:Class`"),
    "HTTPCACHE_ENABLED": ScrapyName("http_cache", _scrapy_cache_dir,
                                    note="true caches in ./httpcache; HTTPCACHE_DIR names another directory"),
    "HTTPCACHE_DIR": ScrapyName("http_cache", note="a directory, relative to where crawlkit runs (Scrapy's is "
                                                   "relative to the project's .scrapy); setting it turns the cache on"),
    "HTTPCACHE_EXPIRATION_SECS": ScrapyName("http_cache_ttl"),
    "HTTPCACHE_IGNORE_HTTP_CODES": ScrapyName("http_cache_ignore_statuses"),
    "HTTPCACHE_POLICY": ScrapyName("http_cache_rfc9111", _scrapy_cache_policy,
                                   note="RFC2616Policy is http_cache_rfc9111: true, DummyPolicy false"),
    "DOWNLOADER_MIDDLEWARES": ScrapyName("middlewares", _by_order("DOWNLOADER_MIDDLEWARES"),
                                         note="`process_request` (in the fetcher) and `process_response` (in "
                                              "the parser) both run in the order of their numbers (Scrapy runs "
                                              "`process_response` in the reverse); `null` ones (Scrapy's built-ins "
                                              "turned off) are left out"),
}

#: Scrapy settings crawlkit has no setting for, with what to do instead. Any other upper-case
#: name is taken for a Scrapy setting too, and refused with the general advice.
SCRAPY_MISSING: dict[str, str] = {
    "BOT_NAME": "the spider's name names the crawl (logs, stats, a shared crawl's id); remove it",
    "DEFAULT_REQUEST_HEADERS": "set a hosts rule with headers (hosts: {\"*\": {headers: {...}}}: added to every "
                               "request, a request's own win), or headers in Request(headers=...)",
    "DEPTH_PRIORITY": "set order: breadth-first (the default: least depth first) or depth-first; priority "
                      "comes first in both",
    "DNS_TIMEOUT": "nearest is connect_timeout (it covers name resolution)",
    "DOWNLOAD_WARNSIZE": "no warning size: max_body aborts larger responses",
    "FEEDS": "one feed: -o FILE or -O FILE (the output and overwrite_output settings)",
    "FEED_EXPORT_ENCODING": "exports are always UTF-8; remove it",
    "FEED_FORMAT": "the output file's extension picks the format (output)",
    "FEED_URI": "use -o FILE (the output setting)",
    "HTTPERROR_ALLOWED_CODES": "set handle_error_statuses = True on the spider",
    "HTTPPROXY_ENABLED": "set proxy (http://[user:pass@]host:port) or a request's meta['proxy']",
    "LOG_ENABLED": "nearest is quiet (warnings, errors and the summary only) or log_level",
    "LOG_FORMAT": "the log's format is fixed; log_json gives one JSON object per line",
    "MEMUSAGE_ENABLED": "memory is measured when memory_warning_mb or memory_limit_mb is set; remove it",
    "NEWSPIDER_MODULE": "crawlkit has no projects: `crawlkit new NAME` writes a spider file",
    "RANDOMIZE_DOWNLOAD_DELAY": "crawlkit waits exactly delay seconds; remove it",
    "REDIRECT_ENABLED": "redirects are always followed; nearest is max_redirects",
    "REQUEST_FINGERPRINTER_IMPLEMENTATION": "crawlkit has one request fingerprint; remove it",
    "RETRY_ENABLED": "set retries: 0 (RETRY_TIMES) to turn retries off",
    "ROBOTSTXT_USER_AGENT": "robots.txt is matched against user_agent",
    "SCHEDULER_DISK_QUEUE": "requests beyond frontier_memory spill to a SQLite file kept in order (order, priority)",
    "SCHEDULER_MEMORY_QUEUE": "set order: breadth-first (FIFO) or depth-first (LIFO)",
    "SPIDER_MIDDLEWARES": "page stages take their place (the stages setting; see \"Page rules as stages\" "
                          "in the README); a Scrapy spider middleware does not run as one",
    "SPIDER_MODULES": "crawlkit has no projects: name the spider with --spider path.py:Class or module:Class",
    "TELNETCONSOLE_ENABLED": "there is no telnet console; remove it",
    "TWISTED_REACTOR": "crawlkit runs no reactor; remove it",
}

_SCRAPY_LIKE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")


def _scrapy_name(key: str, where: str) -> ScrapyName | None:
    """The crawlkit setting a Scrapy name means; None for crawlkit's own names; ConfigError for the others."""
    if key in SCRAPY_SETTINGS:
        return SCRAPY_SETTINGS[key]
    if key in SCRAPY_MISSING:
        raise ConfigError(f"{where}: Scrapy's {key} is not a crawlkit setting; {SCRAPY_MISSING[key]}")
    if _SCRAPY_LIKE.fullmatch(key):
        raise ConfigError(f"{where}: {key} looks like a Scrapy setting, and crawlkit has none of that name "
                          "(nor settings of your own: keep such values on the spider or pipeline); remove it, "
                          "or see \"Coming from Scrapy\" in the README for the Scrapy names crawlkit reads")
    return None


def scrapy_settings_table() -> str:
    """The README's table of Scrapy settings (Markdown): what each maps to, or what to do instead.

    tests/test_readme.py checks the README holds exactly this; regenerate it with
    ``python -c "from crawlkit.settings import scrapy_settings_table as t; print(t())"``.
    """
    rows = [f"| `{name}` | `{alias.key}` | {alias.note} |" for name, alias in sorted(SCRAPY_SETTINGS.items())]
    rows += [f"| `{name}` | none | {advice} |" for name, advice in sorted(SCRAPY_MISSING.items())]
    return "\n".join(["| Scrapy setting | crawlkit setting | |", "|---|---|---|", *rows])


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
        elif self.key in _SHAPES:
            text = "a structure as configs/default.yaml describes"
        elif self.kind is dict:
            text = "a mapping of names to integers or null"
        else:
            text = "a string"
        return text + " or null" if self.nullable else text

    def check(self, value: Any) -> Any:
        """Return ``value`` normalised (float for int, a choice as listed (upper-case log level), tuple for list).

        Raises ``ValueError`` with "'key' must be ..., got ..." when the value is wrong.
        """
        if value is None and self.nullable:
            return None
        if self.key in _SHAPES:
            return _shape_checker(self.key)(value)
        if self._valid(value):
            if self.kind is float:
                return float(value)
            if self.kind is list:
                return tuple(value)
            if self.kind is dict:
                return dict(value)
            if self.key in _CHOICES:
                return next(choice for choice in _CHOICES[self.key] if choice.upper() == value.upper())
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
            return isinstance(value, str) and value.upper() in (choice.upper() for choice in _CHOICES[self.key])
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

    def put(key: str, value: Any, where: str, origin: str, text: bool = False) -> None:
        """Set ``key`` (crawlkit's name or Scrapy's) to ``value``, a ``-s`` string when ``text``."""
        scrapy = _scrapy_name(key, where)
        spec = _spec_for(specs, scrapy.key if scrapy else key, where)
        if text:
            value = _parse_cli_string(spec, value, where, scrapy is not None and scrapy.convert is not None)
        try:
            if scrapy is not None and scrapy.convert is not None:
                value = scrapy.convert(value)
            values[spec.key] = spec.check(value)
        except ValueError as exc:
            alias = f" ({key} is crawlkit's {spec.key})" if scrapy else ""
            raise ConfigError(f"{where}{alias}: {exc}") from None
        origins[spec.key] = origin

    if config_file is not None:
        for key, value, line in _read_file(config_file):
            put(key, value, f"{config_file}, line {line}", f"config file {config_file}")
    for key, value in (spider_settings or {}).items():
        put(key, value, "spider custom_settings", "spider custom_settings")
    for key, value in (cli or {}).items():
        if value is not None:
            text = isinstance(value, str)
            put(key, value, f"-s {key}={value}" if text else "command line", "command line", text)
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
        elif prefix and prefix.group(4):
            if key not in _SHAPES:
                raise ConfigError(f"{where}: '{key}' is marked (rules) but settings._SHAPES names no checker for it")
            spec = _Spec(key, default, type(default), None, False, comment)
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


@functools.cache
def _shape_checker(key: str) -> Callable[[Any], Any]:
    """The function that checks the structured setting ``key`` (see ``_SHAPES``)."""
    module, _, name = _SHAPES[key].partition(":")
    checker: Callable[[Any], Any] = getattr(importlib.import_module(module), name)
    return checker


def check_as(key: str, value: Any) -> Any:
    """``value`` checked as the top-level setting ``key`` is (its type and bounds), for structured
    settings that repeat one (a host's ``per_host``); ValueError as ``_Spec.check`` raises it."""
    return _specs()[key].check(value)


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


def _parse_cli_string(spec: _Spec, text: str, where: str, scrapy_value: bool = False) -> Any:
    """Read a ``-s`` value: verbatim for string settings, as a YAML scalar or flow list otherwise, and
    always as YAML when it is a ``scrapy_value`` a converter turns into the setting's (HTTPCACHE_ENABLED
    is a boolean, though http_cache is a string)."""
    if spec.kind is str and not scrapy_value:
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
