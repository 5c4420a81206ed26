"""The Lua scripts of a shared crawl, read once from the ``.lua`` files beside this module.

Every change to shared state is one script: Redis runs it atomically, in one round trip, and
reads the time from its own clock (``TIME``), so the machines' clocks need not agree. Each
``<name>.lua`` opens with what it does and its ARGV (keys are built inside from the prefix ``P``,
see the package docstring); ``helpers.lua`` holds the local functions they share and goes before
each of them. The files ship as package data, so ``importlib.resources`` finds them in a wheel
as in a checkout.
"""

from __future__ import annotations

from importlib import resources

_HERE = resources.files(__name__.rpartition(".")[0])


def _script(name: str) -> str:
    """The text Redis runs for ``<name>.lua``: the shared helpers, then the script."""
    return "".join((_HERE / f"{part}.lua").read_text(encoding="utf-8") for part in ("helpers", name))


# The scripts RedisCrawl.call runs by name (and RedisCrawl._send, ``writes``).
SCRIPTS = {name: _script(name) for name in (
    "push", "take", "reclaim", "writes", "beat", "leave", "poll", "acquire", "renew", "pause", "seen_add", "seen_check",
)}
TURN_ENTER = _script("turn_enter")
TURN_EXIT = _script("turn_exit")
