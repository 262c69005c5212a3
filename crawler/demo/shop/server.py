"""A tiny HTTP/1.1 server for the sample site, on raw asyncio.

Tests, the demo and the benchmark all crawl it, and on a 2-core machine it runs beside the
crawler being measured, so it must cost as little CPU as possible:

- every static response is rendered to its full wire bytes once (cached on the `Response`),
  so serving it is one ``transport.write``;
- the request parser reads only the request line and the headers;
- it is an ``asyncio.BufferedProtocol`` reading into a per-connection buffer. Measured with
  16 KB pages over keep-alive connections, at a fixed 2,000 requests/s it costs ~95 us of CPU
  per request against ~150 us for asyncio streams; a plain ``asyncio.Protocol`` costs as much
  as streams, because asyncio allocates a fresh 256 KiB bytes object (mmap, mremap, munmap)
  for every read.

What it serves is a `Site` (crawler/demo/shop/responses.py): static responses per (host, path) and
dynamic handlers that can also misbehave on purpose (`RESET`, `HANG`, `Drip`, ``Response.delay``). Different hosts are different
loopback addresses bound on one port. `SiteServer` counts what it saw (hits per host and path,
the highest number of requests in flight per host, and a log of every request) so that tests can
check politeness from the server's side.

``python -m crawler.demo.shop --catalog bench`` (crawler/demo/shop/__main__.py) serves the
benchmark catalog in its own process, so that its CPU is not counted against the crawler.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import os
import signal
import socket
import struct
import threading
import time
from collections import Counter
from typing import Sequence

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
    _Action,
)

logger = logging.getLogger(__name__)

# A request head larger than this is refused: nothing legitimate in our tests comes close.
MAX_HEAD_BYTES = 64 * 1024
# Each connection reads into its own buffer of this size. asyncio.Protocol would allocate a
# fresh 256 KiB bytes object per read instead: three syscalls (mmap, mremap, munmap) per request.
RECV_BYTES = 16 * 1024
# Stop reading from a client that pipelines this much while we are still answering.
MAX_PENDING_BYTES = 1024 * 1024
def _header_value(fields: bytes, name: bytes) -> bytes:
    """The value of header `name` in a lower-cased request head (the first one, if repeated)."""
    start = fields.find(b"\n" + name + b":") + len(name) + 2
    end = fields.find(b"\r\n", start)
    return fields[start:end if end >= 0 else None].strip()


def _parse_headers(head: bytes) -> dict[str, str]:
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


class _Stats:
    """Counters written by the loop thread and read by test threads, under one lock."""

    def __init__(self, keep_log: bool) -> None:
        self.lock = threading.Lock()
        self.keep_log = keep_log
        self.hits: Counter[tuple[str, str]] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.log: list[Request] = []

    def begin(self, host: str, path: str, request: Request | None) -> None:
        with self.lock:
            self.hits[(host, path)] += 1
            now = self.in_flight[host] + 1
            self.in_flight[host] = now
            if now > self.peak[host]:
                self.peak[host] = now
            if request is not None:
                self.log.append(request)

    def end(self, host: str) -> None:
        with self.lock:
            self.in_flight[host] -= 1

    def reset(self) -> None:
        with self.lock:
            self.hits.clear()
            self.log.clear()
            self.peak.clear()


class _Connection(asyncio.BufferedProtocol):
    """One client connection: parse a request, answer it, then look at the next one.

    Requests on a connection are answered strictly in order, one at a time, so pipelining works
    and a request counts as in flight from the moment it is parsed until its last byte has left
    our buffer (write buffer high-water mark 0 makes asyncio tell us exactly when) or the
    connection is gone.
    """

    def __init__(self, server: SiteServer) -> None:
        self.server = server
        self.stats = server._stats
        self.transport: asyncio.Transport | None = None
        self.host = ""
        self.area = bytearray(RECV_BYTES)
        self.view = memoryview(self.area)
        self.buf = b""
        self.busy = False  # a request is being answered
        self.close_after = False
        self.head_only = False
        self.closing = False
        self.parsing = False
        self.draining = False  # response written, waiting for the buffer to empty
        self.reading_paused = False
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Future | None = None

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=0)  # type: ignore[attr-defined]
        self.host = transport.get_extra_info("sockname")[0]
        self.server._connections.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        data = self.area[:nbytes]
        self.buf = self.buf + data if self.buf else bytes(data)
        if not self.busy:
            self._next()
        elif len(self.buf) > MAX_PENDING_BYTES and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        # HTTP clients do not half-close: EOF means the client gave up (a timeout, say), so
        # whatever we were about to answer is abandoned and stops counting as in flight.
        return None  # close the transport; connection_lost does the bookkeeping

    def resume_writing(self) -> None:
        if self.draining:
            self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server._connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None:
            self.task.cancel()
        if self.busy:
            self.busy = False
            self.stats.end(self.host)

    # -- requests --

    def _next(self) -> None:
        """Parse and answer buffered requests until one has to wait."""
        if self.parsing:
            return  # we are further up the stack; that loop carries on
        self.parsing = True
        try:
            while not self.busy and not self.closing and self.buf:
                if not self._parse_one():
                    return
        finally:
            self.parsing = False

    def _parse_one(self) -> bool:
        buf = self.buf
        if buf[:2] == b"\r\n":  # stray CRLF between pipelined requests (RFC 9112 2.2)
            buf = self.buf = buf.lstrip(b"\r\n")
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                self._refuse()
            return False
        head = buf[:end]
        first = head.find(b"\r\n")
        parts = (head if first < 0 else head[:first]).decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self._refuse()
            return False
        method, path, version = parts
        # The two headers we act on are looked up in the raw bytes; a dict of all of them is
        # built only when a handler or the log needs a Request.
        fields = head.lower()
        consumed = end + 4
        if b"\ncontent-length:" in fields:
            length = _header_value(fields, b"content-length")
            if not length.isdigit():
                self._refuse()
                return False
            consumed += int(length)
            if len(buf) < consumed:
                return False  # wait for the request body
        self.buf = buf[consumed:]
        connection = _header_value(fields, b"connection") if b"\nconnection:" in fields else b""
        if version == "HTTP/1.1":
            self.close_after = b"close" in connection
        else:
            self.close_after = b"keep-alive" not in connection
        self.head_only = method == "HEAD"
        self._handle(method, path, head)
        return True

    def _refuse(self) -> None:
        self.closing = True
        self.transport.write(BAD_REQUEST.wire(close=True))
        self.transport.close()

    def _handle(self, method: str, path: str, head: bytes) -> None:
        self.busy = True
        host = self.host
        target = self.server.site.lookup(host, path)
        static = isinstance(target, (Response, _Action))
        request = None
        if not static or self.stats.keep_log:
            request = Request(host, method, path, _parse_headers(head), time.monotonic())
        self.stats.begin(host, path, request)
        if static:
            self._respond(target)
            return
        try:
            result = target(request)
        except Exception:
            logger.exception("sample site handler failed for %s %s", host, path)
            result = SERVER_ERROR
        if inspect.isawaitable(result):
            self.task = asyncio.ensure_future(result)
            self.task.add_done_callback(self._handler_done)
        else:
            self._respond(result)

    def _handler_done(self, task: asyncio.Future) -> None:
        self.task = None
        if task.cancelled() or self.closing:
            return
        if task.exception() is not None:
            logger.error("sample site handler failed", exc_info=task.exception())
            self._respond(SERVER_ERROR)
        else:
            self._respond(task.result())

    def _respond(self, result: object) -> None:
        if result is RESET:
            self._reset()
        elif result is HANG:
            pass  # stays busy until the connection goes away
        elif not isinstance(result, Response):
            logger.error("sample site handler returned %r, not a Response", result)
            self._send(SERVER_ERROR)
        elif result.delay > 0:
            self.timer = asyncio.get_running_loop().call_later(result.delay, self._send, result)
        else:
            self._send(result)

    def _send(self, response: Response) -> None:
        self.timer = None
        if self.closing:
            return
        if isinstance(response, Drip) and not self.head_only:
            self.transport.write(response.head(self.close_after))
            self._drip(response, 0)
            return
        if self.head_only:
            self.transport.write(response.head(self.close_after))
        else:
            self.transport.write(response.wire(self.close_after))
        self._written()

    def _drip(self, response: Drip, offset: int) -> None:
        self.timer = None
        if self.closing:
            return
        body = response.body
        step = max(1, response.chunk_size)
        self.transport.write(body[offset:offset + step])
        offset += step
        if offset < len(body):
            self.timer = asyncio.get_running_loop().call_later(
                response.interval, self._drip, response, offset)
        else:
            self._written()

    def _written(self) -> None:
        if self.close_after:
            self.closing = True  # before _finish, so that no pipelined request is started
        if self.transport.get_write_buffer_size():
            self.draining = True  # resume_writing or connection_lost finishes it
        else:
            self._finish()
        if self.close_after:
            self.transport.close()  # sends what is still buffered first

    def _finish(self) -> None:
        self.draining = False
        if self.busy:
            self.busy = False
            self.stats.end(self.host)
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        if self.buf and not self.closing:
            self._next()

    def _reset(self) -> None:
        self.closing = True
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


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
            if not host.startswith("127."):
                raise ValueError(f"sample site hosts must be loopback addresses, not {host!r}")
        self.site = site
        self.hosts = list(hosts)
        self.port = port
        self._backlog = backlog
        self._stats = _Stats(keep_log)
        self._connections: set[_Connection] = set()
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
        for attempt in range(attempts):
            servers = []
            try:
                first = await loop.create_server(
                    lambda: _Connection(self), self.hosts[0], self.port, backlog=self._backlog)
                servers.append(first)
                port = first.sockets[0].getsockname()[1]
                for host in self.hosts[1:]:
                    servers.append(await loop.create_server(
                        lambda: _Connection(self), host, port, backlog=self._backlog))
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
        return f"http://{host}:{self.port}{path}"

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
    def log(self) -> list[Request]:
        """A copy of every request seen, in arrival order (empty if keep_log=False)."""
        with self._stats.lock:
            return list(self._stats.log)

    def reset_stats(self) -> None:
        """Forget hits, the log and the in-flight peaks (requests still in flight keep counting
        towards the next peak)."""
        self._stats.reset()
