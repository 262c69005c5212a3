"""Wiring one crawl together: ``Crawl`` sets up the state, the writer, the parser
pool, the host scheduler and the fetch engine, then hands the thread that called
``Crawl.run`` to the ``Coordinator`` (crawler/engine/coordinator.py) until the crawl
is over, interrupted or aborted.

Fetchers post ``Parsed`` for pages that failed to fetch and ``Released`` for jobs they
gave up on because the crawl is stopping; the parser pool posts ``Parsed`` for parsed
pages; the sitemap reader posts ``StartURLs`` and ``Discovering``.

Shutdown is in flow order: scheduler closed (buffered jobs go back to the queue),
fetchers joined, parser pool drained and joined, last lines written and acked,
writer joined, frontier closed.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from crawler import __version__, PROJECT_URL
from crawler.engine.coordinator import Coordinator, Discovering, Parsed, Released, StartURLs
from crawler.engine.frontier import SQLiteFrontier, known_reader
from crawler.engine.hosts import HostScheduler
from crawler.hostrules import HostRules
from crawler.engine.state import StateLock, begin_run, default_state_dir, has_placeholders, start_over
from crawler.errors import AbortError, LeaseLost, StateError
from crawler.fetch.guard import AddressGuard
from crawler.fetch.policy import FetchPolicy, SeenURLs
from crawler.fetch.robots import RobotsCache
from crawler.messages import FetchJob, Page, utc_now_iso
from crawler.procname import child_context
from crawler.settings import Settings
from crawler.urls import Scope, host_of
from parsers.pool import ParserPool
from parsers.worker import WorkerConfig, error_result
from sinks.warc import gzipped
from sinks.writer import WriterProcess

log = logging.getLogger("crawler")
request_log = logging.getLogger("crawler.requests")



class RedirectClaims:
    """Which redirect targets fetches have taken, shared by the fetchers and the coordinator.

    ``claim(url)`` (a fetcher, before following a redirect): True if the frontier does not
    know ``url`` (read through a connection of the fetcher's own) and no fetch claimed it
    before; the redirect's record then covers it. The coordinator admits a page's links
    under the same ``lock`` and drops claimed ones (``unclaimed``): a link found while the
    redirect is still in flight would otherwise queue the target and fetch it twice. The
    lock makes "not known, so claim" and "not claimed, so queue" exclude each other."""

    def __init__(self, frontier: SQLiteFrontier):
        self.is_known = known_reader(frontier)
        self.claimed = SeenURLs()
        self.lock = threading.Lock()

    def claim(self, url: str) -> bool:
        with self.lock:
            return not self.is_known(url) and self.claimed.add(url)

    def unclaimed(self, links: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """``links`` ((url, host) pairs) without the claimed targets; call under ``lock``."""
        return self.claimed.unknown(links)


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
                 new_run: bool = False, worker_id: str | None = None):
        self.settings = settings
        self.seeds = seeds
        self.shared = settings.state.backend == "redis"
        self.base_output = str(output)
        self.reads_sitemaps = True
        self.warc_template = settings.output.warc  # "" = no WARC
        if self.shared:  # one worker of a crawl shared over Redis: it writes its own shard
            from crawler.engine.shared.joining import shard_path, worker_id as shared_worker_id

            self.worker = shared_worker_id(worker_id)
            output = shard_path(self.base_output, self.worker)
            if self.warc_template:  # the WARC goes with the shard: one per worker
                self.warc_template = str(shard_path(self.warc_template, self.worker))
        self.output_template = str(output)
        self.output = Path(output)
        self.state_dir = Path(state_dir) if state_dir else default_state_dir(self.output_template)
        self.fresh = fresh
        self.new_run = new_run
        self.progress = progress
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.stop_event = threading.Event()
        self._stop_reason: str | None = None
        self._aborted = False
        self.claims: RedirectClaims | None = None

    # -- control from other threads / signal handlers ----------------------------------------
    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop taking new URLs; what is in flight settles or goes back to the queue."""
        self._stop_reason = reason
        self.stop_event.set()

    # -- set-up --------------------------------------------------------------------------------
    def _warc_files(self) -> tuple[Path, ...]:
        """The WARC that goes with the output (and its offsets): --fresh deletes them too."""
        warc = self.warc_template
        if not warc or has_placeholders(warc):
            return ()
        return Path(warc), Path(warc + ".offsets")

    def run(self) -> CrawlResult:
        if self.shared:
            return self._run_shared()
        # The lock first: a --fresh refused because another crawl runs must change nothing.
        lock = StateLock(self.state_dir)
        try:
            child_context(start=True)  # the children's fork server boots while the state opens
            if self.fresh:
                start_over(self.state_dir, None if has_placeholders(self.output_template) else self.output,
                           self._warc_files())
            return self._run_locked()
        finally:
            lock.release()

    def _run_locked(self) -> CrawlResult:
        path = self.state_dir / "frontier.sqlite"
        try:
            return self._run_with_state(SQLiteFrontier(path))
        except sqlite3.Error as exc:  # disk full, I/O error, corruption: name the file
            raise AbortError(f"crawl state {path}: {exc}") from None

    def _run_shared(self) -> CrawlResult:
        """One worker of a shared crawl: the state lock first, then Redis, then the shard."""
        from crawler.engine.shared.joining import join as join_shared
        from crawler.engine.shared.turns import RedisTurns

        self.state_dir.mkdir(parents=True, exist_ok=True)
        lock = StateLock(self.state_dir)
        try:
            child_context(start=True)  # boots while this worker joins the crawl in Redis
            frontier, created = join_shared(self.settings, output=self.base_output, worker=self.worker,
                                            state_dir=self.state_dir, shard=self.output, fresh=self.fresh,
                                            also=self._warc_files())
            self.reads_sitemaps = created  # the worker that created the crawl reads its sitemaps
            try:
                fetch = self.settings.fetch
                turns = RedisTurns(frontier, fetch.concurrency, rules=HostRules(fetch.hosts))
                return self._run_with_state(frontier, turns)
            except LeaseLost:
                # Others have those URLs now: what this worker wrote after its last commit
                # goes, as a restart would cut it, so the shards never hold a URL twice.
                size = frontier.get_meta("output_size")
                if size is not None and self.output.exists():
                    os.truncate(self.output, int(size))
                raise
            finally:
                frontier.close()
        finally:
            lock.release()

    def _run_with_state(self, frontier, scheduler=None) -> CrawlResult:
        s = self.settings
        ctx = child_context()
        writer = pool = None
        threads: list[threading.Thread] = []
        if scheduler is None:
            scheduler = HostScheduler(s.fetch.per_host_concurrency, s.fetch.per_host_delay,
                                      rules=HostRules(s.fetch.hosts))
        try:
            recovered = frontier.recover()
            before = frontier.counts()
            if self.shared:
                crawl_id, run_number, requeued = frontier.begin_run(self.new_run)
            else:
                crawl_id, run_number, requeued = begin_run(frontier, self.new_run)
            resumed = requeued is None and (before.done > 0 or before.queued > 0)
            self.output = Path(self.output_template.replace("{crawl_id}", crawl_id)
                               .replace("{date}", frontier.get_meta("run_started")[:10]))
            self.output.parent.mkdir(parents=True, exist_ok=True)
            same_file = frontier.get_meta("output_path") == str(self.output)
            committed = frontier.get_meta("output_size") if same_file else None
            warc = (self.warc_template.replace("{crawl_id}", crawl_id)
                    .replace("{date}", frontier.get_meta("run_started")[:10]) if self.warc_template else None)
            # The engine first (importing aiohttp or requests is most of this process's
            # start-up): meanwhile the fork server, started with the state lock, finishes
            # its own imports, and the first child's start below waits for that.
            scope = Scope.from_settings(s, self.seeds)
            user_agent = s.crawl.user_agent or default_user_agent()
            guard = AddressGuard(allow_private=s.fetch.allow_private_networks,
                                 trusted_hosts={host_of(u) for u in self.seeds})
            policy = FetchPolicy(s.fetch, user_agent, scope=scope.compile(), scheduler=scheduler,
                                 stop=self.stop_event,
                                 claim=frontier.claim if self.shared else self._claim_hook(frontier))
            policy.capture = bool(warc)
            fetcher = self._make_fetcher(policy, guard)
            writer = WriterProcess(ctx, str(self.output), int(committed) if committed is not None else None,
                                   frontier.get_meta("output_tail") if same_file else None,
                                   warc=(warc, crawl_id) if warc else None)
            if self.shared:
                log.warning("worker %s joined crawl %s: %d done, %d queued%s", self.worker, crawl_id,
                            before.done, before.queued,
                            f" ({recovered} it held were re-queued)" if recovered else "")
            elif resumed:
                log.warning("resuming crawl %s: %d done, %d queued%s", crawl_id, before.done,
                            before.queued, f" ({recovered} in flight were re-queued)" if recovered else "")
            elif requeued:
                log.warning("run %d (%s): revisiting %d known URLs", run_number, crawl_id, requeued)
            new = frontier.add((url, host_of(url), 0, None) for url in self.seeds)
            if resumed and new:
                log.warning("added %d new seed(s) to the resumed crawl", new)
            frontier.commit()

            config = WorkerConfig(crawl_id=crawl_id, rules=s.parse.rules, scope=scope,
                                  obey_robots=s.crawl.obey_robots, max_depth=s.crawl.max_depth,
                                  max_links=s.crawl.max_links_per_page, recrawl=run_number > 1,
                                  warc_gzip=gzipped(self.warc_template))
            pool = ParserPool(s.parse_workers, config, on_result=lambda r: self.events.put(Parsed(r)))
            # The writer opens and checks its file while this process starts the parsers:
            # only now wait for it to say it is ready, still before anything is fetched.
            status, message = writer.handshake()
            if status != "ready":
                raise (StateError if status in ("locked", "short", "replaced") else AbortError)(message)
            if committed is None:
                # A new output file, or a new crawl appending after what the file held.
                frontier.set_meta("output_path", str(self.output))
                frontier.complete([], writer.size, writer.tail)
            if s.crawl.obey_robots:
                if self.shared:  # robots.txt fetched once per origin for the whole crawl
                    from crawler.engine.shared.robots import SharedRobotsCache

                    policy.robots = SharedRobotsCache(frontier, user_agent, fetcher.fetch_robots,
                                                      lock_seconds=policy.deadline + 5)
                else:
                    policy.robots = RobotsCache(user_agent, fetcher.fetch_robots)
            coordinator = Coordinator(s, frontier, scheduler, writer, pool, self.events, self.stop_event,
                                      self.progress, fetchers=fetcher, claims=self.claims)
            coordinator.refill()  # the first jobs wait in the scheduler as the fetchers start
            threads = self._start_fetchers(fetcher, pool, crawl_id)
            if s.crawl.sitemaps and not resumed and self.reads_sitemaps:
                threads.append(self._start_sitemaps(fetcher, scope))
            result = CrawlResult(crawl_id=crawl_id, output=str(self.output), resumed=resumed,
                                 run_number=run_number)
            started = time.monotonic()
            try:
                coordinator.run()
            except BaseException:
                self._aborted = True
                raise
            finally:
                result.errors, result.pages = coordinator.errors, coordinator.pages
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
            if self.shared:
                scheduler.shutdown()
            if pool is not None:
                if self._aborted:  # nobody will collect its results: do not parse the rest
                    pool.terminate_broken(RuntimeError("crawl aborted"))
                pool.close()
            if writer is not None:
                writer.close()
            try:
                if not self.shared:  # _run_shared closes it, after the lock
                    frontier.close()
            except sqlite3.Error as exc:  # already failing; what was committed stays committed
                log.error("crawl state: %s", exc)

    def _claim_hook(self, frontier: SQLiteFrontier):
        """Redirect-target dedup: a fetch follows a redirect only to a URL the frontier does
        not know and that no other fetch has claimed meanwhile (``RedirectClaims``)."""
        self.claims = RedirectClaims(frontier)
        return self.claims.claim

    def _start_sitemaps(self, fetcher, scope: Scope) -> threading.Thread:
        """``[crawl] sitemaps``: a thread reads the seeds' sitemaps through the crawl's own
        engine and fetch policy (each request takes its host's slot and turn; robots.txt and
        the scope are checked on every redirect hop) and posts the URLs it finds as depth-0
        start URLs. The crawl does not end while it runs."""
        from crawler.fetch.robots import origin_of
        from crawler.fetch.robots import RobotsCache as Robots
        from crawler.fetch.sitemaps import discover, polite_fetch

        policy = fetcher.policy
        robots = policy.robots or Robots(policy.user_agent, fetcher.fetch_robots)
        limit = self.settings.crawl.max_pages or 1_000_000
        self.events.put(Discovering(1))

        def run() -> None:
            try:
                found = discover((origin_of(u) for u in self.seeds),
                                 polite_fetch(fetcher, max_bytes=policy.settings.max_bytes),
                                 lambda origin: robots.sitemaps(origin + "/"), scope.compile().allows,
                                 limit=limit, max_bytes=policy.settings.max_bytes)
                batch: list[str] = []
                for url in found:
                    batch.append(url)
                    if len(batch) >= 500:
                        self.events.put(StartURLs(batch))
                        batch = []
                if batch:
                    self.events.put(StartURLs(batch))
            except Exception:  # a broken sitemap must not break the crawl
                log.exception("reading sitemaps failed")
            finally:
                self.events.put(Discovering(-1))

        thread = threading.Thread(target=run, name="sitemaps", daemon=True)
        thread.start()
        return thread

    def _make_fetcher(self, policy: FetchPolicy, guard: AddressGuard):
        if self.settings.fetch.engine == "async":
            from crawler.fetch.aiohttp_engine import AiohttpEngine

            return AiohttpEngine(policy, guard)
        from crawler.fetch.requests_engine import RequestsFetcher  # each engine imports only its own library

        return RequestsFetcher(policy, guard)

    # -- fetchers --------------------------------------------------------------------------------
    def _start_fetchers(self, fetcher, pool: ParserPool, crawl_id: str) -> list[threading.Thread]:
        """Either engine runs its own workers over the scheduler the policy holds; a worker
        that dies makes ``fetcher.broken`` say so, and the coordinator aborts the crawl."""
        return fetcher.start(fetcher.policy.scheduler, lambda job, page: self._fetched(job, page, pool, crawl_id),
                             lambda job: self.events.put(Released(job)),
                             try_page=lambda job, page: self._fetched(job, page, pool, crawl_id, block=False))

    def _fetched(self, job: FetchJob, page: Page, pool: ParserPool, crawl_id: str, block: bool = True) -> bool:
        """A fetched page to the parser pool (its record, if it could not be fetched, to the
        coordinator). With ``block=False``: False, and nothing done, while the pool is full."""
        if page.error is None:
            try:
                if not pool.submit(page, block=block):
                    return False
            except AbortError:
                self.events.put(Released(job))
        if request_log.isEnabledFor(logging.INFO):
            what = page.status if page.status is not None else page.error[0]
            request_log.info("%s %s (%.0f ms, %d attempt%s)", what, job.url, page.elapsed_ms,
                             page.attempts, "" if page.attempts == 1 else "s")
        if page.error is not None:
            self.events.put(Parsed(error_result(page, crawl_id, gzipped(self.warc_template))))
        return True
