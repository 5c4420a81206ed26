"""Where a crawl keeps its state: ``local`` (this machine) or ``redis`` (shared by several nodes)."""
