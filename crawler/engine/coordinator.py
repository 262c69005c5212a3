"""The coordinator: the one thread that owns the frontier and the writer pipe.

It is the thread that calls ``Crawl.run`` (the main thread, for the CLI, so signal
handlers can reach it). Being the only user of the frontier and of the writer pipe,
it needs no lock for either. Every other actor talks to it through one queue of
typed events:

- ``Parsed``: a page's record line and links (from the parser pool, or from a fetcher
  for a page that failed to fetch);
- ``Released``: a job given up without a record because the crawl is stopping (it goes
  back to the queue);
- ``StartURLs`` and ``Discovering``: start URLs found while the crawl runs (sitemaps),
  and a source of them starting (+1) or ending (-1).

One round of ``run`` takes the waiting events, then the writer's acks (the
exactly-once point: URLs are marked done with the committed file size), checks that
the writer and the pool are alive, sends a batch of lines when it is full or old
enough, refills the host scheduler from the frontier, and shows progress, until
nothing is leased, buffered or unacknowledged and nothing more can be leased.

A batch also goes at once when no other job is being fetched or parsed (``idle``): no
record can join it, so waiting for it to fill would only delay the crawl's end (every
crawl ends so). While the writer's acks are all that is left, a round waits on the
writer's pipe rather than on the event queue, so the crawl ends as soon as its last
record is on disk.

A page's links are admitted to the frontier *before* its line is sent to the writer,
so by the time the writer acks a record the links it led to are in the frontier too:
a crash can never lose a branch of the crawl below a record that survived.
"""

from __future__ import annotations

import queue
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass

from crawler.errors import AbortError, LeaseLost
from crawler.messages import FetchJob, ParseResult
from crawler.urls import host_of

BATCH_LINES = 512  # records per write batch, at most
BATCH_AGE = 0.05  # seconds a record may wait for its batch to fill
PROGRESS_EVERY = 0.25  # seconds between progress updates
GONE_STATUSES = (404, 410)  # recorded once, then never revisited by later runs


@dataclass(slots=True)
class Parsed:
    result: ParseResult


@dataclass(slots=True)
class Released:
    job: FetchJob


@dataclass(slots=True)
class StartURLs:
    urls: list[str]


@dataclass(slots=True)
class Discovering:
    delta: int  # +1: a start-URL source began; -1: it ended


@dataclass(slots=True)
class SlotsFreed:
    """Shared crawl: Redis has freed host slots of ours, so a lease may find work now."""


Event = Parsed | Released | StartURLs | Discovering | SlotsFreed


class Coordinator:
    """One crawl's bookkeeping between the frontier, the scheduler, the pool and the writer."""

    def __init__(self, settings, frontier, scheduler, writer, pool, events: queue.SimpleQueue,
                 stop_event, progress=None, fetchers=None, claims=None):
        self.frontier = frontier
        self.fetchers = fetchers  # the fetch engine: its ``broken`` says if it died
        self.claims = claims  # redirect targets fetches took (crawl.RedirectClaims): not queued again
        self.scheduler = scheduler
        self.writer = writer
        self.pool = pool
        self.events = events
        self.stop_event = stop_event
        self.progress = progress
        self.max_pages = settings.crawl.max_pages
        self.max_depth = settings.crawl.max_depth
        self.leased: dict[int, FetchJob] = {}
        self.facts: dict[int, tuple] = {}  # what the frontier keeps per URL, until acked
        self.errors: Counter = Counter()
        self.pages = 0  # records acked in this run
        # A shared (Redis) frontier leases for the whole worker, as fetch slots free up;
        # a local one fills per-host buffers of the HostScheduler.
        self.shared = getattr(frontier, "shared", False)
        if self.shared:
            scheduler.on_release = lambda: events.put(SlotsFreed())
        self.to_fill: set[str] = set() if self.shared else set(frontier.hosts())
        self.next_lease = 0.0  # shared: when to ask Redis again if no slot frees meanwhile
        self.releases_seen = 0  # shared: the scheduler's slot-release batches Redis has applied
        self.renew_every = settings.state.lease_timeout / 3
        self.last_renew = time.monotonic()
        self.batch_ids: list[int] = []
        self.batch_lines: list[bytes] = []
        self.batch_warc: list[bytes] = []  # [output] warc: the batch's WARC records, committed with it
        self.batch_started = 0.0
        self.sent_ids = 0  # records sent to the writer and not acked yet
        self.draining = False
        self.discovering = 0
        self.last_progress = 0.0
        self.done_base = frontier.counts().done

    def run(self) -> None:
        while True:
            # Only the writer's acks to wait for: wake up when they come, not when the
            # round's wait runs out (events that come meanwhile wait one round at most).
            acks_only = self.writer.unacked > 0 and self.idle() and not self.batch_ids
            self.take_events(0.0 if acks_only else self.wait_time())
            self.take_acks(self.wait_time() if acks_only else 0.0)
            self.check_health()
            if self.shared:
                self.renew()
            self.flush()
            if self.stop_event.is_set() and not self.draining:
                self.drain()
            if not self.draining:
                self.refill()
            self.show_progress()
            if self.finished():
                return

    def idle(self) -> bool:
        """True if no leased job is being fetched or parsed (or waits in the scheduler to
        be): each one is in the batch or with the writer, and no sitemap may add work."""
        return len(self.leased) == len(self.batch_ids) + self.sent_ids and not self.discovering

    def wait_time(self) -> float:
        """How long the loop may wait for an event before its next round."""
        wait = 0.01 if self.batch_ids else 0.05
        if self.shared and not self.draining and self.scheduler.free_slots() > 0:
            wait = min(wait, max(0.001, self.next_lease - time.monotonic()))
        return wait

    # -- events ----------------------------------------------------------------------------------
    def take_events(self, timeout: float) -> None:
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self.on_event(event)
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return

    def on_event(self, event: Event) -> None:
        match event:
            case Parsed(result):
                self.on_result(result)
            case Released(job):
                self.on_release(job)
            case StartURLs(urls):
                self.on_start_urls(urls)
            case Discovering(delta):
                self.discovering += delta
            case SlotsFreed():
                pass  # the round that follows leases (refill_shared)

    def on_result(self, item: ParseResult) -> None:
        job = self.leased[item.job_id]
        links = item.links
        if links and (self.max_depth == -1 or job.depth < self.max_depth):
            with self.claims.lock if self.claims is not None else nullcontext():
                if self.claims is not None:  # a redirect fetches (or fetched) it: not twice
                    links = self.claims.unclaimed(links)
                if self.frontier.add((u, h, job.depth + 1, job.url) for u, h in links):
                    self.to_fill.update(h for _, h in links)
        if item.final_url and item.final_url != job.url:
            self.frontier.cover([(item.final_url, host_of(item.final_url), job.depth, job.url)])
        if item.error_type:
            self.errors[item.error_type] += 1
            if item.status in GONE_STATUSES:
                self.facts[item.job_id] = (item.status, None, None, None, None, 1, item.job_id)
        else:
            self.facts[item.job_id] = (item.status, item.etag, item.last_modified,
                                       item.content_hash, item.snapshot, 0, item.job_id)
        if not self.batch_ids:
            self.batch_started = time.monotonic()
        self.batch_ids.append(item.job_id)
        self.batch_lines.append(item.line)
        if item.warc:
            self.batch_warc.append(item.warc)

    def on_release(self, job: FetchJob) -> None:
        """Never started, or abandoned because the crawl is stopping: back to the queue."""
        self.frontier.release([job])
        self.leased.pop(job.id, None)

    def on_start_urls(self, urls: list[str]) -> None:
        if self.frontier.add((u, host_of(u), 0, None) for u in urls):
            self.to_fill.update(host_of(u) for u in urls)

    # -- the writer ------------------------------------------------------------------------------
    def take_acks(self, timeout: float = 0.0) -> None:
        """The exactly-once point: acked ids are done, with the file size that holds them.
        ``timeout``: how long to wait for the first ack."""
        for msg in self.writer.receive(timeout):
            if msg[0] != "ack":
                raise AbortError(msg[2])
            _, ids, size, tail = msg
            self.sent_ids -= len(ids)
            facts = [self.facts.pop(i) for i in ids if i in self.facts]
            self.frontier.complete(ids, size, tail, facts)
            for i in ids:
                self.leased.pop(i, None)
            self.pages += len(ids)

    def check_health(self) -> None:
        writer = self.writer
        if not writer.alive:
            # Whatever it acked (or reported) before it died still counts; the batches it
            # never acked stay leased and are redone on resume. Not only when nothing is
            # unacked: with two batches in flight nothing more can be sent, and the crawl
            # would wait for acks for ever.
            self.take_acks()
            raise AbortError(writer.died())
        if self.pool.broken is not None:
            raise AbortError(f"parser pool broken: {self.pool.broken}")
        if self.fetchers is not None and self.fetchers.broken is not None:
            raise AbortError(f"fetch engine broken: {self.fetchers.broken}")

    def flush(self) -> None:
        """Send the batch when it is full, old enough, nothing else can join it soon
        (``idle``), or the crawl is draining."""
        if self.batch_ids and self.writer.can_send() and (
            len(self.batch_ids) >= BATCH_LINES or self.draining
            or time.monotonic() - self.batch_started >= BATCH_AGE or self.idle()
        ):
            self.writer.send(self.batch_ids, b"".join(self.batch_lines), b"".join(self.batch_warc))
            self.sent_ids += len(self.batch_ids)
            self.batch_ids, self.batch_lines, self.batch_warc = [], [], []

    # -- the frontier and the scheduler ------------------------------------------------------------
    def drain(self) -> None:
        """Stop requested: hand nothing more out, and return the jobs the scheduler holds."""
        self.draining = True
        returned = self.scheduler.close()
        self.frontier.release(returned)
        for job in returned:
            self.leased.pop(job.id, None)

    def budget(self) -> int:
        """How many more URLs may be leased under ``max_pages``."""
        if not self.max_pages:
            return 1 << 62
        return self.max_pages - self.frontier.counts().done - len(self.leased)

    def refill(self) -> None:
        """Lease jobs for the hosts whose scheduler buffers run low."""
        if self.shared:
            return self.refill_shared()
        frontier, scheduler = self.frontier, self.scheduler
        self.to_fill |= scheduler.take_hungry()
        hosts = frontier.hosts()
        budget = self.budget()
        for host in list(self.to_fill):
            if budget <= 0:
                break
            self.to_fill.discard(host)
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

    def refill_shared(self) -> None:
        """Lease as many jobs as this worker has free fetch slots, from hosts whose turn has
        come anywhere in the crawl. When none is due, ask again when Redis says the next
        host will be (at most 0.25 s later: other workers free slots too), or as soon as a
        slot of ours frees up."""
        free = self.scheduler.free_slots()
        now = time.monotonic()
        released = self.scheduler.releases
        if free <= 0 or (now < self.next_lease and released == self.releases_seen):
            return
        self.releases_seen = released
        jobs, hint = self.frontier.lease(free)
        for job in jobs:
            self.leased[job.id] = job
        self.scheduler.offer(jobs)
        if len(jobs) < free:
            self.next_lease = now + (min(max(hint, 0.002), 0.25) if hint is not None else 0.25)

    def renew(self) -> None:
        """Shared: keep this worker's leases alive, and say it is alive."""
        now = time.monotonic()
        if now - self.last_renew < self.renew_every:
            return
        self.last_renew = now
        lost = self.frontier.renew()
        if lost:
            raise LeaseLost(f"this worker lost {len(lost)} leases to the others (it was silent for longer "
                            "than lease_timeout); restart it to resume")
        self.frontier.beat(done=self.pages, leased=len(self.leased), errors=sum(self.errors.values()))

    def show_progress(self) -> None:
        now = time.monotonic()
        if self.progress is None or now - self.last_progress < PROGRESS_EVERY:
            return
        self.last_progress = now
        c = self.frontier.counts()
        self.progress.update(done=c.done - self.done_base, queued=c.queued, in_flight=len(self.leased),
                             errors=sum(self.errors.values()))

    def finished(self) -> bool:
        """True when nothing is in flight and nothing more will be: the crawl is over."""
        if self.leased or self.batch_ids or self.writer.unacked or (self.discovering and not self.draining):
            return False
        if self.draining:
            return True
        if self.shared:  # over when nothing is queued or leased anywhere
            c = self.frontier.counts()
            if self.max_pages and c.done >= self.max_pages:
                return True
            return c.queued == 0 and c.leased == 0 and self.frontier.get_meta("run_status") != "revisiting"
        hosts = self.frontier.hosts()
        if not hosts or (self.max_pages and self.max_pages - self.frontier.counts().done <= 0):
            return True
        self.to_fill |= set(hosts)
        return False
