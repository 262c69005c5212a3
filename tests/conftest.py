"""Shared fixtures: sample sites on loopback and a way to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from crawler.demo.shop.catalog import Catalog, build_catalog, loopback_hosts
from crawler.demo.shop.server import Site, SiteServer

REPO = Path(__file__).resolve().parents[1]
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


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    records: list[dict]


def read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "output must end with a whole line"
    return [orjson.loads(line) for line in data.splitlines()]


def run_cli(*args: str, cwd: Path, timeout: float = 120, output: Path | None = None) -> Run:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "crawler", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr, read_records(output) if output else [])


@pytest.fixture
def cli(tmp_path):
    """cli(*args, settings=TOML) runs `crawler` in tmp_path; -o out.jsonl is read back."""

    def run(*args: str, settings: str | None = None, timeout: float = 120) -> Run:
        if settings is not None:
            (tmp_path / "settings.toml").write_text(settings)
        return run_cli(*args, cwd=tmp_path, timeout=timeout, output=tmp_path / "out.jsonl")

    return run


# The server stamps a request when its thread gets to parse it, and the crawler's
# thread sends it some time after taking the host's turn; on a loaded machine either
# can be late by tens of milliseconds, which makes one gap between two stamps look
# that much shorter (and the next one longer). A missing delay shows as a gap near 0.
JITTER = 0.1


def assert_starts_apart(starts: list[float], delay: float) -> None:
    """Every two consecutive starts at least ``delay`` apart, short of the stamps' jitter;
    and all of them together spread over at least that many delays."""
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) >= delay - JITTER, gaps
    assert starts[-1] - starts[0] >= (len(starts) - 1) * delay - JITTER / 2, gaps
