"""The parser process pool.

::

    submit(page) ─► backlog ─► manager ──Pipe──► worker process (reader thread ─► parse loop)
      (blocks while            thread: _pump()    │
       `capacity` pages                            │
       are pending)                ◄── batches of ParseResults
                                   └─► on_result(result)

Why not concurrent.futures.ProcessPoolExecutor: when one of its workers dies the whole
pool is broken and every pending future fails, so a poisonous page cannot be told from
its innocent neighbours. Here each worker has its own pipe and the pool knows exactly
which pages each worker holds, in order. When a worker dies, the page at the head of
its queue (the one it was parsing) gets one strike and every page goes back to the
backlog; a page with ``MAX_DEATHS`` strikes is settled as a ``parse`` error instead of
being tried again. The dead worker is replaced.

One manager thread runs the pump (send pages, receive results) and notices deaths.
It sleeps in one selector, kept for the pool's life, on every worker's pipe and process
sentinel, plus a wakeup pipe that ``submit`` writes to: without it a new page would
wait for the next timeout. (``multiprocessing.connection.wait`` builds and fills a new
selector at every call: a quarter of the manager's CPU.) It shares the main process's
GIL with every fetcher, so it may run only every few milliseconds; pages therefore go
out in a deep window per worker and results come back in batches. (Letting fetcher threads pump inside
``submit`` was measured: 28% slower, from lock and poll traffic.)
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
import time
from collections import deque
from typing import Callable, Iterable

from crawler.errors import AbortError
from crawler.messages import Page, ParseResult
from crawler.procname import child_context
from parsers import worker as worker_mod
from sinks.jsonl import encode, record_for
from sinks.warc import page_records

log = logging.getLogger("crawler")

MAX_DEATHS = 2  # strikes after which a page is recorded as a parse error
# Pages sent to one worker ahead of its results: deep enough that its inbox does not
# run dry between two pumps.
WINDOW = 16
# Pages go to a worker in one message up to about this many body bytes: one message per
# page cost a pickle, two writes and a reader wake-up each, and one per window could pickle
# sixteen pages of up to max_bytes into one buffer.
BATCH_BYTES = 1 << 20
MAX_RESPAWNS_WITHOUT_PROGRESS = 10  # then the pool is broken, not merely unlucky
# A worker that has not finished the page at the head of its queue after this long is
# stuck (a pathological document, a user callable that loops): it is killed, which
# counts as a strike against that page like any other death.
PARSE_TIMEOUT = 60.0


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
        self.closed = False  # its pipe reported EOF
        self.watched_fd: int | None = None  # its pipe's descriptor, while the manager's selector has it
        self.head_since = time.monotonic()  # when the page at the head of `outstanding` got there
        self.isolating = False  # holds one suspect page and nothing else


class ParserPool:
    def __init__(self, workers: int, config: worker_mod.WorkerConfig,
                 on_result: Callable[[ParseResult], None], *, capacity: int | None = None,
                 parse_timeout: float = PARSE_TIMEOUT):
        self.n = max(1, workers)
        self.parse_timeout = parse_timeout
        self.config = config
        self.on_result = on_result
        self.ctx = child_context()
        # Bounded: a full pool slows the fetchers that feed it instead of growing memory.
        self.capacity = capacity or self.n * WINDOW * 2
        self._slots = threading.Semaphore(self.capacity)
        self._backlog: deque[Page] = deque()
        self._suspects: deque[Page] = deque()
        self._deaths: dict[int, int] = {}
        self._pump_lock = threading.Lock()
        # The wake-up pipe: plain and non-blocking, so the manager empties it with one read.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # A wake-up byte is in the pipe (or about to be) and the manager has not yet drained
        # it: later submits need not write another. One byte per page cost a write here and
        # a poll round in the manager per page.
        self._wake_posted = False
        self._closing = False
        self._broken: BaseException | None = None
        self._respawns_without_progress = 0
        # The manager's selector, kept for the pool's life (see the module doc): the wake-up
        # pipe, and each worker's pipe and sentinel while that worker is the pool's.
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.workers = [self._watch(_Worker(i, self.ctx, config)) for i in range(self.n)]
        self.parsed = 0
        self.deaths = 0
        self._manager = threading.Thread(target=self._run, name="parser-pool", daemon=False)
        self._manager.start()

    # -- public surface -------------------------------------------------------------------
    def submit(self, page: Page, block: bool = True) -> bool:
        """Queue a page for parsing; blocks while ``capacity`` pages are pending, or with
        ``block=False`` returns False at once (and queues nothing). Never blocks otherwise:
        the manager is woken through a non-blocking pipe."""
        if block:
            while not self._slots.acquire(timeout=0.5):
                self._check_broken()
        elif not self._slots.acquire(blocking=False):
            self._check_broken()
            return False
        if self._broken is not None:
            self._slots.release()
            self._check_broken()
        self._backlog.append(page)
        if not self._wake_posted:  # the manager clears it before it pumps: this page is seen
            self._wake_posted = True
            self._wake()
        return True

    @property
    def broken(self) -> BaseException | None:
        return self._broken

    def _check_broken(self) -> None:
        if self._broken is not None:
            raise AbortError(f"parser pool broken: {self._broken}")

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

    # -- the pump ---------------------------------------------------------------------------
    def _wake(self) -> None:
        fd = self._wake_w
        if fd is None:  # closed
            return
        try:
            os.write(fd, b"x")
        except OSError:  # full: a wake-up is pending anyway
            pass

    def _pump(self) -> None:
        """Keep every worker's window full (``_loop`` has taken what they answered).
        Caller holds the pump lock."""
        for w in self.workers:
            if not w.ready or w.closed or w.isolating:
                continue
            if self._suspects:
                # Suspects go alone to an empty worker; meanwhile no worker takes new pages,
                # so that the workers drain and the suspects get through.
                if not w.outstanding:
                    w.isolating = True
                    self._send(w, [self._suspects.popleft()])
                continue
            room = WINDOW - len(w.outstanding)
            while room > 0 and self._backlog and not w.closed:
                batch, size = [], 0
                while room > 0 and self._backlog and size < BATCH_BYTES:
                    page = self._backlog.popleft()
                    batch.append(page)
                    size += len(page.body)
                    room -= 1
                self._send(w, batch)

    def _send(self, w: _Worker, pages: list[Page]) -> None:
        """One message for all of ``pages`` (see BATCH_BYTES)."""
        if not w.outstanding:
            w.head_since = time.monotonic()
        w.outstanding.extend(pages)
        try:
            w.conn.send([page.pack() for page in pages])
        except OSError:
            w.closed = True  # the death is handled when its sentinel fires

    def _receive(self, w: _Worker, drain: bool = True) -> None:
        """Take the message ``w`` has sent (the selector said its pipe is readable), or with
        ``drain`` every message waiting from it. Each look at the pipe is a system call,
        and in the crawl's main process every system call gives up the GIL that 64 fetcher
        threads share: taking it back is often a wait. So ``_loop`` takes one message per
        wake-up and lets its selector say whether there is more."""
        try:
            if not drain:
                self._take(w, *w.conn.recv())
            while drain and w.conn.poll():
                self._take(w, *w.conn.recv())
        except (EOFError, OSError):
            w.closed = True  # the sentinel says what happened

    def _take(self, w: _Worker, kind: str, payload) -> None:
        """One message from ``w``: it is ready, or the results of its oldest pages."""
        if kind == "ready":
            w.ready = True
            return
        w.head_since = time.monotonic()
        w.isolating = False
        self._deliver(self._settle(w, packed) for packed in payload)  # in the order the pages were sent

    def _settle(self, w: _Worker, packed) -> ParseResult:
        """The result of ``w``'s oldest page: that page is no longer outstanding."""
        page = w.outstanding.popleft()
        self._deaths.pop(page.job.id, None)
        self._respawns_without_progress = 0
        self.parsed += 1
        return ParseResult.unpack(packed)

    def _deliver(self, results: Iterable[ParseResult]) -> None:
        """Hand each result on, then free their pool slots at once (each release is a lock
        and a notify); a slot is freed even if handing its result on failed."""
        delivered = 0
        try:
            for result in results:
                delivered += 1
                self.on_result(result)
        finally:
            if delivered:
                self._slots.release(delivered)

    # -- manager thread ---------------------------------------------------------------------
    def _watch(self, w: _Worker) -> _Worker:
        w.watched_fd = w.conn.fileno()
        self._selector.register(w.watched_fd, selectors.EVENT_READ, (w, False))
        self._selector.register(w.process.sentinel, selectors.EVENT_READ, (w, True))
        return w

    def _unwatch_pipe(self, w: _Worker) -> None:
        """Before its descriptor is closed (its number may then be reused), or once it is at
        EOF (it would be readable for ever)."""
        if w.watched_fd is not None:
            self._selector.unregister(w.watched_fd)
            w.watched_fd = None

    def _unwatch(self, w: _Worker) -> None:
        self._unwatch_pipe(w)
        self._selector.unregister(w.process.sentinel)

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

    def _kill_stuck(self) -> None:
        now = time.monotonic()
        for w in self.workers:
            if w.outstanding and now - w.head_since > self.parse_timeout and w.process.is_alive():
                log.warning("parser process %s spent over %.0fs on %s; killing it", w.process.pid,
                            self.parse_timeout, w.outstanding[0].job.url)
                w.process.kill()

    def _idle(self) -> bool:
        return not self._backlog and not self._suspects and all(not w.outstanding for w in self.workers)

    def _loop(self) -> None:
        while True:
            with self._pump_lock:
                if self._broken is not None:
                    return
                self._pump()
                self._kill_stuck()
                if self._closing and self._idle():
                    return
                for w in self.workers:
                    if w.closed:
                        self._unwatch_pipe(w)
            readable, exited, woken = set(), set(), False
            for key, _ in self._selector.select(timeout=1.0):
                if key.data is None:
                    woken = True
                else:
                    (exited if key.data[1] else readable).add(key.data[0])
            self._wake_posted = False  # before the pump below reads the backlog
            if woken:
                try:
                    os.read(self._wake_r, 4096)  # every wake-up byte written so far, at once
                except BlockingIOError:
                    pass
            with self._pump_lock:
                for w in self.workers:
                    if w in readable and not w.closed:
                        self._receive(w, drain=False)
                for w in list(self.workers):
                    if w in exited:
                        self._receive(w)  # results sent just before it exited still count
                        self._replace(w)

    def _replace(self, dead: _Worker) -> None:
        self._unwatch(dead)  # whatever follows: it is over, and its descriptors may be reused
        dead.process.join(1)
        code = dead.process.exitcode
        if self._broken is not None:
            return  # terminate_broken killed it: nothing to replace or report
        if self._closing and not dead.outstanding and not self._backlog and not self._suspects:
            return  # an orderly exit after the sentinel
        self.deaths += 1
        self._respawns_without_progress += 1
        log.warning("parser process %s died (exit code %s); replacing it", dead.process.pid, code)
        held = list(dead.outstanding)
        if len(held) == 1:  # certainly this page's doing
            page = held[0]
            strikes = self._deaths.get(page.job.id, 0) + 1
            self._deaths[page.job.id] = strikes
            if strikes >= MAX_DEATHS:
                self._deaths.pop(page.job.id, None)
                message = f"parser process died {strikes} times on this page (exit code {code})"
                record = record_for(page, self.config.crawl_id, error=("parse", message))
                warc = page_records(page, self.config.warc_gzip) if page.exchanges else b""  # it was fetched
                self._deliver([ParseResult(page.job.id, encode(record), error_type="parse", warc=warc)])
            else:
                self._suspects.appendleft(page)
        else:
            self._suspects.extendleft(reversed(held))
        if self._respawns_without_progress > MAX_RESPAWNS_WITHOUT_PROGRESS:
            self.terminate_broken(RuntimeError(
                f"parser processes keep dying (last exit code {code}); see the log"))
            return
        try:
            dead.conn.close()
        except OSError:
            pass
        self.workers[dead.index] = self._watch(_Worker(dead.index, self.ctx, self.config))

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
        self._selector.close()
        fds, self._wake_w = (self._wake_r, self._wake_w), None
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
