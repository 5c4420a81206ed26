"""How the ``crawlkit`` command starts its children: without running its main script again in each."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from multiprocessing import spawn
from pathlib import Path

import pytest

from crawlkit.process import _PRELOAD, THREADS_PER_FETCHER, fetcher_processes, leave_main_alone
from crawlkit.tools.site import Site, SiteSpec


def _main_module(monkeypatch: pytest.MonkeyPatch, spec: object = None) -> types.ModuleType:
    main = types.ModuleType("__main__")
    main.__file__ = "/venv/bin/crawlkit"
    main.__spec__ = spec  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", main)
    return main


def test_children_of_the_console_script_do_not_run_it_again(monkeypatch: pytest.MonkeyPatch) -> None:
    _main_module(monkeypatch)
    assert spawn.get_preparation_data("child")["init_main_from_path"] == "/venv/bin/crawlkit"  # the default

    leave_main_alone()

    data = spawn.get_preparation_data("child")  # what multiprocessing hands every child it starts
    assert "init_main_from_path" not in data and "init_main_from_name" not in data


def test_a_main_module_run_by_name_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    main = _main_module(monkeypatch, spec=types.SimpleNamespace(name="mycrawl.run"))

    leave_main_alone()

    assert main.__file__ == "/venv/bin/crawlkit"
    assert spawn.get_preparation_data("child")["init_main_from_name"] == "mycrawl.run"


SPIDER = '''
import gc
import sys

from crawlkit import Spider

class Modules(Spider):
    name = "modules"
    start_urls = START

    def parse(self, response):
        # Runs in a parser process: what the crawlkit command's own imports would have brought there.
        imported = [name for name in ("crawlkit.cli", "click", "rich", "yaml") if name in sys.modules]
        yield {"url": response.url, "imported": imported, "frozen": gc.get_freeze_count() > 0,
               "collecting": gc.isenabled()}
'''


def test_a_crawls_parser_has_not_imported_the_command_and_shares_what_it_inherited(crawlkit, tmp_path: Path) -> None:
    with Site(SiteSpec(hosts=1, pages=1, extras=False)) as site:
        spider = tmp_path / "modules.py"
        spider.write_text(SPIDER.replace("class Modules", f"START = {site.seeds()!r}\n\nclass Modules"))
        run = crawlkit("runspider", str(spider), "--max-pages", "1")
        fetches = site.stats()["fetches"]
    assert run.returncode == 0, run.stderr
    # The fork server imported with the garbage collector off (crawlkit.preload); the child turned it on.
    assert run.items() == [{"url": site.seeds()[0], "imported": [], "frozen": True, "collecting": True}]
    netloc = site.urls[0].split("//")[1]
    assert fetches == {f"{netloc}/robots.txt": 1, f"{netloc}/": 1}


def test_every_module_the_fork_server_preloads_exists() -> None:
    # The fork server skips a name it cannot import: a module renamed in a refactor would
    # silently be imported again in every child.
    assert [name for name in _PRELOAD if importlib.util.find_spec(name) is None] == []


@pytest.mark.parametrize("workers, concurrency, cpus, started", [
    (8, 16, 2, 2),  # 2 processes of 8 fetch threads, not 8 of 2
    (2, 16, 8, 2),  # never more than workers
    (1, 16, 2, 1),
    (8, 100, 2, 4),  # 25 threads each: more processes only to stay under THREADS_PER_FETCHER
    (8, 1024, 2, 8),
    (24, 1024, 2, 24),
    (24, 16, 24, 24),
])
def test_fetcher_processes_are_one_per_cpu_unless_concurrency_needs_more(
        workers: int, concurrency: int, cpus: int, started: int) -> None:
    assert fetcher_processes(workers, concurrency, cpus) == started
    assert concurrency / started <= THREADS_PER_FETCHER or started == workers


def test_the_command_and_a_spiders_import_load_no_selector_library() -> None:
    """What the crawlkit command imports before its fork server starts is on the way to the first
    request: parsel (30 ms), itemadapter and the runner load where they are used, not with the package."""
    heavy = ("parsel", "itemadapter", "crawlkit.forms", "crawlkit.items")
    code = f"import sys, crawlkit.cli\nfrom crawlkit import Spider\nprint([m for m in {heavy} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip() == "[]"
    from crawlkit import Response  # and a selector still works once asked for

    assert Response("http://h.test/", body="<title>t</title>").css("title::text").get() == "t"
