"""``crawlkit shell``: a Python prompt holding a fetched page, to try selectors on, as Scrapy's shell.

The prompt's names: ``response`` (the page, fetched as ``crawlkit fetch`` fetches it: robots.txt,
redirects, the crawl's settings, User-Agent and size caps, through ``debugging.fetch_page``),
``request``, ``spider`` (the ``--spider``, with its ``custom_settings`` in ``settings``, or the
built-in one), ``settings``, ``fetch(url_or_request)`` to load another page into ``response``,
``view(response)`` to look at a page in a browser, and ``shelp()`` to list them. IPython is the
prompt when it is installed and the shell runs on a terminal; otherwise (a pipe, as the tests drive
it) it is the standard library's ``code.interact``. A page that cannot be fetched is one line on
stderr, and the prompt goes on. A page the crawl would render is rendered (``fetch_page``), unless
``--render``/``--no-render`` say otherwise; the banner says when ``response`` was.
"""

from __future__ import annotations

import code
import os
import re
import sys
import tempfile
import webbrowser
from typing import Any

import click

from crawlkit.errors import ConfigError, FetchFailed
from crawlkit.forms import FormRequest
from crawlkit.http import Request, Response
from crawlkit.parse.links import AllowedDomains
from crawlkit.settings import Settings
from crawlkit.spider import Spider
from crawlkit.tools.debugging import fetch_page, status_line

HELP = """Available crawlkit objects:
  response   the page fetched last (response.css(), .xpath(), .text, .status, .headers)
  request    the request that fetched it
  spider     the spider ({spider})
  settings   the settings (settings.user_agent, settings["per_host"])
  Request, FormRequest
Shortcuts:
  fetch(url_or_request)   fetch a page into response and request (robots.txt, redirects, settings;
                          rendered in a browser when the crawl would render it)
  view(response)          write the page to a temporary file, print its path, open it in a browser
  shelp()                 this help"""


class Shell:
    """The prompt's namespace and its ``fetch``; ``run`` opens the prompt."""

    def __init__(self, settings: Settings, spider: Spider, allowed: AllowedDomains, render: bool | None = None) -> None:
        self.settings = settings
        self.allowed = allowed
        self.render = render  # --render (True), --no-render (False), or the crawl's choice (None)
        self.namespace: dict[str, Any] = {
            "response": None, "request": None, "spider": spider, "settings": settings,
            "fetch": self.fetch, "view": view, "shelp": self.help, "Request": Request, "FormRequest": FormRequest,
        }

    def fetch(self, target: str | Request) -> None:
        """Fetch ``target`` (a URL or a Request) as ``crawlkit fetch`` does, into ``response`` and ``request``:
        rendered when the crawl would render it, or as ``--render``/``--no-render`` say."""
        hop = lambda result, location: click.echo(f"{result.status} {result.url} -> {location}", err=True)  # noqa: E731
        try:
            result = fetch_page(target, self.settings, on_hop=hop, allowed=self.allowed, render=self.render,
                                spider=self.namespace["spider"])
        except (FetchFailed, ConfigError) as exc:  # ConfigError: rendering without Playwright or a browser
            click.echo(f"fetch failed: {exc}", err=True)
            return
        response = Response(result.url, result.status, result.headers, result.body, result.request)
        self.namespace.update(response=response, request=result.request)
        click.echo(status_line(result), err=True)

    def help(self) -> None:
        spider = self.namespace["spider"]
        print(HELP.format(spider=f"{type(spider).__name__}, named {spider.name!r}"))

    def run(self) -> None:
        """The prompt, until end of input or ``exit()``; IPython's on a terminal when it is installed."""
        banner = HELP.format(spider=type(self.namespace["spider"]).__name__)
        response = self.namespace["response"]
        if response is not None and response.meta.get("rendered"):
            banner += ("\nresponse was rendered by a browser: the DOM after the page's scripts ran "
                       "(--no-render fetches it plainly)")
        if sys.stdin.isatty():
            try:
                from IPython import start_ipython
            except ImportError:
                pass
            else:
                click.echo(banner, err=True)
                start_ipython(argv=["--no-banner"], user_ns=self.namespace)
                return
        else:
            sys.ps1 = sys.ps2 = ""  # input from a pipe: stdout holds only what the lines print
        try:
            code.interact(banner=banner, local=self.namespace, exitmsg="")
        except SystemExit:  # exit() and quit() raise it; the shell ends as at end of input
            return


def view(response: Response) -> None:
    """Write the page to a temporary file (HTML with a ``<base>``, so its links and images resolve), print
    its path, and open it in a browser when the shell runs on a terminal."""
    html = response.is_html
    body = response.body
    if html and not re.search(rb"<base\s", body[:4096], re.I):
        base = b'<base href="' + response.url.replace('"', "%22").encode() + b'">'
        head = re.search(rb"<head[^>]*>", body[:4096], re.I)
        at = head.end() if head else 0
        body = body[:at] + base + body[at:]
    suffix = ".html" if html else ".json" if "json" in response.content_type else ".txt"
    fd, path = tempfile.mkstemp(prefix="crawlkit-view-", suffix=suffix)
    with os.fdopen(fd, "wb") as file:
        file.write(body)
    print(path)
    if sys.stdout.isatty():
        webbrowser.open(f"file://{path}")
