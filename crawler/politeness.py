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
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from crawler.messages import FetchJob


@dataclass(slots=True)
class HostSlot:
    name: str
    concurrency: int
    delay: float
    in_flight: int = 0
    next_start: float = 0.0
    buffer: deque = field(default_factory=deque)
    version: int = 0  # bumps whenever the slot's heap entry is superseded
    queued: bool = False  # has a live heap entry


class Scheduler:
    """Thread-safe. ``next_job`` for threads, ``try_next`` for an event loop."""

    def __init__(
        self,
        per_host_concurrency: int,
        per_host_delay: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.concurrency = per_host_concurrency
        self.delay = per_host_delay
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
        self._buffered = 0
        self._in_flight = 0
        self._closed = False
        self._listeners: list[Callable[[], None]] = []

    # -- bookkeeping (caller holds the lock) -------------------------------------------
    def _slot(self, host: str) -> HostSlot:
        slot = self._slots.get(host)
        if slot is None:
            slot = self._slots[host] = HostSlot(host, self.concurrency, self.delay)
        return slot

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
            self._buffered += len(jobs)
            self._wake(len(jobs))

    def requeue(self, job: FetchJob) -> None:
        """Put a job that could not start yet back at the front of its host's buffer."""
        with self._cond:
            slot = self._slot(job.host)
            slot.buffer.appendleft(job)
            self._buffered += 1
            self._maybe_push(slot)
            self._wake()

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
            job = slot.buffer.popleft()
            self._buffered -= 1
            slot.in_flight += 1
            self._in_flight += 1
            slot.next_start = now + slot.delay
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
        """The request for ``job`` is over: free its host slot."""
        with self._cond:
            slot = self._slots[job.host]
            slot.in_flight -= 1
            self._in_flight -= 1
            self._maybe_push(slot)
            if slot.buffer:
                self._wake()
            elif slot.in_flight == 0 and not slot.buffer:
                self._hungry.add(slot.name)

    def wait_turn(self, job: FetchJob, stop: threading.Event | None = None) -> bool:
        """For a further attempt of a job that already holds its slot: wait until the
        host's delay (or a Retry-After) has passed, then take the next start time."""
        with self._cond:
            slot = self._slots[job.host]
            while True:
                if self._closed and stop is not None and stop.is_set():
                    return False
                now = self.clock()
                if now >= slot.next_start:
                    slot.next_start = now + slot.delay
                    if slot.queued:  # its ready time moved: re-key the heap entry
                        self._push(slot)
                    return True
                self._cond.wait(slot.next_start - now)

    def try_turn(self, job: FetchJob) -> float:
        """``wait_turn`` for an event loop, without blocking: take the host's turn and
        return 0.0 if it has come, or return the seconds until it will."""
        with self._cond:
            slot = self._slots[job.host]
            now = self.clock()
            if now < slot.next_start:
                return slot.next_start - now
            slot.next_start = now + slot.delay
            if slot.queued:
                self._push(slot)
            return 0.0

    def defer(self, host: str, seconds: float) -> None:
        """No request to ``host`` may start for ``seconds`` (Retry-After, robots trouble)."""
        with self._cond:
            slot = self._slot(host)
            slot.next_start = max(slot.next_start, self.clock() + seconds)
            if slot.queued:
                self._push(slot)

    def set_delay(self, host: str, delay: float) -> None:
        with self._cond:
            slot = self._slot(host)
            slot.delay = max(self.delay, delay)

    # -- state and shutdown ------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        return self._buffered

    @property
    def in_flight(self) -> int:
        return self._in_flight

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
            self._buffered = 0
            self._heap.clear()
            self._cond.notify_all()
            for listener in self._listeners:
                listener()
            return jobs

    @property
    def closed(self) -> bool:
        return self._closed
