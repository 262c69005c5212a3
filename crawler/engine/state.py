"""The state directory of a crawl: where it is, who holds it, and which run it is in.

``<output>.state/`` (or ``--state DIR``) holds the frontier database, ``lock`` (one
crawl at a time: an exclusive flock for the crawl's life) and, for scheduled crawls,
``schedule.json`` and ``schedule.lock``. The frontier's meta table records the run:
``crawl_id``, ``run_number``, ``run_status`` (running / finished) and ``run_started``.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from crawler.errors import StateError
from crawler.messages import utc_now_iso
from crawler.engine.frontier import SQLiteFrontier


def new_crawl_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(2).hex()


def has_placeholders(path: str) -> bool:
    return "{crawl_id}" in path or "{date}" in path


def default_state_dir(output: str) -> Path:
    """``<output>.state``; for an output path with {crawl_id} or {date} (one file per
    run), ``crawl.state`` next to where those files go."""
    if has_placeholders(output):
        return Path(output).parent / "crawl.state"
    return Path(f"{output}.state")


class StateLock:
    """An exclusive flock on a file in the state directory, held until ``release``:
    ``lock`` for a crawl, ``schedule.lock`` for a scheduler. A second holder gets
    StateError (exit 2) with ``busy`` as its message."""

    def __init__(self, state_dir: Path, name: str = "lock", busy: str | None = None):
        state_dir.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(state_dir / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise StateError(busy or f"state {state_dir} is in use by another running crawl") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        os.close(self.fd)


def begin_run(frontier: SQLiteFrontier, new_run: bool) -> tuple[str, int, int | None]:
    """(crawl_id, run number, URLs re-queued for a new run or None when resuming)."""
    crawl_id = frontier.get_meta("crawl_id")
    run_number = int(frontier.get_meta("run_number") or 0)
    finished = frontier.get_meta("run_status") == "finished"
    if crawl_id is not None and not (new_run and finished):
        return crawl_id, run_number, None
    requeued = frontier.start_run() if crawl_id is not None else 0
    crawl_id, run_number = new_crawl_id(), run_number + 1
    for key, value in (("crawl_id", crawl_id), ("run_number", str(run_number)),
                       ("run_status", "running"), ("run_started", utc_now_iso())):
        frontier.set_meta(key, value)
    return crawl_id, run_number, requeued

