"""Per-host politeness, seen from the server's side of real crawls, and the scheduler's
bookkeeping for requests after a job's first (retries, redirect hops, robots.txt)."""

from __future__ import annotations

import threading
import time

from crawler.engine.hosts import HostScheduler
from crawler.demo.shop.server import Response, Site, SiteServer
from tests.helpers import Clock, assert_starts_apart, job, run_cli, write_seeds


def crawl(tmp_path, server: SiteServer, seeds: list[str], settings: str, timeout: float = 60):
    write_seeds(tmp_path, seeds)
    (tmp_path / "settings.toml").write_text(settings)
    run = run_cli("crawl", "-s", "seeds.txt", "-o", "out.jsonl", "-q", cwd=tmp_path, timeout=timeout,
                  output=tmp_path / "out.jsonl")
    assert run.code == 0, run.stderr
    return run


def index(n: int, prefix: str = "/p/") -> Response:
    body = "".join(f'<a href="{prefix}{i}">{i}</a>' for i in range(n))
    return Response.html(f"<html><head><title>index</title></head><body>{body}</body></html>")


def test_per_host_concurrency_and_delay_hold_at_the_server(tmp_path):
    site = Site()
    host = "127.0.0.1"
    site.add(host, "/", index(16))
    # Each page takes 0.5 s, longer than two delays: without the concurrency limit a
    # third request would start while two are still being answered.
    site.add(host, "*", Response.html("<title>p</title>", delay=0.5))
    with SiteServer(site, [host]) as server:
        run = crawl(tmp_path, server, [server.url(host, "/")], """
[crawl]
max_depth = 1
[fetch]
concurrency = 8
per_host_concurrency = 2
per_host_delay = 0.2
[parse]
workers = 1
""")
        starts = sorted(r.started for r in server.log)
        assert len(run.records) == 17 and all(r["error"] is None for r in run.records)
        assert server.max_in_flight(host) == 2  # used, and never exceeded
        assert_starts_apart(starts, 0.2)


def test_a_slow_host_does_not_stall_a_fast_one(tmp_path):
    site = Site()
    slow, fast = "127.0.0.1", "127.0.0.2"
    site.add(slow, "/", index(6))
    site.add(slow, "*", Response.html("<title>slow</title>", delay=1.5))
    site.add(fast, "/", index(40))
    site.add(fast, "*", Response.html("<title>fast</title>"))
    with SiteServer(site, [slow, fast]) as server:
        crawl(tmp_path, server, [server.url(slow, "/"), server.url(fast, "/")], """
[crawl]
max_depth = 1
[fetch]
concurrency = 4
per_host_concurrency = 2
per_host_delay = 0
[parse]
workers = 1
""")
        log = server.log
        slow_starts = sorted(r.started for r in log if r.host == slow and r.path.startswith("/p/"))
        fast_starts = sorted(r.started for r in log if r.host == fast and r.path.startswith("/p/"))
        assert len(slow_starts) == 6 and len(fast_starts) == 40
        # 6 slow pages, 2 at a time, take >= 4.5 s; the fast host is done while the slow
        # one still has a third of its pages to go.
        assert fast_starts[-1] < slow_starts[4], (fast_starts[-1] - slow_starts[0], slow_starts[4] - slow_starts[0])


# -- the scheduler, with a fake clock ---------------------------------------------------------


def test_a_redirect_hop_to_another_host_takes_a_slot_there_and_frees_its_own():
    s = HostScheduler(1, 0.0)
    a1, a2, b1 = job("a", 1), job("a", 2), job("b", 3)
    s.offer([a1, a2, b1])
    got = {s.try_next()[0].id, s.try_next()[0].id}
    assert got == {1, 3} and s.try_next()[0] is None  # a and b each have their one slot taken
    moved = threading.Event()
    t = threading.Thread(target=lambda: s.move(a1, "b") and moved.set())
    t.start()
    assert s.try_next()[0] is a2  # a1 gave its slot on a back at once
    time.sleep(0.2)
    assert not moved.is_set()  # b's only slot is still b1's
    s.done(b1)
    t.join(2)
    assert moved.is_set()
    s.done(a1)  # frees the slot on b, not a second one on a
    s.done(a2)
    s.offer([job("b", 4), job("b", 5)])
    assert s.try_next()[0].id == 4 and s.try_next()[0] is None  # b: still 1 at a time


def test_a_moved_job_waits_for_the_delay_on_its_new_host():
    clock = Clock()
    s = HostScheduler(3, 1.0, clock=clock)
    a1, b1 = job("a", 1), job("b", 2)
    s.offer([a1, b1])
    s.try_next(), s.try_next()
    assert s.try_move(a1, "b") == 1.0  # b started a request just now
    clock.now += 1.0
    assert s.try_move(a1, "b") == 0.0
    s.offer([job("b", 3)])
    job3, wait = s.try_next()
    assert job3 is None and wait == 1.0  # the hop's start counts for b's delay


def test_a_job_denied_from_the_robots_cache_gives_its_turn_back():
    clock = Clock()
    s = HostScheduler(2, 5.0, clock=clock)
    denied, nxt = job("a", 1), job("a", 2)
    s.offer([denied, nxt])
    assert s.try_next()[0] is denied
    assert s.try_next() == (None, 5.0)
    s.give_back_turn(denied)
    s.done(denied)
    assert s.try_next()[0] is nxt  # no request was sent, so no delay is owed


def test_a_robots_fetch_counts_as_a_start_for_the_crawl_delay():
    clock = Clock()
    s = HostScheduler(1, 0.0, clock=clock)
    first = job("a", 1)
    s.offer([first])
    s.try_next()
    s.set_delay("a", 2.0)  # Crawl-delay, learned from robots.txt fetched at 100.0
    s.note_start("a", 100.0)
    clock.now = 101.0
    assert s.try_turn(first) == 1.0  # the page request waits 2 s after robots.txt


def test_a_redirect_to_another_host_obeys_that_hosts_concurrency(tmp_path):
    site = Site()
    a, b = "127.0.0.1", "127.0.0.2"
    with SiteServer(site, [a, b]) as server:
        for i in range(5):
            site.add(a, f"/r/{i}", Response.redirect(server.url(b, f"/landing/{i}")))
        site.add(b, "/", index(5, prefix="/b/"))
        site.add(b, "*", Response.html("<title>b</title>", delay=0.25))
        run = crawl(tmp_path, server, [server.url(a, f"/r/{i}") for i in range(5)] + [server.url(b, "/")], """
[crawl]
max_depth = 1
[fetch]
concurrency = 8
per_host_concurrency = 1
per_host_delay = 0
[parse]
workers = 1
""")
        landed = {r["url"]: r["final_url"] for r in run.records if "/r/" in r["url"]}
        assert landed == {server.url(a, f"/r/{i}"): server.url(b, f"/landing/{i}") for i in range(5)}
        assert server.hits(b) == 1 + 1 + 5 + 5  # robots.txt, /, its 5 pages, 5 landings
        assert server.max_in_flight(b) == 1  # the hops waited for b's one slot


def test_politeness_defaults_are_conservative():
    from crawler.settings import load_settings

    s = load_settings(None)
    assert s.crawl.obey_robots is True
    assert (s.fetch.per_host_concurrency, s.fetch.per_host_delay) == (2, 0.5)
    assert s.fetch.max_crawl_delay > 0 and s.fetch.retries >= 1
