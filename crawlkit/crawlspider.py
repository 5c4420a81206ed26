"""CrawlSpider and Rule: a spider that follows links by rules, as Scrapy's (``scrapy.spiders.CrawlSpider``).

::

    from crawlkit import CrawlSpider, LinkExtractor, Rule

    class Books(CrawlSpider):
        name = "books"
        start_urls = ["https://books.example/"]
        rules = (
            Rule(LinkExtractor(allow=r"/catalogue/page-\\d+")),              # follow, no callback
            Rule(LinkExtractor(restrict_css="h3"), callback="parse_book"),  # call, do not follow
        )

        def parse_book(self, response):
            yield {"title": response.css("h1::text").get()}

Each page a rule's request fetched goes to that rule's callback (with its ``cb_kwargs``), then,
if the rule follows (``follow``, true by default for a rule without a callback), every rule's
extractor looks at it in order, and each link the first time a rule finds it on the page
becomes a request of that rule. A start URL's page goes to ``parse_start_url`` and is followed.

The rule travels with its requests by its index in ``rules`` (``meta["rule"]``, beside Scrapy's
``meta["link_text"]``) and the requests name the spider's ``_callback`` (and ``_errback``, when
the rule has an errback), as every crawlkit callback travels, by name: every parser process
builds the spider, and with it the rules' callbacks, ``process_links`` and ``process_request``
looked up on the spider. Callbacks are plain (generator) functions, as crawlkit's callbacks
are; ``parse`` is the CrawlSpider's own, as in Scrapy: do not override it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from crawlkit.errors import Failure, SpiderError
from crawlkit.http import Request, Response
from crawlkit.link import Link
from crawlkit.linkextractors import LinkExtractor
from crawlkit.spider import Spider

Method = str | Callable[..., Any] | None  # a spider method, or its name
_DEFAULT_EXTRACTOR = LinkExtractor()


class Rule:
    """Which links to follow and what to do with their pages, as Scrapy's ``Rule``.

    ``link_extractor`` finds the links (by default ``LinkExtractor()``: every link but those
    of ``IGNORED_EXTENSIONS``); ``callback`` (a method or its
    name) is called on each page with ``cb_kwargs``; ``follow`` says whether that page's links
    are followed too (by default: when there is no callback); ``process_links(links)`` may
    filter or change the links before requests are made of them; ``process_request(request,
    response)`` may change a request or return None to drop it; ``errback`` gets the
    ``Failure`` of a fetch that failed.
    """

    def __init__(
        self,
        link_extractor: LinkExtractor | None = None,
        callback: Method = None,
        cb_kwargs: dict[str, Any] | None = None,
        follow: bool | None = None,
        process_links: Method = None,
        process_request: Method = None,
        errback: Method = None,
    ) -> None:
        self.link_extractor = link_extractor or _DEFAULT_EXTRACTOR
        self.callback = callback
        self.errback = errback
        self.cb_kwargs = cb_kwargs or {}
        self.process_links = process_links
        self.process_request = process_request
        self.follow = follow if follow is not None else not callback

    def _compile(self, spider: Spider) -> _SpiderRule:
        """The rule for ``spider`` in this process: names become the spider's methods."""
        return _SpiderRule(self.link_extractor, _method(spider, self.callback, "callback"), self.cb_kwargs,
                           self.follow, _method(spider, self.process_links, "process_links"),
                           _method(spider, self.process_request, "process_request"),
                           _method(spider, self.errback, "errback"))


@dataclass(frozen=True, slots=True)
class _SpiderRule:
    """A ``Rule`` with its methods those of one spider object."""

    link_extractor: LinkExtractor
    callback: Callable[..., Any] | None
    cb_kwargs: dict[str, Any]
    follow: bool
    process_links: Callable[[list[Link]], Iterable[Link]] | None
    process_request: Callable[[Request, Response], Request | None] | None
    errback: Callable[[Failure], Any] | None


def _method(spider: Spider, method: Method, role: str) -> Callable[..., Any] | None:
    if method is None or callable(method):
        return method
    found = getattr(spider, method, None)
    if not callable(found):
        raise SpiderError(f"spider {type(spider).__name__}: a rule's {role} {method!r} is not a method of the spider")
    return found


class CrawlSpider(Spider):
    """A spider that follows links by its ``rules`` (a sequence of ``Rule``), as Scrapy's."""

    rules: Sequence[Rule] = ()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rules = [rule._compile(self) for rule in self.rules]

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        """A start URL's page: ``parse_start_url``, then the rules' links."""
        return self._parse_response(response, self.parse_start_url, kwargs, follow=True)

    def parse_start_url(self, response: Response, **kwargs: Any) -> Any:
        """What a start URL's page yields besides the links the rules follow: override it (nothing by default)."""
        return []

    def process_results(self, response: Response, results: Iterable[Any]) -> Iterable[Any]:
        """What a callback yielded, to change before it goes on: override it (unchanged by default)."""
        return results

    def _callback(self, response: Response, **cb_kwargs: Any) -> Iterator[Any]:
        rule = self._rules[response.meta["rule"]]
        return self._parse_response(response, rule.callback, {**rule.cb_kwargs, **cb_kwargs}, rule.follow)

    def _errback(self, failure: Failure) -> Iterable[Any]:
        errback = self._rules[failure.request.meta["rule"]].errback
        return _output(errback(failure)) if errback is not None else ()

    def _parse_response(self, response: Response, callback: Callable[..., Any] | None, cb_kwargs: dict[str, Any],
                        follow: bool) -> Iterator[Any]:
        if callback is not None:
            yield from _output(self.process_results(response, _output(callback(response, **cb_kwargs))))
        if follow:
            yield from self._requests_to_follow(response)

    def _requests_to_follow(self, response: Response) -> Iterator[Request]:
        if not response.is_html:
            return
        seen: set[Link] = set()
        for index, rule in enumerate(self._rules):
            found = [link for link in rule.link_extractor.extract_links(response) if link not in seen]
            links = found if rule.process_links is None else rule.process_links(found)
            # Only a rule with an errback gives its requests one: without, a failure is counted as any other.
            errback = "_errback" if rule.errback is not None else None
            for link in links:
                seen.add(link)
                request = Request(link.url, callback="_callback", errback=errback,
                                  meta={"rule": index, "link_text": link.text})
                processed = request if rule.process_request is None else rule.process_request(request, response)
                if processed is not None:
                    yield processed


def _output(output: Any) -> Iterable[Any]:
    """What a callback returned, as objects to yield: Scrapy's ``iterate_spider_output``."""
    from crawlkit.parse.parser import callback_output  # the parser process has it; a spider file's import need not

    return callback_output(output)
