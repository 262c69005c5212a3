"""One pass over input lines: decode, check against the schema, hand good records on.

A line that is not JSON, not an object, or not a valid record (``sinks.schema.validate_record``)
is passed to ``bad.add(file, line, reason)`` and skipped, never raised. Two loops share that
rule:

- ``scan_structs`` / ``scan_fast``, for the summary, the report and ``--validate``: a block of
  lines is decoded and checked in one call (``sinks.schema.decode_batch``, msgspec) into
  RecordStructs; only a block holding a bad line is taken line by line.
- ``scan_lines`` / ``scan``, for everything that needs records as dicts (``--where`` is
  JMESPath, printed records keep their keys): orjson, then ``validate_record``.

``summarize(sources, where)`` is the default mode's pass. A large plain file is cut into
line-aligned byte ranges, summed up by a process pool, because decoding is most of the work::

    file ──split_ranges──► (path, start, length) ──Pool.imap──► worker: scan + Summary ──┐
                                                                                         │ in order
    caller ◄────────────────── PassResult.merge(part, line_offset) ◄─────────────────────┘

``imap`` keeps the parts in file order, so a bad line's number is the count of lines in the
earlier parts plus its number within its own part.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from crawler.inspection.sources import (
    MAX_LINE,
    OVERLONG,
    Source,
    TruncatedInput,
    iter_line_batches,
    open_source,
    split_ranges,
)
from crawler.inspection.summary import BadLines, Summary
from sinks.schema import decode_batch, record_struct, validate_record

PARALLEL_MIN_BYTES = 32 << 20  # below this, starting processes costs more than it saves
RANGE_BYTES = 64 << 20  # one task's share: big enough to amortise, small enough to balance


class StopScan(Exception):
    """Raised by a consumer that has seen enough (``--limit``)."""


def check_line(line: bytes | None, torn: bool) -> tuple[Any, str]:
    """The exact check of one line: (record dict, "") or (None, why it is not a record)."""
    if line is OVERLONG:
        return None, f"line longer than {MAX_LINE >> 20} MiB, skipped"
    try:
        obj = orjson.loads(line)  # type: ignore[arg-type]
    except orjson.JSONDecodeError as exc:
        if torn:
            return None, "torn last line: no newline at end of file and not a whole record"
        if not line.strip():
            return None, "empty line"
        return None, f"not valid JSON ({str(exc).split(': line 1 ')[0]})"
    problems = validate_record(obj)
    if problems:
        return None, ("torn last line: " if torn else "") + "; ".join(problems)
    return obj, ""


def scan_lines(
    f, name: str, on_record: Callable[[dict], Any], bad: BadLines,
    length: int | None = None, where: Callable[[dict], bool] | None = None, line_offset: int = 0,
) -> int:
    """Feed the good records of one open stream, as dicts, to ``on_record``.

    Returns the number of lines read. Line numbers in ``bad`` start after ``line_offset``.
    """
    loads = orjson.loads
    validate = validate_record
    lineno = line_offset
    try:
        for lines, torn in iter_line_batches(f, length):
            for line in lines:
                lineno += 1
                try:
                    rec = loads(line)
                except (orjson.JSONDecodeError, TypeError):
                    rec, reason = check_line(line, torn)
                    if rec is None:
                        bad.add(name, lineno, reason)
                        continue
                else:
                    if validate(rec):
                        bad.add(name, lineno, check_line(line, torn)[1])
                        continue
                if where is None or where(rec):
                    on_record(rec)
    except TruncatedInput as exc:
        bad.add(name, lineno + 1, str(exc))
    return lineno - line_offset


def scan_structs(
    f, name: str, on_batch: Callable[[list, bool], Any], bad: BadLines,
    length: int | None = None, line_offset: int = 0,
) -> int:
    """Feed the good records of one open stream to ``on_batch(records, canonical_times)``.

    The records are RecordStructs, a block's worth of lines at a time. When the fast path
    (sinks.schema.decode_batch) accepts the whole batch, that is all; otherwise its lines are
    checked one by one (the good ones still arrive together). Returns the number of lines read.
    """
    lineno = line_offset
    with _no_gc():
        try:
            for lines, torn in iter_line_batches(f, length):
                recs = None if torn else decode_batch(lines)
                if recs is not None:
                    on_batch(recs, True)
                else:
                    on_batch(_checked_one_by_one(lines, torn, name, lineno, bad), False)
                lineno += len(lines)
        except TruncatedInput as exc:
            bad.add(name, lineno + 1, str(exc))
    return lineno - line_offset


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cycle collector: a pass makes no cycles (records are trees, structs untracked),
    yet each block allocates thousands of dicts, which would set it off again and again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _checked_one_by_one(lines: list, torn: bool, name: str, lineno: int, bad: BadLines) -> list:
    good = []
    for line in lines:
        lineno += 1
        recs = decode_batch([line]) if line is not OVERLONG else None
        if recs is not None:
            good.append(recs[0])
            continue
        rec, reason = check_line(line, torn)
        if rec is None:
            bad.add(name, lineno, reason)
        else:
            good.append(record_struct(rec))
    return good


def scan(
    sources: Iterable[Source], on_record: Callable[[dict], Any], bad: BadLines,
    where: Callable[[dict], bool] | None = None,
) -> int:
    """Scan each source in turn; return the number of lines read. StopScan ends it early."""
    total = 0
    try:
        for source in sources:
            with _opened(source) as f:
                total += scan_lines(f, source.name, on_record, bad, where=where)
    except StopScan:
        pass
    return total


def scan_fast(sources: Iterable[Source], on_batch: Callable[[list, bool], Any], bad: BadLines) -> int:
    """scan() for RecordStruct batches (see scan_structs); return the number of lines read."""
    total = 0
    for source in sources:
        with _opened(source) as f:
            total += scan_structs(f, source.name, on_batch, bad)
    return total


class _opened:
    """open_source() as a context manager that leaves stdin open."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def __enter__(self):
        self.f = open_source(self.source)
        return self.f

    def __exit__(self, *exc_info) -> None:
        if not self.source.is_stdin:
            self.f.close()


# -- the default mode's pass, possibly spread over processes --------------------------------

Task = tuple[Source, int, int | None]  # source, start offset, length (None: to the end)


def plan_tasks(sources: list[Source], workers: int) -> list[Task]:
    """Byte ranges to scan, in input order; only large plain files are cut up."""
    tasks: list[Task] = []
    for source in sources:
        if workers < 2 or source.is_stdin or source.is_gzip():
            tasks.append((source, 0, None))
            continue
        size = os.path.getsize(source.path)  # type: ignore[arg-type]
        if size < PARALLEL_MIN_BYTES:
            tasks.append((source, 0, None))
            continue
        parts = max(workers, -(-size // RANGE_BYTES))
        for start, end in split_ranges(source.path, parts):  # type: ignore[arg-type]
            tasks.append((source, start, end - start))
    return tasks


@dataclass
class PassResult:
    """What one pass gathers in summary mode; parts from byte ranges merge in order."""

    summary: Summary
    report: Any = None  # crawler.inspection.render.report.ReportData when --report is given
    where_errors: int = 0
    where_first_error: str | None = None

    def merge(self, other: PassResult, line_offset: int = 0) -> None:
        self.summary.merge(other.summary, line_offset)
        if self.report is not None and other.report is not None:
            self.report.merge(other.report)
        self.where_errors += other.where_errors
        self.where_first_error = self.where_first_error or other.where_first_error


def summarize_task(task: Task, where_text: str | None = None, with_report: bool = False) -> PassResult:
    """Summarise one byte range (in a worker process, or in the caller)."""
    source, start, length = task
    where = _compiled_where(where_text)
    summary = Summary()
    report = _new_report() if with_report else None
    result = PassResult(summary, report)
    with _opened(source) as f:
        if start:
            f.seek(start)
        if where is None:
            def on_batch(recs: list, canonical_times: bool) -> None:
                summary.add_batch(recs, canonical_times)
                if report is not None:
                    report.add_batch(recs)

            summary.lines = scan_structs(f, source.name, on_batch, summary.bad, length)
        else:
            # --where needs the record as a dict (JMESPath); the summary takes a struct.
            def on_record(rec: dict) -> None:
                struct = record_struct(rec)
                summary.add(struct)
                if report is not None:
                    report.add(struct)

            summary.lines = scan_lines(f, source.name, on_record, summary.bad, length, where)
            result.where_errors, result.where_first_error = where.errors, where.first_error
    return result


def _summarize_task_star(args: tuple[Task, str | None, bool]) -> PassResult:
    return summarize_task(*args)


def summarize(
    sources: list[Source], where_text: str | None = None, workers: int | None = None,
    with_report: bool = False,
) -> PassResult:
    """Summarise every good record in ``sources`` that matches ``where_text``."""
    if workers is None:
        workers = default_workers()
    tasks = plan_tasks(sources, workers)
    total = PassResult(Summary(), _new_report() if with_report else None)
    # Pool workers get /dev/null for stdin, so stdin is always read here.
    if len(tasks) < 2 or workers < 2 or any(s.is_stdin for s in sources):
        for task in tasks:
            total.merge(summarize_task(task, where_text, with_report))
        return total
    lines_before: dict[str, int] = {}
    # fork: the workers inherit the imported modules instead of importing them again.
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    with ctx.Pool(min(workers, len(tasks))) as pool:
        parts = pool.imap(_summarize_task_star, [(task, where_text, with_report) for task in tasks])
        for (source, _, _), part in zip(tasks, parts):
            offset = lines_before.get(source.name, 0)
            total.merge(part, line_offset=offset)
            lines_before[source.name] = offset + part.summary.lines
    return total


def _new_report() -> Any:
    from crawler.inspection.render.report import ReportData

    return ReportData()


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _compiled_where(where_text: str | None) -> Callable[[dict], bool] | None:
    if where_text is None:
        return None
    from crawler.inspection.query import compile_where  # only when filtering: jmespath is not free to import

    return compile_where(where_text)
