"""The robots stage: a robots.txt fetch becomes the engine's answer for its host, never a page.

The engine asks for a host's robots.txt before its first page and waits for the answer in
``PageDone.robots``: the status and body of an HTTP answer, or what a failure reads as
(``robots_answer``; the rules themselves are ``crawlkit.extensions.robots``). The ``Sitemap:``
lines of a robots.txt become requests when ``use_sitemaps`` is on.
"""

from __future__ import annotations

from protego import Protego

from crawlkit.errors import FetchErrorKind
from crawlkit.extensions.robots import NO_ANSWER, ROBOTS_BLOCKED, ROBOTS_CALLBACK, UNREACHABLE
from crawlkit.extensions.sitemaps import sitemap_request
from crawlkit.http import Request, Response
from crawlkit.parse.stages import Page, StageSetup


def robots_answer(kind: FetchErrorKind) -> int:
    """The robots "status" of a robots.txt fetch that failed with ``kind`` (see ``crawlkit.extensions.robots``)."""
    if kind is FetchErrorKind.DESTINATION_BLOCKED:
        return ROBOTS_BLOCKED
    return UNREACHABLE.get(kind, (NO_ANSWER, ""))[0]


class RobotsStage:
    """Answers the engine for a robots.txt request, failed or not; passes every other page on."""

    def __init__(self, setup: StageSetup) -> None:
        self.sitemaps = setup.config.use_sitemaps

    def on_failure(self, page: Page, kind: FetchErrorKind) -> bool:
        if page.request.callback == ROBOTS_CALLBACK:
            page.done.robots = (robots_answer(kind), b"")
        return False  # the failure is still reported as one

    def on_response(self, page: Page, response: Response) -> Response | None:
        if response.request.callback != ROBOTS_CALLBACK:
            return response
        page.done.robots = (response.status, response.body)
        if self.sitemaps and 200 <= response.status < 300:
            page.candidates = robots_sitemaps(response)
        return None


def robots_sitemaps(response: Response) -> list[Request]:
    """Requests for the ``Sitemap:`` lines of a robots.txt."""
    rules = Protego.parse(response.body.decode("utf-8", "replace"))
    return [sitemap_request(url) for url in rules.sitemaps]
