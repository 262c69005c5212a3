"""``[[fetch.hosts]]``: per-host politeness rules, like Colly's LimitRule.

Each table has a host pattern (``match = "*.example.com"``, a shell-style glob over the
host name, case-insensitive, port excluded) and any of ``concurrency``, ``delay``,
``user_agent`` and ``headers``, which override the ``[fetch]`` defaults for the hosts it
matches. The first matching table wins. ``HostRules.for_host`` answers with a cache, so
the fetch path pays one dict look-up per request.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from crawler.errors import UsageError
from crawler.rules import closest

KEYS = {"match", "concurrency", "delay", "user_agent", "headers"}
# A host glob: host name characters, "*", "?" and [] sets, or an IPv6 literal as hosts are
# spelled ("::1"). No scheme, path, port or space ("https://x", "x/", "x:80" are mistakes).
PATTERN = re.compile(r"^[A-Za-z0-9.\-_*?\[\]!]+$|^[0-9A-Fa-f.*?]*:[0-9A-Fa-f:.*?]*:[0-9A-Fa-f:.*?]*$")
CACHE_MAX = 10_000


@dataclass(frozen=True)
class HostRule:
    match: str
    concurrency: int | None = None
    delay: float | None = None
    user_agent: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    regex: re.Pattern | None = field(default=None, compare=False, repr=False)

    def matches(self, host: str) -> bool:
        return self.regex is not None and self.regex.match(host) is not None


def build_host_rules(tables: Any, source: str) -> tuple[HostRule, ...]:
    """Check the ``[[fetch.hosts]]`` tables; a problem is one UsageError line naming the table."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise UsageError(f"{source}: [fetch] hosts: expected [[fetch.hosts]] tables")
    return tuple(_rule(table, f"{source}: [[fetch.hosts]] #{i + 1}") for i, table in enumerate(tables))


def _rule(table: dict, where: str) -> HostRule:
    pattern = table.get("match")
    if isinstance(pattern, str):
        where = f'{where} (match = "{pattern}")'
    for key in table:
        if key not in KEYS:
            raise UsageError(f"{where}: {key}: unknown key{closest(key, KEYS)}")
    if not isinstance(pattern, str) or not pattern.strip():
        raise UsageError(f"{where}: match: expected a host pattern such as \"*.example.com\"")
    if not PATTERN.match(pattern) or pattern.count("[") != pattern.count("]"):
        raise UsageError(f"{where}: match: not a host pattern (a host name with * and ?; "
                         "no scheme, path or port)")
    if len(table) == 1:
        raise UsageError(f"{where}: overrides nothing (give concurrency, delay, user_agent or headers)")
    conc, delay = table.get("concurrency"), table.get("delay")
    if conc is not None and (not isinstance(conc, int) or isinstance(conc, bool) or conc < 1):
        raise UsageError(f"{where}: concurrency: must be an integer >= 1, got {conc!r}")
    if delay is not None and (not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0):
        raise UsageError(f"{where}: delay: must be a number >= 0, got {delay!r}")
    agent = table.get("user_agent")
    if agent is not None and (not isinstance(agent, str) or not agent.strip() or "\n" in agent):
        raise UsageError(f"{where}: user_agent: must be a non-empty one-line string, got {agent!r}")
    headers = table.get("headers", {})
    if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k.strip() and "\n" not in k + v and ":" not in k
            for k, v in headers.items()):
        raise UsageError(f"{where}: headers: expected a table of header names to one-line strings")
    return HostRule(pattern, conc, None if delay is None else float(delay), agent, dict(headers),
                    re.compile(fnmatch.translate(pattern.lower())))


class HostRules:
    """The rules in order; ``for_host(host)`` is the first that matches (None: the defaults)."""

    def __init__(self, rules: tuple[HostRule, ...] = ()):
        self.rules = rules
        self._cache: dict[str, HostRule | None] = {}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def for_host(self, host: str) -> HostRule | None:
        if not self.rules:
            return None
        try:
            return self._cache[host]
        except KeyError:
            pass
        lowered = host.lower()
        found = next((rule for rule in self.rules if rule.matches(lowered)), None)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[host] = found
        return found

    def concurrency(self, host: str, default: int) -> int:
        rule = self.for_host(host)
        return default if rule is None or rule.concurrency is None else rule.concurrency

    def delay(self, host: str, default: float) -> float:
        rule = self.for_host(host)
        return default if rule is None or rule.delay is None else rule.delay
