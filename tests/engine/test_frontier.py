"""The SQLite frontier: dedup, per-host leases, the exactly-once commit point, recovery."""

import pytest

from crawler.engine.frontier import Counts, SQLiteFrontier


def entries(host, paths, depth=0):
    return [(f"http://{host}/{p}", host, depth, None) for p in paths]


def test_duplicates_are_ignored_and_counted_once(tmp_path):
    f = SQLiteFrontier(tmp_path / "f.sqlite")
    assert f.add(entries("127.0.0.1", ["a", "b"])) == 2
    assert f.add(entries("127.0.0.1", ["b", "c"])) == 1
    assert f.counts().queued == 3
    assert f.hosts() == {"127.0.0.1": 3}


def test_lease_takes_oldest_urls_of_one_host(tmp_path):
    f = SQLiteFrontier(tmp_path / "f.sqlite")
    f.add(entries("127.0.0.1", ["a", "b", "c"]) + entries("127.0.0.2", ["x"]))
    jobs = f.lease("127.0.0.1", 2)
    assert [j.url for j in jobs] == ["http://127.0.0.1/a", "http://127.0.0.1/b"]
    assert all(j.host == "127.0.0.1" for j in jobs)
    assert f.hosts() == {"127.0.0.1": 1, "127.0.0.2": 1}
    assert f.counts().leased == 2


def test_complete_records_done_and_output_size_together(tmp_path):
    f = SQLiteFrontier(tmp_path / "f.sqlite")
    f.add(entries("127.0.0.1", ["a", "b"]))
    jobs = f.lease("127.0.0.1", 2)
    f.complete([jobs[0].id], 123)
    f.close()
    g = SQLiteFrontier(tmp_path / "f.sqlite")
    assert g.get_meta("output_size") == "123"
    assert g.counts().done == 1


def test_recover_requeues_leases_left_by_a_crash(tmp_path):
    f = SQLiteFrontier(tmp_path / "f.sqlite")
    f.add(entries("127.0.0.1", ["a", "b"]))
    f.lease("127.0.0.1", 2)
    f.commit()
    f.db.close()  # a crash: no orderly close
    g = SQLiteFrontier(tmp_path / "f.sqlite")
    assert g.recover() == 2
    assert g.counts().queued == 2 and g.hosts() == {"127.0.0.1": 2}
    assert len(g.lease("127.0.0.1", 5)) == 2


def test_release_returns_jobs_to_the_queue(tmp_path):
    f = SQLiteFrontier(tmp_path / "f.sqlite")
    f.add(entries("127.0.0.1", ["a"]))
    jobs = f.lease("127.0.0.1", 1)
    assert f.hosts() == {}
    f.release(jobs)
    assert f.hosts() == {"127.0.0.1": 1}
    assert [j.url for j in f.lease("127.0.0.1", 1)] == ["http://127.0.0.1/a"]


def test_lease_is_breadth_first(tmp_path):
    f = SQLiteFrontier(tmp_path / "f.sqlite")
    f.add(entries("127.0.0.1", ["deep"], depth=3))
    f.add(entries("127.0.0.1", ["shallow"], depth=1))
    assert [j.url for j in f.lease("127.0.0.1", 2)] == ["http://127.0.0.1/shallow", "http://127.0.0.1/deep"]


def test_shorter_path_lowers_the_depth_of_a_queued_url(tmp_path):
    f = SQLiteFrontier(tmp_path / "f.sqlite")
    f.add([("http://127.0.0.1/x", "127.0.0.1", 3, "http://127.0.0.1/far")])
    assert f.add([("http://127.0.0.1/x", "127.0.0.1", 1, "http://127.0.0.1/")]) == 0
    (job,) = f.lease("127.0.0.1", 1)
    assert (job.depth, job.referrer) == (1, "http://127.0.0.1/")
    f.add([("http://127.0.0.1/x", "127.0.0.1", 0, None)])  # leased: no longer changes
    assert f.db.execute("SELECT depth FROM urls").fetchone() == (1,)


def test_releasing_a_job_that_is_no_longer_leased_leaves_the_counts_alone(tmp_path):
    """Issue 11 #9: release changes no row for a URL already done (or released twice),
    so the in-memory counts and per-host queue sizes must not move either."""
    f = SQLiteFrontier(tmp_path / "f.sqlite")
    f.add(entries("127.0.0.1", ["a", "b"]))
    done, released = f.lease("127.0.0.1", 2)
    f.complete([done.id], 10)
    f.release([released])
    f.release([done, released])  # neither is leased any more: nothing changes
    assert f.counts() == Counts(queued=1, leased=0, done=1)
    assert f.hosts() == {"127.0.0.1": 1}
    f.close()
    g = SQLiteFrontier(tmp_path / "f.sqlite")  # the database agrees
    assert g.counts() == Counts(queued=1, leased=0, done=1)
    assert g.hosts() == {"127.0.0.1": 1}


def writes_traced(f):
    """The INSERT and UPDATE statements the frontier's connection runs from now on (one
    per row: SQLite traces each run of a statement)."""
    seen = []
    f.db.set_trace_callback(lambda sql: seen.append(sql) if sql.startswith(("INSERT", "UPDATE")) else None)
    return seen


def depth_of(f, url):
    return f.db.execute("SELECT depth FROM urls WHERE url = ?", (url,)).fetchone()[0]


def test_links_known_at_no_greater_depth_take_no_statement(tmp_path):
    """Most links a crawl finds are known already (a site's navigation is on every page):
    the frontier answers those from memory, and only a shorter path still reaches SQLite."""
    f = SQLiteFrontier(tmp_path / "f.sqlite")
    f.add(entries("127.0.0.1", ["a", "b"], depth=2))
    f.commit()
    traced = writes_traced(f)
    assert f.add(entries("127.0.0.1", ["a", "b"], depth=2) + entries("127.0.0.1", ["a"], depth=5)) == 0
    assert traced == []
    assert f.add(entries("127.0.0.1", ["a", "c"], depth=1)) == 1  # a shorter path to a, and a new URL
    assert traced and depth_of(f, "http://127.0.0.1/a") == 1 and depth_of(f, "http://127.0.0.1/b") == 2
    f.commit()
    assert f.counts().queued == 3 and f.hosts() == {"127.0.0.1": 3}
    assert [(j.url, j.depth) for j in f.lease("127.0.0.1", 3)] == [
        ("http://127.0.0.1/a", 1), ("http://127.0.0.1/c", 1), ("http://127.0.0.1/b", 2)]


def requeue_by_release(f, job):
    f.release([job])


def requeue_by_recover(f, job):
    f.recover()


def requeue_by_start_run(f, job):
    f.complete([job.id], 0)
    f.start_run()


@pytest.mark.parametrize("requeue", [requeue_by_release, requeue_by_recover, requeue_by_start_run])
def test_a_url_queued_again_takes_a_shorter_path_again(tmp_path, requeue):
    """While x is leased a shorter path changes nothing; once it is queued again, the
    shorter path lowers its depth as for any queued URL (what the frontier remembers of
    it must not stand in the way)."""
    f = SQLiteFrontier(tmp_path / "f.sqlite")
    x = "http://127.0.0.1/x"
    f.add([(x, "127.0.0.1", 3, None)])
    (job,) = f.lease("127.0.0.1", 1)
    f.add([(x, "127.0.0.1", 1, "http://127.0.0.1/")])  # leased: unchanged
    f.commit()
    assert depth_of(f, x) == 3
    requeue(f, job)
    f.add([(x, "127.0.0.1", 1, "http://127.0.0.1/")])
    assert depth_of(f, x) == 1


def test_rows_of_a_rolled_back_transaction_are_added_again(tmp_path):
    """After a failed write SQLite may roll the open transaction back: the URLs it added
    are not in the frontier, so the next add of them must insert them."""
    f = SQLiteFrontier(tmp_path / "f.sqlite")
    f.add(entries("127.0.0.1", ["a"]))
    f.commit()
    f.add(entries("127.0.0.1", ["b", "c"]))
    f.db.execute("ROLLBACK")
    f.add(entries("127.0.0.1", ["a", "b"]))
    f.commit()
    assert [r[0] for r in f.db.execute("SELECT url FROM urls ORDER BY url")] == [
        "http://127.0.0.1/a", "http://127.0.0.1/b"]


def test_what_the_frontier_remembers_is_bounded_and_forgetting_is_harmless(tmp_path):
    f = SQLiteFrontier(tmp_path / "f.sqlite")
    f.KNOWN_KEPT = 4
    paths = [f"p{i}" for i in range(30)]
    for i in range(0, 30, 3):
        f.add(entries("127.0.0.1", paths[i:i + 3], depth=2))
        f.commit()
    assert len(f._adding) + len(f._known) + len(f._known_older) <= 2 * f.KNOWN_KEPT
    f.add(entries("127.0.0.2", [f"q{i}" for i in range(50)]))  # one add of many (a seed list)
    assert len(f._adding) <= f.KNOWN_KEPT
    f.commit()
    assert len(f._adding) + len(f._known) + len(f._known_older) <= 2 * f.KNOWN_KEPT
    assert f.add(entries("127.0.0.1", paths, depth=2)) == 0  # forgotten or not: still duplicates
    assert f.add(entries("127.0.0.1", paths[:1], depth=0)) == 0
    f.commit()
    assert depth_of(f, "http://127.0.0.1/p0") == 0
    assert f.counts().queued == 80 and f.hosts() == {"127.0.0.1": 30, "127.0.0.2": 50}


def test_leases_and_completions_of_many_urls_change_exactly_those_rows(tmp_path):
    """State changes go IDS_PER_STATEMENT ids per statement: a lease or an ack of more
    (and of a number that is not a multiple) changes exactly the URLs named."""
    f = SQLiteFrontier(tmp_path / "f.sqlite")
    f.add(entries("127.0.0.1", [f"p{i}" for i in range(150)]))
    jobs = f.lease("127.0.0.1", 131)
    assert len(jobs) == 131 and f.IDS_PER_STATEMENT < 131
    done = [j.id for j in jobs[::2]]
    f.complete(done, 7)
    states = dict(f.db.execute("SELECT id, state FROM urls"))
    assert {i for i, s in states.items() if s == 2} == set(done)
    assert {i for i, s in states.items() if s == 1} == {j.id for j in jobs} - set(done)
    assert sum(s == 0 for s in states.values()) == 19
    f.close()
    assert SQLiteFrontier(tmp_path / "f.sqlite").counts() == Counts(queued=19, leased=131 - len(done), done=len(done))
