"""The SSRF guard (DESIGN §6): refuse connections to non-public addresses.

Every address that is not globally routable is refused: loopback, private,
link-local (169.254/16: cloud metadata), shared (100.64/10), reserved, unspecified,
and multicast too. ``allow_private_networks`` lifts that, and so does the host being
one the user gave as a seed.

The check is made twice for every new connection (``open_connection``):
- *before* connecting, on each address the name resolved to: a refused address is
  never connected to, so not even a SYN leaves for it;
- *after* connecting, on the socket's peer address: the address actually connected
  to, whatever resolution said, so DNS rebinding cannot slip past either.

A name whose every address is refused raises ``Blocked`` (error type "blocked").
Behind an HTTP proxy the peer is the proxy, so the guard can only judge the proxy.
"""

from __future__ import annotations

import ipaddress
import socket
import time

from crawler.errors import Blocked


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
        # Not globally routable covers loopback, private, link-local, reserved and
        # unspecified addresses, and also shared address space (100.64/10, where one
        # cloud keeps its metadata service), documentation and benchmark ranges.
        if not addr.is_global or addr.is_multicast:
            return f"refused: {host} is at non-public address {ip} (allow_private_networks is off)"
        return None

    def check_peer(self, sock: socket.socket, host: str) -> None:
        """Raise ``Blocked`` (and close ``sock``) if the peer ``sock`` reached is refused."""
        reason = self.refuses(sock.getpeername()[0], host)
        if reason:
            sock.close()
            raise Blocked(reason)


def open_connection(host: str, port: int, *, guard: AddressGuard | None, timeout: float | None,
                    deadline: float | None = None, family: int = socket.AF_UNSPEC,
                    source_address: tuple[str, int] | None = None,
                    socket_options: list | None = None, sock_class: type = socket.socket) -> socket.socket:
    """``socket.create_connection`` with the guard: resolve ``host``, skip the addresses the
    guard refuses *before* connecting, connect to the first that answers, check its peer.

    Each connect waits at most ``timeout`` seconds, and all of them together end by
    ``deadline`` (a ``time.monotonic()`` value). Raises ``Blocked`` if every address was
    refused, and the last ``OSError`` (``socket.timeout`` included) if none answered. The
    socket is made by ``sock_class`` (``socket.socket`` or a subclass of it).
    """
    name = host.strip("[]")
    error: OSError | None = None
    refused: str | None = None
    for af, socktype, proto, _, sockaddr in socket.getaddrinfo(name, port, family, socket.SOCK_STREAM):
        reason = guard.refuses(sockaddr[0], name) if guard is not None else None
        if reason:
            refused = reason
            continue
        wait = timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout(f"deadline passed before connecting to {name}")
            wait = left if wait is None else min(wait, left)
        sock = sock_class(af, socktype, proto)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(wait)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        if guard is not None:
            guard.check_peer(sock, name)
        sock.settimeout(timeout)
        return sock
    if error is not None:
        raise error
    if refused is not None:
        raise Blocked(refused)
    raise OSError(f"getaddrinfo returned no address for {name}")
