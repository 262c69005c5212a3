"""``RedisTurns``: per-host politeness for a crawl shared by many workers.

It stands where ``HostScheduler`` stands in a single-machine crawl, with the same
interface for the fetch engines, but the state it guards lives in Redis, so the limits
hold for the crawl as a whole:

- the coordinator leases jobs from ``RedisFrontier.lease`` only as fetch slots free up
  (``free_slots``); a leased job already holds its host's request slot and turn, so it
  is handed to a fetcher at once (``offer``, ``next_job``/``try_next``);
- every further request start of a job (a retry, a redirect hop, the request after
  robots.txt) takes its turn through Redis (``try_turn``, ``try_move``, ``move``);
- ``done(job)`` frees the host slot, and ``note_start`` moves the host's next start to
  its delay after the request's exchange: a thread of its own sends both to Redis, in
  batches, so neither a fetcher nor the async engine's loop waits;
- Retry-After and robots troubles (``defer``), Crawl-delay (``set_delay``), AutoThrottle
  (``adapt``) and a ``[[fetch.hosts]]`` delay (told once per host, in ``offer``) move the
  host's next start in Redis.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import deque
from typing import Callable

from crawler.hostrules import HostRules
from crawler.messages import FetchJob

POLL = 0.05  # seconds: the longest a waiting turn sleeps before asking Redis again
FLOORS_TOLD_MAX = 100_000  # hosts remembered as having their [[fetch.hosts]] delay in Redis
# Hosts remembered as having a delay of their own, whose request starts Redis must hear of.
# Past this many, every start is sent: per-host state stays bounded, politeness holds.
DELAYED_MAX = 100_000


class RedisTurns:
    """Thread-safe; ``next_job`` for threads, ``try_next`` for an event loop."""

    def __init__(self, frontier, concurrency: int, *, clock: Callable[[], float] = time.monotonic,
                 rules: HostRules | None = None):
        self.frontier = frontier
        self.concurrency = concurrency
        self.clock = clock
        # [[fetch.hosts]] delays, told to Redis (a host's "floor") the first time a job of
        # the host is handed to this worker, before its request is sent.
        self.rules = rules or HostRules()
        self._floors_told: set[str] = set()
        self._cond = threading.Condition()
        self._ready: deque[FetchJob] = deque()
        self._busy = 0  # jobs handed out whose request is not over
        self._closed = False
        self._listeners: list[Callable[[], None]] = []
        self._tokens = itertools.count(1)
        self.releases = 0  # batches of slot releases Redis has applied
        self.on_release: Callable[[], None] | None = None  # wakes the coordinator after each
        self._delayed: set[str] = set()  # hosts with a delay of their own (Crawl-delay, rule, AutoThrottle)
        self._delayed_overflow = False  # more than DELAYED_MAX of them: every start counts
        self._released: queue.SimpleQueue = queue.SimpleQueue()
        self._releaser = threading.Thread(target=self._release_slots, name="slot-releaser", daemon=True)
        self._releaser.start()

    # -- the coordinator's side ----------------------------------------------------------------
    def free_slots(self) -> int:
        """How many more jobs this worker can start now."""
        with self._cond:
            return 0 if self._closed else self.concurrency - self._busy - len(self._ready)

    def offer(self, jobs: list[FetchJob]) -> None:
        if self.rules:
            self._tell_floors(jobs)
        with self._cond:
            self._ready.extend(jobs)
            self._cond.notify(len(jobs))
            for listener in self._listeners:
                listener()

    def close(self) -> list[FetchJob]:
        """Hand out nothing more; return the jobs not handed out yet (they hold slots that
        the frontier's release frees)."""
        with self._cond:
            self._closed = True
            jobs = list(self._ready)
            self._ready.clear()
            self._cond.notify_all()
            for listener in self._listeners:
                listener()
        return jobs

    def shutdown(self) -> None:
        """After the fetchers are gone: send the last slot releases, stop the releaser."""
        self._released.put(None)
        self._releaser.join(timeout=30)

    @property
    def closed(self) -> bool:
        return self._closed

    def add_listener(self, callback: Callable[[], None]) -> None:
        with self._cond:
            self._listeners.append(callback)

    # -- the fetchers' side ----------------------------------------------------------------------
    def try_next(self) -> tuple[FetchJob | None, float | None]:
        with self._cond:
            if self._closed or not self._ready:
                return None, None
            self._busy += 1
            return self._ready.popleft(), 0.0

    def next_job(self, timeout: float | None = None) -> FetchJob | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or self._ready, timeout):
                return None
            if self._closed:
                return None
            self._busy += 1
            return self._ready.popleft()

    def done(self, job: FetchJob) -> None:
        with self._cond:
            self._busy -= 1
        self._released.put(("done", job.id, job.host))

    def requeue(self, job: FetchJob) -> bool:
        """A job whose host cannot be fetched yet goes back to the shared queue (through the
        coordinator's release), not to a local buffer."""
        return False

    def try_turn(self, job: FetchJob) -> float:
        return self.frontier.turn(job.id, job.host, lease=job.id > 0)

    def try_move(self, job: FetchJob, host: str) -> float:
        return self.frontier.turn(job.id, host, lease=job.id > 0)

    def move(self, job: FetchJob, host: str | None, stop: threading.Event | None = None) -> bool:
        """Wait until ``job`` holds a slot on ``host`` (None: its own) and its turn has come;
        False if the crawl is stopping."""
        host = host or job.host
        while (wait := self.try_move(job, host)) > 0:
            if stop is None:
                time.sleep(min(wait, POLL))
            elif stop.wait(min(wait, POLL)):
                return False
        return True

    def wait_turn(self, job: FetchJob, stop: threading.Event | None = None) -> bool:
        return self.move(job, None, stop)

    def acquire(self, host: str, stop: threading.Event | None = None) -> FetchJob | None:
        """A slot and turn for a request that is not a frontier job (a sitemap)."""
        token = FetchJob(id=-next(self._tokens), url="", host=host, depth=0)
        with self._cond:
            self._busy += 1
        if self.move(token, host, stop):
            return token
        self.done(token)
        return None

    def give_back_turn(self, job: FetchJob) -> None:
        """A shared turn is not given back (another worker may have planned on it): this only
        costs the host one delay."""

    def note_start(self, host: str, at: float) -> None:
        """A request to ``host`` was sent at ``at`` (our clock): the host's next start is its
        delay after that. Nothing to do for a host without a delay."""
        if self.frontier.delay_ms > 0 or self._delayed_overflow or host in self._delayed:
            self._released.put(("started", host, at))

    def defer(self, host: str, seconds: float) -> None:
        self.frontier.hostctl("defer", host, seconds)

    def set_delay(self, host: str, delay: float) -> None:
        if delay > 0:
            self._has_delay(host)
        self.frontier.hostctl("delay", host, delay)

    def adapt(self, host: str, delay: float) -> None:
        if delay > 0:
            self._has_delay(host)  # its request starts now matter (note_start)
        self._released.put(("adapt", host, delay))  # sent by the releaser: no Redis call here

    def _has_delay(self, host: str) -> None:
        if len(self._delayed) < DELAYED_MAX:
            self._delayed.add(host)
        else:
            self._delayed_overflow = True

    def _tell_floors(self, jobs: list[FetchJob]) -> None:
        for job in jobs:
            host = job.host
            if host in self._floors_told:
                continue
            rule = self.rules.for_host(host)
            if rule is not None and rule.delay is not None:
                if rule.delay > 0:
                    self._has_delay(host)
                self.frontier.hostctl("floor", host, rule.delay)
            if len(self._floors_told) >= FLOORS_TOLD_MAX:
                self._floors_told.clear()  # telling again costs one call per host
            self._floors_told.add(host)

    def _release_slots(self) -> None:
        """Send AutoThrottle delays, request starts and slot releases to Redis, each batch
        what has piled up meanwhile: the delays, then the starts (they push a host's next
        start back), then one ``finish`` for all the releases."""
        done = False
        while not done:
            item = self._released.get()
            slots, adapts, starts = [], [], []
            while True:
                if item is None:
                    done = True
                elif item[0] == "done":
                    slots.append(item[1:])
                elif item[0] == "adapt":
                    adapts.append(item[1:])
                else:
                    starts.append(item[1:])
                try:
                    item = self._released.get_nowait()
                except queue.Empty:
                    break
            try:
                for host, delay in adapts:  # before the starts, which count the new delay
                    self.frontier.hostctl("adapt", host, delay)
                for host, at in starts:
                    self.frontier.hostctl("started", host, max(0.0, self.clock() - at))
                self.frontier.finish(slots)
                if slots:  # Redis knows these slots are free: the coordinator may lease now
                    self.releases += 1
                    if self.on_release is not None:
                        self.on_release()
            except Exception:  # Redis gone for good: the slots expire by themselves
                pass
