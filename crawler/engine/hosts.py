"""Per-host politeness: which job may start now, and when the next one may.

Each host has one small record (``HostSlot``): its concurrency, its delay, when a
request may next start, how many are in flight, and a short buffer of leased jobs.
The limits are enforced at the moment a request *starts*: a job is handed out only
if its host has a free slot and its delay has passed, and the slot is taken in the
same locked step. A request is in flight from that moment until ``done(job)``.

Hosts that are ready sit in a heap keyed by the time they may next start. A fetcher
asks for "the next ready host", so a host that must wait never blocks fetchers that
could serve another host; a thread only sleeps when *no* host is ready, and then
only until the earliest one will be.

Every request a job sends after its first one goes through the scheduler too:
- a retry, a redirect hop to the same host, or the first request after robots.txt
  was fetched waits for its host's turn (``wait_turn``), so the delay separates
  *every* two request starts, robots.txt included;
- a redirect hop to another host moves the job's slot (``move``): the job gives its
  slot on the old host back, then waits like any other request for a free slot and
  the delay on the new host. A job holds at most one slot at any moment, so two jobs
  redirecting into each other's hosts cannot deadlock.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from crawler.hostrules import HostRules
from crawler.messages import FetchJob

MOVE_POLL = 0.05  # seconds between looks at a full host, for a job moving onto it
# Slots kept before idle ones are swept out (see _evict_idle). A host's slot costs a few
# hundred bytes; without eviction a crawl over millions of hosts would keep them all.
MAX_SLOTS = 10_000


@dataclass(slots=True)
class HostSlot:
    name: str
    concurrency: int
    delay: float  # the one in force: max(floor, crawl_delay, adapt)
    floor: float = 0.0  # per_host_delay, or the host's [[fetch.hosts]] delay
    crawl_delay: float = 0.0  # robots.txt Crawl-delay
    adapt: float = 0.0  # AutoThrottle's (crawler/fetch/throttle.py)
    in_flight: int = 0
    next_start: float = 0.0
    buffer: deque = field(default_factory=deque)
    version: int = 0  # bumps whenever the slot's heap entry is superseded
    queued: bool = False  # has a live heap entry
    # The last turn handed out with a job: (job id, next_start before, next_start after),
    # so that a job that sent no request after all can give its turn back.
    last_grant: tuple[int, float, float] | None = None


class HostScheduler:
    """Thread-safe. ``next_job`` for threads, ``try_next`` for an event loop. Implements
    ``crawler.fetch.commands.HostTurns``, the non-blocking part the fetch policy uses."""

    def __init__(
        self,
        per_host_concurrency: int,
        per_host_delay: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        rules: HostRules | None = None,
    ):
        self.concurrency = per_host_concurrency
        self.delay = per_host_delay
        self.rules = rules or HostRules()  # [[fetch.hosts]]: a host's own concurrency and delay
        # A host's buffer is refilled from the frontier when it falls below low_water.
        # Deep enough to keep the host's slots busy between two coordinator rounds,
        # shallow enough that thousands of hosts cost little memory.
        self.target = 2 * per_host_concurrency + 8
        self.low_water = self.target // 2
        self.clock = clock
        self._cond = threading.Condition()
        self._slots: dict[str, HostSlot] = {}
        self._heap: list[tuple[float, int, int, HostSlot]] = []
        self._seq = itertools.count()
        self._hungry: set[str] = set()
        self._closed = False
        self._listeners: list[Callable[[], None]] = []
        # job id -> the slot a job holds after a redirect moved it off its own host
        # (None: between two slots). Empty for almost every job, so done() stays cheap.
        self._moved: dict[int, HostSlot | None] = {}
        self._tokens = itertools.count(1)  # ids of acquire()'s token jobs: negative, never a frontier id
        self._sweep_at = MAX_SLOTS  # the slot count at which idle slots are next swept out

    # -- bookkeeping (caller holds the lock) -------------------------------------------
    def _slot(self, host: str) -> HostSlot:
        slot = self._slots.get(host)
        if slot is None:
            if len(self._slots) >= self._sweep_at:
                self._evict_idle()
            if self.rules:
                floor = self.rules.delay(host, self.delay)
                conc = self.rules.concurrency(host, self.concurrency)
            else:
                floor, conc = self.delay, self.concurrency
            slot = self._slots[host] = HostSlot(host, conc, floor, floor)
        return slot

    def _evict_idle(self) -> None:
        """Forget the slots of hosts with nothing buffered or in flight whose next start
        has come: a new slot for such a host behaves the same, politeness included (its
        Crawl-delay comes back with the next robots check, see ``set_delay``). The next
        sweep waits until the table has doubled past what stayed, so sweeping costs O(1)
        per new host even when few slots are idle."""
        now = self.clock()
        idle = [name for name, slot in self._slots.items()
                if not slot.in_flight and not slot.buffer and not slot.queued and slot.next_start <= now]
        for name in idle:
            del self._slots[name]
        self._sweep_at = max(MAX_SLOTS, 2 * len(self._slots))

    def _push(self, slot: HostSlot) -> None:
        slot.version += 1
        slot.queued = True
        heapq.heappush(self._heap, (slot.next_start, next(self._seq), slot.version, slot))

    def _maybe_push(self, slot: HostSlot) -> None:
        if not slot.queued and slot.buffer and slot.in_flight < slot.concurrency:
            self._push(slot)

    def _wake(self, n: int = 1) -> None:
        self._cond.notify(n)
        for listener in self._listeners:
            listener()

    # -- feeding -----------------------------------------------------------------------
    def offer(self, jobs: list[FetchJob]) -> None:
        """Add leased jobs to their hosts' buffers."""
        with self._cond:
            for job in jobs:
                slot = self._slot(job.host)
                slot.buffer.append(job)
                self._maybe_push(slot)
            self._wake(len(jobs))

    def requeue(self, job: FetchJob) -> bool:
        """Put a job that could not start yet back at the front of its host's buffer.
        False once closed: the caller must then give the job back to the frontier."""
        with self._cond:
            if self._closed:
                return False
            slot = self._slot(job.host)
            slot.buffer.appendleft(job)
            self._maybe_push(slot)
            self._wake()
            return True

    def wants(self, host: str) -> int:
        """How many more jobs ``host`` should be given (0 if its buffer is deep enough)."""
        with self._cond:
            slot = self._slots.get(host)
            have = len(slot.buffer) if slot else 0
            return self.target - have if have < self.low_water else 0

    def take_hungry(self) -> set[str]:
        """Hosts whose buffers ran low since the last call."""
        with self._cond:
            hungry, self._hungry = self._hungry, set()
            return hungry

    # -- handing out work ----------------------------------------------------------------
    def try_next(self) -> tuple[FetchJob | None, float | None]:
        """A job whose host may start now, or (None, seconds until one may; None = no work)."""
        with self._cond:
            return self._try_next_locked()

    def _try_next_locked(self) -> tuple[FetchJob | None, float | None]:
        if self._closed:
            return None, None
        now = self.clock()
        heap = self._heap
        while heap:
            start, _, version, slot = heap[0]
            if version != slot.version:  # superseded entry
                heapq.heappop(heap)
                continue
            if start > now:
                return None, start - now
            heapq.heappop(heap)
            slot.queued = False
            if slot.in_flight >= slot.concurrency or not slot.buffer:  # a moved job took the slot
                continue
            job = slot.buffer.popleft()
            slot.in_flight += 1
            before, slot.next_start = slot.next_start, now + slot.delay
            slot.last_grant = (job.id, before, slot.next_start)
            self._maybe_push(slot)
            if len(slot.buffer) < self.low_water:
                self._hungry.add(slot.name)
            return job, 0.0
        return None, None

    def next_job(self, timeout: float | None = None) -> FetchJob | None:
        """Block until a job may start; None when closed (or on timeout)."""
        deadline = None if timeout is None else self.clock() + timeout
        with self._cond:
            while True:
                job, wait = self._try_next_locked()
                if job is not None or self._closed:
                    return job
                if deadline is not None:
                    left = deadline - self.clock()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def done(self, job: FetchJob) -> None:
        """The request for ``job`` is over: free its host slot (the one it holds now, if a
        redirect moved it)."""
        with self._cond:
            # Not pop(job.id, self._slots[job.host]): that default is looked up even for a
            # moved job, and a token for a host with no slot yet has none (KeyError).
            slot = self._moved.pop(job.id) if job.id in self._moved else self._slots.get(job.host)
            if slot is None:  # a move was abandoned (or never began): the job held no slot
                return
            slot.in_flight -= 1
            self._maybe_push(slot)
            if slot.buffer:
                self._wake()
            elif slot.in_flight == 0 and not slot.buffer:
                self._hungry.add(slot.name)

    def _held(self, job: FetchJob) -> HostSlot | None:
        if self._moved and job.id in self._moved:
            return self._moved[job.id]
        return self._slots[job.host]

    def _turn_locked(self, job: FetchJob, host: str | None) -> float:
        """Take the next request start for ``job`` on ``host`` (None: the host whose slot it
        holds) and return 0.0, or return the seconds to wait before asking again."""
        held = self._held(job)
        if host is None:
            if held is None:
                raise RuntimeError(f"job {job.id} holds no host slot")
            host = held.name
        now = self.clock()
        if held is not None and held.name == host:
            slot = held
        else:
            if held is not None:  # give the old host's slot back before waiting for the new one
                held.in_flight -= 1
                self._maybe_push(held)
                self._wake()
                self._moved[job.id] = None
            slot = self._slot(host)
            if slot.in_flight >= slot.concurrency:
                # done() wakes one waiter, which may be a fetcher instead of this job:
                # poll too, so a hop never waits long for a slot that is already free.
                return MOVE_POLL
            if now < slot.next_start:
                return slot.next_start - now
            slot.in_flight += 1
            if host == job.host:
                del self._moved[job.id]
            else:
                self._moved[job.id] = slot
        if now < slot.next_start:
            return slot.next_start - now
        slot.next_start = now + slot.delay
        if slot.queued:  # its ready time moved (and it may have no free slot now): re-key
            slot.version += 1
            slot.queued = False
            self._maybe_push(slot)
        return 0.0

    def wait_turn(self, job: FetchJob, stop: threading.Event | None = None) -> bool:
        """For a further request of a job that already holds its slot (a retry, a redirect
        hop, the request after robots.txt): wait until the host's delay (or a Retry-After)
        has passed, then take the next start time. False if the crawl is stopping."""
        return self.move(job, None, stop)

    def move(self, job: FetchJob, host: str | None, stop: threading.Event | None = None) -> bool:
        """For a redirect hop to ``host``: give back the slot ``job`` holds, then wait until
        ``host`` has a free slot and its delay has passed, and take that slot (``done(job)``
        frees it). To the host it holds already, this is ``wait_turn``. False if the crawl
        is stopping (the job then holds no slot, and ``done(job)`` is still called)."""
        with self._cond:
            while True:
                if self._closed and stop is not None and stop.is_set():
                    return False
                wait = self._turn_locked(job, host)
                if wait <= 0.0:
                    return True
                self._cond.wait(wait)

    def try_turn(self, job: FetchJob) -> float:
        """``wait_turn`` for an event loop, without blocking: take the host's turn and
        return 0.0 if it has come, or return the seconds until it will."""
        with self._cond:
            return self._turn_locked(job, None)

    def try_move(self, job: FetchJob, host: str) -> float:
        """``move`` for an event loop, without blocking: 0.0 once ``job`` holds a slot on
        ``host`` and its turn has come, else the seconds to wait before asking again."""
        with self._cond:
            return self._turn_locked(job, host)

    def acquire(self, host: str, stop: threading.Event | None = None) -> FetchJob | None:
        """For a request that is not a frontier job (a sitemap, say): block until ``host``
        has a free slot and its delay has passed, take them, and return a token job that
        ``done(token)`` releases. None if the crawl is stopping."""
        token = self.token(host)
        if self.move(token, host, stop):
            return token
        self.done(token)
        return None

    def token(self, host: str) -> FetchJob:
        """A job for a request that is not a frontier job: it holds no slot yet; ``try_move``
        (or ``move``) to ``host`` takes one, and ``done(token)`` frees it."""
        with self._cond:
            token = FetchJob(id=-next(self._tokens), url="", host=host, depth=0)
            self._moved[token.id] = None  # holds nothing yet
            return token

    def give_back_turn(self, job: FetchJob) -> None:
        """``job`` sent no request after all (robots.txt said no, from its cache): its host
        may start the next request as early as if ``job`` had never been handed out, so a
        page of disallowed links does not cost its host a delay per link."""
        with self._cond:
            slot = self._slots.get(job.host)
            grant = slot.last_grant if slot is not None else None
            if grant is None or grant[0] != job.id or slot.next_start != grant[2]:
                return  # another request started since: its turn stands
            slot.next_start = grant[1]
            slot.last_grant = None
            if slot.queued:
                self._push(slot)
            self._wake()

    def note_start(self, host: str, at: float) -> None:
        """A request to ``host`` started at ``at`` (when it was actually sent, or robots.txt,
        fetched with a job's turn before the host's delay was known): the next may start
        ``delay`` after it."""
        with self._cond:
            slot = self._slot(host)
            if slot.delay > 0 and at + slot.delay > slot.next_start:
                slot.next_start = at + slot.delay
                if slot.queued:
                    self._push(slot)

    def defer(self, host: str, seconds: float) -> None:
        """No request to ``host`` may start for ``seconds`` (Retry-After, robots trouble)."""
        with self._cond:
            slot = self._slot(host)
            slot.next_start = max(slot.next_start, self.clock() + seconds)
            if slot.queued:
                self._push(slot)

    def set_delay(self, host: str, delay: float) -> None:
        """The host's own minimum delay (robots.txt Crawl-delay); never below its floor."""
        with self._cond:
            slot = self._slot(host)
            slot.crawl_delay = delay
            self._retune(slot)

    def adapt(self, host: str, delay: float) -> None:
        """AutoThrottle's delay for ``host`` (0 = none); never below the floor or Crawl-delay."""
        with self._cond:
            slot = self._slot(host)
            slot.adapt = delay
            self._retune(slot)

    def _retune(self, slot: HostSlot) -> None:
        delay = max(slot.floor, slot.crawl_delay, slot.adapt)
        if delay > slot.delay:
            # The turn taken last (if any) was spaced by the smaller delay: a slot that was
            # new (or evicted while idle) learns its Crawl-delay only after its first
            # request started, and the next one must still wait the whole delay.
            slot.next_start += delay - slot.delay
            if slot.queued:
                self._push(slot)
        # A shorter delay applies from the next start on: the one planned stands (it may
        # be a Retry-After's).
        slot.delay = delay

    # -- state and shutdown ------------------------------------------------------------------
    def add_listener(self, callback: Callable[[], None]) -> None:
        """``callback()`` runs (under the lock, so it must be quick) whenever work may be ready."""
        with self._cond:
            self._listeners.append(callback)

    def close(self) -> list[FetchJob]:
        """Hand out nothing more; return the jobs still buffered (they were never started)."""
        with self._cond:
            self._closed = True
            jobs = [job for slot in self._slots.values() for job in slot.buffer]
            for slot in self._slots.values():
                slot.buffer.clear()
            self._heap.clear()
            self._cond.notify_all()
            for listener in self._listeners:
                listener()
            return jobs

    @property
    def closed(self) -> bool:
        return self._closed
