"""What a wheel carries: every file crawlkit reads at run time is package data, and is documented."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from crawlkit.backends.redis import scripts

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; CI runs 3.11

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "crawlkit"
LUA = PACKAGE / "backends" / "redis"


def test_every_data_file_in_the_package_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]
    data = [p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert any(p.suffix == ".lua" for p in data) and PACKAGE / "default.yaml" in data
    missed = []
    for path in data:
        package = ".".join(path.parent.relative_to(ROOT).parts)
        if not any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns.get(package, ())):
            missed.append(str(path.relative_to(ROOT)))
    assert not missed, f"add {missed} to [tool.setuptools.package-data] in pyproject.toml"


def test_every_lua_file_is_used_and_opens_with_what_it_does() -> None:
    files = {p.stem: p.read_text(encoding="utf-8") for p in LUA.glob("*.lua")}
    run = {**scripts.SCRIPTS, "turn_enter": scripts.TURN_ENTER, "turn_exit": scripts.TURN_EXIT}
    assert set(files) == set(run) | {"helpers"}
    for name, text in run.items():
        assert text == files["helpers"] + files[name]
        head = " ".join(line for line in files[name].splitlines() if line.startswith("--"))
        assert files[name].startswith("-- ") and "ARGV: P" in head, f"{name}.lua: say what it does and its ARGV"
