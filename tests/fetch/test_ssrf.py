"""The SSRF guard (DESIGN §6): links and redirects to non-public addresses are refused
before anything is sent to them.

Name resolution is faked in-process (the crawls run through ``crawler.api.crawl`` in
this process), and every socket created here may only connect to loopback: a connect
anywhere else is refused by the socket itself and remembered, so that these tests can
never send a packet to a non-loopback address, even if the guard were broken.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

import orjson
import pytest

from crawler.api import crawl
from crawler.errors import Blocked
from crawler.fetch.guard import AddressGuard, open_connection
from crawler.demo.shop.server import Response, Site, SiteServer

REAL_GETADDRINFO = socket.getaddrinfo
REAL_SOCKET = socket.socket
H = "127.0.0.1"

# name -> the address it "resolves" to
FAKE_DNS = {
    "site.test": H,  # the seed: trusted, although loopback
    "metadata.test": "169.254.169.254",  # cloud metadata
    "intranet.test": "10.1.2.3",
    "alibaba-meta.test": "100.100.100.200",  # shared address space, another cloud's metadata
    "other-loopback.test": H,  # loopback, but not a seed's host
}


class LoopbackOnlySocket(REAL_SOCKET):
    """A socket that refuses (and reports) any connect to a non-loopback address."""

    refused: list[str] = []

    def _check(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            ip = ipaddress.ip_address(address[0].split("%")[0])
            if not ip.is_loopback:
                LoopbackOnlySocket.refused.append(str(ip))
                raise OSError(errno.EHOSTUNREACH, f"test safety net: no connects to {ip}")

    def connect(self, address):
        self._check(address)
        return super().connect(address)

    def connect_ex(self, address):
        self._check(address)
        return super().connect_ex(address)


@pytest.fixture
def fake_network(monkeypatch):
    """Fake DNS for FAKE_DNS names; loopback-only sockets; returns the refused-connect list."""

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name in FAKE_DNS:
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (FAKE_DNS[name], port))]
        if name.endswith(".test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return REAL_GETADDRINFO(host, port, family, type, proto, flags)

    LoopbackOnlySocket.refused = []
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "socket", LoopbackOnlySocket)
    return LoopbackOnlySocket.refused


def run_crawl(tmp_path, seed: str, **overrides) -> dict[str, dict]:
    out = tmp_path / "out.jsonl"
    settings = dict(max_depth=1, per_host_delay=0, timeout=2, retries=0, workers=1,
                    allowed_domains=list(FAKE_DNS), handle_signals=False)
    settings.update(overrides)
    result = crawl([seed], output=out, fresh=True, **settings)
    assert result.pages > 0
    return {r["url"]: r for r in map(orjson.loads, out.read_bytes().splitlines())}


def add_pages(site: Site, port: int) -> None:
    targets = [f"http://{name}:{port}/from-{name.split('.')[0]}" for name in FAKE_DNS if name != "site.test"]
    body = "".join(f'<a href="{t}">{t}</a>' for t in targets + ["/go-metadata"])
    site.add(H, "/", Response.html(f"<html><head><title>home</title></head><body>{body}</body></html>"))
    site.add(H, "/go-metadata", Response.redirect(f"http://metadata.test:{port}/latest/meta-data/"))
    site.add(H, "*", Response.html("<title>reached</title>"))


@pytest.fixture
def served(fake_network):
    site = Site()
    with SiteServer(site, [H]) as server:
        add_pages(site, server.port)  # the pages link to the port the server got
        yield server


def test_links_and_redirects_to_non_public_addresses_are_blocked_before_connecting(tmp_path, served, fake_network,
                                                                                  engine_name):
    port = served.port
    records = run_crawl(tmp_path, f"http://site.test:{port}/", engine=engine_name)
    assert records[f"http://site.test:{port}/"]["error"] is None  # the seed itself is trusted
    for name in ("metadata", "intranet", "alibaba-meta", "other-loopback"):
        r = records[f"http://{name}.test:{port}/from-{name}"]
        assert r["error"]["type"] == "blocked", r
        assert r["attempts"] <= 1 and r["status"] is None
    redirected = records[f"http://site.test:{port}/go-metadata"]
    assert redirected["error"]["type"] == "blocked"
    assert fake_network == []  # the guard refused first: the safety net never had to
    assert served.hits(H, "/from-other-loopback") == 0  # loopback, but not a seed: refused too
    assert served.hits(H, "/robots.txt") == 1  # only the seed's own


def test_allow_private_networks_lets_a_non_seed_loopback_host_through(tmp_path, served, fake_network, engine_name):
    port = served.port
    records = run_crawl(tmp_path, f"http://site.test:{port}/", allow_private_networks=True, engine=engine_name,
                        allowed_domains=["site.test", "other-loopback.test"])
    r = records[f"http://other-loopback.test:{port}/from-other-loopback"]
    assert (r["status"], r["error"]) == (200, None)
    assert served.hits(H, "/from-other-loopback") == 1 and fake_network == []


def test_open_connection_never_connects_to_a_refused_address(fake_network):
    guard = AddressGuard(allow_private=False, trusted_hosts={"site.test"})
    with pytest.raises(Blocked, match="169.254.169.254"):
        open_connection("metadata.test", 80, guard=guard, timeout=1)
    assert fake_network == []


def test_the_peer_actually_connected_to_is_checked_after_connecting(fake_network):
    site = Site()
    with SiteServer(site, [H]) as server:
        sock = REAL_SOCKET(socket.AF_INET, socket.SOCK_STREAM)
        sock.connect((H, server.port))
        # As if resolution had said "public" and the connection landed on loopback.
        with pytest.raises(Blocked, match="127.0.0.1"):
            AddressGuard(allow_private=False).check_peer(sock, "rebinding.example")
        assert sock.fileno() == -1  # closed: nothing is sent on it


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
                                "100.100.100.200", "0.0.0.0", "224.0.0.1", "::1", "fe80::1%eth0",
                                "::ffff:169.254.169.254", "fc00::1", "240.0.0.1"])
def test_non_public_addresses_are_refused(ip):
    assert AddressGuard(allow_private=False).refuses(ip, "example.com")


@pytest.mark.parametrize("ip", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(ip):
    assert AddressGuard(allow_private=False).refuses(ip, "example.com") is None


def test_a_seed_host_and_allow_private_networks_lift_the_guard():
    assert AddressGuard(allow_private=False, trusted_hosts={"Site.Test"}).refuses("127.0.0.1", "site.test") is None
    assert AddressGuard(allow_private=True).refuses("169.254.169.254", "metadata.test") is None
