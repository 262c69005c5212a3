"""robots.txt (RFC 9309) with Protego: fetched once per origin, cached with an expiry.

What the server answered decides the policy, as RFC 9309 §2.3.1 says:
- 2xx: parse it (Protego); an unparseable file allows everything. ``Crawl-delay`` is
  returned with every answer (the fetch policy caps it at ``max_crawl_delay``), and
  ``Sitemap:`` lines are kept (``sitemaps(url)``).
- 4xx (404 most often): no rules, everything allowed. Also a redirect chain longer
  than the fetcher follows (RFC 9309 §2.3.1.2: "MAY assume unavailable").
- 429, 5xx or unreachable: everything disallowed *for now*; the entry expires after
  ``RETRY_UNREACHABLE`` seconds and robots.txt is asked for again. After
  ``MAX_UNREACHABLE`` failed tries the origin's URLs are recorded as ``robots`` errors.
  (429 is a 4xx, but it says "not now" rather than "not there": Google treats it as
  a 5xx too.)
- Refused by the SSRF guard: every URL of the origin is ``blocked``, as the page
  itself would be.
- A redirect is followed (up to 5 hops) by the fetcher that fetches it.

Only one thread fetches a given origin's robots.txt; others asking meanwhile wait for
its answer.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from protego import Protego

from crawler.errors import Blocked

EXPIRY = 24 * 3600.0  # re-fetch robots.txt after a day (Google uses 24 h as well)
RETRY_UNREACHABLE = 30.0
MAX_UNREACHABLE = 3
# Origins whose parsed robots.txt is kept; past that the least recently used one is
# dropped (and fetched again if its origin comes back), so a crawl over many hosts
# holds a bounded number of parsers.
MAX_ORIGINS = 10_000


@dataclass
class RobotsAnswer:
    status: int | None  # None: unreachable
    body: bytes = b""
    blocked: str | None = None  # the SSRF guard refused the connection: why


@dataclass
class _Entry:
    parser: Protego | None  # None = allow all
    disallow_all: bool
    expires: float
    failures: int = 0
    sitemaps: tuple[str, ...] = ()
    blocked: str | None = None


class RobotsUnavailable(Exception):
    """robots.txt could not be had; the origin must wait ``retry_in`` seconds."""

    def __init__(self, message: str, retry_in: float, final: bool):
        super().__init__(message)
        self.retry_in = retry_in
        self.final = final


def origin_of(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


class RobotsCache:
    def __init__(self, user_agent: str, fetch: Callable[[str], RobotsAnswer], *, clock=time.monotonic):
        self.user_agent = user_agent
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._pending: dict[str, threading.Event] = {}

    def _entry(self, origin: str) -> _Entry:
        while True:
            with self._lock:
                entry = self._entries.get(origin)
                if entry is not None and entry.expires > self._clock():
                    self._entries.move_to_end(origin)
                    return entry
                waiter = self._pending.get(origin)
                if waiter is None:
                    waiter = self._pending[origin] = threading.Event()
                    owner = True
                else:
                    owner = False
            if not owner:
                waiter.wait()
                continue
            try:
                answer = self._fetch(origin + "/robots.txt")
                entry = self._make_entry(answer, entry)
                with self._lock:
                    self._entries[origin] = entry
                    self._entries.move_to_end(origin)
                    while len(self._entries) > MAX_ORIGINS:
                        self._entries.popitem(last=False)
            finally:
                with self._lock:
                    del self._pending[origin]
                waiter.set()
            return entry

    def _make_entry(self, answer: RobotsAnswer, previous: _Entry | None) -> _Entry:
        now = self._clock()
        if answer.blocked:
            return _Entry(None, False, now + RETRY_UNREACHABLE, blocked=answer.blocked)
        if answer.status is not None and 200 <= answer.status < 300:
            try:
                text = answer.body.decode("utf-8", errors="replace")
                parser = Protego.parse(text)
            except Exception:  # Protego is lenient; anything it still rejects allows all
                parser = None
            sitemaps = tuple(parser.sitemaps) if parser is not None else ()
            return _Entry(parser, False, now + EXPIRY, sitemaps=sitemaps)
        if answer.status is not None and (300 <= answer.status < 500 and answer.status != 429):
            return _Entry(None, False, now + EXPIRY)
        failures = (previous.failures if previous else 0) + 1
        return _Entry(None, True, now + RETRY_UNREACHABLE, failures=failures)

    def is_cached(self, url: str) -> bool:
        """True if ``check(url)`` would answer without fetching or waiting for robots.txt."""
        with self._lock:
            entry = self._entries.get(origin_of(url))
            return entry is not None and entry.expires > self._clock()

    def check(self, url: str) -> tuple[bool, float | None]:
        """(allowed, crawl_delay) for ``url``. Raises RobotsUnavailable while the origin's
        robots.txt cannot be had (429, 5xx or unreachable), and ``Blocked`` if the SSRF
        guard refused to connect to the origin."""
        entry = self._entry(origin_of(url))
        if entry.blocked:
            raise Blocked(entry.blocked)
        if entry.disallow_all:
            final = entry.failures >= MAX_UNREACHABLE
            retry_in = max(entry.expires - self._clock(), 0.1)
            raise RobotsUnavailable(f"robots.txt unavailable ({entry.failures} tries)", retry_in, final)
        if entry.parser is None:
            return True, None
        allowed = entry.parser.can_fetch(url, self.user_agent)
        delay = entry.parser.crawl_delay(self.user_agent)
        return allowed, (float(delay) if delay is not None else None)

    def sitemaps(self, url: str) -> tuple[str, ...]:
        return self._entry(origin_of(url)).sitemaps
