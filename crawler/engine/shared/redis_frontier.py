"""``RedisFrontier``: the frontier of a crawl shared by any number of workers, in Redis.

It offers the coordinator the same contract as ``SQLiteFrontier`` (add, complete, cover,
release, counts, meta), plus what sharing needs: ``lease(n)`` hands out URLs of hosts
whose turn it is, each with its host's request slot already taken, so per-host
politeness holds for the crawl as a whole; ``turn`` and ``finish`` are the further
request starts and slot releases of ``RedisTurns`` (turns.py); ``renew`` keeps this
worker's leases alive.

Every change is one Lua script (frontier.lua), atomic, timed by Redis's own clock. Each
call is retried with exponential backoff while Redis is unreachable or loading its AOF
(redis-py's ``Retry``); the scripts are written so that a call run twice after a lost
reply does no harm (a commit carries a sequence number; adds and releases are
idempotent; a lease run twice only leases URLs that expire and are reclaimed).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
from importlib import resources
from typing import Iterable, Sequence

import orjson
import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, ResponseError, TimeoutError
from redis.retry import Retry

from crawler.engine.frontier import Counts, Entry
from crawler.engine.state import new_crawl_id
from crawler.errors import AbortError, LeaseLost, StateError, UsageError
from crawler.messages import FetchJob, utc_now_iso
from crawler.urls import host_of

log = logging.getLogger("crawler")

SCHEMA = "1"
BUCKET_BITS = 15  # 32,768 seen-set buckets: each stays a compact integer set up to ~16M URLs
REDIS_RETRIES = 60  # with the backoff capped at 2 s: about two minutes without Redis, then exit 1
WORKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RETRYABLE = (ConnectionError, TimeoutError, BusyLoadingError)


def fingerprint(url: str) -> tuple[int, int]:
    """(bucket, 64-bit fingerprint) of a canonical URL. The bucket is the fingerprint's top
    bits, so each bucket's set holds integers only and Redis keeps it as a packed intset."""
    value = int.from_bytes(hashlib.blake2b(url.encode(), digest_size=8).digest(), "big")
    return value >> (64 - BUCKET_BITS), value - (1 << 64) if value >= 1 << 63 else value


def crawl_prefix(name: str) -> str:
    """All of a crawl's keys share this prefix; the braces make it one Redis Cluster hash tag."""
    return f"crawler:{{{name}}}:"


def _load_scripts() -> dict[str, str]:
    text = resources.files(__package__).joinpath("frontier.lua").read_text()
    parts = re.split(r"^--- (prelude|script: \w+)\n", text, flags=re.M)
    prelude, scripts = "", {}
    for head, body in zip(parts[1::2], parts[2::2]):
        if head == "prelude":
            prelude = body
        else:
            scripts[head.split(": ")[1]] = prelude + body
    return scripts


def connect(url: str) -> redis.Redis:
    """A client for ``url`` that waits out a Redis restart; exit 2 for a malformed URL, exit 1
    if nothing answers there now."""
    try:
        probe = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=5)
    except ValueError as exc:
        raise UsageError(f'[state] redis_url = "{url}": {exc}') from None
    try:
        probe.ping()
    except (ConnectionError, TimeoutError) as exc:
        raise AbortError(f"cannot reach Redis at {url}: {exc}") from None
    except ResponseError as exc:  # e.g. NOAUTH
        raise AbortError(f"Redis at {url} refused us: {exc}") from None
    finally:
        probe.close()
    retry = Retry(ExponentialWithJitterBackoff(cap=2.0, base=0.05), REDIS_RETRIES, supported_errors=_RETRYABLE)
    return redis.Redis.from_url(url, retry=retry, socket_connect_timeout=5, socket_timeout=30,
                                health_check_interval=10)


class RedisFrontier:
    """One worker's handle on a shared crawl. Only the coordinator calls the frontier
    methods; ``turn``, ``finish``, ``hostctl`` and ``claim`` are safe from any thread."""

    shared = True

    def __init__(self, client: redis.Redis, url: str, name: str, worker: str, *, settings):
        self.client, self.url, self.worker = client, url, worker
        self.prefix = crawl_prefix(name)
        self.meta_key = self.prefix + "meta"
        fetch = settings.fetch
        self.conc = fetch.per_host_concurrency
        self.delay_ms = round(fetch.per_host_delay * 1000)
        self.lease_ms = round(settings.state.lease_timeout * 1000)
        # A request slot outlives the request's deadline (4 x timeout) by a margin: if the
        # worker dies mid-request, the host gets its slot back after that.
        self.slot_ms = round((4 * fetch.timeout + 5) * 1000)
        self.max_pages = settings.crawl.max_pages
        self.incarnation = ""
        self.seq = 0
        self.run_number = 1
        self.jobs: dict[int, FetchJob] = {}  # leased by this worker, until committed or released
        self.shard: dict = {}
        self._counts: dict[str, int] = {}
        self._scripts = {name: client.register_script(src) for name, src in _load_scripts().items()}

    # -- calling scripts ---------------------------------------------------------------------
    def call(self, script: str, *args):
        try:
            return self._scripts[script](keys=[self.meta_key], args=[self.prefix, *args])
        except ResponseError as exc:
            text = str(exc)
            code = text.split(" ", 1)[0]
            if code in ("FENCED", "LOST"):
                raise LeaseLost(f"worker {self.worker} lost its leases ({text.split(' ', 1)[1]}); "
                                "restart it to resume") from None
            if code == "CRAWLLOST":
                raise AbortError(f"Redis at {self.url}: {text.split(' ', 1)[1]}") from None
            raise AbortError(f"Redis at {self.url}: {text}") from None
        except _RETRYABLE as exc:
            raise AbortError(f"lost Redis at {self.url} (gave up after retrying): {exc}") from None

    # -- opening a crawl ----------------------------------------------------------------------
    def open(self, scope: str) -> bool:
        """Join the crawl, creating it if it is not there yet; True if this call created it."""
        created, meta = self.call("init", SCHEMA, new_crawl_id(), utc_now_iso(), scope)
        meta = {k.decode(): v.decode() for k, v in zip(meta[::2], meta[1::2])}
        if meta.get("schema") != SCHEMA:
            raise StateError(f"Redis at {self.url}: {self.prefix}* holds keys of another version "
                             f"(schema {meta.get('schema')!r}); use another [state] redis_key")
        if meta.get("scope") != scope:
            raise StateError(f"Redis at {self.url}: {self.prefix}* holds another crawl (its scope and "
                             "depth settings differ); use another [state] redis_key, or --fresh to replace it")
        self.run_number = int(meta["run_number"])
        return bool(created)

    def check_idle(self) -> None:
        """For --fresh: StateError while any worker holds a live lease."""
        if self.client.zcount(self.prefix + "deadlines", f"({self._now_ms()}", "+inf"):
            raise StateError(f"Redis at {self.url}: workers of {self.prefix}* still hold leases; stop them "
                             f"(or wait {self.lease_ms / 1000:g}s) before --fresh")

    def clear(self) -> None:
        """--fresh: delete the crawl's keys (after ``check_idle``)."""
        keys = list(self.client.scan_iter(match=self.prefix.replace("{", "\\{").replace("}", "\\}") + "*",
                                          count=1000))
        for i in range(0, len(keys), 500):
            self.client.unlink(*keys[i:i + 500])

    def _now_ms(self) -> int:
        seconds, micros = self.client.time()
        return seconds * 1000 + micros // 1000

    def recover(self) -> int:
        """Register this worker's new incarnation; its earlier leases go back to the queue."""
        inc, requeued, shard = self.call("register", self.worker, self.conc)
        self.incarnation = str(inc)
        self.shard = orjson.loads(shard) if shard else {}
        self.seq = int(self.client.hget(self.prefix + "wseq", self.worker) or 0)
        self.started = self._now_ms() / 1000
        self.beat(done=0, leased=0, errors=0)
        return int(requeued)

    # -- the Frontier contract -------------------------------------------------------------------
    def add(self, entries: Iterable[Entry]) -> int:
        args: list = []
        for url, host, depth, referrer in entries:
            args.extend((*fingerprint(url), host, depth, url, referrer or ""))
        return self.call("add", self.conc, *args) if args else 0

    def lease(self, n: int) -> tuple[list[FetchJob], float | None]:
        """Up to ``n`` jobs whose hosts' turns have come (their slots taken), and the seconds
        until the next host is due (None: no host is waiting)."""
        out = self.call("lease", self.worker, self.incarnation, n, self.conc, self.delay_ms, self.lease_ms,
                        self.slot_ms, self.max_pages)
        hint = None if out[0] < 0 else out[0] / 1000
        jobs = [FetchJob(int(out[i]), out[i + 3].decode(), out[i + 1].decode(), int(out[i + 2]),
                         out[i + 4].decode() or None) for i in range(1, len(out), 5)]
        if jobs and self.run_number > 1:
            self._recall(jobs)
        for job in jobs:
            self.jobs[job.id] = job
        return jobs, hint

    def _recall(self, jobs: list[FetchJob]) -> None:
        """A later run: what the last one learned of each URL (validators, last data)."""
        blobs = self.client.hmget(self.prefix + "done", [fingerprint(j.url)[1] for j in jobs])
        for job, blob in zip(jobs, blobs):
            if blob:
                _, _, _, status, job.etag, job.last_modified, job.content_hash, snapshot, _ = orjson.loads(blob)
                job.snapshot = snapshot.encode() if snapshot is not None else None

    def complete(self, ids: Sequence[int], output_size: int, output_tail: str = "",
                 facts: Sequence[tuple] = ()) -> None:
        known = {f[6]: f for f in facts}
        args: list = []
        failed = 0
        for i in ids:
            job = self.jobs.pop(i)
            status, etag, last_modified, content_hash, snapshot, gone, _ = known.get(i) or (None,) * 6 + (i,)
            failed += i not in known or bool(gone)
            blob = orjson.dumps([job.url, job.depth, job.referrer, status, etag, last_modified, content_hash,
                                 snapshot.decode() if snapshot is not None else None, gone or 0])
            args.extend((i, fingerprint(job.url)[1], blob))
        shard = {**self.shard, "size": output_size, "tail": output_tail}
        self.seq += 1
        self.call("commit", self.worker, self.incarnation, self.seq, orjson.dumps(shard), failed, *args)
        self.shard = shard  # only once Redis has it: a refused commit leaves the last committed size

    def cover(self, entries: Iterable[Entry]) -> None:
        args = [v for url, *_ in entries for v in fingerprint(url)]
        if args:
            self.call("see", *args)

    def claim(self, url: str) -> bool:
        """Redirect-target dedup across workers: True if nobody has seen ``url`` (it is now
        marked seen, and this fetch follows the redirect to it)."""
        return self.call("see", *fingerprint(url)) == [1]

    def release(self, jobs: Sequence[FetchJob]) -> None:
        if jobs:
            self.call("release", self.worker, self.incarnation, self.conc, *(j.id for j in jobs))
            for job in jobs:
                self.jobs.pop(job.id, None)

    def renew(self) -> list[int]:
        """Extend this worker's leases; the ids it lost (reclaimed while it was silent)."""
        if not self.jobs:
            return []
        return [int(i) for i in self.call("renew", self.worker, self.incarnation, self.lease_ms, *self.jobs)]

    def counts(self) -> Counts:
        c = {k.decode(): int(v) for k, v in self.client.hgetall(self.prefix + "counts").items()}
        self._counts = c
        return Counts(c.get("queued", 0), c.get("leased", 0), c.get("done", 0))

    def get_meta(self, key: str) -> str | None:
        if key.startswith("output_"):  # the shard of this worker
            value = self.shard.get(key.removeprefix("output_"))
            return None if value is None else str(value)
        value = self.client.hget(self.meta_key, key)
        return value.decode() if value is not None else None

    def set_meta(self, key: str, value: str) -> None:
        if key.startswith("output_"):
            self.shard = {**self.shard, key.removeprefix("output_"): value}
            self.client.hset(self.prefix + "shards", self.worker, orjson.dumps(self.shard))
        else:
            self.client.hset(self.meta_key, key, value)

    def commit(self) -> None:  # every script is its own transaction
        pass

    def maybe_commit(self) -> None:
        pass

    def close(self) -> None:
        self.client.close()

    def begin_run(self, new_run: bool) -> tuple[str, int, int | None]:
        """(crawl_id, run number, URLs queued again for a new run or None when joining the
        current one). With ``new_run`` (``--recrawl``, ``crawler schedule``) and a finished
        run, the first worker to ask starts the next run and queues every done URL again
        that was not gone; the others join it."""
        meta = {k.decode(): v.decode() for k, v in self.client.hgetall(self.meta_key).items()}
        requeued = None
        if new_run and meta.get("run_status") == "finished":
            crawl_id = new_crawl_id()
            if self.call("begin_run", meta["run_number"], crawl_id, utc_now_iso()) == 1:
                requeued = self._revisit()
                self.client.hset(self.meta_key, "run_status", "running")
            meta = {k.decode(): v.decode() for k, v in self.client.hgetall(self.meta_key).items()}
        self.run_number = int(meta["run_number"])
        return meta["crawl_id"], self.run_number, requeued

    def _revisit(self) -> int:
        """Queue every done URL again, except those that were gone (404/410)."""
        n, batch = 0, []
        for _, blob in self.client.hscan_iter(self.prefix + "done", count=1000):
            url, depth, referrer, *_, gone = orjson.loads(blob)
            if not gone:
                batch.extend((host_of(url), depth, url, referrer or ""))
            if len(batch) >= 2000:
                n += self.call("revisit", self.conc, *batch)
                batch = []
        if batch:
            n += self.call("revisit", self.conc, *batch)
        return n

    # -- turns (from any thread) ---------------------------------------------------------------------
    def turn(self, job_id: int | str, host: str, *, lease: bool = True) -> float:
        """Take a further request start on ``host``: 0.0 when taken, else seconds to wait;
        raises AbortError if this worker lost the lease."""
        ms = self.call("turn", self.worker, self.incarnation, job_id, host, self.conc, self.delay_ms,
                       self.slot_ms, 1 if lease else 0)
        if ms < 0:
            raise LeaseLost(f"worker {self.worker} lost the lease of job {job_id} (silent for longer "
                            "than lease_timeout?)")
        return ms / 1000

    def finish(self, slots: Sequence[tuple[int | str, str]]) -> None:
        """The requests of these (id, host) are over: free the host slots they hold."""
        if slots:
            self.call("finish", self.conc, *(v for pair in slots for v in pair))

    def hostctl(self, op: str, host: str, seconds: float) -> None:
        self.call("hostctl", op, host, round(seconds * 1000), self.delay_ms)

    def beat(self, **stats) -> None:
        self.client.hset(self.prefix + "beats", self.worker,
                         orjson.dumps({"at": self._now_ms() / 1000, "started": self.started, "pid": os.getpid(),
                                       "host": socket.gethostname(), **stats}))
