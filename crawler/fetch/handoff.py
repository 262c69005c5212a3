"""Pages from the async engine's event loop to the parser pool.

While the pool has room, ``try_page`` submits a page from the loop itself: it never
blocks, and the page reaches the pool without waking another thread. Each such wake-up
in the crawl's main process is a GIL hand-off, and on 2 cores a hand-off is often a wait
(docs/performance.md).

When the pool is full (or no ``try_page`` was given), pages go to ``on_page`` through one
thread, since ``on_page`` blocks until the pool has room. At most ``HANDOFF_PAGES`` pages
wait for the thread; a fetch task with a page beyond that awaits a future that the
thread resolves (through the loop) when it has taken one, so a slow parser pool slows
fetching down instead of filling memory. While pages wait for the thread, new ones queue
behind them rather than overtake them. No executor is involved, so a full hand-off never
starves the loop's executor (which aiohttp resolves host names in).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Callable

from crawler.fetch.commands import Transport
from crawler.messages import FetchJob, Page

# Pages waiting for the hand-off thread. Enough to ride over one slow submit; beyond
# that, waiting belongs in the fetch tasks, which stop more requests from starting.
HANDOFF_PAGES = 16


class HandOff:
    def __init__(self, loop: asyncio.AbstractEventLoop, on_page: Callable[[FetchJob, Page], None],
                 on_release: Callable[[FetchJob], None],
                 try_page: Callable[[FetchJob, Page], bool] | None = None):
        self.loop = loop
        self.on_page = on_page
        self.on_release = on_release
        self.try_page = try_page
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.space = HANDOFF_PAGES  # guarded by lock
        self.blocked = False  # a task waits for space (guarded by lock)
        self.putters: list[asyncio.Future] = []  # loop thread only
        self.thread = threading.Thread(target=self.run, name="aiofetch-handoff", daemon=True)
        self.thread.start()

    async def put(self, job: FetchJob, page: Page) -> None:
        if self.try_page is not None and self.space == HANDOFF_PAGES and self.handed_on(job, page):
            return
        while True:
            with self.lock:
                if self.space > 0:
                    self.space -= 1
                    break
                self.blocked = True
            waiter = self.loop.create_future()
            self.putters.append(waiter)  # before any await: unblock runs after this step
            await waiter
        self.queue.put((job, page))

    def handed_on(self, job: FetchJob, page: Page) -> bool:
        """On the loop: ``try_page`` through ``Transport.hand_on`` (a job whose page could
        not be handed on is given back, never lost). False only when the pool is full."""
        return Transport.hand_on(job, page, self.try_page, self.on_release) is not False

    def unblock(self) -> None:  # on the loop
        putters, self.putters = self.putters, []
        for waiter in putters:
            if not waiter.done():
                waiter.set_result(None)

    def run(self) -> None:
        while (item := self.queue.get()) is not None:
            job, page = item
            with self.lock:
                self.space += 1
                unblock, self.blocked = self.blocked, False
            if unblock:
                try:
                    self.loop.call_soon_threadsafe(self.unblock)
                except RuntimeError:  # the loop is gone: nobody waits any more
                    pass
            Transport.hand_on(job, page, self.on_page, self.on_release)

    def close(self) -> None:
        """After the last put: wait until every page has been handed over."""
        self.queue.put(None)
        self.thread.join()
