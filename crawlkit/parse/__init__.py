"""The parser processes: the page rules and the spider's callbacks, run on each fetched page."""
