"""The test process reaches nothing but loopback (conftest's ``_loopback_only``)."""

from __future__ import annotations

import socket

import pytest


@pytest.mark.parametrize("host", ["a.com", "www.sitemaps.org", "xn--bcher-kva.de", "8.8.8.8", "10.0.0.1"])
def test_names_and_addresses_off_loopback_are_not_looked_up(host: str) -> None:
    with pytest.raises(socket.gaierror, match="tests"):
        socket.getaddrinfo(host, 80)


@pytest.mark.parametrize("host", ["127.0.0.2", "127.1", "::1", "localhost"])
def test_loopback_is_looked_up(host: str) -> None:
    assert socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)
