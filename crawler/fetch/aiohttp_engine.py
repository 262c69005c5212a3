"""The async engine: aiohttp in one asyncio event loop, in one background thread,
performing the fetch policy's commands.

::

    HostScheduler ──try_next()──► dispatcher ──► fetch tasks (at most `concurrency`) ──Page──► HandOff ──► on_page
      ▲   │ listener: work may be ready          │ FetchPolicy.serve steps, each             thread     (may block:
      │   └──── call_soon_threadsafe ────────────┤ command performed without                (handoff.py) parser pool
      └──────── done / requeue / try_turn ◄──────┘ blocking the loop                                     is full)

- Dispatcher: starts a task for every job the scheduler hands out, while fewer than
  ``concurrency`` run. When nothing is ready it sleeps until the scheduler's listener
  wakes it, a task ends, or the earliest host becomes ready.
- Fetch tasks run ``FetchPolicy.serve`` (``run``): ``Send`` is one aiohttp GET, ``Sleep``
  an ``asyncio`` wait that ends early when the crawl stops, ``WaitRobots`` a future that
  ``RobotsCache.when_ready`` resolves (whichever thread fetches robots.txt: the loop
  never waits on a threading primitive), ``Claim`` the redirect-claim hook in a thread
  of its own (it reads SQLite).
- SSRF guard: ``TCPConnector(socket_factory=...)`` (aiohttp >= 3.12) is called with the
  exact address before every connect, IP literals included; a refused address gets no
  socket, so not even a SYN leaves for it, and a host whose every address is refused
  is ``Blocked``. The socket then connects to that very address, so the peer needs no
  second look. The request's host name reaches the factory through a context
  variable (``CURRENT``), set by the task that sends the request.
- One send per ``Send``: aiohttp itself sends an idempotent request once more, at once,
  when a connection drops before the answer (no public switch turns that off). The
  ``send_once`` client middleware (aiohttp >= 3.12) refuses that resend, so every
  request sent is one the policy decided, took the host's turn for and counts in
  ``attempts``. It also stamps ``sent_at``. With AutoThrottle on, a trace hook stamps it
  again when the head is written, so a new connection's set-up does not count as the
  server's latency. Only then: a trace config makes aiohttp await a signal at every step
  of every request (about 30 us of CPU each, 13% of aiohttp's own cost per request), and
  otherwise only whether a request went out matters (a host's delay counts from the end
  of the exchange).
- Deadline: aiohttp's ``total`` timeout covers a whole exchange, headers and body, so
  no watchdog thread is needed here.
- Other threads (the sitemap reader, ``RobotsCache.check``) ``call`` policy steps: on the
  engine's loop while it runs, else on a loop and session of their own.

Shutdown: once the scheduler is closed the dispatcher starts nothing more and waits
for its tasks. A task in a request finishes it (bounded by the deadline); a task
waiting between attempts sees ``policy.stop`` and gives its job back (``on_release``).
Then the session is closed, the loop ends, the hand-off queue is drained, and the
thread exits. If the loop dies of an error instead, ``broken`` says so and the crawl
aborts (the coordinator checks it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from contextlib import closing
from concurrent.futures import ThreadPoolExecutor

import aiohttp
from yarl import URL

from crawler.errors import Blocked, ConnectError, FetchError, FetchTimeout, TooLarge
from crawler.fetch.aiohttp_hooks import (CURRENT, HEADERS_SENT, ConnRequest, guarded_socket_factory, headers_of,
                                         reason_of, send_once)
from crawler.fetch.commands import Claim, Response, Send, Sleep, Steps, Transport, WaitRobots, advance
from crawler.fetch.guard import AddressGuard
from crawler.fetch.handoff import HANDOFF_PAGES, HandOff
from crawler.fetch.policy import CHUNK, ERROR_BODY_BYTES, RELEASED, REQUEUED, FetchPolicy
from crawler.messages import FetchJob

__all__ = ["AiohttpEngine", "HANDOFF_PAGES"]

log = logging.getLogger("crawler")

STOP_POLL = 0.1  # seconds: how soon a task waiting between attempts notices policy.stop


class AiohttpEngine(Transport):
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
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.session: aiohttp.ClientSession | None = None
        self.claims: ThreadPoolExecutor | None = None  # the claim hook reads SQLite: never on the loop
        self.died: str | None = None
        self.wake: asyncio.Event | None = None
        self.wake_posted = False
        self.live = False  # the loop is running and may be woken
        self.closing = False
        self.stopped: asyncio.Event | None = None

    # -- the thread and the loop -----------------------------------------------------------------
    def start(self, scheduler, on_page, on_release, try_page=None) -> list[threading.Thread]:
        """``on_page(job, page)`` may block (the parser pool is full); ``try_page(job, page)``,
        if given, must not: it hands the page on and says True, or does nothing and says
        False. See handoff.py."""
        loop = self.loop = asyncio.new_event_loop()
        self.live = True
        self.thread = threading.Thread(target=self.run_loop, args=(loop, scheduler, on_page, on_release, try_page),
                                       name="aiofetch", daemon=True)
        self.thread.start()
        return [self.thread]

    def close(self) -> None:
        """Stop starting fetches, let the running ones settle, and wait for the thread."""
        thread = self.thread
        if thread is None or thread is threading.current_thread() or not thread.is_alive():
            return
        self.closing = True
        self.post_wake()
        thread.join(self.policy.deadline + 5)

    @property
    def broken(self) -> str | None:
        """Why the engine cannot go on (its loop died), or None."""
        return self.died

    def run_loop(self, loop, scheduler, on_page, on_release, try_page=None) -> None:
        handoff = HandOff(loop, on_page, on_release, try_page)
        try:
            with asyncio.Runner(loop_factory=lambda: loop) as runner:
                runner.run(self.dispatch(scheduler, handoff))
        except BaseException as exc:
            self.died = f"the async fetch engine died: {type(exc).__name__}: {exc}"
            log.exception("the async fetch engine failed")
        finally:
            self.live = False
            handoff.close()
            if self.claims is not None:
                self.claims.shutdown(wait=False)

    def post_wake(self) -> None:
        """Wake the dispatcher from any thread (the scheduler calls this under its lock)."""
        if not self.live:
            return
        if self.thread is threading.current_thread():
            if self.wake is not None:
                self.wake.set()
        elif not self.wake_posted:  # one pending wake-up is enough
            self.wake_posted = True
            try:
                self.loop.call_soon_threadsafe(self.woken)
            except RuntimeError:  # the loop has just closed
                pass

    def woken(self) -> None:
        self.wake_posted = False
        if self.wake is not None:
            self.wake.set()

    def new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0, ttl_dns_cache=300,
                                         socket_factory=guarded_socket_factory(self.guard))
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     auto_decompress=True, timeout=self.timeout, trust_env=self.trust_env,
                                     middlewares=(send_once,),
                                     trace_configs=[HEADERS_SENT] if self.policy.throttle is not None else None)

    async def dispatch(self, scheduler, handoff: HandOff) -> None:
        loop = asyncio.get_running_loop()
        wake = self.wake = asyncio.Event()
        self.stopped = asyncio.Event()
        scheduler.add_listener(self.post_wake)
        tasks: set[asyncio.Task] = set()

        def finished(task: asyncio.Task) -> None:
            tasks.discard(task)
            wake.set()

        watcher = asyncio.create_task(self.watch_stop())
        async with self.new_session() as self.session:
            try:
                while not self.closing:
                    wake.clear()
                    wait = None
                    while len(tasks) < self.concurrency:
                        job, wait = scheduler.try_next()
                        if job is None:
                            break
                        task = asyncio.create_task(self.serve(job, handoff))
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
                self.live = False
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)

    async def watch_stop(self) -> None:
        """policy.stop is a threading.Event: poll it, so waits between attempts end early."""
        while not self.policy.stop.is_set():
            await asyncio.sleep(STOP_POLL)
        self.stopped.set()

    async def serve(self, job: FetchJob, handoff: HandOff) -> None:
        """One job, from its start to its hand-over; the same outcomes as the threads engine."""
        try:
            outcome = await self.run(self.policy.serve(job), self.session)
        except asyncio.CancelledError:  # only if the loop itself is torn down: not lost either
            handoff.on_release(job)
            raise
        if outcome is RELEASED:
            handoff.on_release(job)
        elif outcome is not REQUEUED:
            await handoff.put(job, outcome)

    # -- the commands ----------------------------------------------------------------------------
    async def run(self, steps: Steps, session: aiohttp.ClientSession):
        """``commands.drive`` for the event loop: perform each command without blocking it."""
        with closing(steps):
            done, value = advance(steps, None)
            while not done:
                done, value = advance(steps, await self.perform(value, session))
            return value

    async def perform(self, command, session: aiohttp.ClientSession):
        match command:
            case Send():
                return await self.exchange_or_error(session, command)
            case Sleep(seconds):
                return await self.sleep(seconds)
            case WaitRobots(origin):
                return await self.robots_ready(origin)
            case Claim(url):
                return await self.claim(url)
        raise TypeError(f"not a fetch command: {command!r}")

    async def sleep(self, seconds: float) -> bool:
        """Sleep; False as soon as the crawl is stopping."""
        if self.policy.stop.is_set():
            return False
        if self.stopped is None or asyncio.get_running_loop() is not self.loop:  # a loop of its own
            await asyncio.sleep(seconds)
            return not self.policy.stop.is_set()
        try:
            async with asyncio.timeout(seconds):
                await self.stopped.wait()
        except TimeoutError:
            return True
        return False

    async def robots_ready(self, origin: str) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:  # from whichever thread stored the answer
            try:
                loop.call_soon_threadsafe(lambda: ready.done() or ready.set_result(None))
            except RuntimeError:  # the loop is gone
                pass

        self.policy.robots.when_ready(origin, wake)
        await ready

    async def claim(self, url: str) -> bool:
        if self.policy.claim is None:  # in memory: quick
            return self.policy.claim_target(url)
        if self.claims is None:
            self.claims = ThreadPoolExecutor(1, thread_name_prefix="aiofetch-claims")
        return await asyncio.get_running_loop().run_in_executor(self.claims, self.policy.claim_target, url)

    def call(self, steps: Steps):
        """Run policy steps from another thread, blocking it: on the engine's loop while it
        runs, else on a loop and session of their own."""
        if self.thread is threading.current_thread():
            raise RuntimeError("call() would block the engine's own loop")
        if self.live and self.session is not None:
            return asyncio.run_coroutine_threadsafe(self.run(steps, self.session), self.loop).result()
        return asyncio.run(self.on_own_session(steps))

    async def on_own_session(self, steps: Steps):
        async with self.new_session() as session:
            return await self.run(steps, session)

    async def exchange_or_error(self, session: aiohttp.ClientSession, send: Send) -> Response | FetchError:
        """``Send``: one GET, redirects not followed. A 2xx body is read up to ``limit``
        decoded bytes (more is TooLarge, or cut off with ``truncate``); of other bodies a
        little is read. aiohttp's ``total`` timeout is the deadline of the whole exchange,
        body included. A failure is returned, not raised."""
        url = URL(send.url, encoded=True)
        request = ConnRequest(url.raw_host or "")
        token = CURRENT.set(request)
        try:
            response = await self.get(session, send, url, request)
        except FetchError as exc:
            response = exc
        finally:
            CURRENT.reset(token)
        response.sent_at = request.sent_at
        return response

    async def get(self, session: aiohttp.ClientSession, send: Send, parsed: URL, request: ConnRequest) -> Response:
        url, settings = send.url, self.policy.settings
        started = time.monotonic()
        timeout = self.timeout if send.deadline == self.policy.deadline else \
            aiohttp.ClientTimeout(total=send.deadline, sock_connect=settings.timeout, sock_read=settings.timeout)
        try:
            async with session.get(parsed, headers=send.headers, allow_redirects=False,
                                   timeout=timeout) as resp:
                status = resp.status
                ok = 200 <= status < 300
                cap = send.limit if ok else ERROR_BODY_BYTES
                body = bytearray()
                # Decoded bytes: aiohttp inflates at most a chunk at a time, so a
                # compression bomb is cut off at max_bytes like any other body.
                async for chunk in resp.content.iter_chunked(CHUNK):
                    body += chunk
                    if len(body) > cap:
                        if ok and not send.truncate:
                            too_large = TooLarge(f"body larger than max_bytes={cap}: {url}")
                            too_large.response = Response(  # the record still shows the answer
                                url, status, headers_of(resp), b"", (time.monotonic() - started) * 1000)
                            raise too_large
                        del body[cap:]
                        break
                headers_out = headers_of(resp)
        except FetchError:
            raise
        except TimeoutError as exc:  # aiohttp's own timeouts are TimeoutErrors too
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise FetchTimeout(f"connect timed out after {settings.timeout:g}s: {url}") from exc
            if isinstance(exc, aiohttp.ServerTimeoutError):
                raise FetchTimeout(f"read timed out after {settings.timeout:g}s: {url}") from exc
            raise FetchTimeout(f"no complete answer within the deadline of {send.deadline:g}s: {url}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            if request.refused and len(request.refused) == request.tried:  # every address refused
                raise Blocked(request.refused[0]) from exc
            raise ConnectError(f"{reason_of(exc)}: {url}") from exc
        return Response(url, status, headers_out, bytes(body) if ok else b"",
                        (time.monotonic() - started) * 1000)
