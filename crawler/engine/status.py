"""``crawler status``: how far a crawl is, read without disturbing it.

For a local crawl it reads the state directory's SQLite file (read-only, beside the
running crawl: WAL allows it); for a shared crawl, the crawl's keys in Redis. Either
way it prints the queued, leased, done and failed counts, the workers (a local crawl
has one, running or not; a shared one, every worker seen lately with its rate) and the
busiest hosts by queued URLs. ``--format json`` gives the same as one JSON object.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

import orjson

from crawler.engine.frontier import DONE, LEASED, QUEUED
from crawler.engine.state import default_state_dir
from crawler.errors import StateError

RECENT = 60.0  # seconds: a worker whose last heartbeat is older is not "seen recently"


def crawl_status(settings, *, state: str | None = None, hosts: int = 10) -> dict:
    if settings.state.backend == "redis":
        return _shared_status(settings, hosts)
    return _local_status(Path(state) if state else default_state_dir(settings.output.path), hosts)


def _local_status(state_dir: Path, hosts: int) -> dict:
    path = state_dir / "frontier.sqlite"
    if not path.exists():
        raise StateError(f"no crawl state at {state_dir} (give --state, or -o/-c naming the crawl's output)")
    db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    try:
        by_state = dict(db.execute("SELECT state, count(*) FROM urls GROUP BY state").fetchall())
        failed = db.execute("SELECT count(*) FROM urls WHERE state = ? AND (status IS NULL OR gone = 1)",
                            (DONE,)).fetchone()[0]
        busiest = db.execute("SELECT host, count(*) AS n FROM urls WHERE state = ? GROUP BY host "
                             "ORDER BY n DESC, host LIMIT ?", (QUEUED, hosts)).fetchall()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()
    return {
        "backend": "sqlite", "crawl": str(state_dir), "crawl_id": meta.get("crawl_id"),
        "run_number": int(meta.get("run_number") or 0), "run_status": meta.get("run_status"),
        "queued": by_state.get(QUEUED, 0), "leased": by_state.get(LEASED, 0),
        "done": by_state.get(DONE, 0), "failed": failed,
        "workers": [{"worker": "local", "running": _locked(state_dir / "lock")}],
        "hosts": [{"host": h, "queued": n} for h, n in busiest],
    }


def _locked(lock: Path) -> bool:
    """Whether a crawl holds the state lock now (asked without keeping it, or writing)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the lock if we got it
    return False


def _shared_status(settings, hosts: int) -> dict:
    from crawler.engine.shared.joining import crawl_name
    from crawler.engine.shared.redis_frontier import connect, crawl_prefix

    url = settings.state.redis_url
    prefix = crawl_prefix(crawl_name(settings, settings.output.path))
    client = connect(url)
    try:
        meta = {k.decode(): v.decode() for k, v in client.hgetall(prefix + "meta").items()}
        if not meta:
            raise StateError(f"Redis at {url} holds no crawl {prefix}* (check [state] redis_key and -o)")
        counts = {k.decode(): int(v) for k, v in client.hgetall(prefix + "counts").items()}
        seconds, micros = client.time()
        now = seconds + micros / 1e6
        workers = []
        for wid, blob in sorted(client.hgetall(prefix + "beats").items()):
            beat = orjson.loads(blob)
            age = now - beat["at"]
            if age <= RECENT:
                run = beat["at"] - beat.get("started", beat["at"])
                workers.append({"worker": wid.decode(), "seen_seconds_ago": round(age, 1),
                                "pages_per_second": round(beat.get("done", 0) / run, 1) if run > 0 else 0.0,
                                **{k: v for k, v in beat.items() if k not in ("at", "started")}})
        busiest = client.zrevrange(prefix + "hosts", 0, hosts - 1, withscores=True)
    finally:
        client.close()
    return {
        "backend": "redis", "crawl": prefix, "crawl_id": meta.get("crawl_id"),
        "run_number": int(meta.get("run_number") or 0), "run_status": meta.get("run_status"),
        "queued": counts.get("queued", 0), "leased": counts.get("leased", 0),
        "done": counts.get("done", 0), "failed": counts.get("failed", 0),
        "workers": workers,
        "hosts": [{"host": h.decode(), "queued": int(n)} for h, n in busiest],
    }


def render_status(status: dict, fmt: str) -> str:
    if fmt == "json":
        return orjson.dumps(status).decode()
    lines = [
        f"crawl {status['crawl']} ({status['backend']}), run {status['run_number']} {status['crawl_id']}: "
        f"{status['run_status']}",
        f"queued {status['queued']:,}  leased {status['leased']:,}  done {status['done']:,}  "
        f"failed {status['failed']:,}",
    ]
    if status["backend"] == "sqlite":
        lines.append("running now" if status["workers"][0]["running"] else "not running")
    else:
        lines.append(f"workers seen in the last {RECENT:.0f}s: {len(status['workers'])}")
        for w in status["workers"]:
            lines.append(f"  {w['worker']:<20} {w['pages_per_second']:>8.1f} pages/s  done {w.get('done', 0):,}  "
                         f"leased {w.get('leased', 0)}  seen {w['seen_seconds_ago']}s ago")
    if status["hosts"]:
        lines.append("busiest hosts (queued):")
        lines.extend(f"  {h['host']:<40} {h['queued']:,}" for h in status["hosts"])
    return "\n".join(lines)
