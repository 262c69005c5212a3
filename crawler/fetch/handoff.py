"""Pages from the async engine's event loop to ``on_page``, through one thread.

``on_page`` submits to the parser pool and blocks while the pool is full, so it runs
outside the loop. At most ``HANDOFF_PAGES`` pages wait for the thread; a fetch task with
a page beyond that awaits a future that the thread resolves (through the loop) when it
has taken one, so a slow parser pool slows fetching down instead of filling memory. No
executor is involved, so a full hand-off never starves the loop's executor (which
aiohttp resolves host names in).
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
                 on_release: Callable[[FetchJob], None]):
        self.loop = loop
        self.on_page = on_page
        self.on_release = on_release
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.space = HANDOFF_PAGES  # guarded by lock
        self.blocked = False  # a task waits for space (guarded by lock)
        self.putters: list[asyncio.Future] = []  # loop thread only
        self.thread = threading.Thread(target=self.run, name="aiofetch-handoff", daemon=True)
        self.thread.start()

    async def put(self, job: FetchJob, page: Page) -> None:
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
