"""The order of the page stages: the built-in list, the ``stages`` setting read against it, one parser's stages.

The built-in stages and their numbers; a user's stage goes between them by its own number
(ties keep the order of this list, then the setting's), as Scrapy's DOWNLOADER_MIDDLEWARES and
SPIDER_MIDDLEWARES numbers place middlewares::

    100 cookies             Set-Cookie headers to the engine's jar             (on_response)
    200 warc                every HTTP answer to the WARC files                (on_response)
    300 middlewares         the users' process_response hooks                  (on_response)
    400 retry               retryable fetch errors and retry_http_codes        (on_failure, on_response)
    500 robots              robots.txt answers and their Sitemap lines         (on_failure, on_response)
    600 redirect            3xx with a Location: a request for the target      (on_response)
    650 recrawl             validators to the jobdir; a revisit's 304, 404/410 (on_response)
    700 sitemaps            a sitemap's URLs as requests                       (on_response)
    750 render_check        render_when, needs_render: render a plain page     (on_response)
    800 directives          robots meta/X-Robots-Tag, canonical; nofollow      (on_response, on_links)
        (the spider's callback, as if at 1000)
    1100 scheme             only http(s) links                                 (on_links)
    1150 normalize          strip_query_params and url_rewrites rewrite URLs   (on_links)
    1200 url_length         max_url_length                                     (on_links)
    1300 depth              max_depth                                          (on_links)
    1400 repeated_segments  max_repeated_segments                              (on_links)
    1500 offsite            allowed_domains, the spider's and the setting's    (on_links)
         (then fingerprints: invalid URLs, repeats within the page and links sent before)

The archive stages come first, so every answer is archived and its cookies kept whatever is
decided next; the hooks see a response before crawlkit judges it; the retry decides before a
robots.txt 503 becomes an answer; the directives are read from the page the callback gets
(not a robots.txt, redirect or sitemap) and, as the page's own word, drop its requests before
the other link stages count them; the link stages run cheap checks before the offsite one
parses a URL. All of them run in the parser process. The request side stays in the fetcher
process, the one place every attempt passes exactly once just before it is sent: the
``middlewares`` setting's ``process_request`` hooks (``crawlkit.extensions.middlewares``).
``max_links_per_page`` is no stage either: it is applied while the callback yields, so a page
of a million links is never held whole.

The ``stages`` setting maps a built-in name or ``path.py:Class`` / ``module:Class`` to its
number; null removes a built-in stage; replacing one is removing it and adding another at its
number. ``ordered_stages`` reads the setting in the main process before the crawl starts (so a
mistake is a one-line error, exit code 2) and again in each parser process.
"""

from __future__ import annotations

import difflib
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from crawlkit.errors import ConfigError, SpiderError
from crawlkit.extensions.components import load_components
from crawlkit.loader import one_line
from crawlkit.parse.archive import CookieStage, WarcStage
from crawlkit.parse.directives import DirectivesStage
from crawlkit.parse.hooks import MiddlewareStage
from crawlkit.parse.links import DepthFilter, LengthFilter, OffsiteFilter, RepeatedSegmentsFilter, SchemeFilter
from crawlkit.parse.normalize import NormalizeStage
from crawlkit.parse.recrawl import RecrawlStage
from crawlkit.parse.redirect import RedirectStage
from crawlkit.parse.retry import RetryStage
from crawlkit.parse.robots import RobotsStage
from crawlkit.parse.sitemaps import SitemapStage
from crawlkit.parse.stages import FailureStage, LinkStage, ResponseStage, StageSetup
from crawlkit.render.choose import RenderCheck

log = logging.getLogger("crawlkit.parser")

#: name -> (number, class) of every built-in stage, in order.
BUILTIN_STAGES: dict[str, tuple[int, type]] = {
    "cookies": (100, CookieStage),
    "warc": (200, WarcStage),
    "middlewares": (300, MiddlewareStage),
    "retry": (400, RetryStage),
    "robots": (500, RobotsStage),
    "redirect": (600, RedirectStage),
    "recrawl": (650, RecrawlStage),
    "sitemaps": (700, SitemapStage),
    "render_check": (750, RenderCheck),
    "directives": (800, DirectivesStage),
    "scheme": (1100, SchemeFilter),
    "normalize": (1150, NormalizeStage),
    "url_length": (1200, LengthFilter),
    "depth": (1300, DepthFilter),
    "repeated_segments": (1400, RepeatedSegmentsFilter),
    "offsite": (1500, OffsiteFilter),
}

#: A stage has one or more of these.
METHODS = ("on_failure", "on_response", "on_links")


def ordered_stages(setting: Mapping[str, int | None]) -> list[tuple[str, type]]:
    """(name, class) of every stage of the crawl by number: the built-ins as ``setting`` changes them.

    ConfigError for an unknown built-in name; SpiderError (from the loader) for a class that
    cannot be loaded or has none of the stage methods. Whether each number is an integer or
    null the settings have checked already.
    """
    numbers = {name: number for name, (number, _) in BUILTIN_STAGES.items()}
    for name, number in setting.items():
        if ":" not in name and name not in BUILTIN_STAGES:
            close = difflib.get_close_matches(name, BUILTIN_STAGES, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"stages: unknown stage '{name}'{hint} (the built-in ones: {', '.join(BUILTIN_STAGES)}; "
                "a class is named as path.py:Class or module:Class)"
            )
        if number is None:
            numbers.pop(name, None)
        else:
            numbers[name] = number
    classes = {name: BUILTIN_STAGES[name][1] for name in numbers if name in BUILTIN_STAGES}
    classes.update(load_components([name for name in numbers if name not in classes], "stage", METHODS))
    position = {name: index for index, name in enumerate(numbers)}  # built-ins first, then the setting's
    return sorted(classes.items(), key=lambda item: (numbers[item[0]], position[item[0]]))


class Stages:
    """One parser's stages, built and split by side, in order: what the Router walks for every page."""

    def __init__(self, setup: StageSetup, ordered: list[tuple[str, type]]) -> None:
        self.instances: list[Any] = []  # a user's stage is any class with the methods
        for name, cls in ordered:
            try:
                stage = cls(setup)
            except Exception as exc:
                raise SpiderError(f"stage {name!r} could not be created: {one_line(exc)}") from exc
            if getattr(stage, "active", True):
                self.instances.append(stage)
        self.failure = [stage.on_failure for stage in self.instances if isinstance(stage, FailureStage)]
        self.response = [stage.on_response for stage in self.instances if isinstance(stage, ResponseStage)]
        self.links = [stage.on_links for stage in self.instances if isinstance(stage, LinkStage)]
        # Failures outside any page (an open() that raised), sent with the next page's stats.
        self.failed: Counter[str] = Counter()
        self.errors: list[Counter[str]] = [self.failed]
        self.errors += [stage.errors for stage in self.instances if isinstance(getattr(stage, "errors", None), Counter)]

    def open(self) -> None:
        """Call each stage's ``open()``, in order; one that raises is logged and counted, never fatal."""
        self._call_all("open")

    def close(self) -> None:
        """Call each stage's ``close()``, in order, even after one raised (logged only: the stats are final)."""
        self._call_all("close")

    def _call_all(self, method: str) -> None:
        for stage in self.instances:
            call = getattr(stage, method, None)
            if not callable(call):
                continue
            try:
                call()
            except Exception as exc:
                self.failed["error_stage"] += 1
                log.error("stage %s: %s() raised %s", type(stage).__name__, method, one_line(exc))
