"""Benchmark link extraction: CPU per page of ``LinkExtractor`` against ``response.links()`` and Scrapy's.

The page is a 27 kB article listing of 160 links, as a news or blog index has them: 40 in the
navigation, 100 in the text (half to other hosts), 20 in the footer, a PDF and an image. Each
extractor runs on pages whose tree is already parsed (the crawl parses each page once, whoever
extracts its links) and whose base URL is known, so the figures are the extraction alone; the
best of five rounds of CPU time (not wall-clock time: the machine is shared) is shown, in µs a page.
Scrapy's ``LinkExtractor`` is measured on its own ``HtmlResponse`` when Scrapy is installed.

    python tests/benchmarks/bench_links.py            # the README's figures (~20 s)

Not a pytest test (no ``test_`` prefix): run it by hand.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from crawlkit import LinkExtractor, Response

URL = "http://site.example/articles/index.html"
ROUNDS = 5


def page() -> str:
    pick = random.Random(1)
    nav = "".join(f'<li><a href="/section/{i}/">Section {i}</a></li>' for i in range(40))
    body = "".join(f'<p>{"lorem ipsum " * 30}<a href="/articles/{pick.randint(1, 10**6)}.html">article {i}</a> '
                   f'<a href="https://other{i % 7}.example/path?q={i}">source</a></p>' for i in range(50))
    foot = "".join(f'<a href="/about/{i}">about {i}</a>' for i in range(20))
    return (f"<html><head><title>articles</title><link rel=next href=/page/2></head><body><nav><ul>{nav}</ul></nav>"
            f'<main>{body}</main><footer>{foot}<a href="/files/report.pdf">pdf</a><img src="/x.png"></footer>'
            "</body></html>")


def cpu_us(extract: Callable[[Any], list[Any]], responses: list[Any], per_round: int = 2000) -> tuple[float, int]:
    """Best µs of CPU per page over ``ROUNDS`` rounds, and how many links a page gave."""
    found = len(extract(responses[0]))
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(per_round // len(responses)):
            for response in responses:
                extract(response)
        best = min(best, (time.process_time() - started) / per_round)
    return best * 1e6, found


def main() -> None:
    html = page()
    responses = [Response(URL, body=html) for _ in range(50)]
    for response in responses:
        response.tree, response.base_url  # noqa: B018 - parsed before timing, as in a crawl
    rows = [
        ("response.links()", Response.links),
        ("LinkExtractor().extract_links", LinkExtractor().extract_links),
        ("LinkExtractor().urls", LinkExtractor().urls),
        ("LinkExtractor(allow, deny).urls", LinkExtractor(allow=r"/articles/", deny=r"\?").urls),
        ("LinkExtractor(restrict_css='main').urls", LinkExtractor(restrict_css="main").urls),
        ("LinkExtractor(allow_domains).urls", LinkExtractor(allow_domains="site.example").urls),
    ]
    print(f"page: {len(html):,} bytes")
    for name, extract in rows:
        us, found = cpu_us(extract, responses)
        print(f"{name:42s} {us:8.1f} µs/page  {found} links")
    try:
        from scrapy.http import HtmlResponse
        from scrapy.linkextractors import LinkExtractor as ScrapyLinkExtractor
    except ImportError:
        print("Scrapy is not installed: pip install -e '.[bench]' to compare")
        return
    theirs = [HtmlResponse(URL, body=html.encode(), encoding="utf-8") for _ in range(10)]
    for response in theirs:
        response.selector  # noqa: B018 - parsed before timing
    us, found = cpu_us(ScrapyLinkExtractor().extract_links, theirs, per_round=200)
    print(f"{'Scrapy LinkExtractor().extract_links':42s} {us:8.1f} µs/page  {found} links")


if __name__ == "__main__":
    main()
