"""Where a webhook may be sent: public addresses only, unless the settings allow private ones.

A URL's host is resolved (without blocking the event loop) and refused when any of its
addresses is loopback, private, link-local (including the 169.254.169.254 metadata address),
unique-local, deprecated site-local (fec0::/10), unspecified, reserved, shared (100.64/10),
multicast or otherwise not globally routable. An IPv4 address carried inside an IPv6 one
(IPv4-mapped ``::ffff:0:0/96``, IPv4-compatible ``::/96``, NAT64 ``64:ff9b::/96`` and
``64:ff9b:1::/48``, 6to4 ``2002::/16``) is judged as that IPv4 address. A malformed name (an
empty label, a label over 63 characters) is refused as such. The check runs when a
subscription is made and again before every delivery, whose connection then goes to the
address that was checked (DNS can change in between).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

RESOLVE_SECONDS = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The host is, or resolves to, an address webhooks may not reach."""


class TargetUnresolved(Exception):
    """The host has no address (now)."""


class TargetMalformed(Exception):
    """The host is not a valid DNS name (an empty label, or one over 63 characters)."""


_SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    addresses: tuple[str, ...]  # the checked addresses to connect to, in resolver order

    @property
    def address(self) -> str:
        return self.addresses[0]


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address may carry (mapped, compatible, NAT64, 6to4)."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE or address in _NAT64[0]:
        return [low]
    if address in _NAT64[1]:
        # Local-use NAT64 (RFC 8215) may use a /96 inside the /48 (the IPv4 address in the
        # last 32 bits) or the /48 itself (RFC 6052: bits 48-63 and 72-87): both are judged.
        bits = int(address)
        split = ipaddress.IPv4Address(((bits >> 64) & 0xFFFF) << 16 | ((bits >> 40) & 0xFFFF))
        return [low, split]
    return []


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address in _SITE_LOCAL:
            return False
        embedded = embedded_ipv4(address)
        if embedded:
            return all(is_public(inner) for inner in embedded)
    return address.is_global and not address.is_multicast


def check_name(host: str) -> None:
    """Raise :class:`TargetMalformed` unless ``host`` is a literal address or a name the
    resolver accepts (the same IDNA encoding ``getaddrinfo`` applies)."""
    literal = host.strip("[]")
    try:
        ipaddress.ip_address(literal)
        return
    except ValueError:
        pass
    try:
        host.encode("idna")
    except (UnicodeError, ValueError) as exc:
        raise TargetMalformed(host) from exc


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The host's addresses (a literal address is its own), in resolver order."""
    literal = host.strip("[]")
    try:
        return [ipaddress.ip_address(literal)]
    except ValueError:
        pass
    check_name(host)
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_SECONDS
        )
    except (UnicodeError, ValueError) as exc:  # a name the resolver refuses to encode
        raise TargetMalformed(host) from exc
    except (OSError, TimeoutError) as exc:
        raise TargetUnresolved(host) from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetUnresolved(host)
    return addresses


async def check(host: str, port: int, *, allow_private: bool) -> Target:
    """The address to connect to for ``host``; refused when any of its addresses is not
    public (a name with one private address among public ones is refused too)."""
    addresses = await resolve(host, port)
    if not allow_private:
        refused = [address for address in addresses if not is_public(address)]
        if refused:
            raise TargetRefused(host)
    return Target(host=host, addresses=tuple(str(address) for address in addresses))
