"""The async engine: aiohttp in one asyncio event loop, in one background thread.

::

    Scheduler ──try_next()──► dispatcher ──► fetch tasks (at most `concurrency`) ──Page──► hand-off ──► on_page
        ▲   │ listener: work may be ready        │ FetchPolicy: robots, retries,           thread      (may block:
        │   └──── call_soon_threadsafe ──────────┤ redirects, statuses, Page               (bounded    parser pool
        └──────── done / requeue / try_turn ◄────┘                                          queue)      is full)

- Dispatcher: starts a task for every job the scheduler hands out, while fewer than
  ``concurrency`` run. When nothing is ready it sleeps until the scheduler's listener
  wakes it, a task ends, or the earliest host becomes ready. Per-host limits stay the
  scheduler's business, enforced where a request starts, as for the threads engine.
- Fetch tasks: ``fetch(job)``, the same steps as ``crawler.fetch.run_fetch`` over the
  same ``FetchPolicy``. Retries are driven here from ``RetryPolicy`` (its budget, its
  retryable errors, its waits) rather than through tenacity, whose blocking ``sleep``
  hook does not fit a coroutine; each further attempt waits for its host's turn with
  ``Scheduler.try_turn``, the non-blocking twin of ``wait_turn``.
- Hand-off thread: ``on_page`` submits to the parser pool and blocks while the pool is
  full, so it runs outside the loop. The queue to it is small and bounded: when it is
  full, fetch tasks wait, so a slow parser pool slows fetching down instead of
  filling memory.
- robots.txt: ``RobotsCache`` is synchronous and calls ``fetch_robots`` when it needs an
  origin's file. On the loop thread that call must not block, so it raises
  ``_RobotsNeeded``; the task then fetches the file with aiohttp (once per origin,
  whoever else is waiting for it) and asks the cache again, which now finds the answer
  waiting. The cache keeps its own rules (expiry, retry of unreachable origins,
  Crawl-delay), and no thread ever waits for the loop from inside the loop.
- SSRF guard: ``GuardedConnector`` asks ``AddressGuard`` about the peer address of
  every new connection before a request is written to it.

Shutdown: once the scheduler is closed the dispatcher starts nothing more and waits
for its tasks. A task in a request finishes it (bounded by the deadline); a task
waiting between attempts sees ``policy.stop`` and gives its job back (``on_release``).
Then the session is closed, the loop ends, the hand-off queue is drained, and the
thread exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from typing import Callable

import aiohttp
from yarl import URL

from crawler.errors import Blocked, ConnectError, FetchError, FetchTimeout, HTTPStatusError, TooLarge
from crawler.fetch import (
    CHUNK,
    ERROR_BODY_BYTES,
    FetchAborted,
    FetchPolicy,
    Response,
    RetryLater,
    utc_now_iso,
)
from crawler.guard import AddressGuard
from crawler.messages import FetchJob, Page
from crawler.retry import RetryableStatus
from crawler.robots import RobotsAnswer

log = logging.getLogger("crawler")

ROBOTS_LIMIT = 512 * 1024  # Google reads the first 500 KiB of a robots.txt
ROBOTS_REDIRECTS = 5  # RFC 9309 §2.3.1.2: follow at least five
# Pages waiting for the hand-off thread. Enough to ride over one slow submit; beyond
# that, waiting belongs in the fetch tasks, which stop more requests from starting.
HANDOFF_PAGES = 16
STOP_POLL = 0.1  # seconds: how soon a task waiting between attempts notices policy.stop


class _RobotsNeeded(Exception):
    """Raised through RobotsCache on the loop thread: fetch ``url`` first, then ask again."""

    def __init__(self, url: str):
        super().__init__(url)
        self.url = url


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that checks the address each new connection actually reached.

    ``_create_connection`` is the hook aiohttp's own connectors implement; the check runs
    after the TCP (and TLS) handshake and before any request byte is sent, so DNS
    rebinding cannot slip past it. A refused connection is closed and raises ``Blocked``.
    """

    def __init__(self, guard: AddressGuard | None, **kw):
        super().__init__(**kw)
        self._guard = guard

    async def _create_connection(self, req, traces, timeout):
        proto = await super()._create_connection(req, traces, timeout)
        if self._guard is None:
            return proto
        host = req.url.raw_host or ""
        transport = proto.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        reason = (self._guard.refuses(peer[0], host) if peer
                  else f"refused: no peer address for {host}")
        if reason:
            proto.close()
            raise Blocked(reason)
        return proto


class _HandOff:
    """Pages from the loop to ``on_page`` through one thread (on_page may block)."""

    def __init__(self, on_page: Callable[[FetchJob, Page], None], on_release: Callable[[FetchJob], None]):
        self.on_page = on_page
        self.on_release = on_release
        self.queue: queue.Queue = queue.Queue(HANDOFF_PAGES)
        self.thread = threading.Thread(target=self._run, name="aiofetch-handoff", daemon=True)
        self.thread.start()

    async def put(self, job: FetchJob, page: Page) -> None:
        try:
            self.queue.put_nowait((job, page))
        except queue.Full:  # the parser pool is behind: wait without blocking the loop
            await asyncio.get_running_loop().run_in_executor(None, self.queue.put, (job, page))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            job, page = item
            try:
                self.on_page(job, page)
            except Exception:  # never lose the URL: it goes back to the queue
                log.exception("handing over %s failed", job.url)
                self.on_release(job)

    def close(self) -> None:
        """After the last put: wait until every page has been handed over."""
        self.queue.put(None)
        self.thread.join()


class AiohttpEngine:
    """The async engine. ``start`` runs it in a thread of its own; it ends when the
    scheduler is closed and every fetch it started has settled."""

    def __init__(self, policy: FetchPolicy, guard: AddressGuard | None = None):
        self.policy = policy
        self.guard = guard
        settings = policy.settings
        self.concurrency = settings.concurrency
        self.timeout = aiohttp.ClientTimeout(total=policy.deadline, sock_connect=settings.timeout,
                                             sock_read=settings.timeout)
        # As RequestsFetcher: read proxy settings from the environment only if there are any.
        self.trust_env = any(k.lower().endswith("_proxy") for k in os.environ)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._wake: asyncio.Event | None = None
        self._wake_posted = False
        self._live = False  # the loop is running and may be woken
        self._closing = False
        self._stopped: asyncio.Event | None = None
        self._robots_ready: dict[str, RobotsAnswer] = {}
        self._robots_tasks: dict[str, asyncio.Task] = {}

    # -- the thread and the loop -----------------------------------------------------------------
    def start(self, scheduler, on_page: Callable[[FetchJob, Page], None],
              on_release: Callable[[FetchJob], None]) -> list[threading.Thread]:
        loop = self._loop = asyncio.new_event_loop()
        self._live = True
        self._thread = threading.Thread(target=self._run, args=(loop, scheduler, on_page, on_release),
                                        name="aiofetch", daemon=True)
        self._thread.start()
        return [self._thread]

    def close(self) -> None:
        """Stop starting fetches, let the running ones settle, and wait for the thread."""
        thread = self._thread
        if thread is None or thread is threading.current_thread() or not thread.is_alive():
            return
        self._closing = True
        self._post_wake()
        thread.join(self.policy.deadline + 5)

    def _run(self, loop, scheduler, on_page, on_release) -> None:
        handoff = _HandOff(on_page, on_release)
        try:
            with asyncio.Runner(loop_factory=lambda: loop) as runner:
                runner.run(self._main(scheduler, handoff))
        except Exception:
            log.exception("the async fetch engine failed")
        finally:
            self._live = False
            handoff.close()

    def _post_wake(self) -> None:
        """Wake the dispatcher from any thread (the scheduler calls this under its lock)."""
        if not self._live:
            return
        if self._thread is threading.current_thread():
            if self._wake is not None:
                self._wake.set()
        elif not self._wake_posted:  # one pending wake-up is enough
            self._wake_posted = True
            try:
                self._loop.call_soon_threadsafe(self._woken)
            except RuntimeError:  # the loop has just closed
                pass

    def _woken(self) -> None:
        self._wake_posted = False
        if self._wake is not None:
            self._wake.set()

    def new_session(self) -> aiohttp.ClientSession:
        connector = GuardedConnector(self.guard, limit=self.concurrency, limit_per_host=0, ttl_dns_cache=300)
        session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                        auto_decompress=True, timeout=self.timeout, trust_env=self.trust_env)
        # aiohttp silently sends a GET again when a connection fails before the answer;
        # without that every request sent is one we count in ``attempts``.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        return session

    async def _main(self, scheduler, handoff: _HandOff) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        scheduler.add_listener(self._post_wake)
        tasks: set[asyncio.Task] = set()

        def finished(task: asyncio.Task) -> None:
            tasks.discard(task)
            wake.set()

        watcher = asyncio.create_task(self._watch_stop())
        async with self.new_session() as self._session:
            try:
                while not self._closing:
                    wake.clear()
                    wait = None
                    while len(tasks) < self.concurrency:
                        job, wait = scheduler.try_next()
                        if job is None:
                            break
                        task = asyncio.create_task(self._serve(job, scheduler, handoff))
                        tasks.add(task)
                        task.add_done_callback(finished)
                    if scheduler.closed:
                        break
                    timer = loop.call_later(wait, wake.set) if wait and len(tasks) < self.concurrency else None
                    await wake.wait()
                    if timer is not None:
                        timer.cancel()
                while tasks:  # finish (or give back) what was started
                    await asyncio.wait(list(tasks))
            finally:
                self._live = False
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)

    async def _watch_stop(self) -> None:
        """policy.stop is a threading.Event: poll it, so waits between attempts end early."""
        while not self.policy.stop.is_set():
            await asyncio.sleep(STOP_POLL)
        self._stopped.set()

    async def _serve(self, job: FetchJob, scheduler, handoff: _HandOff) -> None:
        """One job, from its start to its hand-over; the same outcomes as the threads engine."""
        try:
            page = await self.fetch(job)
        except FetchAborted:
            scheduler.done(job)
            handoff.on_release(job)
            return
        except RetryLater:
            if scheduler.closed:  # nobody would hand it out again
                handoff.on_release(job)
            else:
                scheduler.requeue(job)
            scheduler.done(job)
            return
        except Exception as exc:  # a bug must still settle the URL, never lose it
            log.exception("fetcher failed on %s", job.url)
            page = Page(job=job, fetched_at=utc_now_iso(), attempts=1,
                        error=("connection", f"internal error: {type(exc).__name__}: {exc}"))
        scheduler.done(job)
        await handoff.put(job, page)

    # -- one fetch -------------------------------------------------------------------------------
    async def fetch(self, job: FetchJob) -> Page:
        """``run_fetch`` for the event loop (call it in the engine's loop).

        ``attempts`` counts requests sent for this URL minus the redirect hops that
        succeeded, so a clean redirect chain is 1 attempt and every retry shows.
        """
        policy = self.policy
        retry = policy.retry
        fetched_at = utc_now_iso()
        started = time.monotonic()
        sent = hops = 0
        response: Response | None = None
        error: FetchError | None = None
        url = job.url
        seen = {url}
        headers = policy.request_headers(job)
        try:
            await self._with_robots(policy.check_robots, url, job.host)
            while True:
                attempt = 0
                while True:
                    attempt += 1
                    sent += 1
                    try:
                        response = await self._send(url, headers)
                        policy.on_status(job, response)
                        break
                    except FetchError as exc:
                        if attempt > retry.retries or not retry.is_retryable(exc):
                            raise
                        await self._between_attempts(job, retry.wait_seconds(attempt, exc))
                target = await self._with_robots(policy.next_hop, job, url, response, seen)
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

    async def _between_attempts(self, job: FetchJob, seconds: float) -> None:
        """The backoff (or Retry-After), then the host's turn, as ``sleep_between_attempts``."""
        await self._sleep(seconds)
        scheduler = self.policy.scheduler
        if scheduler is not None:
            while (wait := scheduler.try_turn(job)) > 0:
                await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, or raise FetchAborted as soon as the crawl is stopping."""
        if self.policy.stop.is_set():
            raise FetchAborted()
        try:
            async with asyncio.timeout(seconds):
                await self._stopped.wait()
        except TimeoutError:
            return
        raise FetchAborted()

    async def _send(self, url: str, headers: dict) -> Response:
        settings = self.policy.settings
        started = time.monotonic()
        try:
            async with self._session.get(URL(url, encoded=True), headers=headers,
                                         allow_redirects=False) as resp:
                status = resp.status
                ok = 200 <= status < 300
                limit = settings.max_bytes if ok else ERROR_BODY_BYTES
                body = bytearray()
                async for chunk in resp.content.iter_chunked(CHUNK):  # decoded bytes
                    body += chunk
                    if len(body) > limit:
                        if ok:
                            raise TooLarge(f"body larger than max_bytes={limit}: {url}")
                        break  # of an error page a little is enough
                headers_out = {k.lower(): v for k, v in resp.headers.items()}
        except FetchError:
            raise
        except TimeoutError as exc:  # aiohttp's own timeouts are TimeoutErrors too
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise FetchTimeout(f"connect timed out after {settings.timeout:g}s: {url}") from exc
            if isinstance(exc, aiohttp.ServerTimeoutError):
                raise FetchTimeout(f"read timed out after {settings.timeout:g}s: {url}") from exc
            raise FetchTimeout(f"deadline of {self.policy.deadline:g}s passed: {url}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectError(f"{_reason(exc)}: {url}") from exc
        return Response(url, status, headers_out, bytes(body) if ok else b"",
                        (time.monotonic() - started) * 1000)

    # -- robots.txt ------------------------------------------------------------------------------
    async def _with_robots(self, step, *args):
        """Run a policy step that may consult robots.txt, fetching the file when it asks."""
        while True:
            try:
                return step(*args)
            except _RobotsNeeded as need:
                await self._prefetch_robots(need.url)

    async def _prefetch_robots(self, url: str) -> None:
        task = self._robots_tasks.get(url)
        if task is None:  # the first to ask fetches; the others wait for the same answer
            task = self._robots_tasks[url] = asyncio.create_task(self._get_robots(url, self._session))
        answer = await asyncio.shield(task)
        if self._robots_tasks.get(url) is task:
            del self._robots_tasks[url]
            self._robots_ready[url] = answer

    def fetch_robots(self, url: str) -> RobotsAnswer:
        """The RobotsCache's fetch function (synchronous, as the cache is)."""
        answer = self._robots_ready.pop(url, None)
        if answer is not None:
            return answer
        if self._thread is threading.current_thread():
            raise _RobotsNeeded(url)  # see _with_robots: never block the loop
        if self._live and self._session is not None:  # another thread: ask the loop
            return asyncio.run_coroutine_threadsafe(self._get_robots(url, self._session), self._loop).result()
        return asyncio.run(self._robots_alone(url))  # the engine is not running

    async def _robots_alone(self, url: str) -> RobotsAnswer:
        async with self.new_session() as session:
            return await self._get_robots(url, session)

    async def _get_robots(self, url: str, session: aiohttp.ClientSession) -> RobotsAnswer:
        """GET a robots.txt, following redirects; any failure to get an answer is "unreachable"."""
        try:
            async with session.get(URL(url, encoded=True), headers=self.policy.base_headers,
                                   max_redirects=ROBOTS_REDIRECTS) as resp:
                body = bytearray()
                try:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        body += chunk
                        if len(body) >= ROBOTS_LIMIT:
                            break
                except (aiohttp.ClientError, OSError, TimeoutError):
                    return RobotsAnswer(resp.status if resp.status >= 500 else None)
                return RobotsAnswer(resp.status, bytes(body[:ROBOTS_LIMIT]))
        except Exception:
            return RobotsAnswer(None)


def _reason(exc: BaseException) -> str:
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
