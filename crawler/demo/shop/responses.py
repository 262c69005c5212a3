"""What the sample server serves: responses, requests, misbehaviours and the `Site` map.

A `Response` renders its full HTTP/1.1 bytes once and caches them, so serving a static page
is a single ``transport.write``. A `Site` maps (host, path) to a `Response` or to a handler:
a function of the `Request` that may also return `RESET`, `HANG` or a `Drip` to misbehave on
purpose. `crawler.demo.shop.server` is the asyncio server that serves a `Site`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from http import HTTPStatus
from typing import Awaitable, Callable

_NO_BODY_STATUSES = frozenset({204, 304}) | frozenset(range(100, 200))


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


@dataclass(frozen=True)
class Response:
    """A canned answer. Its wire bytes are rendered once, on first use, and then reused.

    Content-Length is added unless ``headers`` already has one (a wrong one is a way to test
    truncated bodies). Nothing else is added: pass Content-Type yourself, or use `Response.html`.
    """

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds to wait before sending anything

    @classmethod
    def html(cls, body: str | bytes, status: int = 200, headers: tuple[tuple[str, str], ...] = (),
             delay: float = 0.0) -> "Response":
        data = body.encode("utf-8") if isinstance(body, str) else body
        return cls(status, data, (("Content-Type", "text/html; charset=utf-8"), *headers), delay)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> "Response":
        return cls(status, b"", (("Location", location),))

    def head(self, close: bool) -> bytes:
        """Status line and headers, ready to write."""
        return self._head_close if close else self._head_keep

    def wire(self, close: bool) -> bytes:
        """The whole response, ready to write."""
        return self._wire_close if close else self._wire_keep

    @cached_property
    def _head_keep(self) -> bytes:
        return self._render_head(close=False)

    @cached_property
    def _head_close(self) -> bytes:
        return self._render_head(close=True)

    @cached_property
    def _wire_keep(self) -> bytes:
        return self._head_keep + self.body

    @cached_property
    def _wire_close(self) -> bytes:
        return self._head_close + self.body

    def _render_head(self, close: bool) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {_reason(self.status)}"]
        has_length = any(name.lower() == "content-length" for name, _ in self.headers)
        if not has_length and self.status not in _NO_BODY_STATUSES:
            lines.append(f"Content-Length: {len(self.body)}")
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True)
class Drip(Response):
    """A slow body: the headers at once, then ``chunk_size`` bytes every ``interval`` seconds."""

    chunk_size: int = 1024
    interval: float = 0.1


@dataclass(frozen=True)
class Request:
    """What the server saw: one parsed request."""

    host: str  # the local address the connection came in on (not the Host header)
    method: str
    path: str  # raw path including the query string
    headers: dict[str, str]  # lower-cased names
    started: float  # time.monotonic() when the server began handling it


class _Action:
    """A misbehaviour a handler can ask for instead of a response."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


RESET = _Action("RESET")  # abort the connection with a TCP RST, without answering
HANG = _Action("HANG")  # never answer; the connection stays open until the client gives up

Handler = Callable[[Request], "Response | _Action | Awaitable[Response | _Action]"]
Target = "Response | _Action | Handler"

NOT_FOUND = Response.html("<html><head><title>Not found</title></head><body>404</body></html>", 404)
SERVER_ERROR = Response.html("<html><body>handler error</body></html>", 500)
BAD_REQUEST = Response(400, b"bad request\n", (("Content-Type", "text/plain"),))


class Site:
    """What the server serves: static responses per (host, path), plus dynamic handlers.

    Lookup order for a request: (host, path), ("*", path), then the same two with the query
    string dropped, then (host, "*"), ("*", "*"), and finally a small 404. So ``"*"`` as a host
    means every host, and ``"*"`` as a path is a per-host catch-all.
    """

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Response | _Action | Handler] = {}

    def add(self, host: str, path: str, response: Response | _Action | Handler) -> None:
        self._routes[(host, path)] = response

    def get(self, host: str, path: str) -> Response | _Action | Handler | None:
        """The exact entry for (host, path), without fallbacks."""
        return self._routes.get((host, path))

    def routes(self) -> dict[tuple[str, str], Response | _Action | Handler]:
        return dict(self._routes)

    def lookup(self, host: str, path: str) -> Response | _Action | Handler:
        routes = self._routes
        found = routes.get((host, path))
        if found is None:
            found = routes.get(("*", path))
        if found is None and "?" in path:
            bare = path.split("?", 1)[0]
            found = routes.get((host, bare))
            if found is None:
                found = routes.get(("*", bare))
        if found is None:
            found = routes.get((host, "*"))
        if found is None:
            found = routes.get(("*", "*"), NOT_FOUND)
        return found


