"""Fetchers: ``fetch(job) -> Page``, with interchangeable implementations.

- ``crawler.fetch.requests_engine.RequestsFetcher``: the threads engine (requests + urllib3).
  Bodies are streamed, so ``max_bytes`` and the per-request deadline hold however the
  server behaves.
- ``crawler.fetch.aiohttp_engine.AiohttpEngine``: the async engine (same policy, aiohttp transport).

What a fetch does around the HTTP request (``FetchPolicy``, shared by the engines, and
``run_fetch``, the loop for blocking transports):

- robots.txt: checked before the first request and before every redirect hop. While a
  host's robots.txt cannot be had (5xx, unreachable) the job goes back to the queue
  (``RetryLater``) and the host waits.
- politeness: every request a job sends goes through the scheduler. The first one
  started when the scheduler handed the job out; a retry, a same-host redirect hop and
  the request right after a robots.txt fetch wait for the host's turn again; a hop to
  another host moves the job's slot to that host (``HostScheduler.move``).
- attempts: one tenacity ``Retrying`` built from the frozen ``RetryPolicy``.
- redirects: followed hop by hop, up to ``max_redirects``; a loop, a target out of
  scope or not http(s) is error "redirects"; each hop is checked again by robots.txt
  and, when it connects, by the SSRF guard.
- redirect targets are deduplicated: a hop to a URL that is already known (see
  ``FetchPolicy.claim_target``) is not fetched again. The record then ends at the
  redirect: the 3xx status, ``final_url`` = the target, no error, no body. The
  target has (or will have) a record of its own.
- limits: connect and read timeouts; a deadline of 4 x timeout per request, enforced
  by the watchdog (crawler/fetch/watchdog.py) whatever the server does; ``max_bytes`` on the
  decoded body while it streams (error "too_large").
- the SSRF guard (crawler/fetch/guard.py) checks every address before connecting to it and
  the peer after.

``attempts`` in a record counts the requests sent for its URL, minus the redirect
hops that succeeded: a clean redirect chain is 1 attempt, and every retry shows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from crawler.errors import FetchError, HTTPStatusError, RobotsDenied, TooManyRedirects
from crawler.messages import FetchJob, Page, utc_now_iso
from crawler.fetch.retry import RetryableStatus, RetryPolicy, parse_retry_after
from crawler.fetch.robots import RobotsAnswer, RobotsCache, RobotsUnavailable
from crawler.urls import BadURL, canonicalize, host_of

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

    capture = False  # [output] warc: put every HTTP exchange on the Page (crawler/fetch/capture.py)

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
            target = canonicalize(location, current)
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


def robots_step(url: str, resp: Response) -> RobotsAnswer | str:
    """One response while fetching a robots.txt: the answer, or the URL a redirect leads
    to next (both engines follow up to 5 redirects, as RFC 9309 allows)."""
    location = resp.headers.get("location")
    if resp.status not in REDIRECT_STATUSES or not location:
        return RobotsAnswer(resp.status, resp.body if 200 <= resp.status < 300 else b"")
    try:
        return canonicalize(location, url)
    except (BadURL, ValueError):
        return RobotsAnswer(resp.status)


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
