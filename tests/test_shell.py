"""``crawlkit shell``: driven through a pipe (stdin), against a local site; asserting what the lines
printed and what the server saw (robots.txt, the User-Agent of the settings and of the spider's
custom_settings, a redirect followed, a page fetched with ``fetch()``)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from hostile import HostileServer, page
from support import CRAWLKIT, leftover_processes

SPIDER = '''
from crawlkit import Spider


class Shop(Spider):
    name = "shop"
    custom_settings = {"USER_AGENT": "shop-bot/2"}

    def parse(self, response):
        yield {"title": response.css("title::text").get()}
'''


def shell(tmp_path: Path, lines: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    marker = uuid.uuid4().hex
    run = subprocess.run([CRAWLKIT, "shell", *args], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=60, cwd=tmp_path, env={**os.environ, "CRAWLKIT_TEST_RUN": marker})
    assert not leftover_processes(marker)
    return run


def test_the_shell_holds_the_page_and_fetches_others(tmp_path: Path) -> None:
    with HostileServer() as server:
        site = server.site({
            "/": page(b"<html><head><title>Home</title></head><body><a href='/b'>b</a></body></html>"),
            "/old": page(b"", status=301, headers={"Location": "/b"}),
            "/b": page(b"<html><head><title>Bee</title></head></html>"),
            "/private": page(b"<title>secret</title>"),
            "/robots.txt": page(b"User-agent: *\nDisallow: /private\n", content_type="text/plain"),
        })
        run = shell(tmp_path, [
            'print(response.css("title::text").get(), response.status, request.url)',
            'print(spider.name, settings.user_agent, settings.delay)',
            f'fetch("{site.url("/old")}")',
            'print(response.url, response.css("title::text").get())',
            f'fetch("{site.url("/private")}")',
            'print(response.url)',
            'view(response)',
        ], site.url("/"), "-s", "DOWNLOAD_DELAY=0.25", "-s", "user_agent=shell-test/1")
        hits = [(hit.path, hit.headers["user-agent"]) for hit in server.hits]
    assert run.returncode == 0, run.stderr
    out = run.stdout.splitlines()
    assert out[:4] == [
        f"Home 200 {site.url('/')}",
        "crawlkit shell-test/1 0.25",
        f"{site.url('/b')} Bee",
        f"{site.url('/b')}",  # /private was refused by robots.txt: response is still the last page
    ]
    view = Path(out[4])
    assert view.suffix == ".html" and f'<base href="{site.url("/b")}">'.encode() in view.read_bytes()
    view.unlink()
    assert f"robots.txt of {site.url('/')[7:-1]} disallows {site.url('/private')}" in run.stderr
    assert f"301 {site.url('/old')} -> {site.url('/b')}" in run.stderr
    assert {agent for _, agent in hits} == {"shell-test/1"}
    assert [path for path, _ in hits] == ["/robots.txt", "/", "/robots.txt", "/old", "/b", "/robots.txt"]


def test_the_spider_and_its_custom_settings_are_there(tmp_path: Path) -> None:
    (tmp_path / "shop.py").write_text(SPIDER)
    with HostileServer() as server:
        site = server.site({"/": page(b"<title>Shop</title>"), "/robots.txt": page(b"", status=404)})
        run = shell(tmp_path, [
            "from crawlkit.testing import run_callback",
            "print(spider.name, run_callback(spider, response).items)",
            "shelp()",
        ], site.url("/"), "--spider", "shop.py")
        agents = {hit.headers["user-agent"] for hit in server.hits}
    assert run.returncode == 0, run.stderr
    out = run.stdout.splitlines()
    assert out[0] == "shop [{'title': 'Shop'}]"
    assert "  spider     the spider (Shop, named 'shop')" in out
    assert agents == {"shop-bot/2"}


def test_a_bad_setting_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    run = shell(tmp_path, [], "http://127.0.0.1:9/", "-s", "TELNETCONSOLE_ENABLED=true")
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "Error: -s TELNETCONSOLE_ENABLED=true: Scrapy's TELNETCONSOLE_ENABLED is not a crawlkit setting; "
        "there is no telnet console; remove it"]
