"""The ``crawlkit`` command: flags become settings, errors become one line and exit code 2.

No crawl logic lives here. Exit codes: 0 the crawl finished (page errors are in the stats; a
stop condition such as max_time is a finish too), 1 ``fetch``/``parse`` could not fetch the
page or the callback failed, 2 a usage, config, seeds or spider error, 3 the system refused to
write an output or jobdir file (disk full, read-only), 130 interrupted by Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from crawlkit import __version__
from crawlkit.core.seeds import SeedFile
from crawlkit.errors import CrawlkitError, Interrupted, WriteFailed
from crawlkit.log import LogConfig, setup_logging, summary_text
from crawlkit.process import leave_main_alone
from crawlkit.runner import Crawl
from crawlkit.settings import explain, flag_help, load_settings
from crawlkit.spider import LinkSpider


class UserError(click.ClickException):
    """A mistake the user can fix; printed as ``Error: <message>``, exit code 2."""

    exit_code = 2


class Group(click.Group):
    """Turns every CrawlkitError raised by a command into a UserError, in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CrawlkitError as exc:
            error = UserError(str(exc))
            # 3 for WriteFailed, 1 for FetchFailed. click types exit_code as a ClassVar, yet reads it from the instance.
            error.exit_code = getattr(exc, "exit_code", UserError.exit_code)  # type: ignore[misc]
            raise error from None


def _parse_sets(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"-s {pair!r}: expected KEY=VALUE, e.g. -s per_host=4")
        out[key.strip()] = value
    return out


def _parse_spider_args(pairs: tuple[str, ...]) -> dict[str, str]:
    """``-a NAME=VALUE`` pairs as the spider's keyword arguments (strings, as Scrapy passes them)."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip().isidentifier():
            raise UserError(f"-a {pair!r}: expected NAME=VALUE with NAME a Python identifier, e.g. -a category=books")
        out[name.strip()] = value
    return out


SPIDER_ARG = click.option("-a", "spider_args", multiple=True, metavar="NAME=VALUE",
                          help="A spider argument: spider.NAME = VALUE (a string) in every process. Repeatable.")


def crawl_options(f: Any) -> Any:
    """The flags shared by ``crawl`` and ``runspider``.

    A flag that sets a setting takes its help from the setting's declaration (``flag_help``):
    the comment and default in default.yaml, which the README's settings table shows too.
    """
    options = [
        click.option("--workers", type=int, help=flag_help("workers")),
        click.option("--concurrency", type=int, help=flag_help("concurrency")),
        click.option("--per-host", "per_host", type=int, help=flag_help("per_host")),
        click.option("--delay", type=float, help=flag_help("delay")),
        click.option("--parsers", type=int, help=flag_help("parsers")),
        click.option("-o", "--output", help=flag_help("output", note="Appends to an existing file.")),
        click.option("-O", "--overwrite-output", "overwrite_output", metavar="FILE",
                     help=flag_help("overwrite_output", sets=True, note="Writes FILE, as -o does.")),
        click.option("--warc", type=click.Path(file_okay=False), help=flag_help("warc")),
        click.option("--http-cache", "http_cache", type=click.Path(file_okay=False), help=flag_help("http_cache")),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML settings file."),
        click.option("--max-pages", type=int, help=flag_help("max_pages")),
        click.option("--max-depth", type=int, help=flag_help("max_depth")),
        click.option("--allow-domain", "allow_domains", multiple=True,
                     help=flag_help("allowed_domains", note="Repeatable.")),
        click.option("--user-agent", help=flag_help("user_agent")),
        click.option("--no-robots", is_flag=True, help=flag_help("robots", sets=False)),
        click.option("-s", "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any setting, e.g. -s retries=5."),
        SPIDER_ARG,
        click.option("--log-level", help=flag_help("log_level"),
                     type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False)),
        click.option("--log-file", type=click.Path(dir_okay=False), help=flag_help("log_file")),
        click.option("--jobdir", type=click.Path(file_okay=False), help=flag_help("jobdir")),
        click.option("--recrawl", is_flag=True, help=flag_help("recrawl", sets=True)),
        click.option("--frontier", help=flag_help("frontier")),
        click.option("--crawl-id", "crawl_id", help=flag_help("crawl_id")),
        click.option("-q", "--quiet", is_flag=True, help=flag_help("quiet", sets=True)),
        click.option("--stats", "stats_file", type=click.Path(dir_okay=False), help=flag_help("stats_file")),
        click.option("--report", type=click.Path(dir_okay=False), help=flag_help("report")),
        click.option("--log-json", is_flag=True, help=flag_help("log_json", sets=True)),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _cli_settings(kw: dict[str, Any]) -> dict[str, Any]:
    flags = {
        key: kw[key]
        for key in (
            "workers", "concurrency", "per_host", "delay", "parsers", "output", "max_pages", "max_depth",
            "user_agent", "log_level", "log_file", "jobdir", "warc", "frontier", "crawl_id",
            "http_cache",
        )
        if kw.get(key) is not None
    }
    flags.update({key: kw[key] for key in ("stats_file", "report") if kw.get(key) is not None})
    flags.update({key: True for key in ("quiet", "log_json", "recrawl") if kw.get(key)})
    if flags.get("log_level"):
        flags["log_level"] = flags["log_level"].upper()
    if kw.get("overwrite_output"):
        if kw.get("output"):
            raise UserError("give -o FILE (append) or -O FILE (overwrite), not both")
        flags["output"], flags["overwrite_output"] = kw["overwrite_output"], True
    if kw.get("allow_domains"):
        flags["allowed_domains"] = list(kw["allow_domains"])
    if kw.get("no_robots"):
        flags["robots"] = False
    if kw.get("spider"):
        flags["spider"] = kw["spider"]
    flags.update(_parse_sets(kw.get("sets", ())))
    return flags


def _run(kw: dict[str, Any], seeds_file: str | None, spider_spec: str | None) -> None:
    """Set up the crawl (``runner.Crawl``), run it, print the summary; exit 130 when interrupted, 3 (after
    the summary) when a write was refused."""
    _execute(Crawl(spider_spec, _cli_settings(kw), config_file=kw.get("config_file"), seeds=seeds_file,
                   spider_args=_parse_spider_args(kw.get("spider_args", ()))))


def _execute(run: Crawl) -> None:
    from crawlkit.core.progress import wants_live_view  # the crawl machinery, which the other commands need not import

    code = 0
    failed: WriteFailed | None = None
    try:
        run.run(terminal=wants_live_view(run.settings.output))
    except Interrupted:
        code = 130
    except WriteFailed as exc:
        if run.stats is None:  # refused before the crawl began (opening the output): nothing to sum up
            raise
        failed = exc
    assert run.stats is not None and run.log is not None  # an engine was made: Interrupted comes from its run()
    click.echo(summary_text(run.stats.summary(), run.log), err=True)
    if failed is not None:
        raise failed
    if code:
        sys.exit(code)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crawlkit")
def cli() -> None:
    """crawlkit: a parallel web crawler (multiprocess fetchers and parsers, exact per-host limits)."""


@cli.command()
@click.argument("seeds_file", required=False, type=click.Path(dir_okay=False))
@click.option("--spider", help=flag_help("spider"))
@crawl_options
def crawl(seeds_file: str | None, spider: str | None, **kw: Any) -> None:
    """Crawl from the URLs in SEEDS_FILE (one per line).

    \b
    Example:
      crawlkit crawl seeds.txt --workers 8 --per-host 2 -o out.jsonl
    """
    _run(kw, seeds_file, spider)


@cli.command()
@click.argument("spider_file", type=click.Path(dir_okay=False))
@crawl_options
def runspider(spider_file: str, **kw: Any) -> None:
    """Run the spider in SPIDER_FILE (file.py or file.py:Class) from its own start URLs.

    \b
    Example:
      crawlkit runspider quotes.py -o quotes.jsonl
    """
    if not Path(spider_file.split(":", 1)[0]).is_file():
        raise UserError(f"spider file {spider_file!r} does not exist; give the path of a .py file")
    _run(kw, None, spider_file)


@cli.command()
@click.argument("seeds_file", type=click.Path(dir_okay=False))
@click.option("--frontier", required=True, help="The shared crawl's Redis: redis://host:port/db.")
@click.option("--crawl-id", "crawl_id", default=LinkSpider.name, show_default=True,
              help="Name of the shared crawl (its spider's name unless set).")
def seed(seeds_file: str, frontier: str, crawl_id: str) -> None:
    """Add the URLs in SEEDS_FILE to a shared crawl, running or not started yet.

    URLs the crawl has already seen are skipped. Nodes follow links within the hosts of their
    own seeds (or --allow-domain); a seed elsewhere is fetched, its links are not.

    \b
    Example:
      crawlkit seed --frontier redis://10.0.0.5:6379/0 more-seeds.txt
    """
    from crawlkit.backends.redis import add_seeds

    urls = list(SeedFile(seeds_file))
    new = add_seeds(frontier, crawl_id, urls)
    click.echo(f"{new} new seed(s) added to crawl {crawl_id!r}; {len(urls) - new} already seen", err=True)
def page_options(f: Any, callback: bool = True) -> Any:
    """The flags shared by ``fetch``, ``parse`` and (without ``--callback``) ``shell``: one page through a
    crawl's settings."""
    options = [
        click.option("--spider", help="Spider whose callback runs on the page: path/to/file.py:Class or module:Class."),
        *([click.option("--callback", help="Spider method to call (default: parse).")] if callback else []),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML settings file."),
        click.option("--user-agent", help=flag_help("user_agent")),
        click.option("--no-robots", is_flag=True, help=flag_help("robots", sets=False)),
        click.option("--render/--no-render", default=None,
                     help="Render the page in a browser, or fetch it plainly, whatever the request, the hosts "
                          "rules and the render settings say (default: as the crawl would)."),
        click.option("-s", "--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Any setting, e.g. -s read_timeout=5."),
        SPIDER_ARG,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _json_object(flag: str, text: str | None) -> dict[str, Any]:
    """The JSON object a flag such as ``--meta`` gives; UserError for anything else."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{flag} {text!r} is not JSON ({exc}); e.g. {flag} '{{\"page\": 2}}'") from None
    if not isinstance(value, dict):
        raise UserError(f"{flag} {text!r} is not a JSON object; e.g. {flag} '{{\"page\": 2}}'")
    return value


def _page_setup(url: str | None, kw: dict[str, Any]) -> Crawl:
    """The settings and spider of ``fetch``, ``parse`` and ``shell`` (from the flags of ``page_options``),
    with logging set up."""
    cli = {
        "user_agent": kw.get("user_agent"),
        "robots": False if kw.get("no_robots") else None,
        **_parse_sets(kw.get("sets", ())),
    }
    spider_args: dict[str, Any] = _parse_spider_args(kw.get("spider_args", ()))
    if not kw.get("spider") and url is not None:
        spider_args["start_urls"] = [url]  # the built-in spider stays on the page's host, as on its seeds' hosts
    page = Crawl(kw.get("spider"), cli, config_file=kw.get("config_file"), spider_args=spider_args)
    from crawlkit.paths import check_writable

    check_writable("log_file", page.settings.log_file)
    setup_logging(LogConfig.from_settings(page.settings))
    return page


def _one_page(url: str, kw: dict[str, Any], show_headers: bool, spider_required: bool) -> None:
    """Settings and logging for ``fetch``/``parse``, then ``debugging.show_page``; exits with its code."""
    from crawlkit.tools.debugging import show_page

    spider_spec = kw.get("spider")
    if kw.get("callback") and not spider_spec:
        raise UserError("--callback needs --spider: the callback is a method of that spider")
    meta, cb_kwargs = _json_object("--meta", kw.get("meta")), _json_object("--cbkwargs", kw.get("cb_kwargs"))
    page = _page_setup(url, kw)
    spider = page.spider if spider_spec or spider_required else None
    if spider is not None:
        # Tracebacks of callback errors, and each link the crawl's filters drop, with its reason.
        logging.getLogger("crawlkit.parser").setLevel(logging.DEBUG)
    # A FetchFailed is a CrawlkitError with exit code 1: the Group prints its one line.
    sys.exit(show_page(url, page.settings, spider, page.spider_spec, kw.get("callback"), show_headers, meta,
                       cb_kwargs, kw.get("render")))


@cli.command()
@click.argument("url")
@page_options
def fetch(url: str, **kw: Any) -> None:
    """Fetch one URL with the crawl's settings, robots.txt and User-Agent; print status, headers and body.

    With --spider, print what its callback yields instead of the body. Redirects are followed
    (each is shown on stderr); nothing is retried. Exit code 1 when the page cannot be fetched.
    A page the crawl would render is rendered in a browser and its DOM printed (--render and
    --no-render force either way).

    \b
    Example:
      crawlkit fetch https://example.com/ --config polite.yaml
      crawlkit fetch https://example.com/books --spider shop.py:Shop --callback parse_list
    """
    _one_page(url, kw, show_headers=True, spider_required=False)


@cli.command()
@click.argument("url")
@page_options
@click.option("--meta", metavar="JSON", help="The request's meta, as a JSON object: what response.meta holds.")
@click.option("--cbkwargs", "cb_kwargs", metavar="JSON",
              help="Keyword arguments of the callback (the request's cb_kwargs), as a JSON object.")
def parse(url: str, **kw: Any) -> None:
    """Fetch URL and show what a spider callback yields: items as JSON, requests with their callbacks.

    Links the crawl would not follow (offsite, too deep, ...) are counted, and listed on stderr;
    an exception in the callback is shown with its traceback and makes the exit code 1.
    Without --spider, the built-in spider runs (as in `crawlkit crawl`). --meta and --cbkwargs
    give the request what an earlier page would have (as Scrapy's parse does). A page the crawl
    would render (the request's render=, the spider's own start request for URL, a hosts rule,
    the render settings) is rendered and the callback gets its DOM; --render/--no-render force it.

    \b
    Example:
      crawlkit parse https://example.com/books/1 --spider shop.py:Shop --callback parse_book
      crawlkit parse https://example.com/books/1 --spider shop.py:Shop --callback parse_book --meta '{"shelf": 3}'
    """
    _one_page(url, kw, show_headers=False, spider_required=True)


@cli.command()
@click.argument("url", required=False)
@functools.partial(page_options, callback=False)
def shell(url: str | None, **kw: Any) -> None:
    """Open a Python prompt with URL fetched into `response`, to try selectors on (IPython when installed).

    The page is fetched as `crawlkit fetch` fetches it (robots.txt, redirects, settings, and the
    --spider's custom_settings; rendered when the crawl would render it, or with --render);
    `fetch(url)` loads another, `view(response)` opens it in a browser; `spider`, `settings` and
    `request` are there too; `shelp()` lists them.

    \b
    Example:
      crawlkit shell https://example.com/books --spider shop.py
      >>> response.css("h1::text").get()
    """
    from crawlkit.parse.links import AllowedDomains
    from crawlkit.tools.shell import Shell

    page = _page_setup(url, kw)
    domains = [*(page.spider.allowed_domains if kw.get("spider") else []), *page.settings.allowed_domains]
    prompt = Shell(page.settings, page.spider, AllowedDomains(domains), kw.get("render"))
    if url is not None:
        prompt.fetch(url)
    prompt.run()


@cli.command()
@click.argument("name")
def new(name: str) -> None:
    """Write NAME.py (a spider that runs as is) and NAME.yaml (a commented config); never overwrites.

    \b
    Example:
      crawlkit new books
      crawlkit runspider books.py --config books.yaml
    """
    from crawlkit.tools.scaffold import class_name, new_project

    spider, config = new_project(name, Path.cwd())
    click.echo(f"wrote {spider} (class {class_name(name)}) and {config}")
    click.echo(f"next: set start_urls in {spider.name}, try `crawlkit parse URL --spider {spider.name}`, "
               f"then `crawlkit runspider {spider.name} --config {config.name}`")


@cli.group()
def config() -> None:
    """Inspect settings.

    \b
    Example:
      crawlkit config show --config configs/example.yaml
    """


@config.command("show")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML settings file.")
@click.option("-s", "--set", "sets", multiple=True, metavar="KEY=VALUE")
def config_show(config_file: str | None, sets: tuple[str, ...]) -> None:
    """Print the effective settings and where each came from.

    \b
    Example:
      crawlkit config show --config configs/example.yaml -s per_host=4
    """
    settings = load_settings(config_file, None, _parse_sets(sets))
    rows = explain(settings)
    width = max(len(key) for key, _, _ in rows)
    for key, value, origin in rows:
        click.echo(f"{key:<{width}}  {value!r:<40}  {origin}")


@cli.command()
@click.option("-o", "--output", default="demo.jsonl", show_default=True, help="Items file (replaced).")
@click.option("--hosts", default=2, show_default=True, help="Hosts of the local demo site.")
@click.option("--pages", default=50, show_default=True, help="Pages per host.")
@click.option("--workers", type=int, help=flag_help("workers"))
def demo(output: str, hosts: int, pages: int, workers: int | None) -> None:
    """Serve a small local site on loopback and crawl it (works offline).

    \b
    Example:
      crawlkit demo -o demo.jsonl
    """
    from crawlkit.tools.site import SiteProcess, SiteSpec

    with SiteProcess(SiteSpec(hosts=hosts, pages=pages)) as site:
        seeds = site.seeds()
        click.echo(f"demo site: {', '.join(seeds)} "
                   "(with 404s, redirects, a redirect loop and robots.txt rules, on purpose)", err=True)
        _execute(Crawl(None, {"output": output, "overwrite_output": True, "workers": workers},
                       spider_args={"start_urls": seeds}))
        pages, broken = len(site.expected_urls()), len(site.missing_urls())
    click.echo(f"items written to {output}, one a page the built-in spider fetched: the site has {pages} "
               f"reachable pages (200) and {broken} broken links (404), {pages + broken} items; redirects, "
               "the redirect loop and what robots.txt disallows give none", err=True)


@cli.command()
@click.option("--hosts", default=2, show_default=True, help="Hosts of the local site.")
@click.option("--pages", default=1000, show_default=True, help="Pages per host.")
@click.option("--page-size", default=20_000, show_default=True, help="Approximate bytes of HTML per page.")
@click.option("--latency", default=0.0, show_default=True, help="Seconds the site waits before each response.")
@click.option("--workers", type=int, help=flag_help("workers"))
@click.option("--concurrency", type=int, help=flag_help("concurrency"))
@click.option("--per-host", "per_host", type=int, help=flag_help("per_host"))
@click.option("--parsers", type=int, help=flag_help("parsers"))
@click.option("--spider", default="light", show_default=True,
              help="light (CSS), soup (BeautifulSoup html.parser), or path.py:Class.")
@click.option("--render", is_flag=True, help="Render every page in a browser (render: true; needs crawlkit[render]).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
def bench(as_json: bool, **kw: Any) -> None:
    """Crawl a generated local site; print pages/s, CPU per page, peak memory and what the server saw.

    CPU and memory cover every crawlkit process (not the site's). Works offline.

    \b
    Example:
      crawlkit bench --pages 3000 --workers 2 --per-host 8 --spider soup
      crawlkit bench --pages 100 --render
    """
    import json

    from crawlkit.tools.bench import format_report, run_bench

    result = run_bench(**kw)
    click.echo(json.dumps(result) if as_json else format_report(result))


def main() -> None:
    """The ``crawlkit`` command's entry point (its console script)."""
    leave_main_alone()
    cli(prog_name="crawlkit")
