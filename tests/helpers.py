"""Helpers shared by the tests: clocks, job factories, record readers, subprocess
launchers and wait loops. Fixtures (servers, the ``cli`` runner) are in conftest.py.

- ``Clock``: a fake monotonic clock that a test moves by hand (``clock.now += 0.5``);
- ``job`` / ``jobs``: FetchJobs for one host, for the scheduler and the fetch policy;
- ``read_records`` / ``records_by_url``: the JSON lines a crawl wrote;
- ``crawl_cmd`` / ``start_crawl`` / ``finish``: the real CLI in a child process;
- ``wait_until`` / ``wait_for_records``: poll until something is true, or fail the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

import orjson

from crawler.messages import FetchJob

REPO = Path(__file__).resolve().parents[1]

T = TypeVar("T")


# -- clocks and jobs ---------------------------------------------------------------------------
class Clock:
    """A fake monotonic clock: ``clock()`` returns ``clock.now``, which the test moves."""

    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def job(host: str, i: int, **fields) -> FetchJob:
    """Job ``i`` of ``host``: ``http://{host}/{i}`` with id ``i``, at depth 0."""
    return FetchJob(id=i, url=f"http://{host}/{i}", host=host, depth=0, **fields)


def jobs(host: str, n: int, start: int = 0) -> list[FetchJob]:
    """``n`` jobs of ``host`` with ids ``start``, ``start + 1``, ... (paths 0, 1, ...)."""
    return [FetchJob(id=start + i, url=f"http://{host}/{i}", host=host, depth=0) for i in range(n)]


# -- records -----------------------------------------------------------------------------------
def read_records(path: Path) -> list[dict]:
    """The records of a JSON lines output (none if it does not exist); it must end with
    a whole line."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "output must end with a whole line"
    return [orjson.loads(line) for line in data.splitlines()]


def records_by_url(records: list[dict]) -> dict[str, dict]:
    return {r["url"]: r for r in records}


def count_lines(path: Path) -> int:
    """Whole lines in ``path`` so far (0 if it does not exist yet): for a crawl that is
    still writing it."""
    try:
        return Path(path).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


# -- the CLI in a child process ----------------------------------------------------------------
def cli_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def crawl_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "crawler", "crawl", *args]


def start_crawl(cwd: Path, *args: str, **popen) -> subprocess.Popen:
    """``crawler crawl ARGS`` running in ``cwd``, its output captured as text."""
    return subprocess.Popen(crawl_cmd(*args), cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    """Wait for ``proc``: (exit code, stderr)."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


# -- waiting -------------------------------------------------------------------------------------
def wait_until(predicate: Callable[[], T], timeout: float = 60, interval: float = 0.05,
               what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something true, and return that; fail the test
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_for_records(path: Path, n: int, timeout: float = 30) -> int:
    """Wait until ``path`` holds at least ``n`` whole lines; return how many it holds."""
    wait_until(lambda: count_lines(path) >= n, timeout, what=f"{n} records in {path}")
    return count_lines(path)
