"""Set up and run a crawl: ``crawlkit.crawl()`` for code and tests, and the one set-up the CLI's
``crawl``/``runspider``, ``crawlkit bench`` and ``fetch``/``parse`` build theirs with.

Scrapy runs a spider from code with ``CrawlerProcess`` and a Twisted reactor that cannot be
started twice in a process; here ``crawl()`` is a plain blocking call that returns when the
crawl is over (and may be called again), with the stats and, if asked, the items. Errors are
crawlkit's exceptions (``ConfigError``, ``SpiderError``, ``SeedsError``...), raised before any
process starts where they can be known; the CLI turns them into its one-line messages.

The spider's class travels to the parser processes as a string (``loader.spider_spec``): a class
given to ``crawl()`` must be importable by name, or defined at the top level of a script or of
a ``.py`` file, so that each parser can load it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawlkit.backends import joins_without_seeds
from crawlkit.errors import ConfigError, SeedsError, SpiderError
from crawlkit.loader import load_spider, one_line, spider_spec
from crawlkit.process import context
from crawlkit.settings import Settings, load_settings
from crawlkit.spider import LinkSpider, Spider

if TYPE_CHECKING:
    from crawlkit.core.engine import Engine
    from crawlkit.core.progress import Monitor
    from crawlkit.core.seeds import SeedFile
    from crawlkit.log import LogConfig
    from crawlkit.stats import Stats

# ``import crawlkit`` (every spider file, in every parser process) imports this module: the crawl
# machinery (engine, progress, seeds) is imported where it is used, as a parser needs none of it.


@dataclass
class CrawlResult:
    """What ``crawl()`` returns: the crawl's stats (``stats.counts``, ``stats.reason``...) and its items,
    as the output file would hold them, when ``items=True`` (else None)."""

    stats: Stats
    items: list[Any] | None


class Crawl:
    """One crawl, set up: the spider's class found, the settings layered with its ``custom_settings``,
    the engine's spider built. ``run()`` runs it; ``engine()`` gives the engine for callers who run it
    their own way (``bench``); ``fetch``/``parse`` use the settings and spider alone.

    ``spider``: a Spider subclass, a spec (``path.py:Class``, ``module:Class``) or None for the
    ``spider`` setting (the built-in spider if unset). ``settings``: the top layer, as flags and
    ``-s`` give it (a string value is read as ``-s`` reads it). ``seeds``: a seeds file, whose hosts
    the built-in spider stays on. ``spider_args``: the spider's keyword arguments, in every process.
    """

    def __init__(self, spider: type[Spider] | str | None = None, settings: Mapping[str, Any] | None = None, *,
                 config_file: str | Path | None = None, seeds: str | Path | None = None,
                 spider_args: Mapping[str, Any] | None = None) -> None:
        top = dict(settings or {})
        if spider is not None:
            top["spider"] = spider if isinstance(spider, str) else spider_spec(spider)
        # The config file may name the spider, whose custom_settings are a layer below the top one.
        self.spider_spec: str | None = load_settings(config_file, None, top).spider
        self.spider_cls = spider if isinstance(spider, type) else load_spider(self.spider_spec)
        self.settings: Settings = load_settings(config_file, self.spider_cls.custom_settings, top)
        if self.settings.follow and not issubclass(self.spider_cls, LinkSpider):  # rules that would do nothing
            raise ConfigError(f"'follow' is the built-in spider's link rules, and {self.spider_cls.__name__} follows "
                              "the requests its callbacks yield; remove follow, or give the spider rules "
                              "(CrawlSpider, Rule, LinkExtractor)")
        self.spider_kwargs = dict(spider_args or {})
        self.seeds: SeedFile | None = None
        if seeds is not None:
            from crawlkit.core.seeds import SeedFile

            self.seeds = SeedFile(seeds)
            self.spider_kwargs["start_urls"] = self.seeds.sites()  # what the child processes' spiders get
        self.spider = new_spider(self.spider_cls, self.spider_kwargs, self.settings)
        if self.seeds is not None:
            self.spider.start_urls = self.seeds  # type: ignore[assignment]  # an iterable read once, not a list
        self.stats: Stats | None = None  # the running or last run's, once run() has made the engine
        self.log: LogConfig | None = None  # the run's logging, for the summary the CLI prints after it

    def check_start(self) -> None:
        """SeedsError when the crawl has nowhere to start, or the built-in spider nowhere to stay."""
        cls, s = self.spider_cls, self.settings
        if self.seeds is not None:
            return
        # The instance's start_urls: an __init__ may set them from the spider's arguments, as in Scrapy.
        starts = self.spider.start_urls or cls.start_requests is not Spider.start_requests
        if not starts and cls.start is Spider.start and not joins_without_seeds(s):
            # A node of a shared crawl may join without seeds: the others, or `crawlkit seed`, have them.
            raise SeedsError("no seeds: give a SEEDS_FILE, or a spider with start_urls, start() or start_requests()")
        if issubclass(cls, LinkSpider) and not (self.spider.start_urls or cls.allowed_domains or s.allowed_domains):
            # The built-in spider stays within its seeds' hosts; with none it would follow every link on the web.
            raise SeedsError("a node that joins a shared crawl without seeds needs --allow-domain D (repeatable): "
                             "the built-in spider follows links only within its seeds' hosts, and this node has none")

    def engine(self, monitor: Monitor | None = None, items: list[Any] | None = None) -> Engine:
        """The engine of this crawl, not started; ``items`` collects the items as well."""
        from crawlkit.core.engine import CrawlSpec, Engine

        return Engine(CrawlSpec(settings=self.settings, spider=self.spider, spider_spec=self.spider_spec,
                                spider_kwargs=self.spider_kwargs, monitor=monitor, items=items))

    def run(self, terminal: bool = False, items: list[Any] | None = None) -> Stats:
        """Crawl to the end, with logging, progress lines, the stats file and the report (a live view with
        ``terminal``); returns the stats, also kept in ``self.stats`` for a caller that catches an error.

        Raises ``Interrupted`` after Ctrl-C or SIGTERM, ``WriteFailed`` when the system refused a write,
        each after the stats file and report are written.
        """
        self.check_start()
        # The fork server imports what the fetchers and parsers run (about 0.1 s): started now, it
        # does so while this process imports the engine and the live view (rich). Not sooner: the
        # children get the environment it starts with, and the spider's module or __init__ (run in
        # __init__ above) may set variables for its copies there.
        context()
        from crawlkit.core.progress import Monitor

        self.stats = None
        monitor = Monitor(self.settings, self.spider.name, terminal, self._seeds_text())
        self.log = monitor.log
        try:
            with monitor:
                engine = self.engine(monitor, items)
                self.stats = engine.stats
                return engine.run()
        finally:
            if self.stats is not None:
                monitor.finish(self.stats)

    def _seeds_text(self) -> str:
        """Where the crawl starts, in words, for the report."""
        if self.seeds is not None:
            return f"seeds file {self.seeds.path}"
        urls = list(self.spider.start_urls)
        return ", ".join(urls[:10]) + (f" and {len(urls) - 10:,} more" if len(urls) > 10 else "")


def new_spider(spider_cls: type[Spider], kwargs: Mapping[str, Any], settings: Settings) -> Spider:
    """An instance of the spider with its arguments and settings; SpiderError in one line when ``__init__`` fails."""
    try:
        spider = spider_cls(**kwargs)
    except Exception as exc:
        raise SpiderError(f"spider {spider_cls.__name__} could not be created: {one_line(exc)}") from exc
    spider.settings = settings
    return spider


def crawl(spider: type[Spider] | str | None = None, settings: Mapping[str, Any] | None = None, *,
          seeds: str | Path | None = None, config: str | Path | None = None, output: str | None = None,
          items: bool = False, **spider_args: Any) -> CrawlResult:
    """Run a crawl to its end in this process (and the crawl's child processes); return its stats and items.

    ``spider`` is a Spider subclass (defined at the top level of an importable module or of a
    script), a spec (``path.py:Class``, ``module:Class``) or None for the built-in spider.
    ``settings`` are crawlkit's (or Scrapy's) setting names and values over ``config`` (a YAML file)
    and the spider's ``custom_settings``; ``output`` is an items file as ``-o`` takes it; ``seeds``
    a seeds file; ``items=True`` collects the items in the result too. The remaining keyword
    arguments are the spider's, as ``-a`` gives them (``start_urls=[...]`` among them)::

        result = crawlkit.crawl(Quotes, {"DOWNLOAD_DELAY": 0.5}, items=True, category="humor")
        print(result.stats.counts["pages"], len(result.items))

    Raises crawlkit's errors (``ConfigError``, ``SpiderError``, ``SeedsError``, ``WriteFailed``,
    ``Interrupted``) instead of exiting.
    """
    top = {**(settings or {}), **({"output": output} if output is not None else {})}
    run = Crawl(spider, top, config_file=config, seeds=seeds, spider_args=spider_args)
    collected: list[Any] | None = [] if items else None
    return CrawlResult(run.run(items=collected), collected)
