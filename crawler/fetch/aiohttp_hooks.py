"""The async engine's hooks into aiohttp (public APIs only): the guarded socket factory,
the ``send_once`` client middleware, the trace hook that stamps ``sent_at`` when a request
head is written, and the response headers as the policy reads them. A request's
``ConnRequest`` reaches them through the ``CURRENT`` context variable, set by the task
that sends it (crawler/fetch/aiohttp_engine.py)."""

from __future__ import annotations

import contextvars
import os
import socket
import time
from dataclasses import dataclass, field

import aiohttp

from crawler.fetch.guard import AddressGuard


@dataclass
class ConnRequest:
    """One GET as the connector sees it: its host, and what happened to its sockets."""

    host: str
    sent_at: float | None = None  # time.monotonic() when the head was written (or the send began)
    failed: BaseException | None = None  # the connection dropped: aiohttp wants to send again
    tried: int = 0  # addresses offered to the socket factory
    refused: list[str] = field(default_factory=list)  # why the guard refused some of them


CURRENT: contextvars.ContextVar[ConnRequest | None] = contextvars.ContextVar("crawler_request", default=None)


class Refused(OSError):
    """The guard refused an address: an OSError, so aiohappyeyeballs tries the next one."""


def guarded_socket_factory(guard: AddressGuard | None):
    """A ``socket_factory`` that asks the guard about the exact address to connect to."""

    def factory(addr_info) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        request = CURRENT.get()
        if request is not None:
            request.tried += 1
        if guard is not None:
            host = request.host if request is not None else sockaddr[0]
            reason = guard.refuses(sockaddr[0], host)
            if reason:
                if request is not None:
                    request.refused.append(reason)
                raise Refused(reason)
        return socket.socket(family, type_, proto)

    return factory


async def send_once(req: aiohttp.ClientRequest, handler) -> aiohttp.ClientResponse:
    """A client middleware: aiohttp sends an idempotent request once more, at once, when the
    connection drops before the answer. That resend would skip the host's turn and go
    uncounted in ``attempts``; the policy decides retries, so it is refused here (aiohttp
    then raises the first error). Also notes when the request began to go out."""
    request = CURRENT.get()
    if request is None:
        return await handler(req)
    if request.failed is not None:
        raise request.failed
    request.sent_at = time.monotonic()
    try:
        return await handler(req)
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
        request.failed = exc
        raise


async def _headers_sent(session, context, params) -> None:
    """The request head is written: the host's delay counts from here, not from when the
    middleware began (a new connection's set-up would shorten the gap the server sees)."""
    request = CURRENT.get()
    if request is not None:
        request.sent_at = time.monotonic()


HEADERS_SENT = aiohttp.TraceConfig()
HEADERS_SENT.on_request_headers_sent.append(_headers_sent)



def headers_of(resp: aiohttp.ClientResponse) -> dict[str, str]:
    """Lower-cased names; a repeated header's values joined with ", ", as requests does."""
    out: dict[str, str] = {}
    for name, value in resp.headers.items():
        name = name.lower()
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def reason_of(exc: BaseException) -> str:
    """A short, one-line reason from an aiohttp exception (same words as the threads engine)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        exc = exc.os_error
    errno = getattr(exc, "errno", None)  # aiohappyeyeballs words it "Connect call failed (...)"
    text = os.strerror(errno) if errno else str(exc) or type(exc).__name__
    lowered = text.lower()
    for marker in ("connection refused", "connection reset", "name or service not known",
                   "server disconnected", "payload is not completed"):
        if marker in lowered:
            return marker
    return text.splitlines()[0][:200]
