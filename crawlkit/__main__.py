"""``python -m crawlkit``: the same as the ``crawlkit`` command."""

from .cli import main

main()
