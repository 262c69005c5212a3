"""Limits that hold however the server behaves: max_bytes on the decoded body, with
memory bounded, and the per-request deadline against a server that drips its answer."""

from __future__ import annotations

import gzip
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import tracemalloc

import psutil
import pytest

from crawler.errors import FetchTimeout, TooLarge
from crawler.fetch.policy import FetchPolicy
from crawler.demo.shop.server import Response, Site, SiteServer
from crawler.settings import load_settings
from tests.conftest import REPO, read_records
from tests.fetch.conftest import make_transport

H = "127.0.0.1"
MB = 1 << 20


def fetcher(engine: str = "threads", **fetch):
    """A transport that is not started: ``send`` runs one request (on a loop of its own
    for the async engine)."""
    settings = load_settings(None, {f"fetch.{k}": v for k, v in fetch.items()})
    return make_transport(engine, FetchPolicy(settings.fetch, "test-agent"))


def gzip_of_zeros(size: int) -> bytes:
    """A gzip body that inflates to ``size`` zero bytes: one member of 1 MB of zeros
    (about 1 KB), repeated (a gzip stream may hold any number of members)."""
    return gzip.compress(bytes(MB), 9) * (size // MB)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the peak RSS of the process's memory since it exec'd. (ru_maxrss of a child
    would not do: it starts at its parent's RSS at fork time, here the test process.)"""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def watch_peaks(proc: subprocess.Popen) -> dict[int, float]:
    """Peak RSS per process of ``proc``'s tree, read until ``proc`` exits."""
    peaks: dict[int, float] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for p in tree:
            try:
                peaks[p.pid] = max(peaks.get(p.pid, 0.0), peak_rss_mb(p.pid))
            except OSError:  # gone meanwhile
                pass
        time.sleep(0.02)
    return peaks


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from /proc")
def test_a_30mb_body_is_too_large_and_the_crawler_stays_under_200mb(tmp_path):
    site = Site()
    site.add(H, "/big", Response(200, b"<html>" + b"x" * (30 * MB), (("Content-Type", "text/html"),)))
    site.add(H, "/bomb", Response(200, gzip_of_zeros(1024 * MB),  # 1 MB on the wire, 1 GB inflated
                                  (("Content-Type", "text/html"), ("Content-Encoding", "gzip"))))
    with SiteServer(site, [H]) as server:
        (tmp_path / "settings.toml").write_text("[fetch]\nper_host_delay = 0\n[parse]\nworkers = 1\n")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen([sys.executable, "-m", "crawler", "crawl", server.url(H, "/big"),
                                 server.url(H, "/bomb"), "-o", "out.jsonl", "-q"],
                                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peaks = watch_peaks(proc)
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.wait() == 0, stderr
    records = {r["url"]: r for r in read_records(tmp_path / "out.jsonl")}
    for path in ("/big", "/bomb"):
        r = records[server.url(H, path)]
        assert (r["error"]["type"], r["status"], r["bytes"]) == ("too_large", 200, 0)
    main, tree = peaks[proc.pid], sum(peaks.values())
    print(f"peak RSS: crawler process {main:.0f} MB, all {len(peaks)} processes together {tree:.0f} MB")
    assert main < 200 and tree < 200


def test_max_bytes_bounds_the_inflated_size_of_a_compression_bomb_in_memory(engine_name):
    site = Site()
    site.add(H, "/bomb", Response(200, gzip_of_zeros(256 * MB),
                                  (("Content-Type", "text/html"), ("Content-Encoding", "gzip"))))
    with SiteServer(site, [H]) as server:
        f = fetcher(engine_name, max_bytes=MB, timeout=5)
        tracemalloc.start()
        try:
            with pytest.raises(TooLarge):
                f.send(server.url(H, "/bomb"), {"Accept-Encoding": "gzip"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 6 * MB  # the body up to max_bytes, plus a chunk or two


def test_a_body_of_exactly_max_bytes_is_kept_and_one_byte_more_is_too_large(engine_name):
    site = Site()
    site.add(H, "/exact", Response(200, b"a" * 1000, (("Content-Type", "text/plain"),)))
    site.add(H, "/over", Response(200, b"a" * 1001, (("Content-Type", "text/plain"),)))
    with SiteServer(site, [H]) as server:
        f = fetcher(engine_name, max_bytes=1000, timeout=5)
        assert len(f.send(server.url(H, "/exact"), {}).body) == 1000
        with pytest.raises(TooLarge):
            f.send(server.url(H, "/over"), {})


def self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, H)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(H))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class Dripper:
    """A raw server that answers one byte at a time, each well within the read timeout,
    so only a deadline on the whole request stops it: from inside the header lines, or
    (``in_body``) after complete headers; optionally over TLS."""

    def __init__(self, interval: float, *, in_body: bool = False, tls: tuple[str, str] | None = None):
        self.interval = interval
        self.head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n\r\n"
                     if in_body else b"HTTP/1.1 200 OK\r\nX-Drip: ")
        self.context = None
        if tls:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(*tls)
        self.sock = socket.create_server((H, 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            try:
                conn.settimeout(5)
                if self.context is not None:
                    conn = self.context.wrap_socket(conn, server_side=True)
                conn.recv(65536)
                conn.sendall(self.head)
                give_up = time.monotonic() + 10  # so that a broken deadline fails, not hangs
                while not self.stop.wait(self.interval) and time.monotonic() < give_up:
                    conn.sendall(b"x")
            except OSError:  # the client gave up
                pass
            finally:
                conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


# TLS on the threads engine only: the test trusts its self-signed certificate through the
# requests session; aiohttp's deadline is one total timeout, the same with or without TLS.
@pytest.mark.parametrize("engine,where", [("threads", "headers"), ("threads", "body"),
                                          ("threads", "https headers"), ("threads", "https body"),
                                          ("async", "headers"), ("async", "body")])
def test_a_server_dripping_its_answer_cannot_hold_a_fetcher_past_the_deadline(engine, where, tmp_path):
    timeout = 0.5
    deadline = 4 * timeout
    tls = self_signed(tmp_path) if where.startswith("https") else None
    dripper = Dripper(interval=timeout / 5, in_body=where.endswith("body"), tls=tls)
    f = fetcher(engine, timeout=timeout)
    if tls:
        f.verify = tls[0]
    url = f"{'https' if tls else 'http'}://{H}:{dripper.port}/"
    try:
        started = time.monotonic()
        with pytest.raises(FetchTimeout, match="deadline"):
            f.send(url, {})
        took = time.monotonic() - started
    finally:
        dripper.close()
    assert deadline <= took < deadline + 1.5  # without the deadline: 10 s, when the server gives up
