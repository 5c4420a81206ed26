"""Rendering JavaScript pages: renderer processes with a browser each, beside the fetcher Pool.

``choose.py`` decides which requests a browser renders (engine side) and which plainly fetched
pages need one after all (a parser stage); ``pool.py`` runs the renderer processes, fed by their
own queues as the fetchers are; ``browser.py`` is one browser and its pages in such a process;
``actions.py`` the page actions run after a navigation; ``capture.py`` the network responses a
rendered page received, for the WARC; ``screenshots.py`` the built-in spider's screenshot files.
"""
