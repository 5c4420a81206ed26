"""Rendering JavaScript pages in a browser: the page actions and the capture of a page's network responses."""
