"""Page actions on a real Chromium page against a loopback site: what the DOM, the meta and the server show.

No crawl engine: each test opens a page, navigates it and calls ``run_actions`` as the renderer
does. ``check_actions``'s tests need no browser.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
from browser import Answer, Chromium, chromium, fixed, site
from playwright.async_api import Page

from crawlkit.render.actions import MAX_SCROLLS, check_actions, run_actions

BATCHES = 3  # what the scrolling page's server has; a fourth asks for nothing more


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with chromium() as launched:
        yield launched


def html(body: str, script: str = "") -> Answer:
    return fixed("text/html", f"<html><head><title>t</title></head><body>{body}<script>{script}</script>"
                              "</body></html>".encode())


def batch(query: str, received: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    number = int(query.partition("=")[2])
    items = [f"batch {number} item {i}" for i in range(10)] if number <= BATCHES else []
    body = json.dumps(items).encode()
    return 200, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body


# Appends a batch of tall items whenever the page is scrolled to its end, until a batch comes empty.
SCROLLING = """
let next = 1, loading = false;
function add(items) { for (const text of items) { const li = document.createElement('li');
  li.textContent = text; li.style.height = '200px'; document.getElementById('feed').append(li); } }
add(Array.from({length: 10}, (_, i) => 'first ' + i));
window.addEventListener('scroll', async () => {
  if (loading || innerHeight + scrollY < document.scrollingElement.scrollHeight - 10) return;
  loading = true; add(await (await fetch('/batch?n=' + next++)).json()); loading = false; });
"""

ROUTES: dict[str, Answer] = {
    "/late": html("<ul id=list></ul>", "fetch('/items.json').then(r => r.json()).then(items => { for (const t of items)"
                  " { const li = document.createElement('li'); li.className = 'item'; li.textContent = t;"
                  " document.getElementById('list').append(li); } });"),
    "/items.json": fixed("application/json", b'["one", "two"]'),
    # Content the second of two fetches in a row brings: there when the network has been idle.
    "/chain": html("<p id=out></p>", "fetch('/items.json').then(r => r.json()).then(() => fetch('/more.json'))"
                   ".then(r => r.json()).then(more => { document.getElementById('out').textContent = more.join(); });"),
    "/more.json": fixed("application/json", b'["three"]'),
    "/scroll": html("<ul id=feed></ul>", SCROLLING),
    "/batch": batch,
    "/buttons": html("<button id=a>a</button><button id=b>b</button><ol id=order></ol>",
                     "for (const b of document.querySelectorAll('button')) b.onclick = () => {"
                     " const li = document.createElement('li'); li.textContent = b.id;"
                     " document.getElementById('order').append(li); };"),
    "/tall": html("<div style='height: 3000px'>tall</div><ul><li>x</li><li>y</li></ul>"),
    # Never idle: it asks the server something every 50 ms for as long as it is open.
    "/busy": html("<p>busy</p>", "setInterval(() => fetch('/ping'), 50);"),
    "/ping": fixed("text/plain", b"pong"),
}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, list[Any]]]:
    with site(ROUTES) as running:
        yield running


def render(browser: Chromium, url: str, actions: dict[str, Any], seconds: float = 20) -> tuple[dict[str, Any], str]:
    """Navigate a new page to ``url`` (to its first byte, as a renderer may), run the actions: their meta and the
    DOM after them."""
    async def go() -> tuple[dict[str, Any], str]:
        async with browser.page() as page:
            await page.goto(url, wait_until="commit")
            meta = await run_actions(page, check_actions(actions), time.monotonic() + seconds)
            return meta, await page.content()

    return browser.run(go())


def test_wait_for_waits_until_the_selector_is_in_the_dom(browser: Chromium, served: tuple[str, list[Any]]) -> None:
    base, _ = served
    meta, dom = render(browser, f"{base}/late", {"wait_for": "li.item"})
    assert meta == {} and '<li class="item">one</li>' in dom


def test_networkidle_waits_for_a_chain_of_fetches(browser: Chromium, served: tuple[str, list[Any]]) -> None:
    base, seen = served
    meta, dom = render(browser, f"{base}/chain", {"wait_until": "networkidle"})
    assert meta == {} and '<p id="out">three</p>' in dom
    assert "/more.json" in [exchange.target for exchange in seen]


def scroll_batches(seen: list[Any]) -> list[str]:
    return [exchange.target for exchange in seen if exchange.target.startswith("/batch")]


def test_each_scroll_loads_one_batch(browser: Chromium, served: tuple[str, list[Any]]) -> None:
    base, seen = served
    before = len(seen)
    meta, dom = render(browser, f"{base}/scroll", {"scroll": 2, "scroll_wait": 5})
    assert meta == {"scrolled": 2}
    assert scroll_batches(seen[before:]) == ["/batch?n=1", "/batch?n=2"]
    assert "batch 2 item 9" in dom and "batch 3" not in dom


def test_scrolling_stops_when_nothing_new_comes(browser: Chromium, served: tuple[str, list[Any]]) -> None:
    base, seen = served
    before = len(seen)
    meta, dom = render(browser, f"{base}/scroll", {"scroll": 10, "scroll_wait": 2})
    assert meta == {"scrolled": BATCHES}
    # The fourth scroll asked for a batch that came empty, and no fifth was tried.
    assert scroll_batches(seen[before:]) == [f"/batch?n={n}" for n in range(1, BATCHES + 2)]
    assert f"batch {BATCHES} item 9" in dom


def test_clicks_happen_in_order(browser: Chromium, served: tuple[str, list[Any]]) -> None:
    base, _ = served
    meta, dom = render(browser, f"{base}/buttons", {"click": ["#b", "#a", "#b"]})
    assert meta == {} and '<ol id="order"><li>b</li><li>a</li><li>b</li></ol>' in dom


def test_a_scripts_json_result_goes_into_meta(browser: Chromium, served: tuple[str, list[Any]]) -> None:
    base, _ = served
    script = "() => ({title: document.title, items: [...document.querySelectorAll('li')].map(li => li.textContent)})"
    meta, _ = render(browser, f"{base}/tall", {"script": script})
    assert meta == {"script_result": {"title": "t", "items": ["x", "y"]}}


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def test_a_screenshot_is_png_of_the_viewport_or_the_full_page(browser: Chromium, served: tuple[str, list[Any]]) -> None:
    base, _ = served
    viewport, _ = render(browser, f"{base}/tall", {"screenshot": True})
    full, _ = render(browser, f"{base}/tall", {"screenshot": {"full_page": True}})
    assert png_size(viewport["screenshot"]) == (1280, 720)  # Playwright's default viewport
    width, height = png_size(full["screenshot"])
    assert width == 1280 and height > 3000


def test_a_failing_action_is_reported_and_the_others_still_run(browser: Chromium, served: tuple[str, list[Any]],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    base, _ = served
    with caplog.at_level(logging.WARNING, logger="crawlkit.render"):
        meta, dom = render(browser, f"{base}/buttons", {"click": ["#a", "button[", "#b"],
                                                        "script": "() => { throw new Error('boom'); }",
                                                        "screenshot": True})
    logged = "; ".join(meta["render_errors"])
    assert [r.getMessage() for r in caplog.records] == [f"render actions failed on {base}/buttons: {logged}"]
    assert '<ol id="order"><li>a</li><li>b</li></ol>' in dom  # the page is still there, with what worked
    errors = meta["render_errors"]
    assert [error.partition(":")[0] for error in errors] == ["click", "script"]
    assert "button[" in errors[0] and "boom" in errors[1] and all("\n" not in error for error in errors)
    assert png_size(meta["screenshot"]) == (1280, 720) and "script_result" not in meta


def test_no_action_waits_past_the_deadline(browser: Chromium, served: tuple[str, list[Any]]) -> None:
    base, _ = served
    start = time.monotonic()
    meta, dom = render(browser, f"{base}/busy", {"wait_until": "networkidle", "script": "1 + 1"}, seconds=1.5)
    took = time.monotonic() - start
    assert meta["render_errors"] == ["deadline: the page's time ran out; not done: wait_until, script"]
    assert "<p>busy</p>" in dom
    assert took < 1.5 + 5  # navigation, the content and a wide margin for a loaded machine; never the 20 s bound


@pytest.mark.parametrize(("given", "message"), [
    ("scroll", "'render' must be a map of page actions"),
    ({"wait": "load"}, "'render' has no action 'wait'; use wait_until, wait_for"),
    ({"wait_until": "idle"}, "'render' wait_until is 'idle'; use one of load, domcontentloaded, networkidle"),
    ({"wait_for": ""}, "'render' wait_for is ''; give a selector"),
    ({"click": []}, "'render' click lists 0 selectors; give 1 to 20"),
    ({"click": ["#a"] * 21}, "'render' click lists 21 selectors; give 1 to 20"),
    ({"click": ["#a", 3]}, "'render' click is 3; give a selector"),
    ({"scroll": MAX_SCROLLS + 1}, f"'render' scroll is {MAX_SCROLLS + 1}; give how many times to scroll, 0 to"),
    ({"scroll": True}, "'render' scroll is True"),
    ({"scroll_wait": 0}, "'render' scroll_wait is 0; give the seconds"),
    ({"scroll_wait": float("inf")}, "'render' scroll_wait is inf"),
    ({"script": "x" * 10_001}, "'render' script is 'xxxxx"),
    ({"screenshot": "yes"}, "'render' screenshot is 'yes'; give true, false or {full_page: true}"),
    ({"screenshot": {"full_page": True, "path": "/tmp/x.png"}}, "'render' screenshot is {"),
])
def test_check_actions_refuses_bad_input_with_one_line(given: object, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        check_actions(given)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_check_actions_normalises() -> None:
    assert check_actions({}) == {}
    assert check_actions({"click": "#more", "screenshot": True, "scroll": 3, "scroll_wait": 2}) == {
        "click": ["#more"], "screenshot": {"full_page": False}, "scroll": 3, "scroll_wait": 2.0}
    assert check_actions({"screenshot": False, "wait_until": "networkidle"}) == {"wait_until": "networkidle"}


def test_the_warning_for_failed_actions_names_the_pages_own_url_not_about_blank(
        caplog: pytest.LogCaptureFixture) -> None:
    """A page whose navigation never committed is still at about:blank; the renderer passes the request's URL."""

    class Uncommitted:
        url = "about:blank"

        async def wait_for_load_state(self, state: str, timeout: float) -> None:
            return None

        async def evaluate(self, script: str) -> Any:
            raise RuntimeError("no page here")

    async def go() -> dict[str, Any]:
        page = cast(Page, Uncommitted())
        return await run_actions(page, check_actions({"script": "() => 1"}), time.monotonic() + 5, "http://a.test/p")

    with caplog.at_level(logging.WARNING, logger="crawlkit.render"):
        meta = asyncio.run(go())
    assert meta["render_errors"] == ["script: RuntimeError: no page here"]
    logged = [r.getMessage() for r in caplog.records]
    assert logged == ["render actions failed on http://a.test/p: script: RuntimeError: no page here"]
