"""Request time limits for blocking sockets: one thread that shuts a request's socket
down when the request has run past its deadline, or has waited too long for its next
bytes.

Socket timeouts bound each *read*, not a whole request: a server that sends one
byte of its headers or body just before every read timeout would hold a fetcher
for ever. A fetcher arms an alarm with the request's socket, its deadline and
(optionally) an idle bound, ``touch``es the alarm whenever the request makes
progress, and disarms it when the request is over. If the deadline comes first, or
``idle`` seconds pass without a touch, the watchdog shuts the socket down, so
whatever read is blocked on it returns at once and the fetcher reports a timeout
(``Alarm.fired`` tells it why the read ended, ``Alarm.idle_fired`` which limit it was).

The idle bound lets a fetcher keep its socket in blocking mode: CPython polls a
socket that has a timeout before every send and receive, and each of those calls
lets go of the GIL, which a thread of a busy process then waits to get back. A touch
is one attribute write; the watchdog looks at it only when the bound comes due, and
re-queues the alarm if there was progress meanwhile.

``disarm`` and the firing happen under one lock: once ``disarm`` has returned, the
socket is never touched again, so it can go back to a connection pool.

With TLS the alarm is armed on the plain socket once connected and moved to the TLS
socket once the handshake is done (``retarget``); during the handshake itself only
the socket timeout bounds each read.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time

# Disarmed alarms stay in the heap until they reach its top (lazy deletion). Behind one
# long request they would pile up, one per request, so the heap is rebuilt without them
# once they are at least this many and more than half of it (as asyncio does for its
# cancelled timers).
MIN_DISARMED_TO_COMPACT = 100


class Alarm:
    __slots__ = ("deadline", "sock", "fired", "armed", "idle", "touched", "idle_fired")

    def __init__(self, deadline: float, sock: socket.socket, idle: float | None = None,
                 now: float = 0.0):
        self.deadline = deadline
        self.sock = sock
        self.fired = False
        self.armed = True
        self.idle = idle  # seconds without a touch that end the request, or None
        self.touched = now
        self.idle_fired = False  # it fired for idleness, before the deadline

    def touch(self, now: float) -> None:
        """The request made progress at ``now`` (its idle bound starts again)."""
        self.touched = now

    def due(self) -> float:
        if self.idle is None:
            return self.deadline
        return min(self.deadline, self.touched + self.idle)


class Watchdog:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Alarm]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._disarmed = 0  # disarmed alarms still in the heap

    def arm(self, deadline: float, sock: socket.socket, idle: float | None = None) -> Alarm:
        alarm = Alarm(deadline, sock, idle, self.clock())
        due = alarm.due()
        with self._cond:
            if self._thread is None:
                # A daemon is fine here: the watchdog holds no data, only references to
                # sockets that their own threads close.
                self._thread = threading.Thread(target=self._run, name="fetch-watchdog", daemon=True)
                self._thread.start()
            first = not self._heap or due < self._heap[0][0]
            heapq.heappush(self._heap, (due, next(self._seq), alarm))
            if first:
                self._cond.notify()
        return alarm

    def retarget(self, alarm: Alarm, sock: socket.socket) -> None:
        """The request's socket was replaced (wrapped in TLS): watch the new one."""
        with self._cond:
            if alarm.fired:
                _shutdown(sock)
            elif alarm.armed:
                alarm.sock = sock

    def disarm(self, alarm: Alarm) -> None:
        with self._cond:
            if alarm.armed:
                self._disarmed += 1
            alarm.armed = False
            alarm.sock = None
            self._drop_disarmed()

    def _drop_disarmed(self) -> None:
        heap = self._heap
        while heap and not heap[0][2].armed:  # most requests end long before their deadline
            heapq.heappop(heap)
            self._disarmed -= 1
        if self._disarmed >= MIN_DISARMED_TO_COMPACT and 2 * self._disarmed > len(heap):
            heap[:] = [entry for entry in heap if entry[2].armed]
            heapq.heapify(heap)
            self._disarmed = 0

    def _run(self) -> None:
        with self._cond:
            while True:
                heap = self._heap
                self._drop_disarmed()
                if not heap:
                    self._cond.wait()
                    continue
                now = self.clock()
                left = heap[0][0] - now
                if left > 0:
                    self._cond.wait(left)
                    continue
                _, _, alarm = heapq.heappop(heap)
                due = alarm.due()
                if due > now:  # touched since it was queued: not idle yet
                    heapq.heappush(heap, (due, next(self._seq), alarm))
                    continue
                alarm.idle_fired = now < alarm.deadline
                alarm.fired = True
                alarm.armed = False
                _shutdown(alarm.sock)
                alarm.sock = None


def _shutdown(sock: socket.socket) -> None:
    try:
        # The plain-socket method: on an SSLSocket, its own shutdown() would also drop
        # the TLS object under the feet of the thread reading from it. A socket object
        # that was closed (or detached) meanwhile has no descriptor any more, so this
        # can never hit a descriptor the system has since given to another socket.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


WATCHDOG = Watchdog()
