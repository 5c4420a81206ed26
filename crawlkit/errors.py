"""crawlkit's exceptions, in one tree users can catch.

    CrawlkitError                 base of everything crawlkit raises on purpose
     +-- ConfigError              a bad setting: unknown key, wrong type, bad value, bad YAML
     +-- SeedsError               a seeds file that is missing, unreadable or has no valid URL
     +-- SpiderError              a spider that cannot be loaded or constructed
     +-- SharedCrawlError         the Redis of a shared crawl stopped answering during the crawl
     +-- WriteFailed              the system refused to write an output or jobdir file (exit code 3)
     +-- CrashLoopError           crawlkit's own processes keep dying as they start: replacing them is futile
     +-- DropItem                 raised by an item pipeline to drop an item (not a failure)
     +-- RetryRequest             raised by a response hook to fetch the request again (not a failure)

The CLI turns any CrawlkitError into a one-line message and exit code 2 (3 for WriteFailed,
after the summary); see ``cli.py``.
Faults met *during* a crawl (timeouts, resets, callback exceptions) are never raised to the
user: they are counted in the stats and logged with their URL.
"""

from __future__ import annotations


class CrawlkitError(Exception):
    """Base class of the errors crawlkit raises for a user to act on."""


class ConfigError(CrawlkitError):
    """A setting, a config file or a command-line value is wrong; the message says which and how to fix it."""


class SeedsError(CrawlkitError):
    """The seeds file is missing, unreadable, or holds no http(s) URL."""


class SpiderError(CrawlkitError):
    """A spider cannot be imported, found or constructed."""


class SharedCrawlError(CrawlkitError):
    """The Redis server of a shared crawl failed mid-crawl; its state is kept there for a rejoin."""


class WriteFailed(CrawlkitError):
    """The system refused a write the crawl must make (disk full, read-only, file too large).

    The crawl stops, prints its summary and exits with ``exit_code`` 3. What was written before
    is whole: each output file ends on a complete record, and a job directory records only
    output that was written, so the same command resumes with no item twice.
    """

    exit_code = 3

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason
        self.resumable = False  # set by the engine when a job directory keeps the crawl's state

    def __str__(self) -> str:
        again = (
            "run the same command again to resume" if self.resumable
            else "run the command again (with --jobdir a crawl resumes where it stopped)"
        )
        return f"cannot write {self.path}: {self.reason}; free space or make it writable, then {again}"


class CrashLoopError(CrawlkitError):
    """Fetcher, parser or seen-store processes died again and again with no page done in between."""


class DropItem(CrawlkitError):
    """Raised by an item pipeline's ``process_item`` to drop the item; counted, not logged as an error."""


class RetryRequest(CrawlkitError):
    """Raised by a middleware's ``process_response`` to fetch the request again.

    The retry obeys ``retries`` and ``retry_backoff`` like a 503; the message is the reason,
    logged with the URL. When the retries are spent the response is dropped, not parsed.
    """
