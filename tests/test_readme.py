"""The README's settings table is generated from crawlkit/default.yaml; keep the two in step."""

from __future__ import annotations

import json
import re
from pathlib import Path

from crawlkit.settings import settings_doc

README = Path(__file__).resolve().parent.parent / "README.md"


def test_settings_table_matches_default_yaml() -> None:
    text = README.read_text(encoding="utf-8")
    table = re.search(r"<!-- settings-table.*?-->\n(.*?)<!-- /settings-table -->", text, re.S)
    assert table, "README.md lost its settings table markers"
    rows = [line for line in table.group(1).splitlines() if line.startswith("| `")]
    expected = [f"| `{key}` | `{json.dumps(default)}` | {comment} |" for key, default, comment in settings_doc()]
    assert rows == expected, "regenerate the README settings table from crawlkit/default.yaml"


def test_quick_start_commands_are_present() -> None:
    text = README.read_text(encoding="utf-8")
    assert 'pip install -e ".[test]" && crawlkit demo -o demo.jsonl' in text
    assert "python -m pytest -q" in text
