"""Where requests may connect: the guard behind ``allow_private_addresses: false``.

A crawl of URLs that other people submit must not become a way into the machine's own network
(server-side request forgery): to the loopback services, the cloud metadata address
(169.254.169.254), the office LAN. So with the setting off, each fetch thread's session uses
connections built with ``PublicOnly`` (see ``fetcher.py``), which resolve the host name once, refuse it unless *every*
address it resolves to is public, and then connect to those checked addresses themselves: a
second lookup that could answer differently (DNS rebinding) never happens. Whatever spelling
the URL uses (``0x7f.0.0.1``, ``2130706433``, ``127.1``, ``0177.0.0.1``, ``[::ffff:7f00:1]``),
the check sees the address the resolver made of it. Connections kept alive were checked when
they were made, so the per-page cost is nil; only a new connection pays for one check.

Through a proxy, the proxy connects, not crawlkit (and the proxy is the user's choice, often
on a private address itself): the fetcher refuses URLs whose host is a non-public IP address
in any spelling (``literal_address``), and host names are left to the proxy's own rules.

A refused request fails with ``DestinationBlocked``, which ``fetcher.classify`` maps to the
error kind ``destination_blocked``: counted, logged with its URL, never retried.
"""

from __future__ import annotations

import ipaddress
import socket

from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 addresses that carry an IPv4 address a gateway would connect to: NAT64's well-known
# prefix (RFC 6052); IPv4-mapped, 6to4 and Teredo ones are unpacked by ipaddress itself.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class DestinationBlocked(Exception):
    """A request's host is (or resolves to) an address that is not public; raised at connect time."""


def why_not_public(address: IPAddress) -> str | None:
    """What kind of non-public address ``address`` is (``"loopback"``, ``"private"``...), or None when public.

    An IPv4-mapped (``::ffff:127.0.0.1``) or NAT64 IPv6 address is judged as the IPv4 address
    it leads to; a 6to4 or Teredo one, by both.
    """
    if isinstance(address, ipaddress.IPv6Address):
        # IPv4-mapped: the socket connects to that IPv4 address; NAT64: the gateway does (and
        # a DNS64 resolver gives every IPv4-only site such an address).
        nat64 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
        mapped = address.ipv4_mapped or nat64
        if mapped is not None:
            reason = why_not_public(mapped)
            return reason and f"{reason} (as {mapped})"
        embedded = address.sixtofour or (address.teredo[1] if address.teredo else None)
        reason = why_not_public(embedded) if embedded is not None else None
        if reason:
            return f"{reason} (as {embedded})"
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if not address.is_global:  # shared address space (100.64.0.0/10) and other special-purpose blocks
        return "special-purpose"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, if it is an IP address in any form a resolver accepts; else None.

    Besides dotted quads and IPv6, that is the old inet_aton forms: ``127.1``, ``0x7f.0.0.1``,
    ``0177.0.0.1``, ``2130706433``.
    """
    host = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def check_host(host: str) -> None:
    """Raise DestinationBlocked when ``host`` spells a non-public IP address (names pass: they are not
    resolved here)."""
    address = literal_address(host)
    if address is not None:
        reason = why_not_public(address)
        if reason:
            raise DestinationBlocked(f"{host} is {address}, a {reason} address, and allow_private_addresses is false")


def public_addresses(host: str, port: int) -> list[str]:
    """Resolve ``host`` once: its addresses for ``port``, in the resolver's order, all checked public.

    Raises DestinationBlocked if any address is not public (a name with one private address
    among public ones is refused: which one a connection would get is the resolver's choice),
    and ``socket.gaierror`` when the name does not resolve.
    """
    found: list[str] = []
    for _, _, _, _, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        ip = str(sockaddr[0])  # always a str for the IPv4 and IPv6 answers getaddrinfo gives here
        address = ipaddress.ip_address(ip.split("%", 1)[0])
        reason = why_not_public(address)
        if reason:
            raise DestinationBlocked(
                f"{host} resolves to {address}, a {reason} address, and allow_private_addresses is false"
            )
        if ip not in found:
            found.append(ip)
    return found


class PublicOnly:
    """Mixed into urllib3's connection classes: connect only to the checked addresses of one lookup."""

    _dns_host: str
    host: str
    port: int

    def _new_conn(self) -> socket.socket:
        name = self._dns_host
        try:
            addresses = public_addresses(name, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        failure: Exception | None = None
        for address in addresses:
            # urllib3 resolves _dns_host again; an IP address resolves to itself, so the
            # connection goes where the check looked. TLS still names and verifies self.host.
            self._dns_host = address
            try:
                return super()._new_conn()  # type: ignore[misc]
            except (NewConnectionError, ConnectTimeoutError) as exc:
                failure = exc
            finally:
                self._dns_host = name
        assert failure is not None  # getaddrinfo returns at least one address or raises
        raise failure
