"""``crawlkit new NAME``: a spider file and a YAML config to start from, both ready to run.

The YAML's comments and defaults come from ``crawlkit/default.yaml`` (``settings_doc``), so the
starting config never disagrees with the settings reference.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from crawlkit.errors import ConfigError
from crawlkit.settings import settings_doc

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

#: The settings a new project is most likely to tune, in the order the YAML lists them.
STARTER_SETTINGS = [
    "concurrency", "per_host", "delay", "max_pages", "max_depth", "user_agent", "robots", "retries", "output", "jobdir",
]

SPIDER_TEMPLATE = '''"""The {name} spider.

Try it on one page, then crawl:

    crawlkit parse https://example.com/ --spider {name}.py:{cls}
    crawlkit runspider {name}.py --config {name}.yaml
"""

from urllib.parse import urlsplit

from crawlkit import Request, Response, Spider


class {cls}(Spider):
    name = "{name}"
    # Where the crawl starts: put your site's address here.
    start_urls = ["https://example.com/"]
    # Links are followed only to these domains (subdomains included); empty: the start URLs' hosts,
    # which are the seeds' hosts when a seeds file is given (crawlkit crawl seeds.txt --spider {name}.py).
    allowed_domains: list = []
    # Settings for this spider; they win over --config files, and flags win over them.
    custom_settings: dict = {{}}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)  # a seeds file's sites arrive here as start_urls
        if not self.allowed_domains:
            self.allowed_domains = sorted({{urlsplit(url).hostname for url in self.start_urls}} - {{None}})

    def parse(self, response: Response):
        """Called with every fetched page (2xx); yield items (dicts) and Requests to follow."""
        yield {{
            "url": response.url,
            "title": response.css("title::text").get(default="").strip() or None,
            "headings": [h.xpath("string()").get().strip() for h in response.css("h1, h2")],
        }}
        for url in response.links():
            yield Request(url, callback=self.parse)
'''


def class_name(name: str) -> str:
    """``my-shop`` -> ``MyShopSpider``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]", name) if part) + "Spider"


def config_text(name: str) -> str:
    """A commented YAML config for the project ``name``: starter settings with their defaults."""
    docs = {key: (default, comment) for key, default, comment in settings_doc()}
    lines = [
        f"# Settings for the {name} spider: crawlkit runspider {name}.py --config {name}.yaml",
        "# Every setting, its default and its meaning: crawlkit config show, or configs/default.yaml.",
        "# The spider's custom_settings win over this file; flags and -s KEY=VALUE win over both.",
    ]
    for key in STARTER_SETTINGS:
        default, comment = docs[key]
        comment = re.sub(r"^\([^)]*\)\s*", "", comment)  # the type prefix is for crawlkit, not for readers
        if key == "output":
            default = f"{name}.jsonl"
        elif key == "user_agent":
            comment += " Name your crawler and how to reach you."
        lines += ["", f"# {comment}", f"{key}: {json.dumps(default)}"]
    return "\n".join(lines) + "\n"


def new_project(name: str, directory: Path) -> tuple[Path, Path]:
    """Write NAME.py and NAME.yaml in ``directory``; ConfigError if NAME is not a name or a file exists."""
    if not NAME.fullmatch(name):
        raise ConfigError(f"{name!r} is not a spider name: use letters, digits, '-' and '_', starting with a letter")
    spider, config = directory / f"{name}.py", directory / f"{name}.yaml"
    for path in (spider, config):
        if path.exists():
            raise ConfigError(
                f"{path} already exists; choose another NAME or move the file away (crawlkit new never overwrites)"
            )
    spider.write_text(SPIDER_TEMPLATE.format(name=name, cls=class_name(name)), encoding="utf-8")
    config.write_text(config_text(name), encoding="utf-8")
    return spider, config
