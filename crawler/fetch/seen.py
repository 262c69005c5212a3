"""``SeenURLs``: the URLs this process fetched or is fetching (the fetch-side half of
redirect-target dedup, see crawler/fetch/policy.py)."""

from __future__ import annotations

import threading


class SeenURLs:
    """The URLs this process fetched or is fetching: job URLs and redirect targets.

    The fetch-side half of redirect-target dedup, used when no ``claim`` hook that asks
    the frontier is given. Bounded: it keeps 64-bit hashes (a false match has odds of
    about 1 in 10^14), and forgets everything when full, which can only cost a fetch
    that a complete memory would have saved.
    """

    MAX = 100_000  # ~5 MB

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hashes: set[int] = set()

    def unknown(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The (url, host) pairs whose url is not remembered (one lock for all of them)."""
        with self._lock:
            hashes = self._hashes
            return [pair for pair in pairs if hash(pair[0]) not in hashes] if hashes else pairs

    def add(self, url: str) -> bool:
        """Remember ``url``; False if it was already known."""
        key = hash(url)
        with self._lock:
            if key in self._hashes:
                return False
            if len(self._hashes) >= self.MAX:
                self._hashes.clear()
            self._hashes.add(key)
            return True
