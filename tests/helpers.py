"""Helpers shared by the tests: clocks, job factories, record readers, subprocess
launchers and wait loops. Fixtures (sample-site servers, the ``cli`` runner) are in
conftest.py and are built on these.

- ``Clock``: a fake monotonic clock that a test moves by hand (``clock.now += 0.5``);
- ``job`` / ``jobs``: FetchJobs for one host, for the scheduler and the fetch policy;
- ``read_records`` / ``records_by_url`` / ``count_lines`` / ``write_seeds``: a crawl's JSON lines
  and its seeds file;
- ``launch`` / ``run_cli`` / ``finish``: the real ``python -m crawler`` in a child process;
- ``one_error_line``: the single line a refused or aborted command prints;
- ``descendants``: a crawl's child processes (parsers, writer);
- ``wait_until`` / ``wait_for_records``: poll until something is true, or fail the test;
- ``slow_site``: a chain of slow pages, a crawl that takes a while;
- ``assert_starts_apart``: request starts seen by the server keep the per-host delay.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import orjson
import psutil

from crawler.demo.shop.server import Response, Site
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


# -- records and seeds -------------------------------------------------------------------------
def read_records(path: Path, *, growing: bool = False) -> list[dict]:
    """The records of a JSON lines output (none if it does not exist yet). Every line must
    be valid JSON, and the file must end with a whole line, unless it is ``growing`` (a
    crawl is still writing it): then a partial last line is left for later."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    if growing:
        data = data[:data.rfind(b"\n") + 1]
    assert not data or data.endswith(b"\n"), "output must end with a whole line"
    return [orjson.loads(line) for line in data.splitlines()]


def records_by_url(records: list[dict]) -> dict[str, dict]:
    """The records keyed by URL; each URL must have exactly one record."""
    by_url = {r["url"]: r for r in records}
    assert len(by_url) == len(records), "a URL has more than one record"
    return by_url


def count_lines(path: Path) -> int:
    """Whole lines in ``path`` so far (0 if it does not exist yet)."""
    try:
        return Path(path).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def write_seeds(directory: Path, seeds: list[str]) -> None:
    """``seeds.txt`` in ``directory``, one URL per line (for ``crawl -s seeds.txt``)."""
    (Path(directory) / "seeds.txt").write_text("\n".join(seeds) + "\n")


# -- the CLI in a child process ----------------------------------------------------------------
def cli_env(**extra: str) -> dict[str, str]:
    """The environment for ``python -m crawler``: this checkout first on the path."""
    return dict(os.environ, PYTHONPATH=str(REPO), **extra)


def launch(cwd: Path, *args: str, env: dict[str, str] | None = None, text: bool = True,
           **popen) -> subprocess.Popen:
    """``python -m crawler ARGS`` started in ``cwd`` (``env``: extra variables), stdout and
    stderr captured. ``popen`` goes to Popen (``start_new_session``, ``preexec_fn``)."""
    return subprocess.Popen([sys.executable, "-m", "crawler", *args], cwd=cwd, env=cli_env(**(env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text, **popen)


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    """Wait for ``proc``: (exit code, stderr)."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    records: list[dict]


def run_cli(*args: str, cwd: Path, timeout: float = 120, output: Path | None = None,
            env: dict[str, str] | None = None) -> Run:
    """Run ``python -m crawler ARGS`` to the end; ``output``'s records are read back."""
    proc = subprocess.run([sys.executable, "-m", "crawler", *args], cwd=cwd, env=cli_env(**(env or {})),
                          capture_output=True, text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr, read_records(output) if output else [])


def one_error_line(stderr: str) -> str:
    """A refused or aborted command says why in exactly one line: return it."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("crawler: error: "), stderr
    return lines[0]


def descendants(pid: int) -> list[psutil.Process]:
    """Every process below ``pid`` (none once it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


# -- waiting -------------------------------------------------------------------------------------
def wait_until(predicate: Callable[[], T], timeout: float = 60, interval: float = 0.02,
               what: str = "a condition") -> T:
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


# -- sites and what the server saw ------------------------------------------------------------------
def slow_site(serve, pages: int = 400, delay: float = 0.05):
    """A chain of pages on 127.0.0.1 (each links the next three), each answering after
    ``delay`` seconds: a crawl that takes a while. ``serve`` is the conftest fixture."""
    site = Site()
    for i in range(pages):
        links = "".join(f'<a href="/p/{j}">{j}</a>' for j in range(i + 1, min(i + 4, pages)))
        site.add("127.0.0.1", f"/p/{i}", Response(200, f"<html><title>{i}</title>{links}</html>".encode(),
                                                  (("Content-Type", "text/html"),), delay))
    return serve(site, ["127.0.0.1"])


# The server stamps a request when its thread gets to parse it, and the crawler's
# thread sends it some time after taking the host's turn; on a loaded machine either
# can be late by tens of milliseconds, which makes one gap between two stamps look
# that much shorter (and the next one longer). A missing delay shows as a gap near 0.
JITTER = 0.1


def assert_starts_apart(starts: list[float], delay: float) -> None:
    """Every two consecutive starts at least ``delay`` apart, short of the stamps' jitter;
    and all of them together spread over at least that many delays."""
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) >= delay - JITTER, gaps
    assert starts[-1] - starts[0] >= (len(starts) - 1) * delay - JITTER / 2, gaps
