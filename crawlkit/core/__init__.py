"""The crawl loop in the engine process: seeds and resumes, hands requests to fetchers, takes pages back."""
