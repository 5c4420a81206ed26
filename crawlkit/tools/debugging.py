"""One page at a time, for working on a spider: what ``crawlkit fetch`` and ``crawlkit parse`` run.

The page goes through the crawl's own code, in this process: robots.txt is fetched and obeyed
with ``RobotsRules``, the exchange runs in ``fetcher.fetch`` on a ``fetcher.new_session`` (same
User-Agent, timeouts and size caps), redirects are followed hop by hop up to ``max_redirects``
(each hop checked against the spider's allowed domains and robots.txt, and made without the
request's credential headers when it leaves the origin, as the crawl would), and the final
response goes to the parser's ``Router``, which runs the callback and applies the crawl's link
filters. Nothing is retried: a debugging tool shows what the server answered.

A page the crawl would render is rendered (``tools/rendering.py``): by the request's own choice,
its host's rule or the ``render`` setting (the engine's ``RenderChoice``), each hop of a redirect
asked again; or, fetched plainly, when it fails the crawl's adaptive check (``RenderCheck``:
``render_when``, the spider's ``needs_render``). ``--render``/``--no-render`` force either way.
robots.txt is fetched plainly, and checked before each hop, as the crawl does.
"""

from __future__ import annotations

import itertools
import json
import logging
import pickle
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import click

from crawlkit.core.start import start_objects
from crawlkit.errors import FetchErrorKind, FetchFailed
from crawlkit.extensions.robots import NO_ANSWER, ROBOTS_BLOCKED, UNREACHABLE, RobotsRules
from crawlkit.fetch.channels import FetcherConfig
from crawlkit.fetch.fetcher import fetch, new_session
from crawlkit.http import Headers, Request, Response
from crawlkit.log import LogConfig
from crawlkit.messages import FetchResult, PageDone, RenderResult
from crawlkit.parse.links import AllowedDomains
from crawlkit.parse.parser import ParserConfig, Router
from crawlkit.parse.redirect import redirect_request, redirect_target
from crawlkit.parse.retry import RetryPolicy
from crawlkit.parse.stages import Page, StageSetup
from crawlkit.render.choose import AUTO, RenderCheck, RenderChoice, asked
from crawlkit.sites import SiteRules
from crawlkit.spider import Spider
from crawlkit.tools.rendering import PageBrowser
from crawlkit.urls import Fingerprinter, host_of, is_http

log = logging.getLogger("crawlkit.debugging")

START_LOOKUP = 1_000  # start requests looked through for the page's own (a spider's may go on for ever)


def fetch_page(target: str | Request, settings: Any, callback: str | None = None,
               on_hop: Callable[[FetchResult, str], None] | None = None,
               allowed: AllowedDomains | None = None, meta: dict[str, Any] | None = None,
               cb_kwargs: dict[str, Any] | None = None, render: bool | None = None,
               spider: Spider | None = None) -> FetchResult:
    """The final answer for ``target`` (a URL, or a Request as it is), fetched or rendered as a crawl with
    ``settings`` would; FetchFailed with a one-line reason.

    Blocking; ``on_hop(result, target)`` is told of each redirect as it is followed; a redirect
    outside ``allowed`` (the spider's domains) is not. The final result's request carries
    ``callback``, ``meta`` and ``cb_kwargs`` (given with a URL), ready for ``parse_page``. Each
    hop the crawl would render is rendered in this process (a ``RenderResult``; ConfigError
    when Playwright or the browser is missing); ``render`` True or False forces it (``forced``).
    With ``spider``, a URL that is one of its start requests takes that request's render choice,
    unless ``meta`` makes one. A final page fetched plainly that fails the adaptive check
    (``render_after_check``: ``render_when``, and ``spider``'s ``needs_render``) is rendered, as the
    crawl would.
    """
    request = target if isinstance(target, Request) else Request(target, callback=callback, meta=meta,
                                                                   cb_kwargs=cb_kwargs)
    url = request.url
    if not is_http(url):
        raise FetchFailed(f"{url!r} is not an http(s) URL")
    fingerprints = Fingerprinter()
    try:
        seen = {fingerprints.fingerprint(url)}
    except ValueError as exc:
        raise FetchFailed(f"{url!r} cannot be fetched: {exc}") from None
    if render is not None:
        request = forced(request, render)
    elif spider is not None and not isinstance(target, Request) and asked(request) is None:
        request = start_choice(request, spider)
    config = FetcherConfig.from_settings(settings, 1, LogConfig.from_settings(settings))
    session = new_session(config)
    robots = RobotsRules(settings.user_agent, sites=SiteRules(settings.hosts)) if settings.robots else None
    choice = RenderChoice(settings.render, SiteRules(settings.hosts))
    browser: PageBrowser | None = None  # started at the first hop to render
    hops, start = 0, url
    try:
        while True:
            if robots is not None:
                _check_robots(robots, session, config, url)
            result: FetchResult
            if choice.wants(request, host_of(url)):
                browser = browser or PageBrowser(settings)
                result = browser.render(request, robots.rules_of(host_of(url)) if robots is not None else None)
            else:
                result = fetch(session, request, config)
            if result.error:
                raise FetchFailed(_failure(result))
            location = Headers(result.headers).get("Location")
            if not (300 <= result.status < 400 and location):
                again = render_after_check(result, spider, settings)
                if again is None:
                    return result
                request = again  # the same page, to be rendered, as the crawl queues it again
                continue
            target = redirect_target(result.url, location)  # as the crawl's parser reads it
            hops += 1
            if on_hop is not None:
                on_hop(result, target)
            if not is_http(target):
                raise FetchFailed(f"{url} redirects to {target!r}, not an http(s) URL")
            try:
                target_fp = fingerprints.fingerprint(target)
            except ValueError as exc:
                raise FetchFailed(f"{url} redirects to an invalid URL {target!r} ({exc})") from None
            if target_fp in seen:  # the same page by its canonical form, as the crawl judges loops
                raise FetchFailed(f"redirect loop: {url} -> {target}")
            if allowed and not allowed.allows(target):
                raise FetchFailed(f"{url} redirects to {target}, outside allowed_domains, "
                                  "so a crawl would not follow it; "
                                  "add its domain to allowed_domains (-s allowed_domains=[...]) to follow it")
            if hops > settings.max_redirects:
                raise FetchFailed(f"more than max_redirects ({settings.max_redirects}) redirects from {start}")
            seen.add(target_fp)
            request = redirect_request(request, target)  # what the crawl would send next, credentials included
            url = target
    finally:
        session.close()
        if browser is not None:
            browser.close()


def forced(request: Request, render: bool) -> Request:
    """``request`` rendered (True) or fetched plainly (False) whatever the rules say: ``--render``/``--no-render``.

    It is the request's own choice (``meta["render"]``), which wins in the crawl too; a request
    that already has render options (a dict) keeps them with ``--render``.
    """
    if render and isinstance(request.meta.get("render"), dict):
        return request
    return request.replace(meta={**request.meta, "render": render})


def start_choice(request: Request, spider: Spider) -> Request:
    """``request`` with the render choice of the spider's own start request for its page (the same
    fingerprint), if one of its first ``START_LOOKUP`` has one: the crawl would render it as that one says.

    Only the choice: ``--callback`` and ``--meta`` give the rest, as before. A ``start()`` that
    fails is logged and the page goes by the other rules.
    """
    fingerprints = Fingerprinter()
    page = fingerprints.fingerprint(request.url)
    try:
        for own in itertools.islice(start_objects(spider), START_LOOKUP):
            if isinstance(own, Request) and asked(own) is not None and fingerprints.fingerprint(own.url) == page:
                choice = {key: own.meta[key] for key in ("render", "playwright") if key in own.meta}
                return request.replace(meta={**request.meta, **choice})
    except Exception as exc:  # the spider's code (or a URL of it that is no URL): the tool goes on without it
        log.warning("the spider's start requests could not be read (%s: %s); --render renders the page",
                    type(exc).__name__, exc)
    return request


def render_after_check(result: FetchResult, spider: Spider | None, settings: Any) -> Request | None:
    """The request of plainly fetched ``result`` again, to be rendered, when the page fails the crawl's
    adaptive check (``render_when``, ``spider.needs_render``) as a parser's ``RenderCheck`` stage sees it;
    None when it passes, is not checked (not a 2xx HTML page, rendered, its request chose) or no check is set."""
    if isinstance(result, RenderResult):
        return None
    if not settings.render_when and not callable(getattr(spider, "needs_render", None)):
        return None
    config = ParserConfig.from_settings(settings, None, {}, LogConfig.from_settings(settings))
    check = RenderCheck(StageSetup(config, spider or Spider(), Fingerprinter(), RetryPolicy(0, 0.0, 0.0)))
    page = Page(result, PageDone(req_id=result.req_id, host=host_of(result.url)), Counter())
    if check.on_response(page, Response(result.url, result.status, result.headers, result.body,
                                        result.request)) is not None:
        return None
    return page.done.retry


def _check_robots(robots: RobotsRules, session: Any, config: FetcherConfig, url: str) -> None:
    host = host_of(url)
    request = robots.request_for(url)
    if request is not None:
        answer = fetch(session, request, config)
        kind = FetchErrorKind(answer.error) if answer.error else None
        if kind in UNREACHABLE:  # not "robots.txt unavailable": the page would fail the same way
            raise FetchFailed(_failure(answer))
        refused = kind is FetchErrorKind.DESTINATION_BLOCKED  # then the page itself is refused, with that reason
        robots.learn(host, ROBOTS_BLOCKED if refused else NO_ANSWER if answer.error else answer.status, answer.body)
    if robots.unavailable(host):
        raise FetchFailed(f"robots.txt of {host} is unavailable, so a crawl would not fetch {url}; "
                          "add --no-robots to fetch it anyway")
    if not robots.allowed(url):
        raise FetchFailed(f"robots.txt of {host} disallows {url} for this user agent; "
                          "add --no-robots to fetch it anyway")


def _failure(result: FetchResult) -> str:
    """One line for a failed exchange: what happened in words where there are some, the URL, the detail."""
    unreachable = UNREACHABLE.get(FetchErrorKind(result.error)) if result.error else None
    what = unreachable[1] if unreachable else result.error
    return f"{what}: {result.request.url} ({result.message})"


def parse_page(result: FetchResult, spider: Spider, spider_spec: str | None, settings: Any) -> PageDone:
    """Run the spider's callback on ``result`` in the parser's Router: items, filtered requests, counts.

    The callback's errors are counted in ``PageDone.counts`` (``error_spider_*``) and logged by
    the Router; with ``crawlkit.parser`` at DEBUG the log carries the traceback. A status in
    ``retry_http_codes`` goes to the callback as if its retries were spent (when the spider
    takes error statuses at all), instead of being queued again.
    """
    config = ParserConfig.from_settings(settings, spider_spec, {}, LogConfig.from_settings(settings))
    request = result.request
    result.request = request.replace(meta={**request.meta, "retry_times": settings.retries})
    return pickle.loads(Router(spider, config).handle(result))


def describe_page(done: PageDone) -> str:
    """What a callback yielded, for a person: items as JSON, requests as URL and callback, drops by reason."""
    lines = [f"Items ({len(done.items)}):"]
    lines += [json.dumps(item, indent=2, ensure_ascii=False, default=str) for item in done.items]
    if done.counts.get("items_noindex"):
        lines.append(f"  ({done.counts['items_noindex']} more not written: the page says noindex; "
                     "-s robots_meta=false keeps them)")
    lines.append(f"Requests ({len(done.candidates)}):")
    lines += [f"  {r.method} {r.url} -> {r.callback or 'parse'}" for _, r in done.candidates]
    dropped = {k[len("dropped_"):]: v for k, v in sorted(done.counts.items()) if k.startswith("dropped_")}
    if done.counts.get("duplicates"):
        dropped["repeated on the page"] = done.counts["duplicates"]
    if dropped:
        lines.append("Not followed: " + ", ".join(f"{reason} {n}" for reason, n in dropped.items()))
    return "\n".join(lines)


def callback_failed(done: PageDone) -> bool:
    return any(key.startswith("error_spider") or key == "error_internal" for key in done.counts)


def status_line(result: FetchResult) -> str:
    """The page in one line: status, final URL, whether a browser rendered it (and why, if after a plain
    fetch), time and size."""
    how = ""
    if isinstance(result, RenderResult):
        how = "rendered: the plain page failed the adaptive check, " if result.request.meta.get(AUTO) else "rendered, "
    return f"{result.status} {result.url} ({how}{result.elapsed * 1000:,.0f} ms, {len(result.body):,} bytes)"


def show_page(url: str, settings: Any, spider: Spider | None, spider_spec: str | None, callback: str | None,
              headers: bool, meta: dict[str, Any] | None = None, cb_kwargs: dict[str, Any] | None = None,
              render: bool | None = None) -> int:
    """What ``crawlkit fetch`` and ``parse`` print; returns the exit code (FetchFailed when not fetched).

    Redirect hops and the status line go to stderr, except that with ``headers`` the status
    line and headers head stdout. Then the body (no ``spider``) or what the callback yields.
    Exit code 1 when the callback raised or yielded junk, or did not run (a non-2xx page the
    spider does not take). ``render`` forces rendering or not (``fetch_page``); the body of a
    rendered page is its DOM.
    """
    hop = lambda result, target: click.echo(f"{result.status} {result.url} -> {target}", err=True)  # noqa: E731
    domains = [*(spider.allowed_domains if spider is not None else []), *settings.allowed_domains]
    result = fetch_page(url, settings, callback, on_hop=hop, allowed=AllowedDomains(domains), meta=meta,
                        cb_kwargs=cb_kwargs, render=render, spider=spider)
    if headers:
        click.echo(status_line(result))
        for name, value in result.headers:
            click.echo(f"{name}: {value}")
        click.echo()
    else:
        click.echo(status_line(result), err=True)
    if spider is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(result.body)
        return 0
    if not 200 <= result.status < 300 and not spider.handle_error_statuses:
        click.echo(f"the callback was not run: HTTP {result.status} "
                   "(a spider sees non-2xx pages with handle_error_statuses = True)", err=True)
        return 1
    done = parse_page(result, spider, spider_spec, settings)
    click.echo(describe_page(done))
    return 1 if callback_failed(done) else 0
