"""The two transports under one harness: every test that takes ``engine`` (or
``engine_name``) runs once on the threads engine and once on the async engine, with the
same scripted server answers, so a policy change is tested once and applies to both."""

from __future__ import annotations

import itertools
import queue
import threading
from urllib.parse import urlsplit

import pytest

from crawler.engine.hosts import HostScheduler
from crawler.fetch.aiohttp_engine import AiohttpEngine
from crawler.fetch.guard import AddressGuard
from crawler.fetch.policy import FetchPolicy
from crawler.fetch.requests_engine import RequestsFetcher
from crawler.messages import FetchJob, Page
from crawler.settings import DEFAULTS_PATH, load_settings

ENGINES = ("threads", "async")
TRANSPORTS = {"threads": RequestsFetcher, "async": AiohttpEngine}


def make_transport(name: str, policy: FetchPolicy, guard: AddressGuard | None = None):
    return TRANSPORTS[name](policy, guard)


class EngineRun:
    """An engine on its own HostScheduler; ``fetch`` hands it jobs and waits for them."""

    def __init__(self, name: str, guard: AddressGuard, fetch: dict, gate: threading.Event | None = None,
                 try_page=None):
        overrides = {"fetch.per_host_delay": 0, "fetch.timeout": 2, "fetch.backoff": 0.05}
        overrides.update({f"fetch.{k}": v for k, v in fetch.items()})
        settings = load_settings(DEFAULTS_PATH, overrides)
        self.name = name
        self.scheduler = HostScheduler(settings.fetch.per_host_concurrency, settings.fetch.per_host_delay)
        self.policy = FetchPolicy(settings.fetch, "test-agent", scheduler=self.scheduler)
        self.engine = make_transport(name, self.policy, guard)
        self.settled: queue.Queue = queue.Queue()
        self.threads = self.engine.start(self.scheduler, self.on_page, lambda job: self.settled.put(("released", job)),
                                         try_page=try_page)
        self.gate = gate  # while it is clear, on_page blocks (the parser pool is full)
        self.ids = itertools.count(1)

    def on_page(self, job: FetchJob, page: Page) -> None:
        if self.gate is not None:
            self.gate.wait()
        self.settled.put(page)

    def offer(self, *urls: str, **job_fields) -> list[FetchJob]:
        jobs = [FetchJob(next(self.ids), url, urlsplit(url).hostname, 0, **job_fields) for url in urls]
        self.scheduler.offer(jobs)
        return jobs

    def fetch(self, url: str, **job_fields) -> Page:
        self.offer(url, **job_fields)
        return self.settled.get(timeout=20)

    def stop(self) -> None:
        self.scheduler.close()
        self.policy.stop.set()
        for t in self.threads:
            t.join(10)


@pytest.fixture(params=ENGINES)
def engine_name(request) -> str:
    return request.param


@pytest.fixture
def engine(engine_name):
    """engine(**fetch_settings) -> a running EngineRun (loopback allowed), stopped afterwards."""
    runs: list[EngineRun] = []

    def start(guard: AddressGuard | None = None, gate: threading.Event | None = None, try_page=None,
              **fetch) -> EngineRun:
        runs.append(EngineRun(engine_name, guard or AddressGuard(allow_private=True), fetch, gate, try_page))
        return runs[-1]

    yield start
    for run in runs:
        if run.gate is not None:
            run.gate.set()
        run.stop()
