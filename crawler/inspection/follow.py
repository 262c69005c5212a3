"""``crawler inspect FILE... --follow``: tail -f for crawl output, with --where and a summary.

The files are first read to their current end: those records go into the summary and, like
tail, the last ``BACKLOG`` matching ones are printed. Then every ``POLL_S`` seconds each file is
read from where the last read stopped, and each new matching record is printed at once.

Only whole lines are consumed. The writer appends a line in one write, but a reader can still
catch it half-way; the bytes after the last ``\\n`` stay in a buffer until the rest arrives,
so a half-written line is never reported as bad. A file that shrinks (a resumed crawl cuts
its output back to the last committed line, DESIGN §4) is followed from its new end.

Every ``--summary-every`` seconds one line goes to stderr (records, ok/failed, pages/s over
the interval, p95); the full summary is printed to stderr on exit. Ctrl-C stops: exit 130.
"""

from __future__ import annotations

import argparse
import io
import os
import select
import sys
import time
from collections import deque

from rich.console import Console

from crawler.errors import UsageError
from crawler.inspection.query import Fields, compile_where
from crawler.inspection.render import warn
from crawler.inspection.render.records import make_writer
from crawler.inspection.scanning import check_line, scan_lines, scan_structs
from crawler.inspection.sources import BLOCK, MAX_LINE, Source
from crawler.inspection.summary import Summary
from crawler.inspection.render.summary import fmt_ms, render_summary
from sinks.schema import record_struct

POLL_S = 0.2  # well inside the promise that a new record shows within a second
BACKLOG = 10


class Tail:
    """New whole lines of one growing file (or of stdin) since the last call."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.partial = b""  # the bytes after the last newline read so far
        self.lines = 0
        self.eof = False  # stdin only: the writer closed the pipe
        if source.path is None:
            self.fd = sys.stdin.fileno()
            self.f = None
        else:
            self.f = open(source.path, "rb")
            if self.f.read(2) == b"\x1f\x8b":
                raise UsageError(f"--follow: {source.name} is gzip-compressed; only plain files can be followed")
            self.f.seek(0)
            self.pos = 0

    def read_new(self) -> bytes:
        """Whole lines that arrived since the last call (up to BLOCK bytes), or b""."""
        data = self._read()
        if not data:
            return b""
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        self.partial = data[cut:]
        if len(self.partial) > MAX_LINE:
            warn(f"warning: {self.source.name}: a line longer than {MAX_LINE >> 20} MiB was skipped")
            self.partial = b""
        return data[:cut]

    def _read(self) -> bytes:
        if self.f is None:
            ready, _, _ = select.select([self.fd], [], [], 0)
            if not ready:
                return b""
            data = os.read(self.fd, BLOCK)
            self.eof = not data
            return data
        size = os.fstat(self.f.fileno()).st_size
        if size < self.pos:
            warn(f"warning: {self.source.name} shrank to {size:,} bytes (crawl resumed?); "
                 "following from its new end")
            self.pos = size
            self.partial = b""
        if size == self.pos:
            return b""
        self.f.seek(self.pos)
        data = self.f.read(min(size - self.pos, BLOCK))
        self.pos += len(data)
        return data

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


def run_follow(sources: list[Source], args: argparse.Namespace, console: Console, err: Console) -> int:
    where = compile_where(args.where) if args.where else None
    fields = Fields(args.fields) if args.fields else None
    writer = make_writer(args.format or "table", fields, console, follow=True)
    summary = Summary()
    tails = [Tail(source) for source in sources]
    deadline = None if args.follow_timeout is None else time.monotonic() + args.follow_timeout
    try:
        for rec in _read_backlog(tails, summary, where):
            writer.write(rec)
        writer.flush()
        rolling = Rolling(summary, args.summary_every)
        while deadline is None or time.monotonic() < deadline:
            fed = False
            for tail in tails:
                while chunk := tail.read_new():
                    _feed(tail, chunk, summary, where, writer.write)
                    fed = True
            if fed:
                writer.flush()
            rolling.maybe_print()
            if all(t.eof for t in tails):
                break
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        _finish(writer, tails, summary, sources, err)
        return 130
    _finish(writer, tails, summary, sources, err)
    return 0


def _read_backlog(tails: list[Tail], summary: Summary, where) -> deque[dict]:
    """Read what the files hold already; return the last BACKLOG matching records.

    Without --where this takes the summary's fast path (a file may already hold millions of
    lines) and decodes only the last few lines as dicts.
    """
    backlog: deque[dict] = deque(maxlen=BACKLOG)
    for tail in tails:
        while chunk := tail.read_new():
            if where is not None:
                _feed(tail, chunk, summary, where, backlog.append)
                continue
            tail.lines += scan_structs(io.BytesIO(chunk), tail.source.name, summary.add_batch, summary.bad,
                                       line_offset=tail.lines)
            for line in chunk.rsplit(b"\n", BACKLOG + 1)[-BACKLOG - 1:]:
                rec, _ = check_line(line, torn=False) if line else (None, "")
                if rec is not None:
                    backlog.append(rec)
    return backlog


def _feed(tail: Tail, chunk: bytes, summary: Summary, where, emit) -> None:
    def on_record(rec: dict) -> None:
        summary.add(record_struct(rec))
        if where is None or where(rec):
            emit(rec)

    tail.lines += scan_lines(io.BytesIO(chunk), tail.source.name, on_record, summary.bad,
                             line_offset=tail.lines)


def _finish(writer, tails: list[Tail], summary: Summary, sources: list[Source], err: Console) -> None:
    try:
        writer.close()
    except BrokenPipeError:
        pass
    for tail in tails:
        tail.close()
    summary.lines = sum(t.lines for t in tails)
    render_summary(err, summary.to_dict([s.name for s in sources]))


class Rolling:
    """The one-line summary printed every few seconds while following."""

    def __init__(self, summary: Summary, every: float) -> None:
        self.summary = summary
        self.every = every
        self.last_time = time.monotonic()
        self.last_records = self._records()

    def _records(self) -> int:
        return sum(s.records for s in self.summary.crawls.values())

    def maybe_print(self) -> None:
        now = time.monotonic()
        if now - self.last_time < self.every:
            return
        total = self.summary.total()
        rate = (total.records - self.last_records) / (now - self.last_time)
        p95 = total.latency.quantile(0.95)
        warn(f"[{time.strftime('%H:%M:%S')}] {total.records:,} records ({total.ok:,} ok, "
             f"{total.records - total.ok:,} failed), {rate:,.1f} pages/s, p95 {fmt_ms(p95)}, "
             f"{self.summary.bad.count:,} bad lines")
        self.last_time, self.last_records = now, total.records
