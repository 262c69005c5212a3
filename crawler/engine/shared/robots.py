"""robots.txt once per origin for the whole shared crawl, not once per worker.

``SharedRobotsFetch`` wraps the fetch function of a worker's ``RobotsCache``: the first
worker to need an origin's robots.txt takes a short lock in Redis, fetches it, and
stores the answer there for as long as the cache would keep it (a day for an answer, the
retry interval for a failure); the others wait for that answer instead of fetching their
own. If the fetching worker dies, its lock expires and the next one fetches.
"""

from __future__ import annotations

import time
from typing import Callable
from urllib.parse import urlsplit

from crawler.fetch.robots import EXPIRY, RETRY_UNREACHABLE, RobotsAnswer

POLL = 0.05  # seconds between looks for another worker's answer


class SharedRobotsFetch:
    def __init__(self, frontier, fetch: Callable[[str], RobotsAnswer], lock_seconds: float):
        self.client = frontier.client
        self.prefix = frontier.prefix
        self.worker = frontier.worker
        self.fetch = fetch
        self.lock_ms = round(lock_seconds * 1000)

    def __call__(self, url: str) -> RobotsAnswer:
        parts = urlsplit(url)
        key = f"{self.prefix}robots:{parts.scheme}://{parts.netloc}"
        while True:
            stored = self.client.hgetall(key)
            if stored:
                status = stored.get(b"status", b"")
                blocked = stored.get(b"blocked", b"")
                return RobotsAnswer(int(status) if status else None, stored.get(b"body", b""),
                                    blocked.decode() if blocked else None)
            if self.client.set(key + ":lock", self.worker, nx=True, px=self.lock_ms):
                break
            time.sleep(POLL)
        try:
            answer = self.fetch(url)
            ok = answer.status is not None and answer.blocked is None and (
                200 <= answer.status < 300 or (300 <= answer.status < 500 and answer.status != 429))
            ttl = EXPIRY if ok else RETRY_UNREACHABLE
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"status": "" if answer.status is None else answer.status,
                                        "body": answer.body, "blocked": answer.blocked or ""})
                pipe.pexpire(key, round(ttl * 1000))
                pipe.execute()
            return answer
        finally:
            self.client.delete(key + ":lock")
