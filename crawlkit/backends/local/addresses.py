"""Host names to addresses for politeness by IP: resolved off the engine's loop, cached for ``TTL`` seconds.

With ``per_ip`` on, hosts that resolve to one address share one cap and one delay (many virtual
hosts on one server). The engine must never wait for DNS, so ``AddressCache.address`` answers
at once: the address, or None while a resolver thread asks (the host then waits, its requests
queued, and asks again shortly). An IP literal is its own address, asked of no one.

Names are resolved with ``getaddrinfo``, as the fetcher connects: the system's resolver, with
``/etc/hosts`` and its own cache (which honours the records' TTLs). ``getaddrinfo`` does not say
a record's TTL, so an answer is kept ``TTL`` seconds and then asked again; a host that moved
meanwhile is only paced with its old address's neighbours a while longer (the fetch itself
resolves afresh). A name that does not resolve is its own address: its fetch fails as usual.
"""

from __future__ import annotations

import ipaddress
import socket
from concurrent.futures import Future, ThreadPoolExecutor

#: Seconds an answer is kept before it is asked for again.
TTL = 300.0
#: Resolver threads: lookups wait on the network, not the CPU, and a crawl meets new hosts in bursts.
THREADS = 4


def host_name(host: str) -> str:
    """The name or address of a host as ``urls.host_of`` gives it (``host``, ``host:port``, ``[v6]:port``)."""
    if host.startswith("["):
        return host[1:host.find("]")]
    return host.partition(":")[0]


class AddressCache:
    """Host (as ``host_of`` gives it) -> its first address; lives in the engine, resolves in threads."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, float]] = {}  # host -> (address, monotonic time it expires)
        self._asking: dict[str, Future[str]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def address(self, host: str, now: float) -> str | None:
        """The host's address if known and fresh; else None, and a resolver thread asks (once)."""
        known = self._known.get(host)
        if known is not None and now < known[1]:
            return known[0]
        name = host_name(host)
        try:
            literal = str(ipaddress.ip_address(name))
        except ValueError:
            pass
        else:
            self._known[host] = (literal, float("inf"))
            return literal
        asking = self._asking.get(host)
        if asking is None:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="crawlkit-dns")
            self._asking[host] = self._pool.submit(_resolve, name)
            return None if known is None else known[0]  # the old answer meanwhile
        if not asking.done():
            return None if known is None else known[0]
        del self._asking[host]
        self._known[host] = (asking.result(), now + TTL)
        return self._known[host][0]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _resolve(name: str) -> str:
    """The first address ``getaddrinfo`` gives for ``name``; the name itself if it does not resolve."""
    try:
        infos = socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return name
    return str(infos[0][4][0]) if infos else name
