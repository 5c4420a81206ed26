"""What a crawl can be extended with: pipelines, middlewares, exports, WARC, sitemaps, robots.txt, cookies."""
