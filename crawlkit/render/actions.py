"""Page actions: what a renderer does to a page between its navigation and the DOM it sends on, as plain data.

A live page cannot cross processes, so a spider (``Request(url, render={...})``) or the settings
declare the actions as a dict: ``check_actions`` validates it where it is given (no browser
needed), ``run_actions`` performs it in the renderer process on the page that has just navigated.
The names are scrapy-playwright's and Crawlee's where they have one (Playwright's ``wait_until``
and ``wait_for_selector``, Crawlee's ``infiniteScroll``). The actions run in this order:

    wait_until   "load" (default), "domcontentloaded" or "networkidle": the load state to reach
    wait_for     a selector (CSS, or Playwright's text=/xpath=) that must be in the DOM
    click        a selector, or a list of them clicked in order; after each, ``wait_until`` again
    scroll       scroll to the end up to N times, each time waiting ``scroll_wait`` seconds (default
                 1.0) for the page to grow; it stops early when nothing new comes
    script       a JavaScript expression or function; its JSON result is ``meta["script_result"]``
    screenshot   true, or {full_page: true}: the PNG bytes are ``meta["screenshot"]``

Every wait is bounded by the page's deadline. A failing action (a selector that never appears, a
script that throws) does not fail the page: the DOM as it stands is still what the spider gets,
since a page half-loaded usually holds what the spider wants and a retry would likely fail the
same way; the failure is logged with the URL and listed in ``meta["render_errors"]`` (one line
each) so a callback can tell. Past the deadline the remaining actions are skipped (one error says
which). ``meta["scrolled"]`` counts the scrolls that brought new content.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:  # the renderer's process has playwright; the processes that only check actions need not
    from playwright.async_api import Page

log = logging.getLogger("crawlkit.render")

LoadState = Literal["load", "domcontentloaded", "networkidle"]
LOAD_STATES: tuple[LoadState, ...] = ("load", "domcontentloaded", "networkidle")
MAX_SCROLLS = 100
MAX_SCROLL_WAIT = 30.0  # seconds
MAX_CLICKS = 20
MAX_SELECTOR = 1_000  # characters
MAX_SCRIPT = 10_000  # characters of script
MAX_SCRIPT_RESULT = 1_000_000  # characters of the result as JSON: it travels to the parser with the page
DEFAULT_SCROLL_WAIT = 1.0
_KEYS = ("wait_until", "wait_for", "click", "scroll", "scroll_wait", "script", "screenshot")
_SCROLL = "() => { const end = document.scrollingElement.scrollHeight; window.scrollTo(0, end); return end; }"
_GROWN = "end => document.scrollingElement.scrollHeight > end"

T = TypeVar("T")


def check_actions(value: object) -> dict[str, Any]:
    """The render options ``value`` normalised (``click`` a list, ``screenshot`` a dict or absent), or a
    ValueError of one line beginning ``'render'`` that names the bad key and value and says the fix."""
    if not isinstance(value, dict):
        raise ValueError(f"'render' must be a map of page actions ({', '.join(_KEYS)}), got {value!r}")
    unknown = [key for key in value if key not in _KEYS]
    if unknown:
        raise ValueError(f"'render' has no action {unknown[0]!r}; use {', '.join(_KEYS)}")
    actions: dict[str, Any] = {}
    if "wait_until" in value:
        if value["wait_until"] not in LOAD_STATES:
            raise ValueError(f"'render' wait_until is {value['wait_until']!r}; use one of {', '.join(LOAD_STATES)}")
        actions["wait_until"] = value["wait_until"]
    if "wait_for" in value:
        actions["wait_for"] = _selector("wait_for", value["wait_for"])
    if "click" in value:
        clicks = value["click"] if isinstance(value["click"], list) else [value["click"]]
        if not 1 <= len(clicks) <= MAX_CLICKS:
            raise ValueError(f"'render' click lists {len(clicks)} selectors; give 1 to {MAX_CLICKS}")
        actions["click"] = [_selector("click", selector) for selector in clicks]
    if "scroll" in value:
        scroll = value["scroll"]
        if isinstance(scroll, bool) or not isinstance(scroll, int) or not 0 <= scroll <= MAX_SCROLLS:
            raise ValueError(f"'render' scroll is {scroll!r}; give how many times to scroll, 0 to {MAX_SCROLLS}")
        actions["scroll"] = scroll
    if "scroll_wait" in value:
        wait = value["scroll_wait"]
        if (isinstance(wait, bool) or not isinstance(wait, (int, float)) or not math.isfinite(wait)
                or not 0 < wait <= MAX_SCROLL_WAIT):
            raise ValueError(f"'render' scroll_wait is {wait!r}; give the seconds to wait for new content after "
                             f"a scroll, more than 0 and at most {MAX_SCROLL_WAIT:g}")
        actions["scroll_wait"] = float(wait)
    if "script" in value:
        script = value["script"]
        if not isinstance(script, str) or not script.strip() or len(script) > MAX_SCRIPT:
            raise ValueError(f"'render' script is {_short(script)}; give JavaScript text of at most {MAX_SCRIPT} "
                             "characters (an expression, or a function such as () => document.title)")
        actions["script"] = script
    if "screenshot" in value:
        shot = value["screenshot"]
        if isinstance(shot, dict) and set(shot) <= {"full_page"} and isinstance(shot.get("full_page", False), bool):
            actions["screenshot"] = {"full_page": shot.get("full_page", False)}
        elif shot is True:
            actions["screenshot"] = {"full_page": False}
        elif shot is not False:
            raise ValueError(f"'render' screenshot is {shot!r}; give true, false or {{full_page: true}}")
    return actions


def _selector(key: str, selector: object) -> str:
    if not isinstance(selector, str) or not selector.strip() or len(selector) > MAX_SELECTOR:
        raise ValueError(f"'render' {key} is {_short(selector)}; give a selector (CSS, or text=/xpath=) of at most "
                         f"{MAX_SELECTOR} characters")
    return selector


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _PastDeadline(Exception):
    """The page's time is up: the actions left are skipped."""


async def run_actions(page: Page, actions: dict[str, Any], deadline: float, url: str | None = None) -> dict[str, Any]:
    """Perform ``actions`` (as ``check_actions`` returned them) on ``page``, which has just navigated, and
    return the entries for ``response.meta``: ``script_result``, ``screenshot``, ``scrolled`` for the
    actions asked, ``render_errors`` when some failed. Nothing waits past ``deadline`` (a
    ``time.monotonic()`` value); no action's failure is raised (see the module docstring). The
    warning for failed actions names ``url`` (the page's own: a page whose navigation never
    committed is still at about:blank), else the page's URL."""
    meta: dict[str, Any] = {}
    errors: list[str] = []
    wait_until: LoadState = actions.get("wait_until", "load")
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("wait_until", lambda: _settle(page, wait_until, deadline)),
    ]
    if "wait_for" in actions:
        async def wait_for() -> None:
            await _bounded(deadline, lambda ms: page.wait_for_selector(actions["wait_for"], state="attached",
                                                                       timeout=ms))
        steps.append(("wait_for", wait_for))
    for selector in actions.get("click", ()):
        steps.append(("click", _clicker(page, selector, wait_until, deadline)))
    if actions.get("scroll"):
        async def scroll() -> None:
            meta["scrolled"] = 0
            await _scroll(page, actions["scroll"], actions.get("scroll_wait", DEFAULT_SCROLL_WAIT), deadline, meta)
        steps.append(("scroll", scroll))
    if "script" in actions:
        async def script() -> None:
            meta["script_result"] = _json_result(await _bounded(deadline, lambda ms: page.evaluate(actions["script"])))
        steps.append(("script", script))
    if "screenshot" in actions:
        async def screenshot() -> None:
            full_page = actions["screenshot"]["full_page"]
            meta["screenshot"] = await _bounded(deadline, lambda ms: page.screenshot(
                type="png", full_page=full_page, timeout=ms))
        steps.append(("screenshot", screenshot))
    for index, (name, step) in enumerate(steps):
        try:
            await step()
        except _PastDeadline:
            skipped = ", ".join(dict.fromkeys(later for later, _ in steps[index:]))
            errors.append(f"deadline: the page's time ran out; not done: {skipped}")
            break
        except Exception as exc:  # a page's failure is the page's, reported beside it (see the docstring)
            errors.append(f"{name}: {_reason(exc)}")
    if errors:
        meta["render_errors"] = errors
        log.warning("render actions failed on %s: %s", url or page.url, "; ".join(errors))
    return meta


async def _bounded(deadline: float, call: Callable[[float], Awaitable[T]]) -> T:
    """``call(ms)`` with Playwright's timeout set to the time left, and cut by asyncio there too (an
    ``evaluate`` has no timeout of its own); _PastDeadline when no time is left or it runs out."""
    left = deadline - time.monotonic()
    if left <= 0.001:  # Playwright reads a timeout of 0 as none at all
        raise _PastDeadline
    try:
        return await asyncio.wait_for(call(left * 1000), left)
    except Exception:
        if time.monotonic() >= deadline:
            raise _PastDeadline from None
        raise


async def _settle(page: Page, state: LoadState, deadline: float) -> None:
    await _bounded(deadline, lambda ms: page.wait_for_load_state(state, timeout=ms))


def _clicker(page: Page, selector: str, wait_until: LoadState, deadline: float) -> Callable[[], Awaitable[None]]:
    async def click() -> None:
        await _bounded(deadline, lambda ms: page.click(selector, timeout=ms))
        await _settle(page, wait_until, deadline)  # a click may load a page, or start fetching

    return click


async def _scroll(page: Page, times: int, wait: float, deadline: float, meta: dict[str, Any]) -> None:
    """Scroll to the end up to ``times`` times; stop at the first that brings nothing in ``wait`` seconds."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    for _ in range(times):
        end = await _bounded(deadline, lambda ms: page.evaluate(_SCROLL))
        try:
            await _bounded(min(deadline, time.monotonic() + wait), _growth(page, end))
        except (_PastDeadline, PlaywrightTimeout):
            if time.monotonic() >= deadline:
                raise _PastDeadline from None
            return  # nothing new came: the end of the page
        meta["scrolled"] += 1


def _reason(exc: Exception) -> str:
    """The error on one line, without the call log Playwright appends (the steps it took, line by line)."""
    text = " ".join(str(exc).partition("Call log:")[0].split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _growth(page: Page, end: int) -> Callable[[float], Awaitable[object]]:
    """A wait of ``ms`` milliseconds for the page to grow past ``end`` pixels."""
    return lambda ms: page.wait_for_function(_GROWN, arg=end, timeout=ms)


def _json_result(result: object) -> object:
    """The script's result, if it is JSON data of a bounded size (it travels with the page to the parser)."""
    try:
        text = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the script's result is not JSON data ({exc}); return plain objects, lists, strings, "
                         "numbers") from None
    if len(text) > MAX_SCRIPT_RESULT:
        raise ValueError(f"the script's result is {len(text)} characters of JSON, over {MAX_SCRIPT_RESULT}; "
                         "return less")
    return result
