"""Issue 11 #7: a long crawl over many hosts keeps bounded per-host state.

Three tables grow by host: the scheduler's slots, the robots.txt parsers per origin and
the watchdog's alarms (one per request, disarmed when it ends). Each test drives one of
the real classes through 50,000 hosts, one page each, and checks that the memory it
holds after 50,000 hosts is about what it held after 10,000 (tracemalloc counts the
bytes Python allocated and still holds). A real crawl of 50,000 loopback hosts would
need 50,000 listening sockets and minutes of CPU on a shared machine, so the crawl is
simulated at the classes' own interfaces, with a fake clock and a fake robots fetch.
"""

from __future__ import annotations

import gc
from collections import Counter
import socket
import tracemalloc

import pytest

from crawler.engine import hosts
from crawler.engine.hosts import HostScheduler
from crawler.fetch import robots, watchdog
from crawler.fetch.robots import RobotsAnswer, RobotsCache
from crawler.fetch.watchdog import Watchdog
from tests.helpers import Clock, job, wait_until

HOSTS = 50_000
WARM = 10_000  # memory is compared between the end of this many hosts and the end of all
FLAT = 1_000_000  # bytes: what 40,000 more hosts may add (unbounded, each table adds 10-200 MB)

ROBOTS_TXT = b"User-agent: *\nDisallow: /private/\nCrawl-delay: 0.5\nSitemap: /sitemap.xml\n"


def host(i: int) -> str:
    return f"h{i}.test"


def held_after(steps, step) -> tuple[int, int]:
    """Bytes held after WARM steps and after all HOSTS steps."""
    tracemalloc.start()
    try:
        for i in range(WARM):
            step(i)
        gc.collect()
        warm = tracemalloc.get_traced_memory()[0]
        for i in range(WARM, steps):
            step(i)
        gc.collect()
        return warm, tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


def test_scheduler_slots_of_idle_hosts_are_evicted():
    clock = Clock()
    s = HostScheduler(2, 0.25, clock=clock)

    def one_page(i: int) -> None:
        j = job(host(i), i)
        s.offer([j])
        started, _ = s.try_next()
        assert started is j
        s.set_delay(j.host, 0.5)  # a Crawl-delay, learnt from robots.txt
        s.done(j)
        clock.now += 0.001  # 1,000 pages/s: a host's delay passes after 500 other hosts

    warm, end = held_after(HOSTS, one_page)
    assert end - warm < FLAT, f"{(end - warm) / 1e6:.1f} MB more after {HOSTS - WARM} more hosts"
    assert len(s._slots) <= 2 * hosts.MAX_SLOTS


def test_an_evicted_host_gets_its_delay_back_before_its_second_request():
    """Eviction forgets a host's Crawl-delay; the robots check after its next first request
    sets it again, and that request's turn is spaced by it, not by per_host_delay."""
    clock = Clock()
    s = HostScheduler(1, 0.1, clock=clock)
    s.offer([job("a", 1)])
    first, _ = s.try_next()
    s.set_delay("a", 2.0)  # robots.txt: Crawl-delay 2
    s.done(first)
    clock.now += 3
    for i in range(2, hosts.MAX_SLOTS + 2):  # enough other hosts to sweep "a" out
        s.offer([job(f"other{i}", i)])
        other, _ = s.try_next()
        s.done(other)
    assert "a" not in s._slots
    s.offer([job("a", 2), job("a", 3)])
    again, _ = s.try_next()
    assert again.id == 2
    s.set_delay("a", 2.0)  # the next robots check, from its cache
    s.done(again)
    nothing, wait = s.try_next()
    assert nothing is None and wait == pytest.approx(2.0)


def test_robots_parsers_are_kept_for_a_bounded_number_of_origins():
    fetched = Counter()

    def fetch(url: str) -> RobotsAnswer:
        fetched["robots.txt"] += 1
        return RobotsAnswer(200, ROBOTS_TXT)

    cache = RobotsCache("crawler-test", fetch, clock=Clock())

    def one_page(i: int) -> None:
        assert cache.check(f"http://{host(i)}/p/1") == (True, 0.5)
        assert cache.check(f"http://{host(i)}/private/x") == (False, 0.5)

    warm, end = held_after(HOSTS, one_page)
    assert end - warm < FLAT, f"{(end - warm) / 1e6:.1f} MB more after {HOSTS - WARM} more origins"
    assert fetched["robots.txt"] == HOSTS  # each origin's robots.txt once, while it was in use
    # The most recent origins are still cached; the oldest were dropped and are asked again.
    assert cache.is_cached(f"http://{host(HOSTS - 1)}/") and not cache.is_cached(f"http://{host(0)}/")
    cache.check(f"http://{host(0)}/p/1")
    assert fetched["robots.txt"] == HOSTS + 1
    assert robots.MAX_ORIGINS < HOSTS


def test_disarmed_watchdog_alarms_do_not_pile_up_behind_a_long_request():
    """Every request arms an alarm at its start + timeout and disarms it when it ends.
    While one slow request (the oldest, so the earliest deadline) holds the top of the
    heap, the alarms of the requests that ended behind it must not all stay there."""
    clock = Clock()
    dog = Watchdog(clock=clock)
    a, b = socket.socketpair()
    try:
        slow_request = dog.arm(clock.now + 30, a)

        def one_page(i: int) -> None:
            clock.now += 0.0005  # 2,000 requests/s: 50,000 end within the slow one's 30 s
            dog.disarm(dog.arm(clock.now + 30, b))

        warm, end = held_after(HOSTS, one_page)
        assert end - warm < FLAT, f"{(end - warm) / 1e6:.1f} MB more after {HOSTS - WARM} more requests"
        assert len(dog._heap) <= 2 * watchdog.MIN_DISARMED_TO_COMPACT + 1
        assert slow_request.armed and not slow_request.fired
        clock.now += 30  # the slow request's alarm still fires at its deadline
        dog.arm(0.0, b)  # due long ago: wakes the watchdog thread, which finds both due
        wait_until(lambda: slow_request.fired, timeout=5, what="the slow request's alarm")
    finally:
        a.close()
        b.close()


def test_a_shared_crawl_remembers_a_bounded_number_of_delayed_hosts_and_then_reports_every_start(monkeypatch):
    """RedisTurns keeps the hosts with a delay of their own (Crawl-delay, AutoThrottle) so
    that only their request starts go to Redis. Past DELAYED_MAX hosts it remembers no more
    and sends every start instead: memory stays bounded and no delayed host is missed."""
    from crawler.engine.shared import turns as turns_mod

    class Frontier:  # RedisFrontier's calls that RedisTurns makes, recorded
        delay_ms = 0  # no crawl-wide delay: only the hosts' own delays count

        def __init__(self):
            self.calls = []

        def hostctl(self, op, host, value):
            self.calls.append((op, host))

        def finish(self, slots):
            pass

    monkeypatch.setattr(turns_mod, "DELAYED_MAX", 3)
    frontier = Frontier()
    t = turns_mod.RedisTurns(frontier, 4)
    t.note_start("quiet.test", 0.0)  # no delay of its own yet: nothing for Redis
    for i in range(5):
        t.set_delay(f"h{i}.test", 1.0)
    t.note_start("h4.test", 0.0)  # not remembered, past the bound, but still reported
    t.shutdown()  # the releaser sends what is queued, then stops
    assert len(t._delayed) == 3
    started = [host for op, host in frontier.calls if op == "started"]
    assert started == ["h4.test"]
