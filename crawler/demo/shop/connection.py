"""One client connection of the sample site's server: an ``asyncio.BufferedProtocol`` that
parses requests (request line and headers only), answers them from the `Site` in order,
and counts them in the server's `Stats`.

Why a buffered protocol: each connection reads into its own buffer. Measured with 16 KB
pages over keep-alive connections, at a fixed 2,000 requests/s it costs ~95 us of CPU per
request against ~150 us for asyncio streams; a plain ``asyncio.Protocol`` costs as much as
streams, because asyncio allocates a fresh 256 KiB bytes object (mmap, mremap, munmap) for
every read. Every static response is rendered to its wire bytes once (cached on the
`Response`), so serving it is one ``transport.write``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import struct
import threading
import time
from collections import Counter

from crawler.demo.shop.responses import (BAD_REQUEST, HANG, RESET, SERVER_ERROR, Drip, Request, Response,
                                         Site, _Action)

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


class Stats:
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


class Connection(asyncio.BufferedProtocol):
    """One client connection: parse a request, answer it, then look at the next one.

    Requests on a connection are answered strictly in order, one at a time, so pipelining works
    and a request counts as in flight from the moment it is parsed until its last byte has left
    our buffer (write buffer high-water mark 0 makes asyncio tell us exactly when) or the
    connection is gone.
    """

    def __init__(self, site: Site, stats: Stats, connections: set[Connection]) -> None:
        self.site = site
        self.stats = stats
        self.connections = connections  # the server's open connections, to close them all at stop
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
        self.connections.add(self)

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
        self.connections.discard(self)
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
        target = self.site.lookup(host, path)
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
