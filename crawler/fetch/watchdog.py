"""The per-request deadline: one thread that shuts a request's socket down when the
request has run past its deadline.

Socket timeouts bound each *read*, not a whole request: a server that sends one
byte of its headers or body just before every read timeout would hold a fetcher
for ever. A fetcher arms an alarm with the request's socket and deadline, and
disarms it when the request is over. If the deadline comes first, the watchdog
shuts the socket down, so whatever read is blocked on it returns at once and the
fetcher reports a timeout (``Alarm.fired`` tells it why the read ended).

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
    __slots__ = ("deadline", "sock", "fired", "armed")

    def __init__(self, deadline: float, sock: socket.socket):
        self.deadline = deadline
        self.sock = sock
        self.fired = False
        self.armed = True


class Watchdog:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Alarm]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._disarmed = 0  # disarmed alarms still in the heap

    def arm(self, deadline: float, sock: socket.socket) -> Alarm:
        alarm = Alarm(deadline, sock)
        with self._cond:
            if self._thread is None:
                # A daemon is fine here: the watchdog holds no data, only references to
                # sockets that their own threads close.
                self._thread = threading.Thread(target=self._run, name="fetch-watchdog", daemon=True)
                self._thread.start()
            first = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, next(self._seq), alarm))
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
                left = heap[0][0] - self.clock()
                if left > 0:
                    self._cond.wait(left)
                    continue
                _, _, alarm = heapq.heappop(heap)
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
