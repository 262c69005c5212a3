"""`crawler schedule`: rerun a crawl on an interval or a cron expression, in the foreground.

Each run is a ``Crawl`` with ``new_run=True``: it revisits every URL the state knows
(except pages that were gone), plus the seeds and new links, with conditional
requests, and gets its own ``crawl_id``. The state directory also holds
``schedule.json`` (when runs started and ended, the interval's anchor) and
``schedule.lock``, so that:

- a restarted scheduler knows when the last run ran; a run it finds unfinished (the
  process was killed) is resumed at once, not started afresh;
- ticks missed while no scheduler was running coalesce into one catch-up run;
- ticks that fall while a run is still going are skipped, and logged;
- a second scheduler on the same state exits 2.

Cron expressions are evaluated with croniter (maintained under pallets-eco), in local time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shlex
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from crawler.errors import StateError, UsageError
from crawler.engine.crawl import Crawl, CrawlResult
from crawler.engine.state import StateLock, default_state_dir, start_over
from crawler.engine.progress import Progress
from crawler.settings import Settings

log = logging.getLogger("crawler.engine.recurring")

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_every(text: str, where: str = "--every") -> float:
    match = EVERY.match(text)
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"{where}: expected a positive number and a unit s, m, h or d (e.g. 30m, 6h), got {text!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


class Cadence:
    """When runs are due: ``next_after(t)`` is the first tick strictly after ``t``."""

    def __init__(self, every: str = "", cron: str = "", *, where: str = ""):
        if bool(every) == bool(cron):
            raise UsageError("give exactly one of --every and --cron (or [schedule] every / cron)")
        self.every, self.cron = every, cron
        self.interval = parse_every(every, where or "--every") if every else None
        if cron:
            from croniter import croniter

            if len(cron.split()) != 5 or not croniter.is_valid(cron):
                raise UsageError(f"{where or '--cron'}: not a valid five-field cron expression: {cron!r}")

    def next_after(self, t: float, anchor: float) -> float:
        if self.interval is not None:
            k = math.floor((t - anchor) / self.interval) + 1
            return anchor + max(k, 1) * self.interval
        from croniter import croniter

        return croniter(self.cron, datetime.fromtimestamp(t)).get_next(float)

    def ticks_between(self, start: float, end: float, anchor: float) -> list[float]:
        ticks, t = [], self.next_after(start, anchor)
        while t <= end and len(ticks) < 1000:
            ticks.append(t)
            t = self.next_after(t, anchor)
        return ticks

    def describe(self) -> str:
        return f"every {self.every}" if self.every else f"cron {self.cron!r}"


@dataclass
class ScheduleState:
    anchor: float | None = None  # the first run's start: interval ticks are anchor + k * interval
    last_start: float | None = None
    last_end: float | None = None
    runs: int = 0

    @classmethod
    def load(cls, path: Path) -> "ScheduleState":
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return cls()
        except (ValueError, TypeError) as exc:
            raise StateError(f"{path}: unreadable schedule state ({exc}); remove it to start the schedule over") from None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)  # atomic: a crash leaves the old or the new state, never half

    @property
    def unfinished(self) -> bool:
        return self.last_start is not None and (self.last_end is None or self.last_end < self.last_start)


def clock(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


class RunScheduler:
    def __init__(self, settings: Settings, seeds: list[str], *, output: str, state_dir: str | None,
                 cadence: Cadence, runs: int = 0, progress: bool = False, fresh: bool = False):
        self.settings = settings
        self.seeds = seeds
        self.output = output
        self.state_dir = Path(state_dir) if state_dir else default_state_dir(output)
        self.cadence = cadence
        self.runs = runs
        self.progress = progress
        self.fresh = fresh
        self.stop = threading.Event()
        self.current: Crawl | None = None

    def request_stop(self) -> None:
        self.stop.set()
        if self.current is not None:
            self.current.request_stop("interrupted")

    def run(self) -> int:
        lock = StateLock(self.state_dir, "schedule.lock",
                         f"another `crawler schedule` is already running on state {self.state_dir}")
        try:
            if self.fresh:  # start over, under the crawl's lock too: never under a running crawl
                crawl_lock = StateLock(self.state_dir)
                try:
                    start_over(self.state_dir, None if "{" in self.output else Path(self.output))
                finally:
                    crawl_lock.release()
            return self._loop()
        finally:
            lock.release()

    def _loop(self) -> int:
        path = self.state_dir / "schedule.json"
        st = ScheduleState.load(path)
        done_here = 0
        log.info("schedule: %s, state %s", self.cadence.describe(), self.state_dir)
        while not self.stop.is_set():
            now = time.time()
            if st.last_start is None:
                due = now
            elif st.unfinished:
                log.info("schedule: run %d was interrupted at some point; resuming it now", st.runs + 1)
                due = now
            else:
                due = self.cadence.next_after(st.last_end, st.anchor or st.last_start)
                if due <= now:
                    missed = len(self.cadence.ticks_between(st.last_end, now, st.anchor or st.last_start))
                    log.info("schedule: %d tick(s) missed since %s; one catch-up run now", missed, clock(st.last_end))
                    due = now
                else:
                    log.info("schedule: next run at %s", clock(due))
            if self.stop.wait(max(0.0, due - time.time())):
                break
            resuming = st.unfinished
            if not resuming:
                st.last_start = time.time()
                st.anchor = st.anchor or st.last_start
                st.save(path)
            log.info("schedule: run %d starting", st.runs + 1)
            result = self._one_run()
            if result.interrupted:
                return 130
            st.last_end = time.time()
            st.runs += 1
            st.save(path)
            done_here += 1
            log.info("schedule: run %d (%s) %s", st.runs, result.crawl_id, result.summary())
            for tick in self.cadence.ticks_between(st.last_start, st.last_end, st.anchor):
                log.info("schedule: skipped the tick at %s: run %d was still going", clock(tick), st.runs)
            if self.runs and done_here >= self.runs:
                break
        return 130 if self.stop.is_set() else 0

    def _one_run(self) -> CrawlResult:
        self.current = Crawl(self.settings, self.seeds, output=self.output, state_dir=self.state_dir,
                             new_run=True)
        try:
            if self.progress:
                with Progress() as progress:
                    self.current.progress = progress
                    return self.current.run()
            return self.current.run()
        finally:
            self.current = None


def schedule_signals(scheduler: RunScheduler):
    """First SIGINT/SIGTERM: the current run drains and saves; a second exits at once."""
    hits = {"n": 0}

    def handler(signum, frame):
        hits["n"] += 1
        if hits["n"] == 1:
            scheduler.request_stop()
        else:
            os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def crawl_command(argv: list[str]) -> str:
    """The `crawler crawl ...` equivalent of a schedule command line, for cron or systemd."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in ("--every", "--cron", "--runs"):
            skip = True
            continue
        if arg.startswith(("--every=", "--cron=", "--runs=")) or arg in ("--print-cron", "--print-systemd"):
            continue
        out.append(arg)
    exe = shlex.quote(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else "crawler"
    return " ".join([exe, "crawl", "--recrawl", *map(shlex.quote, out)])


def print_cron(cadence: Cadence, argv: list[str]) -> str:
    if cadence.cron:
        spec = cadence.cron
    else:
        seconds = cadence.interval
        if seconds % 86400 == 0:
            spec = f"0 0 */{int(seconds // 86400)} * *" if seconds > 86400 else "0 0 * * *"
        elif seconds % 3600 == 0:
            spec = f"0 */{int(seconds // 3600)} * * *" if seconds > 3600 else "0 * * * *"
        elif seconds % 60 == 0:
            spec = f"*/{int(seconds // 60)} * * * *" if seconds > 60 else "* * * * *"
        else:
            raise UsageError(f"--every {cadence.every}: cron cannot run more often than once a minute")
    return f"{spec} cd {shlex.quote(os.getcwd())} && {crawl_command(argv)} -q"


def print_systemd(cadence: Cadence, argv: list[str]) -> str:
    if cadence.cron:
        fields = cadence.cron.split()
        minute, hour, dom, month, dow = fields
        days = {"0": "Sun", "1": "Mon", "2": "Tue", "3": "Wed", "4": "Thu", "5": "Fri", "6": "Sat", "7": "Sun"}
        dow_part = "" if dow == "*" else ",".join(days.get(d, d) for d in dow.split(",")) + " "

        def conv(field: str) -> str:
            return field.replace("*/", "0/") if field.startswith("*/") else field

        timer = f"OnCalendar={dow_part}*-{conv(month)}-{conv(dom)} {conv(hour)}:{conv(minute)}:00"
    else:
        timer = f"OnUnitActiveSec={int(cadence.interval)}s\nOnBootSec=1min"
    return f"""# crawler.service
[Unit]
Description=crawler: scheduled crawl

[Service]
Type=oneshot
WorkingDirectory={os.getcwd()}
ExecStart={crawl_command(argv)} -q

# crawler.timer
[Unit]
Description=crawler: run the crawl {cadence.describe()}

[Timer]
{timer}
Persistent=true

[Install]
WantedBy=timers.target
"""
