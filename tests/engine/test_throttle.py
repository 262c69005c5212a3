"""AutoThrottle measured at the server (issue 11, part 2), on both engines and both
frontier backends: a host that answers 503 for a while is slowed down and sped up again
afterwards, while another host keeps its rate; a slow host does not slow a fast one."""

from __future__ import annotations

import orjson
import pytest

from crawler.demo.shop.server import Site
from crawler.engine.hosts import HostScheduler
from crawler.fetch.throttle import AutoThrottle
from crawler.hostrules import HostRules, build_host_rules
from crawler.messages import FetchJob
from tests.fetch.test_engines_crawl import check_fault_crawl, fault_settings, fault_site
from tests.fetch.test_transports import page

A, B = "127.0.0.1", "127.0.0.2"
ENGINES = ("threads", "async")
BACKENDS = ("sqlite", "redis")
PAGES = 100


def settings(engine: str, backend: str, request, extra: str = "") -> str:
    toml = f"""
[crawl]
max_depth = -1
[fetch]
engine = "{engine}"
concurrency = 8
per_host_concurrency = 1
per_host_delay = 0.05
timeout = 5
retries = 0
backoff = 0.1
max_crawl_delay = 0.8
autothrottle = true
{extra}
[parse]
workers = 1
"""
    if backend == "redis":
        redis = request.getfixturevalue("redis_server")
        toml += f'[state]\nbackend = "redis"\nredis_url = "{redis.url}"\n'
    return toml


class Storm:
    """Pages, but 503 for every request that arrives between ``after`` and ``after + length``
    seconds after the host's first page request."""

    def __init__(self, after: float, length: float):
        self.after, self.length = after, length
        self.t0: float | None = None

    def __call__(self, request):
        if self.t0 is None:
            self.t0 = request.started
        if self.after <= request.started - self.t0 < self.after + self.length:
            return page("busy", status=503)
        return page("ok")

    def window(self, start: float, end: float) -> tuple[float, float]:
        """Seconds after the storm began, as absolute server times."""
        begin = self.t0 + self.after
        return begin + start, begin + end


def records_of(run, tmp_path) -> list[dict]:
    """The crawl's records: out.jsonl, or with Redis the worker's shard beside it."""
    shards = sorted(tmp_path.glob("out-*.jsonl"))
    if not shards:
        return run.records
    return [orjson.loads(line) for path in shards for line in path.read_bytes().splitlines()]


def rate(starts: list[float], window: tuple[float, float]) -> float:
    """Requests per second that started in ``window``."""
    lo, hi = window
    return sum(lo <= t < hi for t in starts) / (hi - lo)


def site_of(handlers: dict[str, object]) -> Site:
    site = Site()
    links = "".join(f'<a href="/p/{i}">{i}</a>' for i in range(PAGES))
    for host, handler in handlers.items():
        site.add(host, "/", page("index", links))
        for i in range(PAGES):
            site.add(host, f"/p/{i}", handler)
    return site


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_503_storm_slows_its_host_at_the_server_and_it_recovers_while_another_keeps_its_rate(
        serve, cli, request, tmp_path, engine, backend):
    storm = Storm(after=1.0, length=2.0)
    server = serve(site_of({A: storm, B: lambda request: page("ok")}), [A, B])
    run = cli("crawl", server.url(A), server.url(B), "-o", "out.jsonl", "-q",
              settings=settings(engine, backend, request))
    assert run.code == 0, run.stderr
    records = records_of(run, tmp_path)
    assert len(records) == len({r["url"] for r in records}) == 2 * (PAGES + 1)
    failed = [r for r in records if r["status"] == 503]
    elsewhere = [r["url"] for r in failed if not r["url"].startswith(server.url(A, "/p/"))]
    assert failed and not elsewhere, elsewhere
    log = server.log
    a = [r.started for r in log if r.host == A and r.path.startswith("/p/")]
    b = [r.started for r in log if r.host == B and r.path.startswith("/p/")]
    before = rate(a, storm.window(-0.8, 0.0))
    storming = rate(a, storm.window(1.0, 2.0))  # the second half of the storm
    after = rate(a, storm.window(3.5, 4.5))  # from 1.5 s after the storm
    b_before, b_storm = rate(b, storm.window(-0.8, 0.0)), rate(b, storm.window(0.0, 2.0))
    figures = dict(before=before, storm=storming, after=after, b_before=b_before, b_storm=b_storm)
    print(engine, backend, {k: round(v, 1) for k, v in figures.items()})
    assert storming <= before / 4, figures  # backed off exponentially, up to max_crawl_delay
    assert storming >= 1.0, figures  # but not stopped: 0.8 s at most between two requests
    assert after >= 3 * storming, figures  # recovered
    assert b_storm >= 0.6 * b_before, figures  # the other host kept its rate


@pytest.mark.parametrize("engine", ENGINES)
def test_a_slow_host_is_slowed_down_and_does_not_slow_a_fast_one(serve, cli, request, engine):
    slow, fast = A, B
    server = serve(site_of({slow: page("slow", delay=0.3), fast: page("fast")}), [slow, fast])
    run = cli("crawl", server.url(slow), server.url(fast), "-o", "out.jsonl", "-q",
              settings=settings(engine, "sqlite", request, "autothrottle_target_concurrency = 0.5"))
    assert run.code == 0, run.stderr
    assert len(run.records) == 2 * (PAGES + 1)
    log = server.log
    slow_starts = [r.started for r in log if r.host == slow and r.path.startswith("/p/")]
    fast_starts = [r.started for r in log if r.host == fast and r.path.startswith("/p/")]
    slow_gaps = sorted(y - x for x, y in zip(slow_starts, slow_starts[1:]))
    fast_gaps = sorted(y - x for x, y in zip(fast_starts, fast_starts[1:]))
    median = lambda gaps: gaps[len(gaps) // 2]  # noqa: E731
    # latency 0.3 s / target 0.5 = 0.6 s between starts, instead of 0.3 s (latency-bound)
    assert median(slow_gaps) >= 0.5, slow_gaps[::10]
    print(engine, "median gap: slow host", round(median(slow_gaps), 3), "fast host", round(median(fast_gaps), 3))
    assert median(fast_gaps) <= 0.12, fast_gaps[::10]


@pytest.mark.parametrize("per_host", [1, 2])
@pytest.mark.parametrize("engine", ENGINES)
def test_the_delay_holds_at_the_server_on_the_redis_frontier_through_faults(
        serve, cli, redis_server, tmp_path, engine, per_host):
    """The fault-site crawl of tests/fetch/test_engines_crawl.py on the shared frontier:
    the turns are taken in Redis (lease, turn, hostctl) instead of the HostScheduler."""
    h = "127.0.0.1"
    server = serve(fault_site(h), [h])
    toml = fault_settings(per_host).replace("[fetch]\n", f'[fetch]\nengine = "{engine}"\n') + (
        f'[state]\nbackend = "redis"\nredis_url = "{redis_server.url}"\n')
    run = cli("crawl", server.url(h), "-o", "out.jsonl", "-q", settings=toml)
    assert run.code == 0, run.stderr
    check_fault_crawl(server, h, records_of(run, tmp_path), per_host)


def test_autothrottle_backs_off_exponentially_to_the_cap_and_recovers_halfway_per_healthy_answer():
    throttle = AutoThrottle(target_concurrency=1.0, backoff=0.1, max_delay=0.8)
    assert [throttle.observe("a", 503, 0.01) for _ in range(5)] == [0.1, 0.2, 0.4, 0.8, None]  # capped
    assert throttle.observe("a", 429, 0.01) is None and throttle.delay("a") == 0.8
    assert throttle.observe("a", 404, 0.01) is None, "an error answer is no sign of health"
    assert throttle.observe("a", None, 0.01) is None, "nor is a failed request"
    recovering = [throttle.observe("a", 200, 0.0) for _ in range(7)]
    assert recovering == [0.4, 0.2, 0.1, 0.05, 0.025, 0.0125, 0.0]
    assert throttle.observe("b", 200, 0.5) == 0.5, "a slow answer raises the delay at once"
    assert throttle.delay("a") == 0.0, "hosts are apart"


def test_the_scheduler_never_lets_autothrottle_or_crawl_delay_undercut_a_hosts_floor():
    rules = HostRules(build_host_rules([{"match": "slow.test", "delay": 5.0, "concurrency": 1}], "test"))
    scheduler = HostScheduler(4, 1.0, clock=lambda: 0.0, rules=rules)
    scheduler.offer([FetchJob(1, "http://slow.test/", "slow.test", 0), FetchJob(2, "http://x.test/", "x.test", 0)])
    first, _ = scheduler.try_next()
    second, _ = scheduler.try_next()
    assert {first.host, second.host} == {"slow.test", "x.test"}
    slot, other = scheduler._slots["slow.test"], scheduler._slots["x.test"]
    assert (slot.concurrency, slot.delay, other.concurrency, other.delay) == (1, 5.0, 4, 1.0)
    scheduler.adapt("slow.test", 0.5)
    scheduler.set_delay("slow.test", 2.0)
    assert slot.delay == 5.0 and slot.next_start == 5.0, "the rule's delay is the floor"
    scheduler.adapt("x.test", 3.0)
    assert other.delay == 3.0 and other.next_start == 3.0, "a longer delay pushes the planned start back"
    scheduler.adapt("x.test", 0.0)
    assert other.delay == 1.0 and other.next_start == 3.0, "a shorter one applies from the next start"
