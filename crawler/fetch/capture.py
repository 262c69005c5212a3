"""What a fetch hands the WARC writer: every HTTP exchange, as plain data on the Page.

Only when ``[output] warc`` is set (``FetchPolicy.capture``). A transport reports each
exchange it completes with ``note(url, request_headers, response)``, from its single
exchange function, so fetches, retries, redirect hops and robots.txt are all seen. The
exchanges go to the fetch that is running in the current context: a ``ContextVar`` is
per thread for the threads engine and per task for the async engine, and a robots.txt
fetch started from a job's fetch (the async engine's prefetch task inherits the context)
lands on that job's Page. Exchanges outside any job (sitemaps) are not captured.

An Exchange is ``(started_at, url, request_headers, status, response_headers, body)``:
an ISO 8601 UTC time with milliseconds, the URL, the request headers as (name, value)
pairs, the status, the response headers as pairs (lower-case names), and the body as
the crawler received it (decoded; empty for the non-2xx answers whose body is dropped).
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from typing import Iterator
from urllib.parse import urlsplit

_current: ContextVar[list | None] = ContextVar("crawler_warc_exchanges", default=None)


def note(url: str, request_headers: dict, response):
    """Record one exchange on the running fetch, if it captures; return ``response``."""
    exchanges = _current.get()
    if exchanges is not None:
        started = datetime.now(timezone.utc) - timedelta(milliseconds=response.elapsed_ms)
        stamp = started.strftime("%Y-%m-%dT%H:%M:%S.") + f"{started.microsecond // 1000:03d}Z"
        sent = [("Host", urlsplit(url).netloc), *request_headers.items()]
        exchanges.append((stamp, url, sent, response.status, list(response.headers.items()), response.body))
    return response


@contextlib.contextmanager
def capturing(enabled: bool) -> Iterator[list | None]:
    """Collect the exchanges of the fetch run inside; yields the list (None when off)."""
    if not enabled:
        yield None
        return
    exchanges: list = []
    token = _current.set(exchanges)
    try:
        yield exchanges
    finally:
        _current.reset(token)
