"""The async engine: aiohttp in one asyncio event loop, in one background thread.

::

    HostScheduler ──try_next()──► dispatcher ──► fetch tasks (at most `concurrency`) ──Page──► hand-off ──► on_page
      ▲   │ listener: work may be ready          │ FetchPolicy: robots, retries,           thread      (may block:
      │   └──── call_soon_threadsafe ────────────┤ redirects, statuses, Page               (bounded    parser pool
      └── done / requeue / try_turn / try_move ◄─┘                                          queue)      is full)

- Dispatcher: starts a task for every job the scheduler hands out, while fewer than
  ``concurrency`` run. When nothing is ready it sleeps until the scheduler's listener
  wakes it, a task ends, or the earliest host becomes ready. Per-host limits stay the
  scheduler's business, enforced where a request starts, as for the threads engine.
- Fetch tasks: ``fetch(job)``, the same steps as ``crawler.fetch.policy.run_fetch`` over the
  same ``FetchPolicy``, with the waits made awaitable: a retry, a same-host redirect
  hop and the request after a robots.txt fetch wait for the host's turn with
  ``HostScheduler.try_turn``; a hop to another host moves the job's slot with
  ``HostScheduler.try_move`` (the non-blocking twins of ``wait_turn`` and ``move``).
  Retries are driven from ``RetryPolicy`` (its budget, its retryable errors, its
  waits) rather than through tenacity, whose blocking ``sleep`` hook does not fit a
  coroutine.
- Hand-off thread: ``on_page`` submits to the parser pool and blocks while the pool is
  full, so it runs outside the loop. The queue to it is small and bounded: when it is
  full, fetch tasks wait, so a slow parser pool slows fetching down instead of
  filling memory.
- robots.txt: ``RobotsCache`` is synchronous and calls ``fetch_robots`` when it needs an
  origin's file. On the loop thread that call must not block, so it raises
  ``_RobotsNeeded``; the task then fetches the file with aiohttp (once per origin,
  whoever else is waiting for it) and asks the cache again, which now finds the answer
  waiting. The cache keeps its own rules (expiry, retry of unreachable origins,
  Crawl-delay, blocked origins), and no thread ever waits for the loop from inside it.
- SSRF guard: ``GuardedConnector`` asks ``AddressGuard`` about every address before
  connecting to it, and about the peer of every new connection before a request is
  written to it, as ``guard.open_connection`` does for the threads engine.
- Deadline: aiohttp's ``total`` timeout covers a whole exchange, headers and body, so
  no watchdog thread is needed here.

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

from crawler.errors import (
    Blocked,
    ConnectError,
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    RobotsDenied,
    TooLarge,
)
from crawler.fetch.capture import capturing, note
from crawler.fetch.policy import (
    CHUNK,
    ERROR_BODY_BYTES,
    ROBOTS_MAX_BYTES,
    ROBOTS_MAX_REDIRECTS,
    robots_step,
    FetchAborted,
    FetchPolicy,
    Response,
    RetryLater,
    utc_now_iso,
)
from crawler.fetch.guard import AddressGuard
from crawler.messages import FetchJob, Page
from crawler.fetch.retry import RetryableStatus
from crawler.fetch.robots import RobotsAnswer
from crawler.urls import host_of

log = logging.getLogger("crawler")

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
    """A TCPConnector that asks the SSRF guard twice, as ``guard.open_connection`` does:

    - before connecting, about every address the host resolved to (or the IP literal):
      refused addresses are dropped, so not even a SYN leaves for them, and a host whose
      every address is refused raises ``Blocked``;
    - after connecting, about the peer actually reached, before a request byte is sent.

    ``_resolve_host`` and ``_create_connection`` are the two steps of aiohttp's
    ``TCPConnector.connect``; the guard wraps each.
    """

    def __init__(self, guard: AddressGuard | None, **kw):
        super().__init__(**kw)
        self._guard = guard

    async def _resolve_host(self, host, port, traces=None):
        hosts = await super()._resolve_host(host, port, traces=traces)
        if self._guard is None:
            return hosts
        name = host.rstrip(".")
        allowed = [h for h in hosts if not self._guard.refuses(h["host"], name)]
        if not allowed and hosts:
            raise Blocked(self._guard.refuses(hosts[0]["host"], name))
        return allowed

    async def _create_connection(self, req, traces, timeout):
        proto = await super()._create_connection(req, traces, timeout)
        if self._guard is None:
            return proto
        host = (req.url.raw_host or "").rstrip(".")
        transport = proto.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        reason = self._guard.refuses(peer[0], host) if peer else f"refused: no peer address for {host}"
        if reason:
            proto.close()
            raise Blocked(reason)
        return proto


class _HandOff:
    """Pages from the loop to ``on_page`` through one thread (on_page may block).

    At most ``HANDOFF_PAGES`` wait for the thread; a task with a page beyond that awaits
    a future that the thread resolves (through the loop) when it has taken one. No
    executor is involved, so a full hand-off never starves the loop's executor (which
    aiohttp resolves host names in).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, on_page: Callable[[FetchJob, Page], None],
                 on_release: Callable[[FetchJob], None]):
        self.loop = loop
        self.on_page = on_page
        self.on_release = on_release
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.space = HANDOFF_PAGES  # guarded by lock
        self.blocked = False  # a task waits for space (guarded by lock)
        self.putters: list[asyncio.Future] = []  # loop thread only
        self.thread = threading.Thread(target=self._run, name="aiofetch-handoff", daemon=True)
        self.thread.start()

    async def put(self, job: FetchJob, page: Page) -> None:
        while True:
            with self.lock:
                if self.space > 0:
                    self.space -= 1
                    break
                self.blocked = True
            waiter = self.loop.create_future()
            self.putters.append(waiter)  # before any await: _unblock runs after this step
            await waiter
        self.queue.put((job, page))

    def _unblock(self) -> None:  # on the loop
        putters, self.putters = self.putters, []
        for waiter in putters:
            if not waiter.done():
                waiter.set_result(None)

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            job, page = item
            with self.lock:
                self.space += 1
                unblock, self.blocked = self.blocked, False
            if unblock:
                try:
                    self.loop.call_soon_threadsafe(self._unblock)
                except RuntimeError:  # the loop is gone: nobody waits any more
                    pass
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
        handoff = _HandOff(loop, on_page, on_release)
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
            with capturing(self.policy.capture) as exchanges:
                page = await self.fetch(job)
            page.exchanges = exchanges
        except FetchAborted:
            scheduler.done(job)
            handoff.on_release(job)
            return
        except asyncio.CancelledError:  # only if the loop itself is torn down: not lost either
            scheduler.done(job)
            handoff.on_release(job)
            raise
        except RetryLater:
            if not scheduler.requeue(job):  # closed: nobody would hand it out again
                handoff.on_release(job)
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
        """``run_fetch`` for the event loop, step for step (see crawler/fetch/policy.py): the
        same policy calls in the same order, with the waits made awaitable. Call it in
        the engine's loop."""
        policy = self.policy
        retry = policy.retry
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
                if await self._check_robots(url, job.host):
                    await self._take_turn(job)  # robots.txt was this host's last request start
                while True:
                    attempt = 0
                    while True:  # RetryPolicy: retries + 1 attempts, retryable errors, its waits
                        attempt += 1
                        sent += 1
                        try:
                            response = await self._send(url, headers)
                            policy.on_status(job, response)
                            break
                        except FetchError as exc:
                            if attempt > retry.retries or not retry.is_retryable(exc):
                                raise
                            await self._sleep(retry.wait_seconds(attempt, exc))
                            await self._take_turn(job)
                    target = policy.next_hop(job, url, response, seen, robots=False)
                    if target is None:
                        break
                    if not policy.claim_target(target):
                        ended_at = target
                        break
                    host = host_of(target)
                    await self._take_turn(job, host)
                    if await self._check_robots(target, host):
                        await self._take_turn(job, host)
                    hops += 1
                    url = target
            except RetryLater as exc:  # the job restarts from its own URL: its host waits too
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

    async def _take_turn(self, job: FetchJob, host: str | None = None) -> None:
        """``FetchPolicy.take_turn`` without blocking: wait until ``job`` may start its next
        request, to ``host`` (None: the host whose slot it holds)."""
        scheduler = self.policy.scheduler
        if scheduler is None:
            return
        while (wait := scheduler.try_turn(job) if host is None else scheduler.try_move(job, host)) > 0:
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
        return await self._exchange(self._session, url, headers, limit=self.policy.settings.max_bytes)

    async def _exchange(self, session: aiohttp.ClientSession, url: str, headers: dict, *, limit: int,
                        truncate: bool = False) -> Response:
        """One GET, redirects not followed. A 2xx body is read up to ``limit`` decoded bytes
        (more is TooLarge, or cut off with ``truncate``); of other bodies a little is read.
        aiohttp's ``total`` timeout is the deadline of the whole exchange, body included."""
        settings = self.policy.settings
        started = time.monotonic()
        try:
            async with session.get(URL(url, encoded=True), headers=headers, allow_redirects=False) as resp:
                status = resp.status
                ok = 200 <= status < 300
                cap = limit if ok else ERROR_BODY_BYTES
                body = bytearray()
                # Decoded bytes: aiohttp inflates at most a chunk at a time, so a
                # compression bomb is cut off at max_bytes like any other body.
                async for chunk in resp.content.iter_chunked(CHUNK):
                    body += chunk
                    if len(body) > cap:
                        if ok and not truncate:
                            too_large = TooLarge(f"body larger than max_bytes={cap}: {url}")
                            too_large.response = Response(  # the record still shows the answer
                                url, status, _headers(resp), b"", (time.monotonic() - started) * 1000)
                            raise too_large
                        del body[cap:]
                        break
                headers_out = _headers(resp)
        except FetchError:
            raise
        except TimeoutError as exc:  # aiohttp's own timeouts are TimeoutErrors too
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise FetchTimeout(f"connect timed out after {settings.timeout:g}s: {url}") from exc
            if isinstance(exc, aiohttp.ServerTimeoutError):
                raise FetchTimeout(f"read timed out after {settings.timeout:g}s: {url}") from exc
            raise FetchTimeout(f"no complete answer within the deadline of {self.policy.deadline:g}s: "
                               f"{url}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectError(f"{_reason(exc)}: {url}") from exc
        return note(url, headers, Response(url, status, headers_out, bytes(body) if ok else b"",
                                           (time.monotonic() - started) * 1000))

    # -- robots.txt ------------------------------------------------------------------------------
    async def _check_robots(self, url: str, host: str) -> bool:
        """``FetchPolicy.check_robots``, fetching robots.txt with aiohttp when the cache asks
        for it. True if robots.txt was fetched (or waited for) just now."""
        waited = False
        while True:
            try:
                return self.policy.check_robots(url, host) or waited
            except _RobotsNeeded as need:
                await self._prefetch_robots(need.url)
                waited = True

    async def _prefetch_robots(self, url: str) -> None:
        task = self._robots_tasks.get(url)
        if task is None:  # the first to ask fetches; the others wait for the same answer
            task = self._robots_tasks[url] = asyncio.create_task(self._get_robots(self._session, url))
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
            raise _RobotsNeeded(url)  # see _check_robots: never block the loop
        # Another thread. Not on the engine's loop: the cache makes everyone else who
        # asks for this origin meanwhile wait for us, the loop included.
        return asyncio.run(self._on_own_session(self._get_robots, url))

    def exchange(self, url: str, headers: dict, *, limit: int, truncate: bool = False) -> Response:
        """One blocking GET (as ``RequestsFetcher.exchange``), for another thread: on the
        engine's loop while it runs, else on a loop and session of its own."""
        if self._thread is threading.current_thread():
            raise RuntimeError("exchange() would block the engine's own loop")
        if self._live and self._session is not None:
            coro = self._exchange(self._session, url, headers, limit=limit, truncate=truncate)
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        return asyncio.run(self._on_own_session(self._exchange, url, headers, limit=limit, truncate=truncate))

    async def _on_own_session(self, step, *args, **kw):
        async with self.new_session() as session:
            return await step(session, *args, **kw)

    async def _get_robots(self, session: aiohttp.ClientSession, url: str) -> RobotsAnswer:
        """GET a robots.txt, following up to 5 redirects (RFC 9309), each through the guard;
        what the answers mean is the RobotsCache's business (as ``RequestsFetcher.fetch_robots``)."""
        for _ in range(ROBOTS_MAX_REDIRECTS + 1):
            try:
                resp = await self._exchange(session, url, self.policy.base_headers, limit=ROBOTS_MAX_BYTES,
                                            truncate=True)
            except Blocked as exc:
                return RobotsAnswer(None, blocked=str(exc))
            except FetchError:  # timeout, connection: "unreachable"
                return RobotsAnswer(None)
            step = robots_step(url, resp)
            if isinstance(step, RobotsAnswer):
                return step
            url = step
        return RobotsAnswer(resp.status)  # too many redirects: "unavailable", allow all


def _headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    return {k.lower(): v for k, v in resp.headers.items()}


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
