"""Fetchers: ``fetch(job) -> Page``, with interchangeable implementations.

- ``RequestsFetcher``: the threads engine. Each fetcher thread has its own
  ``requests.Session``; bodies are streamed, so ``max_bytes`` and the per-request
  deadline hold however the server behaves.
- ``crawler.aiofetch.AiohttpFetcher``: the async engine (same policy, aiohttp transport).
- ``MockFetcher(handler)``: in memory, for pipeline tests without sockets.

What a fetch does around the HTTP request (``FetchPolicy``, shared by the engines, and
``run_fetch``, the loop for blocking transports):

- robots.txt: checked before the first request and before every redirect hop. While a
  host's robots.txt cannot be had (5xx, unreachable) the job goes back to the queue
  (``RetryLater``) and the host waits.
- politeness: every request a job sends goes through the scheduler. The first one
  started when the scheduler handed the job out; a retry, a same-host redirect hop and
  the request right after a robots.txt fetch wait for the host's turn again; a hop to
  another host moves the job's slot to that host (``Scheduler.move``).
- attempts: one tenacity ``Retrying`` built from the frozen ``RetryPolicy``.
- redirects: followed hop by hop, up to ``max_redirects``; a loop, a target out of
  scope or not http(s) is error "redirects"; each hop is checked again by robots.txt
  and, when it connects, by the SSRF guard.
- redirect targets are deduplicated: a hop to a URL that is already known (see
  ``FetchPolicy.claim_target``) is not fetched again. The record then ends at the
  redirect: the 3xx status, ``final_url`` = the target, no error, no body. The
  target has (or will have) a record of its own.
- limits: connect and read timeouts; a deadline of 4 x timeout per request, enforced
  by the watchdog (crawler/watchdog.py) whatever the server does; ``max_bytes`` on the
  decoded body while it streams (error "too_large").
- the SSRF guard (crawler/guard.py) checks every address before connecting to it and
  the peer after.

``attempts`` in a record counts the requests sent for its URL, minus the redirect
hops that succeeded: a clean redirect chain is 1 attempt, and every retry shows.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Protocol
from urllib.parse import urljoin

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from crawler.errors import (
    Blocked,
    ConnectError,
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    RobotsDenied,
    TooLarge,
    TooManyRedirects,
)
from crawler.guard import AddressGuard, open_connection
from crawler.messages import FetchJob, Page
from crawler.retry import RetryableStatus, RetryPolicy, parse_retry_after
from crawler.robots import RobotsAnswer, RobotsCache, RobotsUnavailable
from crawler.urls import BadURL, canonicalize, host_of
from crawler.watchdog import WATCHDOG

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ERROR_BODY_BYTES = 65536  # of an error response we read only this much (keeps the connection)
CHUNK = 65536
DEADLINE_TIMEOUTS = 4  # a whole request may take this many times ``timeout``
ROBOTS_MAX_BYTES = 512 * 1024  # Google reads the first 500 KiB; RFC 9309 asks for >= 500 KiB
ROBOTS_MAX_REDIRECTS = 5  # RFC 9309 §2.3.1.2: follow at least five


class Fetcher(Protocol):
    def fetch(self, job: FetchJob) -> Page: ...


class FetchAborted(Exception):
    """The crawl is stopping: this job was not settled and goes back to the queue."""


class RetryLater(Exception):
    """robots.txt is not available yet: put the job back and try after ``seconds``."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds


def utc_now_iso() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def split_content_type(value: str | None) -> tuple[str | None, str | None]:
    """("text/html", "utf-8") from 'text/html; charset="UTF-8"'."""
    if not value:
        return None, None
    mime, _, params = value.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset":
            charset = val.strip().strip("\"'").lower() or None
    return mime.strip().lower() or None, charset


@dataclass
class Response:
    """What one HTTP request returned, engine-independent."""

    url: str
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    elapsed_ms: float


class SeenURLs:
    """The URLs this process fetched or is fetching: job URLs and redirect targets.

    The fetch-side half of redirect-target dedup, used when no ``claim`` hook that asks
    the frontier is given. Bounded: it keeps 64-bit hashes (a false match has odds of
    about 1 in 10^14), and forgets everything when full, which can only cost a fetch
    that a complete memory would have saved.
    """

    MAX = 100_000  # ~5 MB

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hashes: set[int] = set()

    def add(self, url: str) -> bool:
        """Remember ``url``; False if it was already known."""
        key = hash(url)
        with self._lock:
            if key in self._hashes:
                return False
            if len(self._hashes) >= self.MAX:
                self._hashes.clear()
            self._hashes.add(key)
            return True


class FetchPolicy:
    """Everything about a fetch that is not the HTTP transport: shared by the engines.

    ``claim(url) -> bool`` (optional) is asked before a redirect hop to the canonical
    ``url`` is followed. It returns True if this fetch may fetch ``url`` (which must then
    not be fetched for another record: the frontier treats it as taken), and False if the
    frontier already knows ``url`` (queued, leased or done): the record then ends at the
    redirect. Without it, ``SeenURLs`` answers from what this process has fetched.
    """

    def __init__(self, fetch_settings, user_agent: str, *, scope=None, robots: RobotsCache | None = None,
                 scheduler=None, stop: threading.Event | None = None,
                 claim: Callable[[str], bool] | None = None):
        self.settings = fetch_settings
        self.user_agent = user_agent
        self.scope = scope  # CompiledScope or None: checked on every redirect hop
        self.robots = robots
        self.scheduler = scheduler
        self.stop = stop or threading.Event()
        self.claim = claim
        self.seen = SeenURLs()
        self.retry = RetryPolicy.from_settings(fetch_settings)
        self.deadline = DEADLINE_TIMEOUTS * fetch_settings.timeout
        self.base_headers = {
            "User-Agent": user_agent,
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "Accept-Encoding": "gzip, deflate",
        }

    def request_headers(self, job: FetchJob) -> dict[str, str]:
        headers = dict(self.base_headers)
        if job.etag:
            headers["If-None-Match"] = job.etag
        if job.last_modified:
            headers["If-Modified-Since"] = job.last_modified
        return headers

    def check_robots(self, url: str, host: str) -> bool:
        """Raise RobotsDenied if robots.txt disallows ``url`` (RetryLater while it cannot be
        had, Blocked if the guard refused its host). Returns True if the answer was not
        cached, i.e. robots.txt was fetched (or waited for) just now."""
        if self.robots is None:
            return False
        fetched = not self.robots.is_cached(url)
        asked = self.scheduler.clock() if self.scheduler is not None else 0.0
        try:
            allowed, delay = self.robots.check(url)
        except RobotsUnavailable as exc:
            if exc.final:
                raise RobotsDenied(f"{exc} for {url}") from None
            if self.scheduler is not None:
                self.scheduler.defer(host, exc.retry_in)
            raise RetryLater(exc.retry_in) from None
        if self.scheduler is not None:
            if delay is not None:
                self.scheduler.set_delay(host, min(delay, self.settings.max_crawl_delay))
            if fetched:  # robots.txt was a request start; the Crawl-delay counts from it
                self.scheduler.note_start(host, asked)
        if not allowed:
            raise RobotsDenied(f"disallowed by robots.txt: {url}")
        return fetched

    def take_turn(self, job: FetchJob, host: str | None = None) -> None:
        """Block until ``job`` may start its next request, to ``host`` (None: the host
        whose slot it holds). Threads engine only."""
        if self.scheduler is not None and not self.scheduler.move(job, host, self.stop):
            raise FetchAborted()

    def sleep_between_attempts(self, job: FetchJob) -> Callable[[float], None]:
        def sleep(seconds: float) -> None:
            if self.stop.wait(seconds):
                raise FetchAborted()
            self.take_turn(job)

        return sleep

    def on_status(self, job: FetchJob, response: Response) -> None:
        """Raise RetryableStatus for statuses worth another attempt (and push the host
        back by Retry-After)."""
        if response.status in self.retry.statuses:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is not None:
                retry_after = min(retry_after, self.settings.max_crawl_delay)
                if self.scheduler is not None:
                    self.scheduler.defer(host_of(response.url) or job.host, retry_after)
            raise RetryableStatus(
                f"HTTP {response.status}", status=response.status, retry_after=retry_after, response=response
            )

    def next_hop(self, job: FetchJob, current: str, response: Response, seen: set[str], *,
                 robots: bool = True) -> str | None:
        """The canonical redirect target, or None if ``response`` is not a redirect.
        Checks loops, the hop limit, scope and (unless ``robots=False``) robots.txt."""
        if response.status not in REDIRECT_STATUSES:
            return None
        location = response.headers.get("location")
        if not location:
            return None
        try:
            target = canonicalize(urljoin(current, location.strip()))
        except (BadURL, ValueError) as exc:
            raise TooManyRedirects(f"bad redirect target from {current}: {exc}") from None
        if target in seen:
            raise TooManyRedirects(f"redirect loop: {current} -> {target}")
        if len(seen) > self.settings.max_redirects:
            raise TooManyRedirects(f"more than {self.settings.max_redirects} redirects from {job.url}")
        if self.scope is not None and not self.scope.allows(target):
            raise TooManyRedirects(f"redirect out of scope: {current} -> {target}")
        if robots:
            self.check_robots(target, host_of(target))
        seen.add(target)
        return target

    def note_fetching(self, url: str) -> None:
        """``url`` is being fetched for its own record (a redirect to it need not be)."""
        if self.claim is None:
            self.seen.add(url)

    def claim_target(self, url: str) -> bool:
        """True if a redirect to ``url`` should be followed; False if ``url`` is already
        known and the fetch should end at the redirect."""
        if self.claim is not None:
            return self.claim(url)
        return self.seen.add(url)

    def page(self, job: FetchJob, fetched_at: str, response: Response | None, attempts: int,
             error: FetchError | None, elapsed_ms: float, *, final_url: str | None = None) -> Page:
        page = Page(job=job, fetched_at=fetched_at, attempts=attempts, elapsed_ms=round(elapsed_ms, 1))
        if response is not None:
            page.final_url = final_url or response.url
            page.status = response.status
            page.content_type, page.charset = split_content_type(response.headers.get("content-type"))
            page.etag = response.headers.get("etag")
            page.last_modified = response.headers.get("last-modified")
            if error is None and response.status >= 400:
                error = HTTPStatusError(f"HTTP {response.status}", status=response.status)
            if error is None and final_url is None:
                page.body = response.body
            if final_url is not None:  # ended at a redirect: there is nothing to parse
                page.content_type = page.charset = None
        if error is not None:
            page.error = (error.type, str(error))
        return page


def run_fetch(policy: FetchPolicy, job: FetchJob, send: Callable[[str, dict], Response]) -> Page:
    """The engine-independent fetch loop for blocking transports (see the module doc)."""
    fetched_at = utc_now_iso()
    started = time.monotonic()
    sent = hops = 0
    response: Response | None = None
    error: FetchError | None = None
    ended_at: str | None = None
    url = job.url
    seen = {url}
    headers = policy.request_headers(job)
    policy.note_fetching(url)
    # Known before asking: a denial from the cache means no request was sent at all.
    robots_cached = policy.robots is None or policy.robots.is_cached(url)
    try:
        try:
            if policy.check_robots(url, job.host):
                policy.take_turn(job)  # robots.txt was this host's last request start
            while True:
                for attempt in policy.retry.retrying(policy.sleep_between_attempts(job)):
                    with attempt:
                        sent += 1
                        response = send(url, headers)
                        policy.on_status(job, response)
                target = policy.next_hop(job, url, response, seen, robots=False)
                if target is None:
                    break
                if not policy.claim_target(target):
                    ended_at = target
                    break
                host = host_of(target)
                policy.take_turn(job, host)
                if policy.check_robots(target, host):
                    policy.take_turn(job, host)
                hops += 1
                url = target
        except RetryLater as exc:
            # Also when a hop's robots.txt is the trouble: the job restarts from its own
            # URL, so its own host must wait too, or it would ask again at once.
            if policy.scheduler is not None:
                policy.scheduler.defer(job.host, exc.seconds)
            raise
    except RetryableStatus as exc:  # retries used up: record the last answer
        response, error = exc.response, HTTPStatusError(str(exc), status=exc.status)
    except FetchError as exc:
        response, error = getattr(exc, "response", None), exc  # TooLarge keeps the status
        if sent == 0 and robots_cached and isinstance(exc, RobotsDenied) and policy.scheduler is not None:
            policy.scheduler.give_back_turn(job)
    elapsed = (time.monotonic() - started) * 1000
    return policy.page(job, fetched_at, response, sent - hops, error, elapsed, final_url=ended_at)


# -- the requests transport --------------------------------------------------------------------

# The deadline of the request this thread is sending, and its watchdog alarm. The
# connection classes below arm the alarm as soon as they have a socket.
_current = threading.local()


def _arm(sock: socket.socket | None) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None and getattr(_current, "alarm", None) is None:
        _current.alarm = WATCHDOG.arm(deadline, sock)


def _connection_class(base, guard: AddressGuard | None):
    """``base`` (a urllib3 connection class) that connects through the SSRF guard and puts
    its socket under the request's deadline."""

    class Conn(base):
        def _new_conn(self):
            timeout = self.timeout
            if timeout is _DEFAULT_TIMEOUT:
                timeout = socket.getdefaulttimeout()
            try:
                sock = open_connection(self._dns_host, self.port, guard=guard, timeout=timeout,
                                       deadline=getattr(_current, "deadline", None),
                                       family=allowed_gai_family(), source_address=self.source_address,
                                       socket_options=self.socket_options)
            except socket.gaierror as exc:
                raise NameResolutionError(self.host, self, exc) from exc
            except socket.timeout as exc:
                raise ConnectTimeoutError(self, f"connection to {self.host} timed out") from exc
            except OSError as exc:
                raise NewConnectionError(self, f"failed to establish a new connection: {exc}") from exc
            _arm(sock)
            return sock

        def connect(self):
            super().connect()
            alarm = getattr(_current, "alarm", None)
            if alarm is not None and alarm.sock is not self.sock:  # wrapped in TLS
                WATCHDOG.retarget(alarm, self.sock)

        def getresponse(self, *args, **kwargs):
            _arm(self.sock)  # a reused keep-alive connection
            return super().getresponse(*args, **kwargs)

    return Conn


def _guarded_pools(guard: AddressGuard | None):
    class HTTPPool(HTTPConnectionPool):
        ConnectionCls = _connection_class(HTTPConnectionPool.ConnectionCls, guard)

    class HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = _connection_class(HTTPSConnectionPool.ConnectionCls, guard)

    return {"http": HTTPPool, "https": HTTPSPool}


class GuardedAdapter(HTTPAdapter):
    def __init__(self, guard: AddressGuard | None, **kw):
        self._guard = guard
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw):
        super().init_poolmanager(*args, **kw)
        self.poolmanager.pool_classes_by_scheme = _guarded_pools(self._guard)


class RequestsFetcher:
    """The threads engine: call ``fetch`` from any number of threads."""

    def __init__(self, policy: FetchPolicy, guard: AddressGuard | None = None):
        self.policy = policy
        self.guard = guard
        self._local = threading.local()
        # Reading proxy settings, .netrc and CA paths from the environment on every
        # request costs CPU; only do it if the user has configured a proxy there.
        self.trust_env = any(k.lower().endswith("_proxy") for k in os.environ)
        self.proxies: dict = {}

    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = self.trust_env
            adapter = GuardedAdapter(self.guard, pool_connections=16,
                                     pool_maxsize=max(2, self.policy.settings.per_host_concurrency),
                                     max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()

    def fetch(self, job: FetchJob) -> Page:
        return run_fetch(self.policy, job, self.send)

    def fetch_robots(self, url: str) -> RobotsAnswer:
        """GET a robots.txt, following up to 5 redirects (RFC 9309), each through the guard."""
        for _ in range(ROBOTS_MAX_REDIRECTS + 1):
            try:
                resp = self.exchange(url, self.policy.base_headers, limit=ROBOTS_MAX_BYTES, truncate=True)
            except Blocked as exc:
                return RobotsAnswer(None, blocked=str(exc))
            except FetchError:  # timeout, connection: "unreachable"
                return RobotsAnswer(None)
            location = resp.headers.get("location")
            if resp.status not in REDIRECT_STATUSES or not location:
                return RobotsAnswer(resp.status, resp.body if 200 <= resp.status < 300 else b"")
            try:
                url = canonicalize(urljoin(url, location.strip()))
            except (BadURL, ValueError):
                return RobotsAnswer(resp.status)
        return RobotsAnswer(resp.status)  # too many redirects: "unavailable", allow all

    def send(self, url: str, headers: dict) -> Response:
        return self.exchange(url, headers, limit=self.policy.settings.max_bytes)

    def exchange(self, url: str, headers: dict, *, limit: int, truncate: bool = False) -> Response:
        """One GET, redirects not followed. A 2xx body is read up to ``limit`` decoded bytes
        (more is TooLarge, or cut off with ``truncate``); other bodies are dropped."""
        timeout = self.policy.settings.timeout
        started = time.monotonic()
        deadline = started + self.policy.deadline
        _current.deadline, _current.alarm = deadline, None
        try:
            return self._exchange(url, headers, timeout, started, deadline, limit, truncate)
        finally:
            alarm = _current.alarm
            _current.deadline = _current.alarm = None
            if alarm is not None:
                WATCHDOG.disarm(alarm)

    def _overdue(self, deadline: float) -> bool:
        alarm = getattr(_current, "alarm", None)
        return (alarm is not None and alarm.fired) or time.monotonic() >= deadline

    def _exchange(self, url, headers, timeout, started, deadline, limit, truncate) -> Response:
        late = f"no complete answer within the deadline of {self.policy.deadline:g}s: {url}"
        try:
            session = self.session()
            # Session.get() merges environment, auth and hook settings on every call,
            # which costs more CPU than the HTTP exchange itself here; a prepared
            # request with the session's cookies does what we need and no more.
            prep = requests.PreparedRequest()
            prep.prepare(method="GET", url=url, headers=headers,
                         cookies=session.cookies if len(session.cookies) else None)
            resp = session.send(prep, stream=True, timeout=(timeout, timeout), allow_redirects=False,
                                proxies=self.proxies)
        except Blocked:
            raise
        except requests.exceptions.Timeout as exc:
            raise FetchTimeout(f"timed out after {timeout:g}s: {url}") from exc
        except requests.exceptions.RequestException as exc:
            if self._overdue(deadline):
                raise FetchTimeout(late) from exc
            raise ConnectError(f"{_reason(exc)}: {url}") from exc
        try:
            ok = 200 <= resp.status_code < 300
            cap = limit if ok else ERROR_BODY_BYTES
            body = bytearray()
            raw = resp.raw
            try:
                # read1: whatever has arrived, at most CHUNK decoded bytes (urllib3 inflates
                # no more than that at a time), so memory stays bounded and the deadline is
                # looked at often.
                while chunk := raw.read1(CHUNK, decode_content=True):
                    body += chunk
                    if len(body) > cap:
                        if ok and not truncate:
                            too_large = TooLarge(f"body larger than max_bytes={cap}: {url}")
                            too_large.response = Response(  # the record still shows the answer
                                url, resp.status_code, {k.lower(): v for k, v in resp.headers.items()},
                                b"", (time.monotonic() - started) * 1000)
                            raise too_large
                        del body[cap:]
                        break
                    if time.monotonic() >= deadline:
                        raise FetchTimeout(late)
            except (urllib3.exceptions.ReadTimeoutError, requests.exceptions.Timeout, socket.timeout) as exc:
                raise FetchTimeout(f"read timed out after {timeout:g}s: {url}") from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if self._overdue(deadline):
                    raise FetchTimeout(late) from exc
                raise ConnectError(f"{_reason(exc)}: {url}") from exc
            if self._overdue(deadline):  # the watchdog cut the body short
                raise FetchTimeout(late)
            headers_out = {k.lower(): v for k, v in resp.headers.items()}
            return Response(url, resp.status_code, headers_out, bytes(body) if ok else b"",
                            (time.monotonic() - started) * 1000)
        finally:
            resp.close()


def _reason(exc: BaseException) -> str:
    """A short, one-line reason from a requests/urllib3 exception chain."""
    while exc.__context__ is not None and not str(exc):
        exc = exc.__context__
    text = str(exc) or type(exc).__name__
    for marker in ("Connection refused", "Connection reset", "Name or service not known",
                   "Remote end closed connection", "IncompleteRead", "Connection aborted"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:200]


class MockFetcher:
    """In-memory fetcher for tests: ``handler(job) -> Page``."""

    def __init__(self, handler: Callable[[FetchJob], Page]):
        self.handler = handler

    def fetch(self, job: FetchJob) -> Page:
        return self.handler(job)
