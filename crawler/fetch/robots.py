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
- A redirect is followed (up to 5 hops): ``fetch_steps``, the fetch policy's steps that
  either transport performs.

Only one caller fetches a given origin's robots.txt; others asking meanwhile wait for
its answer (blocking in ``check``, or called back: ``when_ready``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit


from protego import Protego

from crawler.errors import Blocked, FetchError
from crawler.fetch.commands import Send, Steps
from crawler.urls import BadURL, canonicalize

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ROBOTS_MAX_BYTES = 512 * 1024  # Google reads the first 500 KiB; RFC 9309 asks for >= 500 KiB
ROBOTS_MAX_REDIRECTS = 5  # RFC 9309 §2.3.1.2: follow at least five
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


def fetch_steps(url: str, headers: dict[str, str], deadline: float,
                sent: Callable[[Send, object], object] = lambda send, result: result) -> Steps:
    """The fetch policy's steps to GET a robots.txt (crawler/fetch/commands.py): follow up
    to 5 redirects (RFC 9309), each through the transport's guard; ``sent`` sees each
    result. What the answers mean is ``RobotsCache``'s business."""
    for _ in range(ROBOTS_MAX_REDIRECTS + 1):
        send = Send(url, headers, ROBOTS_MAX_BYTES, deadline, truncate=True)
        result = sent(send, (yield send))
        if isinstance(result, Blocked):
            return RobotsAnswer(None, blocked=str(result))
        if isinstance(result, FetchError):  # timeout, connection: "unreachable"
            return RobotsAnswer(None)
        location = result.headers.get("location")
        if result.status not in REDIRECT_STATUSES or not location:
            return RobotsAnswer(result.status, result.body if 200 <= result.status < 300 else b"")
        try:
            url = canonicalize(location, url)
        except (BadURL, ValueError):
            return RobotsAnswer(result.status)
    return RobotsAnswer(result.status)  # too many redirects: "unavailable", allow all


def origin_of(url: str) -> str:
    """scheme://authority of ``url``, as ``urlsplit`` reads them. Every fetch asks this, for
    a URL in canonical form: its authority is cut out directly (urlsplit took 4% of the
    async engine's loop), and anything else goes through urlsplit."""
    if url.startswith(("http://", "https://")) and "\t" not in url and "\n" not in url and "\r" not in url:
        start = url.find("//") + 2
        end = len(url)
        for mark in "/?#":
            found = url.find(mark, start, end)
            if found != -1:
                end = found
        return url[:end]
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


class RobotsCache:
    """Thread-safe. ``check`` and ``sitemaps`` fetch (or wait for) an origin's robots.txt
    with the ``fetch`` function, blocking. The fetch policy uses the non-blocking steps
    instead, so that an event loop never waits on a lock or an event here: ``answer``
    (None while not cached), ``claim`` (this caller fetches it), ``store`` (the answer,
    which wakes the others) and ``when_ready`` (be called back once it is there)."""

    def __init__(self, user_agent: str, fetch: Callable[[str], RobotsAnswer], *, clock=time.monotonic):
        self.user_agent = user_agent
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._pending: dict[str, list[Callable[[], None]]] = {}  # origin -> who waits for it

    def _fresh(self, origin: str) -> _Entry | None:
        entry = self._entries.get(origin)
        if entry is None or entry.expires <= self._clock():
            return None
        self._entries.move_to_end(origin)
        return entry

    def claim(self, origin: str) -> bool:
        """True if the caller must now fetch ``origin``'s robots.txt and ``store`` it; False
        if it is cached or another caller is fetching it (``when_ready``)."""
        with self._lock:
            if self._fresh(origin) is not None or origin in self._pending:
                return False
            self._pending[origin] = []
            return True

    def store(self, origin: str, answer: RobotsAnswer | None) -> None:
        """The claimed fetch is over: cache ``answer`` (None: nothing was learned, the
        next caller asks again) and call back whoever waited."""
        with self._lock:
            if answer is not None:
                self._entries[origin] = self._make_entry(answer, self._entries.get(origin))
                self._entries.move_to_end(origin)
                while len(self._entries) > MAX_ORIGINS:  # bounded, however many hosts a crawl meets
                    self._entries.popitem(last=False)
            waiters = self._pending.pop(origin, [])
        for callback in waiters:
            callback()

    def when_ready(self, origin: str, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (from whichever thread stores the answer) once no fetch of
        ``origin``'s robots.txt is under way; at once if none is."""
        with self._lock:
            waiters = self._pending.get(origin)
            if waiters is not None:
                waiters.append(callback)
                return
        callback()

    def wait_ready(self, origin: str) -> None:
        """``when_ready`` for a thread that may block."""
        ready = threading.Event()
        self.when_ready(origin, ready.set)
        ready.wait()

    def _entry(self, origin: str) -> _Entry:
        while True:
            with self._lock:
                entry = self._fresh(origin)
            if entry is not None:
                return entry
            if not self.claim(origin):
                self.wait_ready(origin)
                continue
            answer = None
            try:
                answer = self._fetch(origin + "/robots.txt")
            finally:
                self.store(origin, answer)

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
        # No lock: one dict read is atomic, and every fetch asks this. Under the lock, a thread
        # preempted inside urlsplit held all 64 fetchers up (py-spy: 16% of the threads
        # engine's samples waited on this line in the CPU-bound bench).
        entry = self._entries.get(origin_of(url))
        return entry is not None and entry.expires > self._clock()

    def check(self, url: str) -> tuple[bool, float | None]:
        """(allowed, crawl_delay) for ``url``, fetching robots.txt if needed. Raises
        RobotsUnavailable while the origin's robots.txt cannot be had (429, 5xx or
        unreachable), and ``Blocked`` if the SSRF guard refused to connect to the origin."""
        return self._judge(self._entry(origin_of(url)), url)

    def answer(self, url: str) -> tuple[bool, float | None] | None:
        """``check`` from the cache only: None if robots.txt is not there (or expired)."""
        with self._lock:
            entry = self._fresh(origin_of(url))
        return None if entry is None else self._judge(entry, url)

    def _judge(self, entry: _Entry, url: str) -> tuple[bool, float | None]:
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
