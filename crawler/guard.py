"""The SSRF guard (DESIGN §6): refuse connections to non-public addresses.

It is asked about the address a connection actually reached (the socket's peer), not
about what a name resolved to earlier, so DNS rebinding cannot slip past it.
Loopback, private, link-local (169.254/16: cloud metadata), multicast, reserved and
unspecified addresses are refused, unless ``allow_private_networks`` is set or the
host is one the user gave as a seed.
"""

from __future__ import annotations

import ipaddress


class AddressGuard:
    def __init__(self, *, allow_private: bool, trusted_hosts: set[str] | frozenset[str] = frozenset()):
        self.allow_private = allow_private
        self.trusted_hosts = frozenset(h.lower() for h in trusted_hosts)

    def refuses(self, ip: str, host: str) -> str | None:
        """Why a connection to ``ip`` (for ``host``) is refused, or None if it is fine."""
        if self.allow_private or host.lower().strip("[]") in self.trusted_hosts:
            return None
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return f"refused: {host} connected to an unparseable address {ip!r}"
        mapped = getattr(addr, "ipv4_mapped", None)
        if mapped is not None:
            addr = mapped
        if (addr.is_loopback or addr.is_private or addr.is_link_local or addr.is_multicast
                or addr.is_reserved or addr.is_unspecified):
            return f"refused: {host} is at non-public address {ip} (allow_private_networks is off)"
        return None
