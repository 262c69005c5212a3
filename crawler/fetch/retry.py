"""The retry policy: one frozen value that the fetch policy asks (crawler/fetch/policy.py).

Retried: connection errors, timeouts, and responses whose status is in
``retry_statuses``. Not retried: every other status, and errors that another attempt
cannot fix (too large, blocked, robots, redirects). ``retries`` counts *extra*
attempts, so a URL that always fails is requested ``retries + 1`` times.

The wait before attempt n+1 is ``backoff * 2**(n-1)`` with full jitter, capped at
``cap``; a ``Retry-After`` from the server replaces it (also capped).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from crawler.errors import ConnectError, FetchError, FetchTimeout


class RetryableStatus(FetchError):
    """A response whose status is worth another attempt (what ``FetchPolicy.failure`` returns)."""

    type = "http"

    def __init__(self, message: str, *, status: int, retry_after: float | None, response=None):
        super().__init__(message, status=status, retry_after=retry_after)
        self.response = response


@dataclass(frozen=True)
class RetryPolicy:
    retries: int
    statuses: frozenset[int]
    backoff: float
    cap: float

    @classmethod
    def from_settings(cls, fetch) -> "RetryPolicy":
        return cls(
            retries=fetch.retries,
            statuses=frozenset(fetch.retry_statuses),
            backoff=fetch.backoff,
            cap=fetch.max_crawl_delay,
        )

    def is_retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, (FetchTimeout, ConnectError, RetryableStatus))

    def wait_seconds(self, attempt: int, exc: BaseException | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        ceiling = min(self.cap, self.backoff * (2 ** (attempt - 1)))
        # "Equal jitter": at least half the exponential step, so backoff still grows.
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime
    from datetime import datetime, timezone

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
