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
- incomplete records per rule: records with a ``missing`` key, per field ``missing`` and
  ``invalid`` counts, and the first few such URLs (completeness.py).
- one section per ``crawl_id``, at most ``MAX_CRAWLS``; later ids share one last section.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from itertools import repeat
from operator import attrgetter, getitem
from typing import Any

from crawler.inspection.completeness import Completeness
from crawler.inspection.latency import LatencyHistogram
from crawler.urls import host_of

MAX_HOSTS = 20_000
MAX_CRAWLS = 200
MAX_BAD_EXAMPLES = 20
OTHER_CRAWLS = "(more crawl ids)"
# "Missing" data values: `value in [None, []]` is true exactly for null and the empty list,
# and this bound method asks it in C.
_MISSING = [None, []].__contains__
_NO_END = {-1: None}  # str.find's "not found" -> slice to the end


_URL = attrgetter("url")
_STATUS = attrgetter("status")
_ERROR = attrgetter("error")
_DEPTH = attrgetter("depth")
_BYTES = attrgetter("bytes")
_ELAPSED = attrgetter("elapsed_ms")
_FETCHED_AT = attrgetter("fetched_at")
_RULE = attrgetter("rule")
_DATA = attrgetter("data")
_CHANGED = attrgetter("changed")
_CRAWL_ID = attrgetter("crawl_id")


class CrawlStats:
    """Counters for the records of one crawl (or, merged, of all).

    ``add_batch`` takes a list of RecordStruct and works a column at a time: ``map`` with an
    attrgetter pulls a field out of every record, and Counter.update, sum, min and max fold it,
    all in C. That is what keeps the summary near the cost of decoding (docs/performance-inspect.md).
    """

    def __init__(self) -> None:
        self.records = 0
        self.ok = 0
        self.status: Counter = Counter()
        self.errors: Counter = Counter()
        # Per "scheme://netloc" prefix of the URL (the cheap part); turned into host names by
        # hosts() at the end.
        self.origins: Counter = Counter()
        self.hosts_pruned = False
        self.depth: Counter = Counter()
        self.bytes = 0
        self.latency = LatencyHistogram()
        # fetched_at in the writer's form ("...T01:00:00.123Z") orders like the time it names,
        # so min/max is a string comparison; other forms are parsed.
        self.first_text = "\uffff"
        self.last_text = ""
        self.first_other: datetime | None = None
        self.last_other: datetime | None = None
        # (rule, data keys, missing flags) -> records; coverage() reads it.
        self.data_patterns: Counter = Counter()
        self.changed_true = 0
        self.changed_false = 0
        self.completeness = Completeness()

    def add_batch(self, recs: list, canonical_times: bool = False) -> None:
        """Count valid records; ``canonical_times`` says every fetched_at is in the writer's form."""
        n = len(recs)
        if not n:
            return
        self.records += n
        self.status.update(map(_STATUS, recs))
        errors = list(map(_ERROR, recs))
        ok = errors.count(None)
        self.ok += ok
        if ok < n:
            self.errors.update([e.type for e in errors if e is not None])
        # "scheme://netloc": the URL up to the first "/" after position 8 (or all of it).
        urls = list(map(_URL, recs))
        ends = list(map(str.find, urls, repeat("/"), repeat(8)))
        self.origins.update(map(getitem, urls, map(slice, repeat(None), map(_NO_END.get, ends, ends))))
        if len(self.origins) > MAX_HOSTS:
            self._prune_origins()
        self.depth.update(map(_DEPTH, recs))
        self.bytes += sum(map(_BYTES, recs))
        self.latency.add_many(list(map(_ELAPSED, recs)))
        times = list(map(_FETCHED_AT, recs))
        if canonical_times:
            self.first_text = min(self.first_text, min(times))
            self.last_text = max(self.last_text, max(times))
        else:
            for when in times:
                self._add_time(when)
        rules = list(map(_RULE, recs))
        # One pattern per record: (rule, its data keys, which of their values are missing).
        # Records of one rule share a handful of patterns, so this Counter stays small.
        datas = list(map(_DATA, recs))
        self.data_patterns.update(zip(
            rules, map(tuple, datas), map(tuple, map(map, repeat(_MISSING), map(dict.values, datas)))))
        changed = list(map(_CHANGED, recs))
        self.changed_true += changed.count(True)
        self.changed_false += changed.count(False)
        self.completeness.add_batch(recs)

    def _add_time(self, when: str) -> None:
        if len(when) == 24 and when[23] == "Z" and when[10] == "T":
            self.first_text = min(self.first_text, when)
            self.last_text = max(self.last_text, when)
            return
        moment = datetime.fromisoformat(when)
        if self.first_other is None or moment < self.first_other:
            self.first_other = moment
        if self.last_other is None or moment > self.last_other:
            self.last_other = moment

    def _prune_origins(self) -> None:
        # Keep the busier half: the top 10 stays right unless the host list is long-tailed.
        self.origins = Counter(dict(self.origins.most_common(MAX_HOSTS // 2)))
        self.hosts_pruned = True

    def hosts(self) -> Counter:
        """Records per host name."""
        hosts: Counter = Counter()
        for origin, n in self.origins.items():
            hosts[_host(origin)] += n
        return hosts

    def merge(self, other: CrawlStats) -> None:
        self.records += other.records
        self.ok += other.ok
        self.status.update(other.status)
        self.errors.update(other.errors)
        self.depth.update(other.depth)
        self.origins.update(other.origins)
        self.hosts_pruned |= other.hosts_pruned
        if len(self.origins) > MAX_HOSTS:
            self._prune_origins()
        self.bytes += other.bytes
        self.latency.merge(other.latency)
        self.first_text = min(self.first_text, other.first_text)
        self.last_text = max(self.last_text, other.last_text)
        for moment in (other.first_other, other.last_other):
            if moment is not None:
                self._add_time(moment.isoformat())
        self.data_patterns.update(other.data_patterns)
        self.changed_true += other.changed_true
        self.changed_false += other.changed_false
        self.completeness.merge(other.completeness)

    def time_range(self) -> tuple[datetime, datetime] | None:
        firsts = [m for m in (self.first_other,) if m is not None]
        lasts = [m for m in (self.last_other,) if m is not None]
        if self.last_text:
            firsts.append(datetime.fromisoformat(self.first_text))
            lasts.append(datetime.fromisoformat(self.last_text))
        if not firsts:
            return None
        return min(firsts), max(lasts)

    def rule_records(self) -> Counter:
        """Records per rule."""
        counts: Counter = Counter()
        for (rule, _, _), n in self.data_patterns.items():
            counts[rule] += n
        return counts

    def coverage(self) -> dict[str | None, dict[str, float]]:
        """rule -> field -> share of the rule's records where the field is not null nor []."""
        per_rule = self.rule_records()
        covered: dict[str | None, dict[str, int]] = {}
        for (rule, names, missing), n in self.data_patterns.items():
            fields = covered.setdefault(rule, {})
            for name, absent in zip(names, missing):
                fields[name] = fields.get(name, 0) + (0 if absent else n)
        return {rule: {name: c / per_rule[rule] for name, c in sorted(fields.items())}
                for rule, fields in covered.items()}

    def to_dict(self) -> dict[str, Any]:
        span = self.time_range()
        duration = (span[1] - span[0]).total_seconds() if span else None
        hosts = self.hosts()
        top_hosts = sorted(hosts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        coverage = self.coverage()
        return {
            "records": self.records,
            "ok": self.ok,
            "failed": self.records - self.ok,
            "status": {_status_key(s): n for s, n in sorted(self.status.items(), key=_status_order)},
            "errors": dict(sorted(self.errors.items(), key=lambda kv: (-kv[1], kv[0]))),
            "hosts": {
                "top": [{"host": h, "records": n} for h, n in top_hosts],
                "distinct": None if self.hosts_pruned else len(hosts),
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
                ("null" if rule is None else rule): {"records": n, "coverage": coverage.get(rule, {}),
                                                     **self.completeness.for_rule(rule)}
                for rule, n in sorted(self.rule_records().items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
            },
            "incomplete_examples": self.completeness.examples,
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
    """All records of a run, split by crawl_id, plus the lines that were skipped.

    ``add_batch(recs)`` is the fast way in; ``add(rec)`` (one record, a RecordStruct) queues
    records and counts them a batch at a time.
    """

    BUFFER = 2048

    def __init__(self) -> None:
        self._crawls: dict[str, CrawlStats] = {}
        self.bad = BadLines()
        self.lines = 0
        self._pending: list = []

    def add(self, rec: Any) -> None:
        self._pending.append(rec)
        if len(self._pending) >= self.BUFFER:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self.add_batch(pending)

    def add_batch(self, recs: list, canonical_times: bool = False) -> None:
        crawl_ids = set(map(_CRAWL_ID, recs))
        if len(crawl_ids) == 1:
            self._stats_for(crawl_ids.pop()).add_batch(recs, canonical_times)
            return
        groups: dict[str, list] = {}
        for rec in recs:
            groups.setdefault(rec.crawl_id, []).append(rec)
        for crawl_id, group in groups.items():
            self._stats_for(crawl_id).add_batch(group, canonical_times)

    @property
    def crawls(self) -> dict[str, CrawlStats]:
        self._flush()
        return self._crawls

    def _stats_for(self, crawl_id: str) -> CrawlStats:
        stats = self._crawls.get(crawl_id)
        if stats is None:
            if len(self._crawls) >= MAX_CRAWLS:
                crawl_id = OTHER_CRAWLS
                stats = self._crawls.get(crawl_id)
            if stats is None:
                stats = self._crawls[crawl_id] = CrawlStats()
        return stats

    def merge(self, other: Summary, line_offset: int = 0) -> None:
        self._flush()
        for crawl_id, stats in other.crawls.items():
            self._stats_for(crawl_id).merge(stats)
        self.bad.merge(other.bad, line_offset)
        self.lines += other.lines

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

    def __getstate__(self) -> dict:
        self._flush()
        return self.__dict__


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
