"""Where a webhook may be sent: public addresses only, unless the settings allow private ones.

A URL's host is resolved (without blocking the event loop) and refused when any of its
addresses is loopback, private, link-local (including the 169.254.169.254 metadata address),
unique-local, unspecified, reserved, shared (100.64/10), multicast or otherwise not globally
routable. The check runs when a subscription is made and again before every delivery, whose
connection then goes to the address that was checked (DNS can change in between).
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


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    addresses: tuple[str, ...]  # the checked addresses to connect to, in resolver order

    @property
    def address(self) -> str:
        return self.addresses[0]


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The host's addresses (a literal address is its own), in resolver order."""
    literal = host.strip("[]")
    try:
        return [ipaddress.ip_address(literal)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_SECONDS
        )
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
