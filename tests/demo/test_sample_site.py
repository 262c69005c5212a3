"""The sample site itself: the server answers exactly, counts exactly, and misbehaves on demand;
the catalog's `expected` is what an XPath crawler would extract, and every page is reachable.

Crawler tests lean on these numbers (hits, max_in_flight, expected), so they are checked here
against independent means: raw sockets, lxml and a breadth-first walk of the links.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from urllib.parse import urlsplit

import lxml.html
import protego
import pytest

from crawler.demo.shop.catalog import FIELDS, build_catalog, canonical_url, loopback_hosts
from crawler.demo.shop.server import HANG, RESET, Drip, Request, Response, Site, SiteServer
from tests.helpers import wait_until

A, B = "127.0.0.1", "127.0.0.2"
PAGE = Response.html("<html><head><title>Hello</title></head><body>hi</body></html>")


@pytest.fixture
def site() -> Site:
    site = Site()
    site.add("*", "/", PAGE)
    return site


@pytest.fixture
def server(site: Site):
    with SiteServer(site, [A, B]) as server:
        yield server


def get(server: SiteServer, host: str, path: str, timeout: float = 5.0,
        headers: dict[str, str] | None = None) -> tuple[int, bytes, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection(host, server.port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket, pending: bytearray) -> bytes:
    """One whole response (head + Content-Length body) from a keep-alive socket."""
    while b"\r\n\r\n" not in pending:
        pending += sock.recv(65536)
    end = pending.index(b"\r\n\r\n") + 4
    length = int(re.search(rb"Content-Length: (\d+)", bytes(pending[:end])).group(1))
    while len(pending) < end + length:
        pending += sock.recv(65536)
    response = bytes(pending[:end + length])
    del pending[:end + length]
    return response


# -- the server --

def test_static_response_is_served_as_exact_prerendered_bytes(server: SiteServer) -> None:
    with socket.create_connection((A, server.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = read_until_closed(sock)
    assert raw == PAGE.wire(close=True)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(PAGE.body))
    assert raw.endswith(b"\r\n\r\n" + PAGE.body)


def test_keep_alive_answers_several_requests_on_one_connection(server: SiteServer) -> None:
    with socket.create_connection((A, server.port)) as sock:
        pending = bytearray()
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock, pending) == PAGE.wire(close=False)
    assert server.hits(A, "/") == 3


def test_pipelined_requests_are_answered_in_order(site: Site, server: SiteServer) -> None:
    for n in range(3):
        site.add("*", f"/{n}", Response(body=f"page {n}".encode(), delay=0.05 * (2 - n)))
    with socket.create_connection((A, server.port)) as sock:
        sock.sendall(b"".join(b"GET /%d HTTP/1.1\r\n\r\n" % n for n in range(3)))
        pending = bytearray()
        bodies = [read_response(sock, pending).split(b"\r\n\r\n", 1)[1] for _ in range(3)]
    assert bodies == [b"page 0", b"page 1", b"page 2"]


def test_connection_close_is_honoured_even_with_a_request_pipelined_behind(
        site: Site, server: SiteServer) -> None:
    site.add("*", "/late", Response.html("late", delay=0.05))  # answered from a timer callback
    with socket.create_connection((A, server.port)) as sock:
        sock.settimeout(5)
        sock.sendall(b"GET /late HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        raw = read_until_closed(sock)  # returns only because the server closed
    assert raw.count(b"HTTP/1.1 200") == 1
    assert b"\r\nConnection: close\r\n" in raw


def test_unknown_path_is_a_small_404(server: SiteServer) -> None:
    status, body, _ = get(server, A, "/nowhere")
    assert status == 404 and len(body) < 200


def test_exact_host_wins_over_star_and_star_serves_every_host(site: Site, server: SiteServer) -> None:
    site.add(B, "/", Response.html("only B"))
    assert get(server, A, "/")[1] == PAGE.body
    assert get(server, B, "/")[1] == b"only B"


def test_hits_are_counted_per_host_and_path(server: SiteServer) -> None:
    for host, path in [(A, "/"), (A, "/"), (A, "/x"), (B, "/")]:
        get(server, host, path)
    assert server.hits() == 4
    assert server.hits(A) == 3
    assert server.hits(path="/") == 3
    assert server.hits(A, "/x") == 1
    assert server.hits(B, "/x") == 0


def test_max_in_flight_counts_concurrent_requests_per_host(site: Site, server: SiteServer) -> None:
    site.add("*", "/slow", Response.html("slow", delay=0.3))
    barrier = threading.Barrier(7)

    def fetch(host: str) -> None:
        barrier.wait()
        get(server, host, "/slow")

    threads = [threading.Thread(target=fetch, args=(h,)) for h in [A] * 5 + [B] * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.max_in_flight(A) == 5
    assert server.max_in_flight(B) == 2
    wait_until(lambda: server.in_flight(A) == 0, timeout=5, interval=0.01)


def test_max_in_flight_stays_one_for_sequential_requests(server: SiteServer) -> None:
    for _ in range(5):
        get(server, A, "/")
    assert server.max_in_flight(A) == 1


def test_delay_postpones_the_whole_response(site: Site, server: SiteServer) -> None:
    site.add("*", "/slow", Response.html("late", delay=0.25))
    started = time.monotonic()
    status, body, _ = get(server, A, "/slow")
    assert (status, body) == (200, b"late")
    assert time.monotonic() - started >= 0.25


def test_reset_aborts_the_connection_without_an_answer(site: Site, server: SiteServer) -> None:
    site.add("*", "/reset", lambda request: RESET)
    with socket.create_connection((A, server.port)) as sock:
        sock.settimeout(5)
        sock.sendall(b"GET /reset HTTP/1.1\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            read_until_closed(sock)
    wait_until(lambda: server.in_flight(A) == 0, timeout=5, interval=0.01)


def test_hang_never_answers_and_stays_in_flight_until_the_client_leaves(
        site: Site, server: SiteServer) -> None:
    site.add("*", "/hang", lambda request: HANG)
    with pytest.raises(TimeoutError):
        get(server, A, "/hang", timeout=0.3)
    assert server.hits(A, "/hang") == 1
    wait_until(lambda: server.in_flight(A) == 0, timeout=5, interval=0.01)  # the client closed its socket


def test_drip_sends_headers_then_the_body_slowly(site: Site, server: SiteServer) -> None:
    site.add("*", "/drip", Drip(body=b"x" * 40, chunk_size=10, interval=0.1))
    started = time.monotonic()
    status, body, _ = get(server, A, "/drip")
    assert (status, body) == (200, b"x" * 40)
    assert time.monotonic() - started >= 0.3  # three pauses between four chunks


def test_async_handler_sees_local_address_path_and_headers(site: Site, server: SiteServer) -> None:
    async def echo(request: Request) -> Response:
        return Response.html(f"{request.host} {request.method} {request.path} {request.headers['x-probe']}")

    site.add("*", "/echo", echo)
    _, body, _ = get(server, B, "/echo?q=1", headers={"Host": "example.invalid", "X-Probe": "yes"})
    assert body == b"127.0.0.2 GET /echo?q=1 yes"


def test_failing_handler_gives_500_and_the_server_keeps_serving(site: Site, server: SiteServer) -> None:
    site.add("*", "/boom", lambda request: 1 / 0)
    assert get(server, A, "/boom")[0] == 500
    assert get(server, A, "/")[0] == 200


def test_head_gets_the_headers_without_the_body(server: SiteServer) -> None:
    conn = http.client.HTTPConnection(A, server.port, timeout=5)
    conn.request("HEAD", "/")
    response = conn.getresponse()
    assert response.getheader("Content-Length") == str(len(PAGE.body))
    assert response.read() == b""
    conn.request("GET", "/")  # the connection is still in step
    assert conn.getresponse().read() == PAGE.body
    conn.close()


def test_log_keeps_every_request_in_order_and_reset_clears_it(server: SiteServer) -> None:
    get(server, B, "/a")
    get(server, A, "/b", headers={"User-Agent": "probe"})
    assert [(r.host, r.path) for r in server.log] == [(B, "/a"), (A, "/b")]
    assert server.log[1].headers["user-agent"] == "probe"
    server.reset_stats()
    assert (server.log, server.hits(), server.max_in_flight(A)) == ([], 0, 0)


def test_every_host_is_served_on_one_port(server: SiteServer) -> None:
    assert server.url(B, "/p/1.html") == f"http://127.0.0.2:{server.port}/p/1.html"
    assert get(server, A, "/")[0] == get(server, B, "/")[0] == 200


def test_stop_closes_open_connections(site: Site) -> None:
    site.add("*", "/hang", HANG)
    server = SiteServer(site, [A]).start()
    sock = socket.create_connection((A, server.port))
    sock.settimeout(5)
    sock.sendall(b"GET /hang HTTP/1.1\r\n\r\n")
    wait_until(lambda: server.hits() == 1, timeout=5, interval=0.01)
    server.stop()
    assert read_until_closed(sock) == b""  # closed without an answer, not left hanging
    sock.close()


def test_only_loopback_hosts_are_accepted(site: Site) -> None:
    with pytest.raises(ValueError):
        SiteServer(site, ["localhost"])


# -- the catalog --

HOSTS = loopback_hosts(3)
OUT_OF_SCOPE = "127.0.0.99"
PORT = 8123  # links only: nothing listens


@pytest.fixture(scope="module")
def catalog():
    return build_catalog(HOSTS, PORT, 130, page_bytes=4096, out_of_scope_host=OUT_OF_SCOPE)


def page_of(catalog, url: str) -> bytes:
    parts = urlsplit(url)
    return catalog.site.get(parts.hostname, parts.path).body


def extract(tree, spec: dict[str, str]) -> str | None:
    """The field semantics of DESIGN.md: first XPath match, stripped; regex group 1 over it."""
    found = tree.xpath(spec["xpath"])
    if not found:
        return None
    value = str(found[0]).strip()
    if "regex" in spec:
        match = re.search(spec["regex"], value)
        return match.group(1) if match else None
    return value


def hrefs(body: bytes) -> list[str]:
    return lxml.html.document_fromstring(body).xpath("//a/@href")


def test_expected_matches_lxml_extraction_of_every_page(catalog) -> None:
    assert len(catalog.expected) == 3 * 130
    for url, data in catalog.expected.items():
        tree = lxml.html.document_fromstring(page_of(catalog, url).decode("utf-8"))
        assert {name: extract(tree, spec) for name, spec in FIELDS.items()} == data, url


def test_product_pages_have_all_four_fields(catalog) -> None:
    products = [d for u, d in catalog.expected.items() if "/p/" in u]
    assert len(products) == 3 * (130 - 1 - 2)  # 130 pages = index + 2 categories + products
    assert all(None not in d.values() for d in products)
    assert all(re.fullmatch(r"\d+\.\d\d", d["price"]) for d in products)


def test_every_page_is_reachable_from_the_seeds_within_max_depth(catalog) -> None:
    depth = {seed: 0 for seed in catalog.seeds}
    queue = deque(catalog.seeds)
    while queue:
        url = queue.popleft()
        for href in hrefs(page_of(catalog, url)):
            target = canonical_url(url, href)
            if target and urlsplit(target).hostname in HOSTS and target not in depth:
                depth[target] = depth[url] + 1
                queue.append(target)
    assert set(depth) == set(catalog.expected)
    assert max(depth.values()) == catalog.max_depth_needed


def test_links_come_in_every_messy_form(catalog) -> None:
    links = {href for url in catalog.expected for href in hrefs(page_of(catalog, url))}
    netloc = f"127.0.0.2:{PORT}"
    forms = {
        "relative": r"^\w+\.html$", "parent-relative": r"^\.\./p/\d+\.html$",
        "dot-relative": r"^\./", "absolute": rf"^http://{netloc}/", "scheme-relative": rf"^//{netloc}/",
        "upper-case scheme": rf"^HTTP://{netloc}/", "fragment": r"^/p/\d+\.html#",
        "dot segments": r"^/(\.|c/\.\.)/", "out of scope": rf"//{OUT_OF_SCOPE}:",
        "mailto": r"^mailto:", "tel": r"^tel:", "javascript": r"^javascript:",
    }
    missing = [name for name, pattern in forms.items() if not any(re.search(pattern, h) for h in links)]
    assert missing == []


def test_products_link_across_in_scope_hosts(catalog) -> None:
    url = f"http://127.0.0.1:{PORT}/p/5.html"
    targets = {canonical_url(url, h) for h in hrefs(page_of(catalog, url))}
    assert f"http://127.0.0.2:{PORT}/p/5.html" in targets


def test_out_of_scope_links_exist_but_are_not_expected(catalog) -> None:
    targets = {canonical_url(url, h) for url in catalog.seeds for h in hrefs(page_of(catalog, url))}
    off_site = {t for t in targets if t and urlsplit(t).hostname == OUT_OF_SCOPE}
    assert off_site and not off_site & set(catalog.expected)


def test_default_port_is_spelled_out_when_the_port_is_80() -> None:
    small = build_catalog(["127.0.0.1"], 80, 40, page_bytes=0)
    links = {h for url in small.expected for h in hrefs(page_of(small, url))}
    assert any(h.startswith("http://127.0.0.1:80/") for h in links)
    assert small.seeds == ["http://127.0.0.1/"]


def test_robots_txt_allows_every_expected_url(catalog) -> None:
    robots = protego.Protego.parse(catalog.site.get(HOSTS[0], "/robots.txt").body.decode())
    assert all(robots.can_fetch(url, "crawler") for url in catalog.expected)
    assert build_catalog(HOSTS, PORT, 5, robots=False).site.get(HOSTS[0], "/robots.txt") is None


def test_rules_toml_holds_the_same_four_fields() -> None:
    import tomllib

    rule = tomllib.loads(build_catalog(HOSTS, PORT, 1).rules_toml)["parse"]["rules"][0]
    assert rule["fields"] == FIELDS


def test_expected_does_not_depend_on_page_bytes() -> None:
    small = build_catalog(HOSTS, PORT, 50, page_bytes=0)
    large = build_catalog(HOSTS, PORT, 50, page_bytes=20000)
    assert small.expected == large.expected


def test_product_pages_are_about_page_bytes(catalog) -> None:
    sizes = [len(page_of(catalog, url)) for url in catalog.expected if "/p/" in url]
    assert all(abs(size - 4096) < 400 for size in sizes)


def test_ten_thousand_pages_build_in_under_two_cpu_seconds() -> None:
    started = time.process_time()  # CPU, so a busy machine does not fail the test
    big = build_catalog(loopback_hosts(4), PORT, 2500)
    assert len(big.expected) == 10000
    assert time.process_time() - started < 2.0


def test_catalog_is_served_over_http() -> None:
    site = Site()
    with SiteServer(site, HOSTS[:2]) as server:
        served = build_catalog(HOSTS[:2], server.port, 20, site=site)
        url = served.seeds[1]
        status, body, _ = get(server, HOSTS[1], "/")
    assert status == 200
    title = lxml.html.document_fromstring(body).findtext(".//title").strip()
    assert title == served.expected[url]["title"]


def test_subprocess_mode_serves_until_sigterm_and_writes_stats(tmp_path) -> None:
    stats_file = tmp_path / "stats.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawler.demo.shop", "--catalog", "bench", "--hosts", "2",
         "--pages", "20", "--page-bytes", "1000", "--stats-file", str(stats_file)],
        stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready ")
        port = int(line.split()[1])
        conn = http.client.HTTPConnection("127.0.0.2", port, timeout=5)
        conn.request("GET", "/p/3.html")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    stats = json.loads(stats_file.read_text())
    assert stats["hits"]["127.0.0.2"] == 1 and stats["total"] == 1
