"""The state directory of a crawl: where it is, who holds it, and which run it is in.

``<output>.state/`` (or ``--state DIR``) holds the frontier database, ``lock`` (one
crawl at a time: an exclusive flock for the crawl's life) and, for scheduled crawls,
``schedule.json`` and ``schedule.lock``. The frontier's meta table records the run:
``crawl_id``, ``run_number``, ``run_status`` (running / finished) and ``run_started``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
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


LOCK_FILES = ("lock", "schedule.lock")


def _open_locked(path: Path, busy: str, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """A descriptor of ``path`` holding an exclusive flock; StateError(busy) (exit 2) if
    another process holds it."""
    fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StateError(busy) from None
    return fd


class StateLock:
    """An exclusive flock on a file in the state directory, held until ``release``:
    ``lock`` for a crawl, ``schedule.lock`` for a scheduler. A second holder gets
    StateError (exit 2) with ``busy`` as its message."""

    def __init__(self, state_dir: Path, name: str = "lock", busy: str | None = None):
        state_dir.mkdir(parents=True, exist_ok=True)
        busy = busy or f"state {state_dir} is in use by another running crawl"
        self.fd = _open_locked(state_dir / name, busy)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        os.close(self.fd)


def start_over(state_dir: Path, output: Path | None, also: tuple[Path, ...] = ()) -> None:
    """``--fresh``: forget the crawl in ``state_dir`` and empty ``output`` (None: the output
    is one file per run, nothing to empty). The caller holds the state's lock; the output
    is emptied under the writer's own lock (an flock on the file), so a crawl writing it
    from another state directory makes this a StateError (exit 2) *before* anything is
    deleted. The lock files stay: a process waiting on them must see the same files.
    ``also``: files that go with the output (the WARC and its offsets), deleted with it."""
    fd = None
    if output is not None and output.exists():
        fd = _open_locked(output, f"output {output} is locked by another running crawl", os.O_RDWR)
    try:
        for entry in state_dir.iterdir():
            if entry.name in LOCK_FILES:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for path in also:
            path.unlink(missing_ok=True)
        if fd is not None:
            os.ftruncate(fd, 0)
    finally:
        if fd is not None:
            os.close(fd)


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

