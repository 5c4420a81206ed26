"""Tools around a crawl: the demo site, the benchmark, the spider scaffold, debugging commands, the report."""
