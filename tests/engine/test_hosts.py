"""The scheduler enforces per-host limits when a request starts, and never lets a
waiting host block a ready one."""

import threading

from crawler.engine.hosts import HostScheduler
from tests.helpers import Clock, jobs


def test_no_more_than_per_host_concurrency_start():
    s = HostScheduler(2, 0.0)
    s.offer(jobs("a", 5))
    started = [s.try_next()[0] for _ in range(3)]
    assert started[0] is not None and started[1] is not None
    assert started[2] is None  # third must wait for a slot
    s.done(started[0])
    assert s.try_next()[0] is not None


def test_delay_separates_two_starts_to_one_host():
    clock = Clock()
    s = HostScheduler(4, 0.5, clock=clock)
    s.offer(jobs("a", 3))
    assert s.try_next()[0] is not None
    job, wait = s.try_next()
    assert job is None and abs(wait - 0.5) < 1e-9
    clock.now += 0.5
    assert s.try_next()[0] is not None


def test_a_waiting_host_does_not_block_a_ready_host():
    clock = Clock()
    s = HostScheduler(1, 10.0, clock=clock)
    s.offer(jobs("slow", 3))
    s.offer(jobs("fast", 1, start=10))
    first = s.try_next()[0]
    second = s.try_next()[0]
    assert {first.host, second.host} == {"slow", "fast"}
    s.done(first)
    s.done(second)
    assert s.try_next()[0] is None  # slow host waits its 10 s; nothing else queued


def test_defer_pushes_the_next_start_back():
    clock = Clock()
    s = HostScheduler(2, 0.0, clock=clock)
    s.offer(jobs("a", 2))
    s.defer("a", 1.0)
    job, wait = s.try_next()
    assert job is None and abs(wait - 1.0) < 1e-9
    clock.now += 1.0
    assert s.try_next()[0] is not None


def test_close_returns_buffered_jobs_and_wakes_waiters():
    s = HostScheduler(1, 0.0)
    s.offer(jobs("a", 3))
    s.try_next()
    woke = []
    t = threading.Thread(target=lambda: woke.append(s.next_job()))
    t.start()
    returned = s.close()
    t.join(2)
    assert woke == [None]
    assert len(returned) == 2


def test_low_buffer_marks_the_host_hungry():
    s = HostScheduler(1, 0.0)
    s.offer(jobs("a", s.low_water))
    job = s.try_next()[0]
    assert s.take_hungry() == {"a"}
    assert s.wants("a") == s.target - (s.low_water - 1)
    s.done(job)


def test_requeue_after_close_is_refused_so_the_job_goes_back_to_the_frontier():
    s = HostScheduler(1, 0.0)
    s.offer(jobs("a", 1))
    job = s.try_next()[0]
    assert s.requeue(job) is True
    s.close()
    assert s.requeue(job) is False


def test_acquire_while_stopping_for_a_host_without_a_slot_returns_none():
    """Issue 11 #5: a sitemap request for a host the scheduler has never seen, asked
    for once the crawl is stopping, gets None (and leaves nothing behind), not KeyError."""
    s = HostScheduler(1, 0.0)
    s.close()
    stop = threading.Event()
    stop.set()
    assert s.acquire("never-seen", stop) is None
    assert s.try_next() == (None, None)
