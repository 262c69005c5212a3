"""Fetchers: ``fetch(job) -> Page``, with interchangeable implementations.

- ``RequestsFetcher``: the threads engine. Each fetcher thread has its own
  ``requests.Session``; bodies are streamed, so ``max_bytes`` and the per-request
  deadline hold however the server behaves.
- ``crawler.aiofetch.AiohttpFetcher``: the async engine (same policy, aiohttp transport).
- ``MockFetcher(handler)``: in memory, for pipeline tests without sockets.

What a fetch does around the HTTP request (``FetchPolicy``, shared by the engines):
robots.txt check; attempts with the retry policy (each further attempt waits for its
host's turn again); redirects followed hop by hop, each hop checked again for scope,
robots and loops; the SSRF guard on the address actually connected to.
"""

from __future__ import annotations

import os
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
from crawler.guard import AddressGuard
from crawler.messages import FetchJob, Page
from crawler.retry import RetryableStatus, RetryPolicy, parse_retry_after
from crawler.robots import RobotsAnswer, RobotsCache, RobotsUnavailable
from crawler.urls import BadURL, canonicalize

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ERROR_BODY_BYTES = 65536  # of an error response we read only this much (keeps the connection)
CHUNK = 65536


class Fetcher(Protocol):
    def fetch(self, job: FetchJob) -> Page: ...


class FetchAborted(Exception):
    """The crawl is stopping: this job was not settled and goes back to the queue."""


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


class FetchPolicy:
    """Everything about a fetch that is not the HTTP transport: shared by the engines."""

    def __init__(self, fetch_settings, user_agent: str, *, scope=None, robots: RobotsCache | None = None,
                 scheduler=None, stop: threading.Event | None = None):
        self.settings = fetch_settings
        self.user_agent = user_agent
        self.scope = scope  # CompiledScope or None: checked on every redirect hop
        self.robots = robots
        self.scheduler = scheduler
        self.stop = stop or threading.Event()
        self.retry = RetryPolicy.from_settings(fetch_settings)
        self.deadline = 4 * fetch_settings.timeout
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

    def check_robots(self, url: str, host: str) -> None:
        if self.robots is None:
            return
        try:
            allowed, delay = self.robots.check(url)
        except RobotsUnavailable as exc:
            if exc.final:
                raise RobotsDenied(f"{exc} for {url}") from None
            if self.scheduler is not None:
                self.scheduler.defer(host, exc.retry_in)
            raise RetryLater(exc.retry_in) from None
        if delay is not None and self.scheduler is not None:
            self.scheduler.set_delay(host, min(delay, self.settings.max_crawl_delay))
        if not allowed:
            raise RobotsDenied(f"disallowed by robots.txt: {url}")

    def sleep_between_attempts(self, job: FetchJob) -> Callable[[float], None]:
        def sleep(seconds: float) -> None:
            if self.stop.wait(seconds):
                raise FetchAborted()
            if self.scheduler is not None and not self.scheduler.wait_turn(job, self.stop):
                raise FetchAborted()

        return sleep

    def on_status(self, job: FetchJob, response: Response) -> None:
        """Raise RetryableStatus for statuses worth another attempt (and push the host
        back by Retry-After)."""
        if response.status in self.retry.statuses:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is not None:
                retry_after = min(retry_after, self.settings.max_crawl_delay)
                if self.scheduler is not None:
                    self.scheduler.defer(job.host, retry_after)
            raise RetryableStatus(
                f"HTTP {response.status}", status=response.status, retry_after=retry_after, response=response
            )

    def next_hop(self, job: FetchJob, current: str, response: Response, seen: set[str]) -> str | None:
        """The canonical redirect target, or None if ``response`` is not a redirect."""
        if response.status not in REDIRECT_STATUSES:
            return None
        location = response.headers.get("location")
        if not location:
            return None
        try:
            target = canonicalize(urljoin(current, location))
        except BadURL as exc:
            raise TooManyRedirects(f"bad redirect target from {current}: {exc}") from None
        if target in seen:
            raise TooManyRedirects(f"redirect loop: {current} -> {target}")
        if len(seen) > self.settings.max_redirects:
            raise TooManyRedirects(f"more than {self.settings.max_redirects} redirects from {job.url}")
        if self.scope is not None and not self.scope.allows(target):
            raise TooManyRedirects(f"redirect out of scope: {current} -> {target}")
        from crawler.urls import host_of

        self.check_robots(target, host_of(target))
        seen.add(target)
        return target

    def page(self, job: FetchJob, fetched_at: str, response: Response | None, attempts: int,
             error: FetchError | None, elapsed_ms: float) -> Page:
        page = Page(job=job, fetched_at=fetched_at, attempts=attempts, elapsed_ms=round(elapsed_ms, 1))
        if response is not None:
            page.final_url = response.url
            page.status = response.status
            page.content_type, page.charset = split_content_type(response.headers.get("content-type"))
            page.etag = response.headers.get("etag")
            page.last_modified = response.headers.get("last-modified")
            if error is None and response.status >= 400:
                error = HTTPStatusError(f"HTTP {response.status}", status=response.status)
            if error is None:
                page.body = response.body
        if error is not None:
            page.error = (error.type, str(error))
        return page


class RetryLater(Exception):
    """robots.txt is not available yet: put the job back and try after ``seconds``."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds


def run_fetch(policy: FetchPolicy, job: FetchJob, send: Callable[[str, dict], Response]) -> Page:
    """The engine-independent fetch loop for blocking transports.

    ``attempts`` in the record counts requests sent for this URL minus the redirect hops
    that succeeded, so a clean redirect chain is 1 attempt and every retry shows.
    """
    fetched_at = utc_now_iso()
    started = time.monotonic()
    sent = hops = 0
    response: Response | None = None
    error: FetchError | None = None
    url = job.url
    seen = {url}
    headers = policy.request_headers(job)
    try:
        policy.check_robots(url, job.host)
        while True:
            for attempt in policy.retry.retrying(policy.sleep_between_attempts(job)):
                with attempt:
                    sent += 1
                    response = send(url, headers)
                    policy.on_status(job, response)
            target = policy.next_hop(job, url, response, seen)
            if target is None:
                break
            hops += 1
            url = target
    except RetryableStatus as exc:  # retries used up: record the last answer
        response, error = exc.response, HTTPStatusError(str(exc), status=exc.status)
    except FetchError as exc:
        response, error = None, exc
    elapsed = (time.monotonic() - started) * 1000
    return policy.page(job, fetched_at, response, sent - hops, error, elapsed)


# -- the requests transport --------------------------------------------------------------------


def _guarded_pools(guard: AddressGuard):
    """Connection pools whose connections check the peer address right after connecting:
    the check sees the address actually connected to, whatever DNS said before."""

    def checked(base):
        class Conn(base):
            def connect(self):
                super().connect()
                peer = self.sock.getpeername()[0]
                reason = guard.refuses(peer, self.host)
                if reason:
                    self.sock.close()
                    raise Blocked(reason)

        return Conn

    class HTTPPool(HTTPConnectionPool):
        ConnectionCls = checked(HTTPConnectionPool.ConnectionCls)

    class HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = checked(HTTPSConnectionPool.ConnectionCls)

    return {"http": HTTPPool, "https": HTTPSPool}


class GuardedAdapter(HTTPAdapter):
    def __init__(self, guard: AddressGuard | None, **kw):
        self._guard = guard
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw):
        super().init_poolmanager(*args, **kw)
        if self._guard is not None:
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
        """GET a robots.txt (following up to 5 redirects, as RFC 9309 allows)."""
        limit = 512 * 1024  # Google reads the first 500 KiB
        try:
            resp = self.session().get(url, headers=self.policy.base_headers, stream=True,
                                      timeout=self.policy.settings.timeout, allow_redirects=True)
        except Exception:  # any failure to get an answer means "unreachable"
            return RobotsAnswer(None)
        try:
            body = bytearray()
            for chunk in resp.raw.stream(CHUNK, decode_content=True):
                body += chunk
                if len(body) >= limit:
                    break
            return RobotsAnswer(resp.status_code, bytes(body[:limit]))
        except Exception:
            return RobotsAnswer(resp.status_code if resp.status_code >= 500 else None)
        finally:
            resp.close()

    def send(self, url: str, headers: dict) -> Response:
        timeout = self.policy.settings.timeout
        started = time.monotonic()
        deadline = started + self.policy.deadline
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
            raise ConnectError(f"{_reason(exc)}: {url}") from exc
        try:
            ok = 200 <= resp.status_code < 300
            limit = self.policy.settings.max_bytes if ok else ERROR_BODY_BYTES
            body = bytearray()
            try:
                for chunk in resp.raw.stream(CHUNK, decode_content=True):
                    body += chunk
                    if len(body) > limit:
                        if ok:
                            raise TooLarge(f"body larger than max_bytes={limit}: {url}")
                        break
                    if time.monotonic() > deadline:
                        raise FetchTimeout(f"deadline of {self.policy.deadline:g}s passed: {url}")
            except (urllib3.exceptions.ReadTimeoutError, requests.exceptions.Timeout) as exc:
                raise FetchTimeout(f"read timed out after {timeout:g}s: {url}") from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise ConnectError(f"{_reason(exc)}: {url}") from exc
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
