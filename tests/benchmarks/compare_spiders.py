"""The same spider files on crawlkit and on Scrapy: do they yield the same items? A table per spider.

Each spider of tests/scrapy_spiders/ is written for crawlkit in Scrapy's idioms; for Scrapy this script
writes a copy with the import line rewritten (``from crawlkit import`` -> ``from scrapy import``, and
``from scrapy.spiders``/``scrapy.linkextractors`` for the names Scrapy keeps there), the one
difference. Both crawl the same local site (tests/scrapy_spiders/quotes_site.py, started once per
spider, crawled by one and then the other), with the same ``-a`` arguments and the same Scrapy-named
settings (crawlkit reads them), and write JSON Lines; the items are compared as sets. Times are of
the whole command, start-up included.

    pip install -e '.[bench]'                       # Scrapy
    python tests/benchmarks/compare_spiders.py      # exit code 1 when the items differ

Not a pytest test (no ``test_`` prefix): run it by hand. tests/test_scrapy_spiders.py runs the same
files on crawlkit alone, in the test suite.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

from scrapy_spiders.quotes_site import quotes_site  # noqa: E402 - found through the path set just above

# file -> its -a arguments
SPIDERS = {"quotes_spider.py": ["-a", "tag=love"], "login_spider.py": [], "crawl_spider.py": []}
# Scrapy's names, which crawlkit reads too: one setting list for both.
SETTINGS = ["-s", "ROBOTSTXT_OBEY=True", "-s", "LOG_LEVEL=WARNING", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=4"]
SCRAPY_ONLY = ["-s", "TELNETCONSOLE_ENABLED=False"]  # crawlkit has no telnet console, and says so


@dataclass
class Outcome:
    items: set[str]  # each item as sorted-key JSON
    seconds: float
    error: str


def scrapy_copy(spider: Path, into: Path) -> Path:
    """The spider file with its crawlkit import made Scrapy's; nothing else changes."""
    text, count = re.subn(r"^from crawlkit import (.*)$", _scrapy_imports, spider.read_text(), flags=re.M)
    if count != 1:
        raise SystemExit(f"{spider.name}: expected one 'from crawlkit import' line, found {count}")
    copy = into / spider.name
    copy.write_text(text)
    return copy


# Names Scrapy keeps outside its top-level package; the rest are imported "from scrapy".
SCRAPY_HOMES = {"CrawlSpider": "scrapy.spiders", "Rule": "scrapy.spiders", "LinkExtractor": "scrapy.linkextractors"}


def _scrapy_imports(line: re.Match[str]) -> str:
    """``from crawlkit import A, B`` as Scrapy's import lines (one per module the names live in)."""
    homes: dict[str, list[str]] = {}
    for name in (name.strip() for name in line.group(1).split(",")):
        homes.setdefault(SCRAPY_HOMES.get(name, "scrapy"), []).append(name)
    return "\n".join(f"from {home} import {', '.join(names)}" for home, names in homes.items())


def run(command: list[str], output: Path) -> Outcome:
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=output.parent)
    seconds = time.monotonic() - started
    lines = output.read_text().splitlines() if output.exists() else []
    items = {json.dumps(json.loads(line), sort_keys=True) for line in lines}
    error = "" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
    return Outcome(items, seconds, error)


def compare(name: str, args: list[str], work: Path) -> tuple[Outcome, Outcome]:
    spider = TESTS / "scrapy_spiders" / name
    scrapy_dir, crawlkit_dir = work / "scrapy", work / "crawlkit"
    scrapy_dir.mkdir(exist_ok=True)
    crawlkit_dir.mkdir(exist_ok=True)
    copy = scrapy_copy(spider, scrapy_dir)
    out = f"{spider.stem}.jsonl"
    with quotes_site() as (base, _):
        ours = run([sys.executable, "-m", "crawlkit", "runspider", str(spider), "-a", f"base={base}", *args,
                    *SETTINGS, "-O", out], crawlkit_dir / out)
        theirs = run([sys.executable, "-m", "scrapy", "runspider", str(copy), "-a", f"base={base}", *args,
                      *SETTINGS, *SCRAPY_ONLY, "-O", out], scrapy_dir / out)
    return ours, theirs


def main() -> int:
    try:
        import scrapy
    except ImportError:
        raise SystemExit("Scrapy is not installed: pip install -e '.[bench]'") from None
    rows = [("spider", "crawlkit items", "scrapy items", "same items", "crawlkit s", "scrapy s")]
    same_everywhere = True
    with tempfile.TemporaryDirectory(prefix="compare-spiders-") as tmp:
        for name, args in SPIDERS.items():
            ours, theirs = compare(name, args, Path(tmp))
            same = ours.items == theirs.items and not ours.error and not theirs.error
            same_everywhere &= same
            rows.append((name, str(len(ours.items)), str(len(theirs.items)), "yes" if same else "NO",
                         f"{ours.seconds:.2f}", f"{theirs.seconds:.2f}"))
            for who, outcome in (("crawlkit", ours), ("scrapy", theirs)):
                if outcome.error:
                    print(f"{name} on {who}: {outcome.error}", file=sys.stderr)
            if not same:
                for item in sorted(ours.items ^ theirs.items):
                    side = "crawlkit only" if item in ours.items else "scrapy only"
                    print(f"{name}: {side}: {item}", file=sys.stderr)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"Scrapy {scrapy.__version__}")
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    return 0 if same_everywhere else 1


if __name__ == "__main__":
    sys.exit(main())
