"""A tiny HTTP/1.1 server for the sample site, on raw asyncio.

Tests, the demo and the benchmark all crawl it, and on a 2-core machine it runs beside the
crawler being measured, so it must cost as little CPU as possible: how a connection reads,
parses and answers is in crawler/demo/shop/connection.py.

What it serves is a `Site` (crawler/demo/shop/responses.py): static responses per (host, path)
and dynamic handlers that can also misbehave on purpose (`RESET`, `HANG`, `Drip`,
``Response.delay``). Different hosts are different loopback addresses bound on one port
(127.0.0.0/8, or ``::1``). `SiteServer` counts what it saw (hits per host and path, the highest
number of requests in flight per host, and a log of every request) so that tests can check
politeness from the server's side.

``python -m crawler.demo.shop --catalog bench`` (crawler/demo/shop/__main__.py) serves the
benchmark catalog in its own process, so that its CPU is not counted against the crawler.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Sequence

from crawler.demo.shop.connection import Connection, Stats
from crawler.demo.shop.responses import (  # noqa: F401 (re-exported: tests and tools import them from here)
    BAD_REQUEST,
    HANG,
    NOT_FOUND,
    RESET,
    SERVER_ERROR,
    Drip,
    Handler,
    Request,
    Response,
    Site,
)

class SiteServer:
    """Serves a `Site` on every given loopback host, on one port, from a background thread.

    Use it as a context manager, or call `start` and `stop`. Statistics (`hits`,
    `max_in_flight`, `log`) can be read from any thread while it runs.
    """

    def __init__(self, site: Site, hosts: Sequence[str], port: int = 0, *,
                 keep_log: bool = True, backlog: int = 1024) -> None:
        if not hosts:
            raise ValueError("SiteServer needs at least one host")
        for host in hosts:
            if not (host.startswith("127.") or host == "::1"):
                raise ValueError(f"sample site hosts must be loopback addresses, not {host!r}")
        self.site = site
        self.hosts = list(hosts)
        self.port = port
        self._backlog = backlog
        self._stats = Stats(keep_log)
        self._connections: set[Connection] = set()
        self._servers: list[asyncio.base_events.Server] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    def start(self) -> "SiteServer":
        if self._thread is not None:
            raise RuntimeError("SiteServer already started")
        bound = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._bind())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                bound.set()
                loop.close()
                return
            bound.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="sample-site", daemon=True)
        self._thread.start()
        bound.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the listeners and every connection, and join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._close(), loop)
            try:
                future.result(timeout=10)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> "SiteServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _bind(self) -> None:
        """Bind every host on one port. With port 0, retry until a port is free on all hosts."""
        loop = asyncio.get_running_loop()
        attempts = 1 if self.port else 50

        def protocol() -> Connection:
            return Connection(self.site, self._stats, self._connections)

        for attempt in range(attempts):
            servers = []
            try:
                first = await loop.create_server(
                    protocol, self.hosts[0], self.port, backlog=self._backlog)
                servers.append(first)
                port = first.sockets[0].getsockname()[1]
                for host in self.hosts[1:]:
                    servers.append(await loop.create_server(
                        protocol, host, port, backlog=self._backlog))
            except OSError:
                for server in servers:
                    server.close()
                if attempt == attempts - 1:
                    raise
                continue
            self._servers = servers
            self.port = port
            return

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.abort()
        for server in self._servers:
            await server.wait_closed()
        await asyncio.sleep(0)  # let connection_lost callbacks run

    # -- addresses and statistics --

    def url(self, host: str, path: str = "/") -> str:
        if not path.startswith("/"):
            path = "/" + path
        name = f"[{host}]" if ":" in host else host  # an IPv6 literal goes in brackets
        return f"http://{name}:{self.port}{path}"

    def hits(self, host: str | None = None, path: str | None = None) -> int:
        """Requests seen, optionally only those to one host and/or one raw path."""
        with self._stats.lock:
            return sum(n for (h, p), n in self._stats.hits.items()
                       if (host is None or h == host) and (path is None or p == path))

    def hits_by_host(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        with self._stats.lock:
            for (host, _), n in self._stats.hits.items():
                totals[host] += n
        return dict(totals)

    def max_in_flight(self, host: str) -> int:
        """The most requests to `host` that were being handled at the same moment."""
        with self._stats.lock:
            return self._stats.peak[host]

    def in_flight(self, host: str) -> int:
        """Requests to `host` being handled now. A response counts until its last byte has
        been handed to the kernel, which can be a moment after a client already has it."""
        with self._stats.lock:
            return self._stats.in_flight[host]

    @property
    def keeps_log(self) -> bool:
        return self._stats.keep_log

    @property
    def log(self) -> list[Request]:
        """A copy of every request seen, in arrival order (empty if keep_log=False)."""
        with self._stats.lock:
            return list(self._stats.log)

    def reset_stats(self) -> None:
        """Forget hits, the log and the in-flight peaks (requests still in flight keep counting
        towards the next peak)."""
        self._stats.reset()
