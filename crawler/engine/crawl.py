"""Wiring one crawl together; the coordinator loop.

The coordinator is the thread that calls ``Crawl.run`` (the main thread, for the CLI,
so signal handlers can reach it). It is the only user of the frontier and of the
writer pipe, so neither needs a lock. Every other actor talks to it through one
event queue:

- fetcher threads post ``("result", ParseResult)`` for pages that failed to fetch,
  and ``("release", job)`` for jobs they gave up on because the crawl is stopping;
- the parser pool's manager thread posts ``("result", ParseResult)`` for parsed pages.

For each result the coordinator queues the record line for the writer and admits the
page's links to the frontier *before* the line is sent, so that by the time the
writer acks a record (and the frontier marks its URL done) the links it led to are
in the frontier too: a crash can never lose a branch of the crawl.

Shutdown is in flow order: scheduler closed (buffered jobs go back to the queue),
fetchers joined, parser pool drained and joined, last lines written and acked,
writer joined, frontier closed.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import shutil
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from crawler import __version__, PROJECT_URL
from crawler.errors import AbortError, StateError, UsageError
from crawler.fetch.policy import FetchAborted, FetchPolicy, RetryLater, SeenURLs
from crawler.fetch.requests_engine import RequestsFetcher
from crawler.engine.frontier import SQLiteFrontier, known_reader
from crawler.engine.state import StateLock, begin_run, default_state_dir, has_placeholders
from crawler.fetch.guard import AddressGuard
from crawler.messages import FetchJob, Page, utc_now_iso
from crawler.engine.hosts import HostScheduler
from crawler.fetch.robots import RobotsCache
from crawler.settings import Settings
from crawler.urls import Scope, host_of
from parsers.pool import ParserPool
from parsers.worker import WorkerConfig, error_result
from sinks.writer import WriterProcess

log = logging.getLogger("crawler")
request_log = logging.getLogger("crawler.requests")

BATCH_LINES = 512  # records per write batch, at most
BATCH_AGE = 0.05  # seconds a record may wait for its batch to fill
GONE_STATUSES = (404, 410)  # recorded once, then never revisited by later runs


def default_user_agent() -> str:
    return f"crawler/{__version__} (+{PROJECT_URL})"


@dataclass
class CrawlResult:
    crawl_id: str
    output: str
    pages: int = 0  # records written by this run
    errors: Counter = field(default_factory=Counter)
    elapsed: float = 0.0
    interrupted: bool = False
    resumed: bool = False
    done_total: int = 0
    queued_left: int = 0
    run_number: int = 1

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        errs = sum(self.errors.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items(), key=lambda kv: -kv[1]))
        state = "interrupted after" if self.interrupted else "crawled"
        text = (f"{state} {self.pages} pages ({self.pages - errs} ok, {errs} errors"
                f"{': ' + detail if detail else ''}) in {self.elapsed:.1f}s, "
                f"{self.pages_per_second:.0f} pages/s -> {self.output}")
        if self.queued_left:
            text += f" ({self.queued_left} URLs left queued)"
        return text


class Crawl:
    """One run of a crawl. With ``new_run`` (scheduled crawls), a state whose last run
    finished starts another run over every URL it knows; an unfinished run is resumed."""

    def __init__(self, settings: Settings, seeds: list[str], *, output: str | os.PathLike,
                 state_dir: str | os.PathLike | None = None, fresh: bool = False, progress=None,
                 new_run: bool = False):
        self.settings = settings
        self.seeds = seeds
        self.output_template = str(output)
        self.output = Path(output)
        self.state_dir = Path(state_dir) if state_dir else default_state_dir(self.output_template)
        self.fresh = fresh
        self.new_run = new_run
        self.progress = progress
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.stop_event = threading.Event()
        self._stop_reason: str | None = None
        self.leased: dict[int, FetchJob] = {}
        self.facts: dict[int, tuple] = {}  # what the frontier keeps per URL, until acked
        self.errors: Counter = Counter()
        self._aborted = False

    # -- control from other threads / signal handlers ----------------------------------------
    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop taking new URLs; what is in flight settles or goes back to the queue."""
        self._stop_reason = reason
        self.stop_event.set()

    # -- set-up --------------------------------------------------------------------------------
    def _prepare_state(self) -> None:
        if self.fresh:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            if not has_placeholders(self.output_template) and self.output.exists():
                self.output.write_bytes(b"")
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def run(self) -> CrawlResult:
        if self.settings.state.backend != "sqlite":
            raise UsageError(f'{self.settings.source}: [state] backend = "{self.settings.state.backend}" '
                             'is not available in this version; use "sqlite"')
        self._prepare_state()
        lock = StateLock(self.state_dir)
        try:
            return self._run_locked()
        finally:
            lock.release()

    def _run_locked(self) -> CrawlResult:
        path = self.state_dir / "frontier.sqlite"
        try:
            return self._run_with_state(SQLiteFrontier(path))
        except sqlite3.Error as exc:  # disk full, I/O error, corruption: name the file
            raise AbortError(f"crawl state {path}: {exc}") from None

    def _run_with_state(self, frontier: SQLiteFrontier) -> CrawlResult:
        s = self.settings
        ctx = mp.get_context("spawn")
        writer = pool = None
        threads: list[threading.Thread] = []
        scheduler = HostScheduler(s.fetch.per_host_concurrency, s.fetch.per_host_delay)
        try:
            recovered = frontier.recover()
            before = frontier.counts()
            crawl_id, run_number, requeued = begin_run(frontier, self.new_run)
            resumed = requeued is None and (before.done > 0 or before.queued > 0)
            self.output = Path(self.output_template.replace("{crawl_id}", crawl_id)
                               .replace("{date}", frontier.get_meta("run_started")[:10]))
            self.output.parent.mkdir(parents=True, exist_ok=True)
            same_file = frontier.get_meta("output_path") == str(self.output)
            committed = frontier.get_meta("output_size") if same_file else None
            writer = WriterProcess(ctx, str(self.output), int(committed) if committed is not None else None,
                                   frontier.get_meta("output_tail") if same_file else None)
            status, message = writer.handshake()
            if status != "ready":
                raise (StateError if status in ("locked", "short", "replaced") else AbortError)(message)
            if committed is None:
                # A new output file, or a new crawl appending after what the file held.
                frontier.set_meta("output_path", str(self.output))
                frontier.complete([], writer.size, writer.tail)
            if resumed:
                log.warning("resuming crawl %s: %d done, %d queued%s", crawl_id, before.done,
                            before.queued, f" ({recovered} in flight were re-queued)" if recovered else "")
            elif requeued:
                log.warning("run %d (%s): revisiting %d known URLs", run_number, crawl_id, requeued)
            new = frontier.add((url, host_of(url), 0, None) for url in self.seeds)
            if resumed and new:
                log.warning("added %d new seed(s) to the resumed crawl", new)
            frontier.commit()

            scope = Scope.from_settings(s, self.seeds)
            user_agent = s.crawl.user_agent or default_user_agent()
            config = WorkerConfig(crawl_id=crawl_id, rules=s.parse.rules, scope=scope,
                                  obey_robots=s.crawl.obey_robots, max_depth=s.crawl.max_depth,
                                  max_links=s.crawl.max_links_per_page, recrawl=run_number > 1)
            pool = ParserPool(s.parse_workers, config, on_result=lambda r: self.events.put(("result", r)))
            guard = AddressGuard(allow_private=s.fetch.allow_private_networks,
                                 trusted_hosts={host_of(u) for u in self.seeds})
            policy = FetchPolicy(s.fetch, user_agent, scope=scope.compile(), scheduler=scheduler,
                                 stop=self.stop_event, claim=self._claim_hook(frontier))
            fetcher = self._make_fetcher(policy, guard)
            if s.crawl.obey_robots:
                policy.robots = RobotsCache(user_agent, fetcher.fetch_robots)
            threads = self._start_fetchers(fetcher, scheduler, pool, crawl_id)
            if s.crawl.sitemaps and not resumed:
                threads.append(self._start_sitemaps(policy, guard, scheduler, scope))
            result = CrawlResult(crawl_id=crawl_id, output=str(self.output), resumed=resumed,
                                 run_number=run_number)
            started = time.monotonic()
            try:
                self._coordinate(frontier, scheduler, writer, pool, result)
            except BaseException:
                self._aborted = True
                raise
            result.elapsed = time.monotonic() - started
            counts = frontier.counts()
            result.done_total, result.queued_left = counts.done, counts.queued
            result.interrupted = self._stop_reason is not None
            if not result.interrupted:
                frontier.set_meta("run_status", "finished")
                frontier.set_meta("run_finished", utc_now_iso())
            return result
        finally:
            scheduler.close()
            self.stop_event.set()
            for t in threads:
                t.join(self.settings.fetch.timeout * 4 + 5)
            if pool is not None:
                if self._aborted:  # nobody will collect its results: do not parse the rest
                    pool.terminate_broken(RuntimeError("crawl aborted"))
                pool.close()
            if writer is not None:
                writer.close()
            try:
                frontier.close()
            except sqlite3.Error as exc:  # already failing; what was committed stays committed
                log.error("crawl state: %s", exc)

    @staticmethod
    def _claim_hook(frontier: SQLiteFrontier):
        """Redirect-target dedup: a fetch follows a redirect only to a URL the frontier does
        not know (read through its own connection: fetcher threads never touch the
        coordinator's) and that no other fetch has claimed meanwhile. The coordinator then
        marks the target covered, so no later link to it is fetched again."""
        is_known, claimed = known_reader(frontier), SeenURLs()
        return lambda url: not is_known(url) and claimed.add(url)

    def _start_sitemaps(self, policy: FetchPolicy, guard: AddressGuard, scheduler: HostScheduler,
                        scope: Scope) -> threading.Thread:
        """``[crawl] sitemaps``: a thread reads the seeds' sitemaps (politely: each request
        takes its host's slot and turn) and posts the URLs it finds as depth-0 start URLs.
        The crawl does not end while it runs."""
        from crawler.fetch.robots import RobotsCache as Robots
        from crawler.fetch.sitemaps import discover, polite_fetch
        from crawler.fetch.robots import origin_of

        fetcher = RequestsFetcher(policy, guard)  # sitemaps use the blocking transport, whatever the engine
        robots = policy.robots or Robots(policy.user_agent, fetcher.fetch_robots)
        limit = self.settings.crawl.max_pages or 1_000_000
        self.events.put(("discovering", 1))

        def run() -> None:
            try:
                found = discover((origin_of(u) for u in self.seeds),
                                 polite_fetch(fetcher, scheduler, self.stop_event, max_bytes=policy.settings.max_bytes),
                                 lambda origin: robots.sitemaps(origin + "/"), scope.compile().allows,
                                 limit=limit, max_bytes=policy.settings.max_bytes)
                batch: list[str] = []
                for url in found:
                    batch.append(url)
                    if len(batch) >= 500:
                        self.events.put(("start_urls", batch))
                        batch = []
                if batch:
                    self.events.put(("start_urls", batch))
            except Exception:  # a broken sitemap must not break the crawl
                log.exception("reading sitemaps failed")
            finally:
                fetcher.close()
                self.events.put(("discovering", -1))

        thread = threading.Thread(target=run, name="sitemaps", daemon=True)
        thread.start()
        return thread

    def _make_fetcher(self, policy: FetchPolicy, guard: AddressGuard):
        if self.settings.fetch.engine == "async":
            from crawler.fetch.aiohttp_engine import AiohttpEngine

            return AiohttpEngine(policy, guard)
        return RequestsFetcher(policy, guard)

    # -- fetchers --------------------------------------------------------------------------------
    def _start_fetchers(self, fetcher, scheduler: HostScheduler, pool: ParserPool, crawl_id: str):
        if hasattr(fetcher, "start"):  # the async engine runs its own loop thread
            return fetcher.start(scheduler, lambda job, page: self._fetched(job, page, pool, crawl_id),
                                 lambda job: self.events.put(("release", job)))
        threads = []
        for i in range(self.settings.fetch.concurrency):
            t = threading.Thread(target=self._fetch_loop, args=(fetcher, scheduler, pool, crawl_id),
                                 name=f"fetcher-{i}", daemon=True)
            t.start()
            threads.append(t)
        return threads

    def _fetch_loop(self, fetcher: RequestsFetcher, scheduler: HostScheduler, pool: ParserPool,
                    crawl_id: str) -> None:
        try:
            while True:
                job = scheduler.next_job()
                if job is None:
                    return
                try:
                    page = fetcher.fetch(job)
                except FetchAborted:
                    self.events.put(("release", job))
                    continue
                except RetryLater:
                    if not scheduler.requeue(job):  # stopping: back to the frontier, not lost
                        self.events.put(("release", job))
                    continue
                except Exception as exc:  # a bug must still settle the URL, never lose it
                    log.exception("fetcher failed on %s", job.url)
                    page = Page(job=job, fetched_at=utc_now_iso(), attempts=1,
                                error=("connection", f"internal error: {type(exc).__name__}: {exc}"))
                finally:
                    scheduler.done(job)
                self._fetched(job, page, pool, crawl_id)
        finally:
            fetcher.close()

    def _fetched(self, job: FetchJob, page: Page, pool: ParserPool, crawl_id: str) -> None:
        if request_log.isEnabledFor(logging.INFO):
            what = page.status if page.status is not None else page.error[0]
            request_log.info("%s %s (%.0f ms, %d attempt%s)", what, job.url, page.elapsed_ms,
                             page.attempts, "" if page.attempts == 1 else "s")
        if page.error is not None:
            self.events.put(("result", error_result(page, crawl_id)))
            return
        try:
            pool.submit(page)
        except AbortError:
            self.events.put(("release", job))

    # -- the coordinator loop ---------------------------------------------------------------------
    def _coordinate(self, frontier: SQLiteFrontier, scheduler: HostScheduler, writer: WriterProcess,
                    pool: ParserPool, result: CrawlResult) -> None:
        s = self.settings
        max_pages = s.crawl.max_pages
        max_depth = s.crawl.max_depth
        to_fill: set[str] = set(frontier.hosts())
        batch_ids: list[int] = []
        batch_lines: list[bytes] = []
        batch_started = 0.0
        draining = False
        discovering = 0  # start-URL sources still running (sitemaps)
        last_progress = 0.0
        done_base = frontier.counts().done

        while True:
            # 1. Events from fetchers and parsers.
            try:
                timeout = 0.01 if batch_ids else 0.05
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                event = None
            while event is not None:
                kind, item = event
                if kind == "result":
                    job = self.leased[item.job_id]
                    if item.links and (max_depth == -1 or job.depth < max_depth):
                        depth = job.depth + 1
                        if frontier.add((u, h, depth, job.url) for u, h in item.links):
                            to_fill.update(h for _, h in item.links)
                    if item.final_url and item.final_url != job.url:
                        frontier.cover([(item.final_url, host_of(item.final_url), job.depth, job.url)])
                    if item.error_type:
                        self.errors[item.error_type] += 1
                    if item.error_type is None:
                        self.facts[item.job_id] = (item.status, item.etag, item.last_modified,
                                                   item.content_hash, item.snapshot, 0, item.job_id)
                    elif item.status in GONE_STATUSES:
                        self.facts[item.job_id] = (item.status, None, None, None, None, 1, item.job_id)
                    if not batch_ids:
                        batch_started = time.monotonic()
                    batch_ids.append(item.job_id)
                    batch_lines.append(item.line)
                elif kind == "release":  # never started, or abandoned because we are stopping
                    frontier.release([item])
                    self.leased.pop(item.id, None)
                elif kind == "start_urls":  # from sitemaps
                    if frontier.add((u, host_of(u), 0, None) for u in item):
                        to_fill.update(host_of(u) for u in item)
                else:  # "discovering": a start-URL source began (+1) or ended (-1)
                    discovering += item
                try:
                    event = self.events.get_nowait()
                except queue.Empty:
                    event = None

            # 2. Acks from the writer: the exactly-once point.
            for msg in writer.receive():
                if msg[0] == "ack":
                    _, ids, size, tail = msg
                    facts = [self.facts.pop(i) for i in ids if i in self.facts]
                    frontier.complete(ids, size, tail, facts)
                    for i in ids:
                        self.leased.pop(i, None)
                    result.pages += len(ids)
                else:
                    raise AbortError(msg[2])
            if not writer.alive and writer.unacked == 0 and not writer.receive():
                raise AbortError(f"output writer died (exit code {writer.process.exitcode})")
            if pool.broken is not None:
                raise AbortError(f"parser pool broken: {pool.broken}")

            # 3. Send a batch when it is full or old enough.
            if batch_ids and writer.can_send() and (
                len(batch_ids) >= BATCH_LINES or time.monotonic() - batch_started >= BATCH_AGE or draining
            ):
                writer.send(batch_ids, b"".join(batch_lines))
                batch_ids, batch_lines = [], []

            # 4. Stop requested: hand nothing more out, return buffered jobs.
            if self.stop_event.is_set() and not draining:
                draining = True
                returned = scheduler.close()
                frontier.release(returned)
                for job in returned:
                    self.leased.pop(job.id, None)

            # 5. Refill the scheduler from the frontier.
            if not draining:
                to_fill |= scheduler.take_hungry()
                hosts = frontier.hosts()
                budget = (max_pages - frontier.counts().done - len(self.leased)) if max_pages else 1 << 62
                for host in list(to_fill):
                    if budget <= 0:
                        break
                    to_fill.discard(host)
                    if host not in hosts:
                        continue
                    want = min(scheduler.wants(host), budget)
                    if want:
                        jobs = frontier.lease(host, want)
                        for job in jobs:
                            self.leased[job.id] = job
                        scheduler.offer(jobs)
                        budget -= len(jobs)
                frontier.maybe_commit()

            # 6. Progress, and the end.
            now = time.monotonic()
            if self.progress is not None and now - last_progress >= 0.25:
                last_progress = now
                c = frontier.counts()
                self.progress.update(done=c.done - done_base, queued=c.queued, in_flight=len(self.leased),
                                     errors=sum(self.errors.values()))
            if not self.leased and not batch_ids and writer.unacked == 0 and not (discovering and not draining):
                if draining:
                    break
                budget_left = (max_pages - frontier.counts().done) if max_pages else 1
                if not frontier.hosts() or budget_left <= 0:
                    break
                to_fill |= set(frontier.hosts())
        result.errors = self.errors
