"""The SQLite frontier: dedup, per-host leases, the exactly-once commit point, recovery."""

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
