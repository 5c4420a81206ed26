"""Shared-state backends for a crawl spread over several machines (``redis``)."""
