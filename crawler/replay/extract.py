"""Run the current rules over WARC files: the parser pool and the writer, no network.

The calling thread reads the WARCs and submits Pages (``submit`` blocks while the pool is
full, so memory stays bounded); the pool hands results to a queue; one sink thread owns
the writer's pipe, batches lines, and counts what was acked. The output file is rewritten
from the start on every run: an extract is cheap to redo, and appending would mix two
versions of the rules in one file.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from crawler.engine.state import new_crawl_id
from crawler.errors import AbortError
from crawler.messages import ParseResult
from crawler.procname import child_context
from crawler.replay.warcs import check_paths, read_pages
from crawler.settings import Settings
from crawler.urls import Scope
from parsers.pool import ParserPool
from parsers.worker import WorkerConfig
from sinks.writer import WriterProcess

BATCH_LINES = 512


@dataclass
class ExtractResult:
    crawl_id: str
    output: str
    pages: int = 0
    errors: Counter = field(default_factory=Counter)
    warc_records: int = 0
    elapsed: float = 0.0

    def summary(self) -> str:
        errs = sum(self.errors.values())
        rate = self.pages / self.elapsed if self.elapsed > 0 else 0.0
        detail = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items(), key=lambda kv: -kv[1]))
        return (f"extracted {self.pages} pages ({self.pages - errs} ok, {errs} errors"
                f"{': ' + detail if detail else ''}) from {self.warc_records} WARC records in "
                f"{self.elapsed:.1f}s, {rate:.0f} pages/s -> {self.output}")


class _Sink:
    """The one thread that talks to the writer: batches lines, waits for acks."""

    def __init__(self, writer: WriterProcess, result: ExtractResult, progress, submitted):
        self.writer, self.result, self.progress, self.submitted = writer, result, progress, submitted
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="extract-sink")
        self.thread.start()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported by the caller
            self.failure = exc

    def _loop(self) -> None:
        pending: list[ParseResult] = []
        done = False
        while not done or pending or self.writer.unacked:
            if not done:
                done = self._take(pending, wait=not pending and not self.writer.unacked)
            if pending and self.writer.can_send():
                self.writer.send([r.job_id for r in pending], b"".join(r.line for r in pending))
                self.result.errors.update(r.error_type for r in pending if r.error_type)
                pending = []
            for msg in self.writer.receive(0.05 if self.writer.unacked else 0.0):
                if msg[0] == "error":
                    raise AbortError(msg[2])
                self.result.pages += len(msg[1])
            if self.progress is not None:
                self.progress.update(done=self.result.pages, queued=0,
                                     in_flight=self.submitted() - self.result.pages,
                                     errors=sum(self.result.errors.values()))

    def _take(self, pending: list[ParseResult], wait: bool) -> bool:
        """Move up to a batch of results into ``pending``; True once the end mark is seen."""
        while len(pending) < BATCH_LINES:
            try:
                item = self.results.get(timeout=0.2) if wait else self.results.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            pending.append(item)
            wait = False
        return False


def run_extract(settings: Settings, warcs: list[str], output: str, progress=None) -> ExtractResult:
    check_paths(warcs)
    crawl_id = new_crawl_id()
    result = ExtractResult(crawl_id=crawl_id, output=output)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    ctx = child_context()
    writer = WriterProcess(ctx, output, 0)  # committed size 0: the file starts empty
    status, message = writer.handshake()
    if status != "ready":
        writer.close()
        raise AbortError(message)
    # Links are counted (the record's "links") but never followed: max_depth 0.
    config = WorkerConfig(crawl_id=crawl_id, rules=settings.parse.rules, scope=Scope(domains=frozenset()),
                          obey_robots=settings.crawl.obey_robots, max_depth=0,
                          max_links=settings.crawl.max_links_per_page)
    counts = {"records": 0, "pages": 0}
    started = time.monotonic()
    sink = _Sink(writer, result, progress, lambda: counts["pages"])
    pool = None
    try:
        pool = ParserPool(settings.parse_workers, config, on_result=sink.results.put)
        for page in read_pages(warcs, counts):
            if sink.failure is not None:
                break
            counts["pages"] += 1
            pool.submit(page)
        pool.close()
    except BaseException:  # Ctrl-C, an unreadable WARC: what was parsed is still written
        if pool is not None:
            pool.terminate_broken(RuntimeError("extract aborted"))
            pool.close()
        raise
    finally:
        sink.results.put(None)
        sink.thread.join()
        writer.close()
    if sink.failure is not None:
        raise sink.failure
    if pool is not None and pool.broken is not None:
        raise AbortError(f"parser pool broken: {pool.broken}")
    result.warc_records = counts["records"]
    result.elapsed = time.monotonic() - started
    return result
