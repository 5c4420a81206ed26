"""``python -m crawlkit``: the same as the ``crawlkit`` command."""

from crawlkit.cli import main

main()
