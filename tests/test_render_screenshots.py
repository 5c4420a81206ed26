"""The built-in spider's screenshot files (render_screenshots): Responses built here, no browser, no server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crawlkit.errors import ConfigError
from crawlkit.http import Request, Response
from crawlkit.render.screenshots import prepare_screenshot_dir
from crawlkit.settings import load_settings
from crawlkit.spider import LinkSpider

URL = "http://a.test/page"
PNG = b"\x89PNG\r\n\x1a\n" + b"not really an image"


def items(settings: dict[str, Any], *metas: dict[str, Any]) -> list[dict[str, Any]]:
    """The built-in spider's items for one page each (with these meta entries, as a renderer leaves them)."""
    spider = LinkSpider(start_urls=[URL])
    spider.settings = load_settings(cli=settings)
    found = []
    for meta in metas:
        response = Response(URL, 200, {"Content-Type": "text/html"}, b"<title>t</title>", Request(URL, meta=meta))
        found += [item for item in spider.parse(response) if isinstance(item, dict)]
    return found


def test_each_screenshot_gets_a_file_of_its_own_named_in_the_item(tmp_path: Path) -> None:
    first, again, plain = items({"render_screenshots": str(tmp_path)}, {"screenshot": PNG}, {"screenshot": PNG}, {})
    assert first["screenshot"].endswith(".png") and again["screenshot"] == first["screenshot"][:-4] + "-2.png"
    assert (tmp_path / first["screenshot"]).read_bytes() == PNG == (tmp_path / again["screenshot"]).read_bytes()
    assert plain["screenshot"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first["screenshot"], again["screenshot"]])


def test_without_the_setting_items_have_no_screenshot_field() -> None:
    assert "screenshot" not in items({}, {"screenshot": PNG})[0]


def test_a_directory_that_cannot_be_made_stops_the_crawl_with_one_line(tmp_path: Path) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("")
    with pytest.raises(ConfigError) as raised:
        prepare_screenshot_dir(str(taken / "shots"))
    assert str(raised.value).startswith(f"render_screenshots {str(taken / 'shots')!r}: cannot create the directory")
    prepare_screenshot_dir(str(tmp_path / "new" / "shots"))
    assert (tmp_path / "new" / "shots").is_dir()
