"""The built-in spider's screenshot files (``render_screenshots``): a rendered page's PNG beside its item.

A spider of one's own finds the PNG bytes in ``response.meta["screenshot"]`` and keeps them as it
likes; the built-in spider writes them to ``render_screenshots/<16 hex digits of the URL's
SHA-1>.png`` (``-2``, ``-3``... when the page was shot before: a recrawl, another parser process)
and its item's ``screenshot`` field names the file, so the items file stays small and a name
is never reused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from crawlkit.paths import make_writable_dir


def prepare_screenshot_dir(path: str) -> None:
    """Create the directory, or raise a ConfigError saying why it cannot be (main process, before the crawl)."""
    make_writable_dir("render_screenshots", path)


class ScreenshotFiles:
    """Writes PNG files into one directory under names no file has had; safe across processes."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def save(self, url: str, png: bytes) -> str:
        """Write ``png``, the screenshot of ``url``, to a new file; its name in the directory."""
        stem = hashlib.sha1(url.encode()).hexdigest()[:16]
        name, taken = f"{stem}.png", 1
        while True:
            try:
                with open(self.directory / name, "xb") as stream:  # exclusive: another process may shoot it too
                    stream.write(png)
                return name
            except FileExistsError:
                taken += 1
                name = f"{stem}-{taken}.png"
