"""Shared fixtures: sample sites on loopback and a way to run the real CLI."""

from __future__ import annotations

import signal
from dataclasses import dataclass

import pytest

from crawler.demo.shop.catalog import Catalog, build_catalog, loopback_hosts
from crawler.demo.shop.server import Site, SiteServer
# Re-exported: test modules import these from here too.
from tests.helpers import REPO, Run, assert_starts_apart, read_records, run_cli  # noqa: F401


def pytest_configure(config):
    """Run as a terminal's foreground job does, wherever the suite is started. A shell starts
    a background job (``make test &``) with SIGINT ignored, and every child would inherit
    that: Ctrl-C tests would then test nothing but a process that cannot be interrupted.
    A handler (not SIG_IGN) here makes each launched CLI start with SIGINT at its default."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


FAST = """
[crawl]
max_depth = -1
[fetch]
concurrency = 16
per_host_concurrency = 4
per_host_delay = 0
timeout = 5
backoff = 0.05
"""


@dataclass
class Served:
    server: SiteServer
    catalog: Catalog | None = None

    def url(self, host: str, path: str = "/") -> str:
        return self.server.url(host, path)


@pytest.fixture
def serve():
    """serve(site, hosts) -> a started SiteServer, stopped after the test."""
    started: list[SiteServer] = []

    def start(site: Site, hosts: list[str]) -> SiteServer:
        server = SiteServer(site, hosts).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def shop(serve):
    """shop(pages_per_host, hosts=4) -> a catalog on 127.0.0.1.. plus an out-of-scope host."""

    def make(pages_per_host: int, hosts: int = 4, **kw) -> Served:
        names = loopback_hosts(hosts)
        outside = f"127.0.0.{hosts + 1}"
        site = Site()
        server = serve(site, names + [outside])
        catalog = build_catalog(names, server.port, pages_per_host, out_of_scope_host=outside,
                                site=site, page_bytes=kw.pop("page_bytes", 2048), **kw)
        return Served(server, catalog)

    return make


@pytest.fixture
def cli(tmp_path):
    """cli(*args, settings=TOML) runs `crawler` in tmp_path; -o out.jsonl is read back."""

    def run(*args: str, settings: str | None = None, timeout: float = 120) -> Run:
        if settings is not None:
            (tmp_path / "settings.toml").write_text(settings)
        return run_cli(*args, cwd=tmp_path, timeout=timeout, output=tmp_path / "out.jsonl")

    return run
