"""The numbers ``crawler inspect`` prints by default, gathered in one pass and bounded memory.

``Summary.add(record)`` is the per-line hot path: plain dict updates, no allocation that grows
with the number of lines. Everything here can be pickled and merged, so one large file can be
summarised by several processes, each taking a byte range, and the parts added up.

Definitions (the fixture tests compute each of them independently):

- ok: ``error`` is null; failed: everything else.
- host: ``urlsplit(url).hostname`` of the *requested* URL. Per crawl at most ``MAX_HOSTS``
  hosts are counted exactly; past that the least seen are dropped and the top 10 is marked
  approximate.
- elapsed_ms percentiles: nearest rank (the value at rank ``ceil(q * n)`` of the sorted
  values), read from a log-bucketed histogram, within ``LatencyHistogram.RELATIVE_ERROR``
  (1 %) of the exact value. Memory is at most a few thousand buckets.
- duration: last ``fetched_at`` minus first; pages/s: records / duration (null if 0).
- field coverage per rule: the share of that rule's records whose ``data`` field is neither
  null nor ``[]`` (a ``many = true`` field that matched nothing).
- one section per ``crawl_id``, at most ``MAX_CRAWLS``; later ids share one last section.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from crawler.urls import host_of

MAX_HOSTS = 20_000
MAX_CRAWLS = 200
MAX_BAD_EXAMPLES = 20
OTHER_CRAWLS = "(more crawl ids)"
_EMPTY: list = []


class LatencyHistogram:
    """Quantiles of positive numbers with bounded memory and bounded relative error.

    Bucket ``i`` holds the values in ``(GAMMA**(i-1), GAMMA**i]`` and answers with
    ``2 * GAMMA**i / (GAMMA + 1)``, which is within RELATIVE_ERROR of anything in it (the
    DDSketch construction). Zero is counted apart.
    """

    RELATIVE_ERROR = 0.01
    GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
    INV_LOG_GAMMA = 1 / math.log(GAMMA)

    __slots__ = ("buckets", "zeros", "count", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.total = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value > 0:
            key = math.ceil(math.log(value) * self.INV_LOG_GAMMA)
            self.buckets[key] = self.buckets.get(key, 0) + 1
        else:
            self.zeros += 1

    def merge(self, other: LatencyHistogram) -> None:
        self.count += other.count
        self.total += other.total
        self.zeros += other.zeros
        for key, n in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + n

    def bucket_value(self, key: int) -> float:
        return 2 * self.GAMMA**key / (self.GAMMA + 1)

    def bucket_bounds(self, key: int) -> tuple[float, float]:
        return self.GAMMA ** (key - 1), self.GAMMA**key

    def quantile(self, q: float) -> float | None:
        """The nearest-rank q-quantile (0 < q <= 1), or None when empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        if rank <= self.zeros:
            return 0.0
        seen = self.zeros
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                return self.bucket_value(key)
        raise AssertionError("bucket counts do not add up to count")


class CrawlStats:
    """Counters for the records of one crawl (or, merged, of all)."""

    def __init__(self) -> None:
        self.records = 0
        self.ok = 0
        self.status: dict[int | None, int] = {}
        self.errors: dict[str, int] = {}
        self.hosts: dict[str, int] = {}
        self.hosts_pruned = False
        self.depth: dict[int, int] = {}
        self.bytes = 0
        self.latency = LatencyHistogram()
        # fetched_at in the writer's fixed form ("...T01:00:00.123Z", 24 chars) orders like
        # the time it names, so min/max is a string comparison; other forms are parsed.
        self.first_text = "\uffff"
        self.last_text = ""
        self.first_other: datetime | None = None
        self.last_other: datetime | None = None
        self.rules: dict[str | None, list] = {}  # rule -> [records, {field: covered}]
        self.changed_true = 0
        self.changed_false = 0

    def add(self, rec: dict) -> None:
        self.records += 1
        status = rec["status"]
        self.status[status] = self.status.get(status, 0) + 1
        error = rec["error"]
        if error is None:
            self.ok += 1
        else:
            kind = error["type"]
            self.errors[kind] = self.errors.get(kind, 0) + 1
        host = _host(rec["url"])
        seen = self.hosts.get(host, 0)
        self.hosts[host] = seen + 1
        if not seen and len(self.hosts) > MAX_HOSTS:
            self._prune_hosts()
        depth = rec["depth"]
        self.depth[depth] = self.depth.get(depth, 0) + 1
        self.bytes += rec["bytes"]
        self.latency.add(rec["elapsed_ms"])
        when = rec["fetched_at"]
        if len(when) == 24 and when[23] == "Z":
            if when < self.first_text:
                self.first_text = when
            if when > self.last_text:
                self.last_text = when
        else:
            self._add_other_time(when)
        rule = rec["rule"]
        entry = self.rules.get(rule)
        if entry is None:
            entry = self.rules[rule] = [0, {}]
        entry[0] += 1
        covered = entry[1]
        for name, value in rec["data"].items():
            covered[name] = covered.get(name, 0) + (value is not None and value != _EMPTY)
        changed = rec["changed"]
        if changed is not None:
            if changed:
                self.changed_true += 1
            else:
                self.changed_false += 1

    def _add_other_time(self, when: str) -> None:
        moment = datetime.fromisoformat(when)
        if self.first_other is None or moment < self.first_other:
            self.first_other = moment
        if self.last_other is None or moment > self.last_other:
            self.last_other = moment

    def _prune_hosts(self) -> None:
        # Keep the busier half: the top 10 stays right unless the host list is long-tailed.
        keep = sorted(self.hosts.items(), key=lambda kv: kv[1], reverse=True)[: MAX_HOSTS // 2]
        self.hosts = dict(keep)
        self.hosts_pruned = True

    def merge(self, other: CrawlStats) -> None:
        self.records += other.records
        self.ok += other.ok
        for mine, theirs in ((self.status, other.status), (self.errors, other.errors),
                             (self.depth, other.depth), (self.hosts, other.hosts)):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        self.hosts_pruned |= other.hosts_pruned
        if len(self.hosts) > MAX_HOSTS:
            self._prune_hosts()
        self.bytes += other.bytes
        self.latency.merge(other.latency)
        self.first_text = min(self.first_text, other.first_text)
        self.last_text = max(self.last_text, other.last_text)
        for moment in (other.first_other, other.last_other):
            if moment is not None:
                self._add_other_time(moment.isoformat())
        for rule, (n, fields) in other.rules.items():
            entry = self.rules.setdefault(rule, [0, {}])
            entry[0] += n
            for name, covered in fields.items():
                entry[1][name] = entry[1].get(name, 0) + covered
        self.changed_true += other.changed_true
        self.changed_false += other.changed_false

    def time_range(self) -> tuple[datetime, datetime] | None:
        firsts = [m for m in (self.first_other,) if m is not None]
        lasts = [m for m in (self.last_other,) if m is not None]
        if self.last_text:
            firsts.append(datetime.fromisoformat(self.first_text))
            lasts.append(datetime.fromisoformat(self.last_text))
        if not firsts:
            return None
        return min(firsts), max(lasts)

    def to_dict(self) -> dict[str, Any]:
        span = self.time_range()
        duration = (span[1] - span[0]).total_seconds() if span else None
        top_hosts = sorted(self.hosts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        return {
            "records": self.records,
            "ok": self.ok,
            "failed": self.records - self.ok,
            "status": {_status_key(s): n for s, n in sorted(self.status.items(), key=_status_order)},
            "errors": dict(sorted(self.errors.items(), key=lambda kv: (-kv[1], kv[0]))),
            "hosts": {
                "top": [{"host": h, "records": n} for h, n in top_hosts],
                "distinct": None if self.hosts_pruned else len(self.hosts),
                "approximate": self.hosts_pruned,
            },
            "depth": {str(d): n for d, n in sorted(self.depth.items())},
            "bytes": self.bytes,
            "elapsed_ms": {
                "count": self.latency.count,
                "mean": self.latency.total / self.latency.count if self.latency.count else None,
                "p50": self.latency.quantile(0.50),
                "p95": self.latency.quantile(0.95),
                "p99": self.latency.quantile(0.99),
                "relative_error": LatencyHistogram.RELATIVE_ERROR,
            },
            "time": {
                "first": _iso(span[0]) if span else None,
                "last": _iso(span[1]) if span else None,
                "duration_s": duration,
                "pages_per_s": self.records / duration if duration else None,
            },
            "changed": {"true": self.changed_true, "false": self.changed_false},
            "rules": {
                ("null" if rule is None else rule): {
                    "records": n,
                    "coverage": {name: covered / n for name, covered in sorted(fields.items())},
                }
                for rule, (n, fields) in sorted(self.rules.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
            },
        }


class BadLines:
    """How many lines were skipped, and the first few, by file and line number."""

    def __init__(self, keep: int = MAX_BAD_EXAMPLES) -> None:
        self.count = 0
        self.keep = keep
        self.first: list[tuple[str, int, str]] = []

    def add(self, file: str, line: int, reason: str) -> None:
        self.count += 1
        if len(self.first) < self.keep:
            self.first.append((file, line, reason))

    def merge(self, other: BadLines, line_offset: int = 0) -> None:
        self.count += other.count
        room = self.keep - len(self.first)
        self.first += [(f, n + line_offset, r) for f, n, r in other.first[: max(room, 0)]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "first": [{"file": f, "line": n, "reason": r} for f, n, r in self.first],
        }


class Summary:
    """All records of a run, split by crawl_id, plus the lines that were skipped."""

    def __init__(self) -> None:
        self.crawls: dict[str, CrawlStats] = {}
        self.bad = BadLines()
        self.lines = 0
        self._last_id: str | None = None
        self._last_stats: CrawlStats | None = None

    def add(self, rec: dict) -> None:
        crawl_id = rec["crawl_id"]
        if crawl_id != self._last_id:
            self._last_id = crawl_id
            self._last_stats = self._stats_for(crawl_id)
        self._last_stats.add(rec)  # type: ignore[union-attr]

    def _stats_for(self, crawl_id: str) -> CrawlStats:
        stats = self.crawls.get(crawl_id)
        if stats is None:
            if len(self.crawls) >= MAX_CRAWLS:
                crawl_id = OTHER_CRAWLS
                stats = self.crawls.get(crawl_id)
            if stats is None:
                stats = self.crawls[crawl_id] = CrawlStats()
        return stats

    def merge(self, other: Summary, line_offset: int = 0) -> None:
        for crawl_id, stats in other.crawls.items():
            self._stats_for(crawl_id).merge(stats)
        self.bad.merge(other.bad, line_offset)
        self.lines += other.lines
        self._last_id = None

    def total(self) -> CrawlStats:
        total = CrawlStats()
        for stats in self.crawls.values():
            total.merge(stats)
        return total

    def to_dict(self, files: list[str] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = {}
        if files is not None:
            result["files"] = files
        result["lines"] = self.lines
        result["bad_lines"] = self.bad.to_dict()
        result.update(self.total().to_dict())
        result["crawls"] = [
            {"crawl_id": crawl_id, **stats.to_dict()} for crawl_id, stats in sorted(self.crawls.items())
        ]
        return result


_host_cache: dict[str, str] = {}


def _host(url: str) -> str:
    # urlsplit costs more than the rest of add(); URLs of one host share the prefix up to the
    # first "/" after "scheme://", so the answer is cached per prefix.
    end = url.find("/", 8)
    prefix = url if end < 0 else url[:end]
    host = _host_cache.get(prefix)
    if host is None:
        if len(_host_cache) > 50_000:
            _host_cache.clear()
        try:
            host = host_of(prefix) or ""
        except ValueError:  # e.g. an invalid IPv6 literal: count it, under no host
            host = ""
        _host_cache[prefix] = host
    return host


def host_name(url: str) -> str:
    """The host a record is counted under (see the module docstring)."""
    return _host(url)


def _status_key(status: int | None) -> str:
    return "null" if status is None else str(status)


def _status_order(item: tuple[int | None, int]) -> tuple[bool, int]:
    return (item[0] is None, item[0] or 0)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
