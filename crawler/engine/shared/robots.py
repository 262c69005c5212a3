"""robots.txt once per origin for the whole shared crawl, not once per worker.

``SharedRobotsCache`` is the worker's ``RobotsCache`` with Redis behind it. Its three
non-blocking steps (what the fetch policy uses, on either engine) become:

- ``answer``: the local cache, else the answer another worker stored in Redis;
- ``claim``: this worker fetches the origin's robots.txt only if it also wins a short
  lock in Redis; if another worker holds it, a small thread watches Redis for that
  worker's answer and hands it to whoever waits here (``when_ready``), or, if the lock
  lapses without one (the worker died), lets them ask again;
- ``store``: the answer goes to Redis, for as long as a cache keeps it (a day for an
  answer, the retry interval for a failure), and the lock is released.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from crawler.fetch.robots import EXPIRY, RETRY_UNREACHABLE, RobotsAnswer, RobotsCache, origin_of

log = logging.getLogger("crawler")

POLL = 0.05  # seconds between looks for another worker's answer


class SharedRobotsCache(RobotsCache):
    def __init__(self, frontier, user_agent: str, fetch: Callable[[str], RobotsAnswer], *, lock_seconds: float):
        super().__init__(user_agent, fetch)
        self.client = frontier.client
        self.prefix = frontier.prefix
        self.worker = frontier.worker
        self.lock_ms = round(lock_seconds * 1000)
        self._holding: set[str] = set()  # origins whose Redis lock this worker holds

    def _key(self, origin: str) -> str:
        return f"{self.prefix}robots:{origin}"

    def _load(self, origin: str) -> RobotsAnswer | None:
        stored = self.client.hgetall(self._key(origin))
        if not stored:
            return None
        status, blocked = stored.get(b"status", b""), stored.get(b"blocked", b"")
        return RobotsAnswer(int(status) if status else None, stored.get(b"body", b""),
                            blocked.decode() if blocked else None)

    def answer(self, url: str) -> tuple[bool, float | None] | None:
        got = super().answer(url)
        if got is not None:
            return got
        origin = origin_of(url)
        stored = self._load(origin)
        if stored is None or not super().claim(origin):  # not there, or being fetched here
            return None
        super().store(origin, stored)
        return super().answer(url)

    def claim(self, origin: str) -> bool:
        if not super().claim(origin):
            return False
        if self.client.set(self._key(origin) + ":lock", self.worker, nx=True, px=self.lock_ms):
            self._holding.add(origin)
            return True
        threading.Thread(target=self._await_other, args=(origin,), name="robots-wait", daemon=True).start()
        return False

    def store(self, origin: str, answer: RobotsAnswer | None) -> None:
        if origin in self._holding:
            self._holding.discard(origin)
            try:
                self._publish(origin, answer)
            except Exception as exc:  # Redis trouble: the others fetch it themselves
                log.warning("could not share robots.txt of %s: %s", origin, exc)
        super().store(origin, answer)

    def _publish(self, origin: str, answer: RobotsAnswer | None) -> None:
        key = self._key(origin)
        with self.client.pipeline(transaction=True) as pipe:
            if answer is not None:
                ok = answer.status is not None and answer.blocked is None and (
                    200 <= answer.status < 300 or (300 <= answer.status < 500 and answer.status != 429))
                pipe.hset(key, mapping={"status": "" if answer.status is None else answer.status,
                                        "body": answer.body, "blocked": answer.blocked or ""})
                pipe.pexpire(key, round((EXPIRY if ok else RETRY_UNREACHABLE) * 1000))
            pipe.delete(key + ":lock")
            pipe.execute()

    def _await_other(self, origin: str) -> None:
        """Another worker fetches ``origin``'s robots.txt: wait for its answer in Redis."""
        answer = None
        deadline = time.monotonic() + self.lock_ms / 1000 + 1
        try:
            while time.monotonic() < deadline:
                answer = self._load(origin)
                if answer is not None or not self.client.exists(self._key(origin) + ":lock"):
                    break
                time.sleep(POLL)
        except Exception as exc:
            log.warning("waiting for robots.txt of %s: %s", origin, exc)
        super().store(origin, answer)  # None: nothing learned, the waiters ask again
