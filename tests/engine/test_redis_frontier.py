"""The shared frontier's scripts, one guarantee at a time, on a real redis-server."""

from __future__ import annotations

import time

import pytest

from crawler.engine.shared.redis_frontier import RedisFrontier, connect, fingerprint
from crawler.errors import LeaseLost
from crawler.settings import load_settings


def frontier(url: str, worker: str, **overrides) -> RedisFrontier:
    settings = load_settings(None, {"state.backend": "redis", "state.redis_url": url,
                                    "fetch.per_host_delay": 0, "fetch.per_host_concurrency": 2,
                                    "state.lease_timeout": 30, **overrides})
    f = RedisFrontier(connect(url), url, "t", worker, settings=settings)
    f.open("scope")
    f.recover()
    return f


def urls(host: str, n: int) -> list[tuple[str, str, int, None]]:
    return [(f"http://{host}/p/{i}", host, 1, None) for i in range(n)]


def test_two_workers_share_one_seen_set(redis_server):
    a, b = frontier(redis_server.url, "a"), frontier(redis_server.url, "b")
    assert a.add(urls("h1", 10)) == 10
    assert b.add(urls("h1", 12)) == 2  # only the two new ones
    assert b.counts().queued == 12
    assert a.claim("http://h1/p/3") is False and a.claim("http://h1/other") is True
    assert b.claim("http://h1/other") is False


def test_a_lease_takes_the_host_slot_for_the_whole_crawl(redis_server):
    a, b = frontier(redis_server.url, "a"), frontier(redis_server.url, "b")
    a.add(urls("h1", 10) + urls("h2", 10))
    got_a, _ = a.lease(10)
    got_b, hint = b.lease(10)
    # per_host_concurrency = 2 for the crawl: two hosts, two slots each, whoever asks
    assert len(got_a) == 4 and got_b == [] and hint is None
    a.finish([(got_a[0].id, got_a[0].host)])
    got_b, _ = b.lease(10)
    assert [j.host for j in got_b] == [got_a[0].host]


def test_the_delay_holds_between_workers_and_the_hint_says_when(redis_server):
    a = frontier(redis_server.url, "a", **{"fetch.per_host_delay": 0.3, "fetch.per_host_concurrency": 5})
    b = frontier(redis_server.url, "b", **{"fetch.per_host_delay": 0.3, "fetch.per_host_concurrency": 5})
    a.add(urls("h1", 5))
    assert len(a.lease(5)[0]) == 1
    jobs, hint = b.lease(5)
    assert jobs == [] and 0.2 < hint <= 0.3
    time.sleep(hint + 0.02)
    assert len(b.lease(5)[0]) == 1


def test_leases_are_breadth_first_per_host(redis_server):
    a = frontier(redis_server.url, "a", **{"fetch.per_host_concurrency": 10})
    a.add([("http://h1/deep", "h1", 3, None), ("http://h1/mid", "h1", 2, None), ("http://h1/top", "h1", 0, None)])
    jobs, _ = a.lease(10)
    assert [(j.url, j.depth) for j in jobs] == [("http://h1/top", 0), ("http://h1/mid", 2), ("http://h1/deep", 3)]


def test_a_commit_sent_twice_is_applied_once(redis_server):
    a = frontier(redis_server.url, "a")
    a.add(urls("h1", 2))
    jobs, _ = a.lease(2)
    a.complete([j.id for j in jobs], 100, "tail")
    # the reply was lost and the same commit (same sequence number) arrives again
    again = a.call("commit", a.worker, a.incarnation, a.seq, b'{"size": 100}', 0,
                   *[v for j in jobs for v in (j.id, fingerprint(j.url)[1], b"[]")])
    assert again == b"dup"
    assert a.counts().done == 2 and a.counts().leased == 0


def test_a_restarted_worker_gets_its_leases_back_and_fences_its_old_self(redis_server):
    old = frontier(redis_server.url, "w")
    old.add(urls("h1", 2))
    jobs, _ = old.lease(2)
    new = frontier(redis_server.url, "w")  # same id, started again: a new incarnation
    assert new.counts().queued == 2 and new.counts().leased == 0
    with pytest.raises(LeaseLost):
        old.complete([j.id for j in jobs], 10, "")
    with pytest.raises(LeaseLost):
        old.lease(1)


def test_a_silent_workers_leases_are_reclaimed_and_its_commit_refused(redis_server):
    slow = frontier(redis_server.url, "slow", **{"state.lease_timeout": 1})
    other = frontier(redis_server.url, "other", **{"state.lease_timeout": 1})
    slow.add(urls("h1", 1))
    jobs, _ = slow.lease(1)
    slow.finish([(jobs[0].id, jobs[0].host)])
    time.sleep(1.2)
    taken, _ = other.lease(1)  # reclaims the expired lease first
    assert [j.url for j in taken] == [jobs[0].url]
    assert slow.renew() == [jobs[0].id]
    with pytest.raises(LeaseLost):
        slow.complete([jobs[0].id], 10, "")
    other.complete([taken[0].id], 10, "")
    assert other.counts().done == 1


def test_the_seen_set_stays_compact_integer_sets(redis_server):
    a = frontier(redis_server.url, "a")
    a.cover((f"http://h{i % 7}/x/{i}", "", 0, None) for i in range(20_000))
    encodings = {a.client.object("encoding", k) for k in a.client.scan_iter(match="crawler:{t}:seen:*")}
    assert encodings == {b"intset"}
