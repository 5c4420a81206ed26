"""Page actions: what a renderer does with a page after its navigation, and the check of a request's render options.

This module holds only what choosing and rendering need: the ``wait_until`` option. The
declarative actions (wait for a selector, scroll, click, script, screenshot) come with issue
16's page actions and keep these two signatures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.async_api import Page

WAIT_UNTIL = ("load", "domcontentloaded", "networkidle")


def check_actions(value: object) -> dict[str, Any]:
    """A request's render options checked and normalised as plain data; ValueError "'render' ..." when wrong."""
    if not isinstance(value, Mapping):
        raise ValueError(f"'render' must be true, false or a mapping of render options, got {value!r}")
    unknown = sorted(set(value) - {"wait_until"}, key=str)
    if unknown:
        raise ValueError(f"'render': unknown option {unknown[0]!r}; the render options are: wait_until")
    options = dict(value)
    if "wait_until" in options and options["wait_until"] not in WAIT_UNTIL:
        raise ValueError(f"'render': 'wait_until' must be one of {', '.join(WAIT_UNTIL)}, "
                         f"got {options['wait_until']!r}")
    return options


async def run_actions(page: Page, actions: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Run ``actions`` on ``page`` after its navigation, until ``deadline`` (monotonic); entries for response.meta.

    ``wait_until`` is the navigation's own (``browser.py`` passes it to ``goto``): nothing is left to run.
    """
    return {}
