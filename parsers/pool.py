"""The parser process pool.

::

    submit(page) ─► backlog ─► manager thread ──Pipe──► worker process (reader thread ─► parse loop)
       (blocks when           │  (one thread: sends,         │
        `capacity` pages      │   receives, notices deaths)   │
        are pending)          ◄──────────── ParseResult ──────┘
                              └─► on_result(result)

Why not concurrent.futures.ProcessPoolExecutor: when one of its workers dies the whole
pool is broken and every pending future fails, so a poisonous page cannot be told from
its innocent neighbours. Here each worker has its own pipe and the manager knows
exactly which pages each worker holds, in order. When a worker dies, the page at the
head of its queue (the one it was parsing) gets one strike and every page goes back to
the backlog; a page with ``MAX_DEATHS`` strikes is settled as a ``parse`` error
instead of being tried again. The dead worker is replaced.

The manager sleeps in ``multiprocessing.connection.wait`` on every worker's pipe and
process sentinel, plus a wakeup pipe that ``submit`` writes to: without it a new page
would wait for the next timeout before being sent.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Callable

from crawler.errors import AbortError
from crawler.messages import Page, ParseResult
from parsers import worker as worker_mod
from sinks.jsonl import encode, record_for

log = logging.getLogger("crawler")

MAX_DEATHS = 2  # strikes after which a page is recorded as a parse error
WINDOW = 4  # pages sent to one worker ahead of its results: hides the round trip
MAX_RESPAWNS_WITHOUT_PROGRESS = 10  # then the pool is broken, not merely unlucky


class _Worker:
    def __init__(self, index: int, ctx, config):
        self.index = index
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=worker_mod.main, args=(child, config),
                                   name=f"crawler-parser-{index}", daemon=False)
        self.process.start()
        child.close()
        self.outstanding: deque[Page] = deque()
        self.ready = False


class ParserPool:
    def __init__(self, workers: int, config: worker_mod.WorkerConfig,
                 on_result: Callable[[ParseResult], None], *, capacity: int | None = None):
        self.n = max(1, workers)
        self.config = config
        self.on_result = on_result
        self.ctx = mp.get_context("spawn")
        # Bounded: a full pool slows the fetchers that feed it instead of growing memory.
        self.capacity = capacity or self.n * (WINDOW + 4)
        self._slots = threading.Semaphore(self.capacity)
        self._backlog: deque[Page] = deque()
        self._deaths: dict[int, int] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = mp.Pipe(duplex=False)
        self._closing = False
        self._broken: BaseException | None = None
        self._respawns_without_progress = 0
        self.workers = [_Worker(i, self.ctx, config) for i in range(self.n)]
        self.parsed = 0
        self.deaths = 0
        self._manager = threading.Thread(target=self._run, name="parser-pool", daemon=False)
        self._manager.start()

    # -- public surface -------------------------------------------------------------------
    def submit(self, page: Page, timeout: float | None = None) -> bool:
        """Queue a page for parsing; blocks while ``capacity`` pages are pending."""
        while not self._slots.acquire(timeout=0.5):
            if self._broken is not None:
                raise AbortError(f"parser pool broken: {self._broken}")
            if timeout is not None:
                timeout -= 0.5
                if timeout <= 0:
                    return False
        if self._broken is not None:
            self._slots.release()
            raise AbortError(f"parser pool broken: {self._broken}")
        with self._lock:
            self._backlog.append(page)
        self._wake()
        return True

    def is_shutting_down(self) -> bool:
        return self._closing

    @property
    def broken(self) -> BaseException | None:
        return self._broken

    @property
    def pending(self) -> int:
        return self.capacity - self._slots._value  # noqa: SLF001 (a gauge only)

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process.pid]

    def close(self, timeout: float = 60.0) -> None:
        """Parse everything submitted, stop the workers (one sentinel each), join all."""
        self._closing = True
        self._wake()
        self._manager.join(timeout)
        if self._manager.is_alive():
            self.terminate_broken(TimeoutError("parser pool did not drain in time"))
            self._manager.join(5)
        self._reap()

    def terminate_broken(self, cause: BaseException) -> None:
        """Mark the pool broken and kill its workers; pending pages are not parsed."""
        if self._broken is None:
            self._broken = cause
        for w in self.workers:
            if w.process.is_alive():
                w.process.kill()
        self._closing = True
        self._wake()

    # -- manager thread ---------------------------------------------------------------------
    def _wake(self) -> None:
        try:
            self._wake_w.send_bytes(b"x")
        except OSError:
            pass

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # a bug here must not hang the crawl
            log.exception("parser pool manager failed")
            self.terminate_broken(exc)
        finally:
            for w in self.workers:
                try:
                    if w.process.is_alive():
                        w.conn.send(None)
                except OSError:
                    pass

    def _dispatch(self) -> None:
        for w in self.workers:
            while w.ready and len(w.outstanding) < WINDOW:
                with self._lock:
                    if not self._backlog:
                        return
                    page = self._backlog.popleft()
                w.outstanding.append(page)
                try:
                    w.conn.send(page)
                except OSError:
                    break  # the death is handled when its sentinel fires

    def _idle(self) -> bool:
        return not self._backlog and all(not w.outstanding for w in self.workers)

    def _loop(self) -> None:
        while True:
            if self._broken is not None:
                return
            self._dispatch()
            if self._closing and self._idle():
                return
            waitables = [self._wake_r]
            for w in self.workers:
                waitables.append(w.conn)
                waitables.append(w.process.sentinel)
            for ready in wait(waitables, timeout=1.0):
                if ready is self._wake_r:
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
                    continue
                for w in list(self.workers):
                    if ready is w.conn:
                        self._receive(w)
                    elif ready == w.process.sentinel:
                        self._receive_remaining(w)
                        self._replace(w)

    def _receive(self, w: _Worker) -> bool:
        """Take one message from ``w``; False when its pipe is closed."""
        try:
            kind, result = w.conn.recv()
        except (EOFError, OSError):
            return False  # the sentinel says what happened
        if kind == "ready":
            w.ready = True
            return True
        page = w.outstanding.popleft()
        self._deaths.pop(page.job.id, None)
        self._respawns_without_progress = 0
        self.parsed += 1
        self._deliver(result)
        return True

    def _receive_remaining(self, w: _Worker) -> None:
        """Results a worker sent just before it exited still count."""
        try:
            while w.conn.poll() and self._receive(w):
                pass
        except (EOFError, OSError):
            pass

    def _deliver(self, result: ParseResult) -> None:
        try:
            self.on_result(result)
        finally:
            self._slots.release()

    def _replace(self, dead: _Worker) -> None:
        dead.process.join(1)
        code = dead.process.exitcode
        if self._closing and not dead.outstanding and not self._backlog:
            return  # an orderly exit after the sentinel
        self.deaths += 1
        self._respawns_without_progress += 1
        log.warning("parser process %s died (exit code %s); replacing it", dead.process.pid, code)
        if dead.outstanding:
            head = dead.outstanding[0]
            strikes = self._deaths.get(head.job.id, 0) + 1
            self._deaths[head.job.id] = strikes
            rest = list(dead.outstanding)
            if strikes >= MAX_DEATHS:
                rest.pop(0)
                self._deaths.pop(head.job.id, None)
                message = f"parser process died {strikes} times on this page (exit code {code})"
                record = record_for(head, self.config.crawl_id, error=("parse", message))
                self._deliver(ParseResult(head.job.id, encode(record), error_type="parse"))
            with self._lock:
                self._backlog.extendleft(reversed(rest))
        if self._respawns_without_progress > MAX_RESPAWNS_WITHOUT_PROGRESS:
            self.terminate_broken(RuntimeError(
                f"parser processes keep dying (last exit code {code}); see the log"))
            return
        try:
            dead.conn.close()
        except OSError:
            pass
        self.workers[dead.index] = _Worker(dead.index, self.ctx, self.config)

    def _reap(self) -> None:
        for w in self.workers:
            w.process.join(10)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(5)
            try:
                w.conn.close()
            except OSError:
                pass
        for conn in (self._wake_r, self._wake_w):
            try:
                conn.close()
            except OSError:
                pass

