"""The frontier: every URL the crawl has accepted, and where each one stands.

Contract (small on purpose, so that a Redis frontier can implement it too):

- ``add(entries)`` queues new URLs and ignores ones already known (dedup on the
  canonical URL); it returns how many were new.
- ``lease(host, limit)`` moves up to ``limit`` queued URLs of one host to ``leased``,
  shallowest first (breadth-first), and returns them as FetchJobs; an empty list means
  none are queued for that host.
- ``hosts()`` says which hosts have queued URLs and how many.
- ``complete(ids, output_size, output_tail)`` marks URLs done *and* records the
  committed size (and tail fingerprint) of the output file in the same transaction:
  the exactly-once point (DESIGN §4).
- ``release(jobs)`` puts leased URLs back to ``queued`` (a drained stop).
- ``recover()`` at start-up returns every ``leased`` URL to ``queued`` (after a crash).
- ``cover(entries)`` records redirect targets fetched through a redirect (known, not leased).
- ``start_run()`` begins another run of a scheduled crawl: done URLs are queued again.

URL states: queued (0) -> leased (1) -> done (2). A redirect target that was fetched
through the redirect is *covered* (3): known, never leased, its data in the record of the
URL that redirected to it. Only the coordinator thread calls a
frontier, so the SQLite connection needs no lock.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

from crawler.messages import FetchJob

QUEUED, LEASED, DONE, COVERED = 0, 1, 2, 3  # covered: a redirect target, recorded by the URL that led to it


@dataclass(frozen=True)
class Counts:
    queued: int
    leased: int
    done: int


# url, host, depth, referrer
Entry = tuple[str, str, int, "str | None"]


class Frontier(Protocol):
    def add(self, entries: Iterable[Entry]) -> int: ...
    def lease(self, host: str, limit: int) -> list[FetchJob]: ...
    def hosts(self) -> dict[str, int]: ...
    def complete(self, ids: Sequence[int], output_size: int, output_tail: str = "",
                 facts: Sequence[tuple] = ()) -> None: ...
    def cover(self, entries: Iterable[Entry]) -> None: ...
    def start_run(self) -> int: ...
    def release(self, jobs: Sequence[FetchJob]) -> None: ...
    def recover(self) -> int: ...
    def counts(self) -> Counts: ...
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def close(self) -> None: ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS urls (
    id            INTEGER PRIMARY KEY,
    url           TEXT NOT NULL UNIQUE,
    host          TEXT NOT NULL,
    depth         INTEGER NOT NULL,
    referrer      TEXT,
    state         INTEGER NOT NULL DEFAULT 0,
    etag          TEXT,
    last_modified TEXT,
    content_hash  TEXT,
    status        INTEGER,
    snapshot      BLOB,             -- orjson [rule, data, links] of the last parse
    gone          INTEGER NOT NULL DEFAULT 0  -- answered 404/410: not revisited
);
-- Leasing asks "the shallowest, oldest queued URLs of this host": a partial index
-- keeps that a short range scan however many URLs are done.
CREATE INDEX IF NOT EXISTS urls_queued ON urls (host, depth, id) WHERE state = 0;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def known_reader(frontier: "SQLiteFrontier"):
    """``is_known(url)`` for other threads: what the frontier committed, through a
    read-only connection per thread (WAL lets readers run beside the coordinator's
    writes), plus what it added since its last commit (``frontier.recent``)."""
    import threading

    local = threading.local()
    uri = f"file:{frontier.path.resolve()}?mode=ro"
    recent = frontier.recent

    def is_known(url: str) -> bool:
        if url in recent:
            return True
        db = getattr(local, "db", None)
        if db is None:
            db = local.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        return db.execute("SELECT 1 FROM urls WHERE url = ?", (url,)).fetchone() is not None

    return is_known


class SQLiteFrontier:
    """The embedded default: one SQLite file in WAL mode under the state directory."""

    # Commit leases and link inserts at least this often even without acks, so a
    # crash loses little work; acks (complete) always commit at once.
    COMMIT_EVERY = 1.0

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a process crash (kill -9); after a power
        # loss the last commits may roll back, which only makes resume redo them.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA cache_size=-16000")  # 16 MB page cache, bounded
        self.db.execute("PRAGMA temp_store=MEMORY")
        self.db.executescript(SCHEMA)
        self._last_commit = time.monotonic()
        # URLs added since the last commit, for readers on other connections (cleared at
        # each commit, so it holds at most COMMIT_EVERY seconds of links).
        self.recent: set[str] = set()
        # url -> a depth it is known at (see ``add``): ``_adding`` for this transaction's
        # rows, the two generations for committed ones.
        self._adding: dict[str, int] = {}
        self._known: dict[str, int] = {}
        self._known_older: dict[str, int] = {}
        self._hosts: dict[str, int] = defaultdict(int)
        self._reload_hosts()
        self._reload_counts()

    def _reload_counts(self) -> None:
        self._counts = {s: 0 for s in (QUEUED, LEASED, DONE, COVERED)}
        for state, n in self.db.execute("SELECT state, count(*) FROM urls GROUP BY state"):
            self._counts[state] = n

    def _reload_hosts(self) -> None:
        """Recount queued URLs per host from the database (after bulk state changes)."""
        self._hosts.clear()
        for host, n in self.db.execute("SELECT host, count(*) FROM urls WHERE state = 0 GROUP BY host"):
            self._hosts[host] = n

    # -- transactions -------------------------------------------------------------
    # SQLite's own flag, not ours: after a failed write (disk full) SQLite may already
    # have rolled the transaction back.
    def _begin(self) -> None:
        if not self.db.in_transaction:
            self._adding.clear()  # the rows of a transaction that was not committed are gone
            self.db.execute("BEGIN")

    def commit(self) -> None:
        if self.db.in_transaction:
            self.db.execute("COMMIT")
            self._remember(self._adding)
        self._adding.clear()
        self.recent.clear()
        self._last_commit = time.monotonic()

    def maybe_commit(self) -> None:
        if self.db.in_transaction and time.monotonic() - self._last_commit >= self.COMMIT_EVERY:
            self.commit()

    # -- URLs known at a depth ------------------------------------------------------------
    # A site's navigation links are on every page, so most links a crawl finds are known
    # already. Such a link needs no statement at all when the frontier holds its URL at a
    # depth no greater than the link's: add's INSERT would ignore it and its UPDATE leave
    # it as it is. Each statement is a step per row, and every step gives up the GIL that
    # the fetchers share (the bench site's crawl: half its links, and nearly every add,
    # took the UPDATE pass). What is remembered must stay true: a depth only ever falls;
    # a URL no longer queued (leased, done) is changed by neither statement, and the
    # statements that queue URLs again (release, recover, start_run) forget everything;
    # rows of a transaction count only once it is committed. Bounded: at most KNOWN_KEPT
    # URLs of the open transaction and two generations of about as many committed ones.
    KNOWN_KEPT = 1 << 16

    def _known_depth(self, url: str) -> int | None:
        depth = self._adding.get(url)
        if depth is None:
            depth = self._known.get(url)
            if depth is None:
                depth = self._known_older.get(url)
        return depth

    def _remember(self, depths: dict[str, int]) -> None:
        if len(self._known) + len(depths) > self.KNOWN_KEPT:
            self._known_older, self._known = self._known, {}
        self._known.update(depths)

    def _forget(self) -> None:
        self._adding.clear()
        self._known.clear()
        self._known_older.clear()

    # A state change of many URLs by id, IDS_PER_STATEMENT ids a run: one run of
    # "WHERE id = ?" per URL was a step per URL, and each step gives up the GIL.
    IDS_PER_STATEMENT = 64
    _SET_STATE = "UPDATE urls SET state = ? WHERE id IN (" + ", ".join("?" * IDS_PER_STATEMENT) + ")"

    def _set_state(self, ids: Sequence[int], state: int) -> None:
        n = self.IDS_PER_STATEMENT
        runs = []
        for start in range(0, len(ids), n):
            run = [state, *ids[start:start + n]]
            run += [-1] * (n + 1 - len(run))  # no URL's id: rowids start at 1
            runs.append(run)
        self.db.executemany(self._SET_STATE, runs)

    # -- the contract ---------------------------------------------------------------
    def add(self, entries: Iterable[Entry]) -> int:
        by_host: dict[str, list[Entry]] = defaultdict(list)
        recent = self.recent
        self._begin()  # first: it forgets the rows of a transaction that was rolled back
        known_depth = self._known_depth
        for entry in entries:
            depth = known_depth(entry[0])
            if depth is not None and depth <= entry[2]:
                continue  # nothing either statement would change (see KNOWN_KEPT)
            by_host[entry[1]].append(entry)
            recent.add(entry[0])
        if not by_host:
            return 0
        adding = self._adding
        added = 0
        for host, rows in by_host.items():
            before = self.db.total_changes
            self.db.executemany(
                "INSERT OR IGNORE INTO urls (url, host, depth, referrer) VALUES (?, ?, ?, ?)", rows
            )
            new = self.db.total_changes - before
            if new:
                self._hosts[host] += new
                added += new
            if new < len(rows):
                # Some were known. A queued one found again by a shorter path takes the
                # smaller depth, so max_depth counts links along the shortest path.
                self.db.executemany(
                    "UPDATE urls SET depth = ?2, referrer = ?3 WHERE url = ?1 AND state = 0 AND depth > ?2",
                    [(r[0], r[2], r[3]) for r in rows])
            room = self.KNOWN_KEPT - len(adding)
            if room > 0:  # a seed list may add millions at once: remember at most KNOWN_KEPT
                for url, _, depth, _ in rows[:room]:
                    if adding.get(url, depth) >= depth:
                        adding[url] = depth
        self._counts[QUEUED] += added
        self.maybe_commit()
        return added

    def lease(self, host: str, limit: int) -> list[FetchJob]:
        if self._hosts.get(host, 0) <= 0 or limit <= 0:
            return []
        self._begin()
        rows = self.db.execute(
            "SELECT id, url, host, depth, referrer, etag, last_modified, content_hash, snapshot FROM urls "
            "WHERE host = ? AND state = 0 ORDER BY depth, id LIMIT ?",
            (host, limit),
        ).fetchall()
        if rows:
            self._set_state([r[0] for r in rows], LEASED)
        left = self._hosts[host] - len(rows)
        if left > 0 and rows:
            self._hosts[host] = left
        else:
            self._hosts.pop(host, None)
        self._counts[QUEUED] -= len(rows)
        self._counts[LEASED] += len(rows)
        self.maybe_commit()
        return [FetchJob(*r) for r in rows]

    def hosts(self) -> dict[str, int]:
        return self._hosts

    def complete(self, ids: Sequence[int], output_size: int, output_tail: str = "",
                 facts: Sequence[tuple] = ()) -> None:
        """``facts``: (status, etag, last_modified, content_hash, snapshot, gone, id) per URL
        whose validators and last data should be kept for the next run."""
        self._begin()
        self._set_state(ids, DONE)
        if facts:
            self.db.executemany(
                "UPDATE urls SET status = ?, etag = ?, last_modified = ?, content_hash = ?, snapshot = ?, "
                "gone = ? WHERE id = ?", facts)
        self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                            [("output_size", str(output_size)), ("output_tail", output_tail)])
        self.commit()
        self._counts[LEASED] -= len(ids)
        self._counts[DONE] += len(ids)

    def release(self, jobs: Sequence[FetchJob]) -> None:
        if not jobs:
            return
        self._begin()
        self._forget()  # queued again: their depths may be lowered again
        # Count only the rows the UPDATE changed: a job that is no longer leased (done
        # meanwhile, or released twice) must not move the counts away from the database.
        released = 0
        for job in jobs:
            if self.db.execute("UPDATE urls SET state = 0 WHERE id = ? AND state = 1", (job.id,)).rowcount:
                self._hosts[job.host] += 1
                released += 1
        self.commit()
        self._counts[QUEUED] += released
        self._counts[LEASED] -= released

    def cover(self, entries: Iterable[Entry]) -> None:
        """Record redirect targets as covered. One that is already known stays as it is
        (if it was queued it will still get a record of its own: fetched twice, never lost)."""
        entries = list(entries)
        self._begin()
        self.db.executemany(
            "INSERT OR IGNORE INTO urls (url, host, depth, referrer, state) VALUES (?, ?, ?, ?, 3)", entries)
        self.recent.update(e[0] for e in entries)

    def start_run(self) -> int:
        """A new run of a scheduled crawl: every URL done in the last run is queued again,
        except those that were gone (404/410). Returns how many were queued."""
        self._begin()
        self._forget()
        n = self.db.execute("UPDATE urls SET state = 0 WHERE state IN (2, 3) AND gone = 0").rowcount
        self.commit()
        self._reload_hosts()
        self._reload_counts()
        return n

    def recover(self) -> int:
        self._begin()
        self._forget()
        n = self.db.execute("UPDATE urls SET state = 0 WHERE state = 1").rowcount
        self.commit()
        if n:
            self._reload_hosts()
            self._counts[QUEUED] += n
            self._counts[LEASED] -= n
        return n

    def counts(self) -> Counts:
        return Counts(self._counts[QUEUED], self._counts[LEASED], self._counts[DONE])

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._begin()
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        self.commit()

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self.db.close()
