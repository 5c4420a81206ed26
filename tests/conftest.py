"""Shared fixtures: the local multi-host site (crawlkit.tools.site) and running the real CLI.

Like Scrapy's mockserver: every crawl test runs against pages served on loopback hosts
(127.0.0.2, 127.0.0.3, ...), and asserts on what the server saw as well as on crawlkit's output.

Names such as ``a.com`` or ``xn--bcher-kva.de`` appear in unit tests of URL handling, which
look nothing up; hosts that a test does fetch are loopback addresses, or names under the
reserved ``.test`` and ``.invalid`` domains reached through a local proxy. ``_loopback_only``
holds every test process to that: a lookup of any other name, or of an address off loopback,
fails at once instead of reaching the network.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from support import CRAWLKIT, Run, leftover_processes

_RESERVED = (".test", ".invalid", ".localhost")  # RFC 2606/6761 names no public resolver answers


def _loopback(text: str) -> bool:
    address = ipaddress.ip_address(text.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is loopback too
    return (mapped or address).is_loopback


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """In the test process, resolve only ``localhost``, reserved test names and loopback addresses."""
    real = socket.getaddrinfo

    def guarded(host: object, *args: object, **kwargs: object) -> object:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name == "localhost" or name.rstrip(".").endswith(_RESERVED):
            return real(host, *args, **kwargs)  # type: ignore[arg-type]
        try:  # a numeric host in any spelling (127.1, 0x7f.0.0.1), never a DNS query
            found = real(host, None, flags=socket.AI_NUMERICHOST)  # type: ignore[arg-type]
        except socket.gaierror:
            raise socket.gaierror(socket.EAI_NONAME, f"tests look up no host names but loopback ones: {name}") from None
        if not all(_loopback(entry[4][0]) for entry in found):
            raise socket.gaierror(socket.EAI_NONAME, f"tests reach no address off loopback: {name}")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.fixture()
def crawlkit(tmp_path: Path) -> Callable[..., Run]:
    """Run the real ``crawlkit`` command; checks that no process of it outlives it."""

    def run(*args: str, output: str | None = "out.jsonl", timeout: float = 180, seeds: list[str] | None = None) -> Run:
        argv = [CRAWLKIT, *args]
        if seeds is not None:
            seeds_file = tmp_path / "seeds.txt"
            seeds_file.write_text("\n".join(seeds) + "\n")
            argv.insert(2, str(seeds_file))
        out = None
        if output is not None:
            out = tmp_path / output
            argv += ["-o", str(out)]
        marker = uuid.uuid4().hex
        env = {**os.environ, "CRAWLKIT_TEST_RUN": marker}
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env)
        leftovers = leftover_processes(marker)
        for p in leftovers:
            p.kill()
        assert not leftovers, f"crawlkit left processes behind: {leftovers}"
        return Run(proc, out)

    return run
