"""AutoThrottle: each host's delay follows the server (``[fetch] autothrottle``).

After every request the policy reports what the host did (``observe``):

- a 429 or 503 doubles the host's adaptive delay (starting from ``backoff``), up to
  ``max_crawl_delay``: exponential backoff while the server says it is overloaded (a
  Retry-After also holds the host back, through the scheduler's ``defer``);
- otherwise the delay moves towards ``latency / target_concurrency``, the delay at which
  the host would see ``target_concurrency`` requests in flight on average: at once when
  that is longer (the server slowed down), halfway per response when it is shorter (the
  host recovers gradually); an error answer or a failed request never lowers it.

The scheduler keeps the host's floor (per_host_delay or its ``[[fetch.hosts]]`` delay,
and robots.txt Crawl-delay): the delay in force is the largest of the three, so the
throttle only ever slows a host down. State is per host, so a slow host never slows a
fast one; it is bounded (least recently seen hosts are forgotten first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

OVERLOADED = frozenset({429, 503})
MAX_HOSTS = 10_000
NEGLIGIBLE = 0.01  # seconds: below this the adaptive delay is dropped (the floor rules)
CHANGE = 0.1  # a change smaller than this fraction is not worth telling the scheduler


class AutoThrottle:
    """Thread-safe. ``observe`` returns the host's new adaptive delay when the scheduler
    should hear of it, else None."""

    def __init__(self, target_concurrency: float, backoff: float, max_delay: float):
        self.target = target_concurrency
        self.backoff = max(backoff, NEGLIGIBLE)
        self.max_delay = max_delay
        self._lock = threading.Lock()
        self._delays: OrderedDict[str, tuple[float, float]] = OrderedDict()  # (delay, told)

    @classmethod
    def from_settings(cls, fetch) -> "AutoThrottle | None":
        if not getattr(fetch, "autothrottle", False):
            return None
        return cls(fetch.autothrottle_target_concurrency, fetch.backoff, fetch.max_crawl_delay)

    def delay(self, host: str) -> float:
        with self._lock:
            return self._delays.get(host, (0.0, 0.0))[0]

    def observe(self, host: str, status: int | None, latency: float) -> float | None:
        """The host answered ``status`` (None: the request failed) after ``latency`` seconds."""
        with self._lock:
            delays = self._delays
            old, told = delays.get(host, (0.0, 0.0))  # told: what the scheduler has
            if status in OVERLOADED:
                new = max(2 * old, self.backoff)
            else:
                target = max(latency, 0.0) / self.target
                if target >= old:
                    new = target
                elif status is None or status >= 400:
                    new = old  # an error is no sign of health
                else:
                    new = (old + target) / 2
            new = min(new, self.max_delay)
            if new < NEGLIGIBLE:
                new = 0.0
            tell = new != told and not (new and told and abs(new - told) < CHANGE * max(new, told))
            if tell:
                told = new
            if new == 0.0 and told == 0.0:
                delays.pop(host, None)
            else:
                delays[host] = (new, told)
                delays.move_to_end(host)
                if len(delays) > MAX_HOSTS:
                    delays.popitem(last=False)
        return new if tell else None
