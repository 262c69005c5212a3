"""The fetch policy: everything a fetch decides, written once, without I/O.

``FetchPolicy`` holds the settings and the crawl's helpers (robots.txt cache, scope,
host scheduler, redirect-claim hook); its generators yield commands
(crawler/fetch/commands.py) that a transport performs:

- ``fetch(job)``: one frontier job to its ``Page``;
- ``serve(job)``: ``fetch`` and then settle the job with the scheduler: what both
  engines' workers run;
- ``robots_txt(url)``: GET a robots.txt, following up to 5 redirects (RFC 9309);
- ``sitemap(url)``: GET one sitemap file, politely, its redirects checked like a page's.

What ``fetch`` decides:

- robots.txt: checked before the first request and before every redirect hop. While a
  host's robots.txt cannot be had (5xx, unreachable) the job goes back to the queue
  (``RetryLater``) and the host waits. Only one fetch gets an origin's robots.txt;
  others ask meanwhile wait for it (``WaitRobots``).
- politeness: every request a job sends goes through the scheduler. The first one
  started when the scheduler handed the job out; a retry, a same-host redirect hop and
  the request right after a robots.txt fetch wait for the host's turn again; a hop to
  another host moves the job's slot to that host (``HostTurns.try_move``).
- retries: ``RetryPolicy`` (crawler/fetch/retry.py) says which failures are worth
  another attempt and how long to wait (backoff, or Retry-After, which also pushes the
  host back); the budget is ``retries + 1`` requests sent per URL of the chain.
- redirects: followed hop by hop, up to ``max_redirects``; a loop, a target out of
  scope or not http(s) is error "redirects"; each hop is checked by robots.txt and,
  when it connects, by the SSRF guard.
- redirect targets are deduplicated: a hop to a URL that is already known (``Claim``)
  is not fetched again. The record then ends at the redirect: the 3xx status,
  ``final_url`` = the target, no error, no body.
- limits: ``max_bytes`` on the decoded body (error "too_large") and a deadline of
  4 x timeout per request, both carried by ``Send`` and enforced by the transport.
- the delay counts from the end of the exchange (``sent``), which the server saw begin
  before it answered: the delay holds as the server sees it (transports stamp when each
  request went out, ``sent_at``; only a request that went out counts; AutoThrottle's
  latency runs from there to the end).

``attempts`` in a record counts the requests sent for its URL, minus the redirect
hops that succeeded: a clean redirect chain is 1 attempt, and every retry shows.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from crawler.errors import FetchError, HTTPStatusError, RobotsDenied, TooManyRedirects
from crawler.fetch.capture import capturing, note
from crawler.fetch.commands import Claim, HostTurns, Response, Send, Sleep, Steps, WaitRobots
from crawler.fetch.retry import RetryableStatus, RetryPolicy, parse_retry_after
from crawler.fetch.robots import REDIRECT_STATUSES, RobotsCache, RobotsUnavailable, origin_of
from crawler.fetch.robots import fetch_steps as robots_fetch_steps
from crawler.fetch.seen import SeenURLs
from crawler.fetch.throttle import AutoThrottle
from crawler.hostrules import HostRules
from crawler.messages import FetchJob, Page, utc_now_iso
from crawler.urls import BadURL, canonicalize, host_of

__all__ = ["FetchPolicy", "FetchAborted", "RetryLater", "Response", "SeenURLs", "RELEASED", "REQUEUED"]

log = logging.getLogger("crawler")

ERROR_BODY_BYTES = 65536  # of an error response we read only this much (keeps the connection)
CHUNK = 65536
DEADLINE_TIMEOUTS = 4  # a whole request may take this many times ``timeout``
SITEMAP_MAX_REDIRECTS = 5
RELEASED = None  # ``serve``: the job goes back to the frontier unsettled (the crawl is stopping)
REQUEUED = "requeued"  # ``serve``: the job went back to its host's queue (robots.txt not available yet)


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
                 scheduler: HostTurns | None = None, stop: threading.Event | None = None,
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
        self.host_rules = HostRules(getattr(fetch_settings, "hosts", ()))
        self.throttle = AutoThrottle.from_settings(fetch_settings)
        self._rule_headers: dict[str, dict[str, str]] = {}  # a rule's match -> its headers

    def headers_for(self, host: str) -> dict[str, str]:
        """The headers of every request to ``host``: its [[fetch.hosts]] user_agent and
        headers over the base ones (not to be changed: they are shared)."""
        rule = self.host_rules.for_host(host) if self.host_rules else None
        if rule is None:
            return self.base_headers
        headers = self._rule_headers.get(rule.match)
        if headers is None:
            headers = {**self.base_headers, **rule.headers}
            if rule.user_agent:
                headers["User-Agent"] = rule.user_agent
            self._rule_headers[rule.match] = headers
        return headers

    def request_headers(self, job: FetchJob, host: str | None = None) -> dict[str, str]:
        headers = dict(self.headers_for(host or job.host))
        if job.etag:
            headers["If-None-Match"] = job.etag
        if job.last_modified:
            headers["If-Modified-Since"] = job.last_modified
        return headers

    # -- one job -------------------------------------------------------------------------------
    def serve(self, job: FetchJob) -> Steps:
        """``fetch(job)``, then settle it with the scheduler: the ``Page`` to hand on, or
        ``RELEASED`` if the job goes back to the frontier unsettled (the crawl is stopping),
        or ``REQUEUED`` if the scheduler has it again."""
        scheduler = self.scheduler
        try:
            with capturing(self.capture) as exchanges:  # [output] warc: every exchange of this fetch
                page = yield from self.fetch(job)
            page.exchanges = exchanges
        except FetchAborted:
            page = RELEASED
        except RetryLater:
            page = REQUEUED if scheduler is not None and scheduler.requeue(job) else RELEASED
        except Exception as exc:  # a bug must still settle the URL, never lose it
            log.exception("fetcher failed on %s", job.url)
            page = Page(job=job, fetched_at=utc_now_iso(), attempts=1,
                        error=("connection", f"internal error: {type(exc).__name__}: {exc}"))
        finally:
            if scheduler is not None:
                scheduler.done(job)
        return page

    def fetch(self, job: FetchJob) -> Steps:
        fetched_at = utc_now_iso()
        started = time.monotonic()
        sent = hops = 0
        response: Response | None = None
        error: FetchError | None = None
        ended_at: str | None = None
        url, host = job.url, job.host
        seen = {url}
        headers = self.request_headers(job)
        if self.claim is None:
            self.seen.add(url)  # fetched for its own record: a redirect to it need not be
        # Known before asking: a denial from the cache means no request was sent at all.
        robots_cached = self.robots is None or self.robots.is_cached(url)
        try:
            try:
                if (yield from self.check_robots(url, job.host)):
                    yield from self.turn(job)  # robots.txt was this host's last request start
                while True:
                    tries = 0
                    while True:
                        send = Send(url, headers, self.settings.max_bytes, self.deadline)
                        result = self.sent(send, (yield send), host)
                        sent, tries = sent + 1, tries + 1
                        failure = self.failure(job, result)
                        if failure is None:
                            response = result
                            break
                        if tries > self.retry.retries or not self.retry.is_retryable(failure):
                            raise failure
                        if not (yield Sleep(self.retry.wait_seconds(tries, failure))):
                            raise FetchAborted()
                        yield from self.turn(job)
                    target = self.next_hop(job.url, url, response, seen)
                    if target is None:
                        break
                    if not (yield Claim(target)):
                        ended_at = target
                        break
                    host = host_of(target)
                    if self.host_rules:
                        headers = self.request_headers(job, host)
                    yield from self.turn(job, host)
                    if (yield from self.check_robots(target, host)):
                        yield from self.turn(job, host)
                    hops += 1
                    url = target
            except RetryLater as exc:
                # Also when a hop's robots.txt is the trouble: the job restarts from its own
                # URL, so its own host must wait too, or it would ask again at once.
                if self.scheduler is not None:
                    self.scheduler.defer(job.host, exc.seconds)
                raise
        except RetryableStatus as exc:  # retries used up: record the last answer
            response, error = exc.response, HTTPStatusError(str(exc), status=exc.status)
        except FetchError as exc:
            response, error = getattr(exc, "response", None), exc  # TooLarge keeps the status
            if sent == 0 and robots_cached and isinstance(exc, RobotsDenied) and self.scheduler is not None:
                self.scheduler.give_back_turn(job)
        elapsed = (time.monotonic() - started) * 1000
        return self.page(job, fetched_at, response, sent - hops, error, elapsed, final_url=ended_at)

    def failure(self, job: FetchJob, result: Response | FetchError) -> FetchError | None:
        """None if ``result`` is an answer to keep; else the error it stands for. A status
        worth another attempt is RetryableStatus (and Retry-After pushes the host back)."""
        if isinstance(result, FetchError):
            return result
        if result.status not in self.retry.statuses:
            return None
        retry_after = parse_retry_after(result.headers.get("retry-after"))
        if retry_after is not None:
            retry_after = min(retry_after, self.settings.max_crawl_delay)
            if self.scheduler is not None:
                self.scheduler.defer(host_of(result.url) or job.host, retry_after)
        return RetryableStatus(f"HTTP {result.status}", status=result.status, retry_after=retry_after,
                               response=result)

    def on_status(self, job: FetchJob, response: Response) -> None:
        """Raise RetryableStatus for a status worth another attempt (see ``failure``)."""
        if (failure := self.failure(job, response)) is not None:
            raise failure

    def next_hop(self, origin_url: str, current: str, response: Response, seen: set[str]) -> str | None:
        """The canonical redirect target, or None if ``response`` is not a redirect.
        Checks loops, the hop limit and the scope (robots.txt is the caller's step)."""
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
            raise TooManyRedirects(f"more than {self.settings.max_redirects} redirects from {origin_url}")
        if self.scope is not None and not self.scope.allows(target):
            raise TooManyRedirects(f"redirect out of scope: {current} -> {target}")
        seen.add(target)
        return target

    def claim_target(self, url: str) -> bool:
        """``Claim``: True if a redirect to ``url`` should be followed; False if ``url`` is
        already known and the fetch should end at the redirect."""
        if self.claim is not None:
            return self.claim(url)
        return self.seen.add(url)

    # -- the host's turns ----------------------------------------------------------------------
    def sent(self, send: Send, result: Response | FetchError, host: str | None = None) -> Response | FetchError:
        """A request to ``host`` (default: ``send.url``'s) went out (``result.sent_at``) and
        its exchange is over: the host's next start is at least its delay after *now*, the
        exchange's end (as Nutch and Heritrix count), which is later than the send (the
        turn's grant is earlier still). The server saw this request before it answered, so
        the next start it sees is at least the delay after this one's, whatever its own lag
        or a new connection's set-up. An answer is also noted for the WARC, when the running
        fetch captures (crawler/fetch/capture.py)."""
        sent_at = getattr(result, "sent_at", None)
        if sent_at is not None and self.scheduler is not None:
            host, ended = host or host_of(send.url), self.scheduler.clock()
            self.scheduler.note_start(host, ended)
            if self.throttle is not None:  # AutoThrottle: the delay follows the server
                status = result.status if isinstance(result, Response) else None
                delay = self.throttle.observe(host, status, ended - sent_at)
                if delay is not None:
                    self.scheduler.adapt(host, delay)
        if isinstance(result, Response):
            note(send.url, send.headers, result)
        return result

    def turn(self, job: FetchJob, host: str | None = None) -> Steps:
        """Wait until ``job`` may start its next request, to ``host`` (None: the host whose
        slot it holds), and take that start. FetchAborted if the crawl stops meanwhile."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        while (wait := scheduler.try_turn(job) if host is None else scheduler.try_move(job, host)) > 0:
            if not (yield Sleep(wait)):
                raise FetchAborted()

    # -- robots.txt ----------------------------------------------------------------------------
    def check_robots(self, url: str, host: str) -> Steps:
        """Raise RobotsDenied if robots.txt disallows ``url`` (RetryLater while it cannot be
        had, Blocked if the guard refused its host). Returns True if the answer was not
        cached, i.e. robots.txt was fetched (or waited for) just now."""
        cache = self.robots
        if cache is None:
            return False
        fetched = False
        asked = self.scheduler.clock() if self.scheduler is not None else 0.0
        while True:
            try:
                answer = cache.answer(url)
            except RobotsUnavailable as exc:
                if exc.final:
                    raise RobotsDenied(f"{exc} for {url}") from None
                if self.scheduler is not None:
                    self.scheduler.defer(host, exc.retry_in)
                raise RetryLater(exc.retry_in) from None
            if answer is not None:
                break
            fetched = True
            origin = origin_of(url)
            if cache.claim(origin):  # this fetch gets it; others asking meanwhile wait
                got = None
                try:
                    got = yield from self.robots_txt(origin + "/robots.txt")
                finally:
                    cache.store(origin, got)
            else:
                yield WaitRobots(origin)
        allowed, delay = answer
        if self.scheduler is not None:
            if delay is not None:
                self.scheduler.set_delay(host, min(delay, self.settings.max_crawl_delay))
            if fetched:  # robots.txt was a request start; the Crawl-delay counts from it
                self.scheduler.note_start(host, asked)
        if not allowed:
            raise RobotsDenied(f"disallowed by robots.txt: {url}")
        return fetched

    def robots_txt(self, url: str) -> Steps:
        """GET a robots.txt (``robots.fetch_steps``): a ``RobotsAnswer``."""
        return (yield from robots_fetch_steps(url, self.headers_for(host_of(url)), self.deadline, self.sent))

    # -- sitemaps ------------------------------------------------------------------------------
    def sitemap(self, url: str, max_bytes: int) -> Steps:
        """One sitemap file's body, or None if it could not be had. Each request takes a
        slot and a turn of its host (sitemap requests count for per-host concurrency and
        delay); each URL, redirect hops included, is checked by robots.txt, and each hop
        by the scope, as a page's would be."""
        seen = {url}
        for _ in range(SITEMAP_MAX_REDIRECTS + 1):
            host = host_of(url)
            try:
                yield from self.check_robots(url, host)
            except (FetchError, RetryLater):
                return None
            token = self.scheduler.token(host) if self.scheduler is not None else None
            try:
                if token is not None:
                    yield from self.turn(token, host)
                send = Send(url, self.headers_for(host), max_bytes, self.deadline)
                result = self.sent(send, (yield send), host)
            except FetchAborted:
                return None  # the crawl is stopping
            finally:
                if token is not None:
                    self.scheduler.done(token)
            if isinstance(result, FetchError):
                return None
            try:
                target = self.next_hop(url, url, result, seen)
            except TooManyRedirects:
                return None
            if target is None:
                return result.body if result.status == 200 else None
            url = target
        return None

    # -- the record ----------------------------------------------------------------------------
    def page(self, job: FetchJob, fetched_at: str, response: Response | None, attempts: int,
             error: FetchError | None, elapsed_ms: float, *, final_url: str | None = None) -> Page:
        page = Page(job=job, fetched_at=fetched_at, attempts=attempts, elapsed_ms=round(elapsed_ms, 1))
        if response is not None:
            page.final_url = final_url or response.url
            page.status = response.status
            page.content_type, page.charset = split_content_type(response.headers.get("content-type"))
            page.etag = response.headers.get("etag")
            page.last_modified = response.headers.get("last-modified")
            page.robots_tag = response.headers.get("x-robots-tag")
            if error is None and response.status >= 400:
                error = HTTPStatusError(f"HTTP {response.status}", status=response.status)
            if error is None and final_url is None:
                page.body = response.body
            if final_url is not None:  # ended at a redirect: there is nothing to parse
                page.content_type = page.charset = None
        if error is not None:
            page.error = (error.type, str(error))
        return page
