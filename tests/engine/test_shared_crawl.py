"""Crawls shared by several `crawler crawl` workers over one real redis-server.

Each test starts its own redis-server (tests/engine/conftest.py) and the sample site on
loopback, runs the workers as the user would (the CLI, in subprocesses of their own
session so a whole worker can be killed), and checks the union of their shards against
what the site is known to contain, and politeness at the server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
import redis

from crawler.demo.shop.server import Response, Site, SiteServer
from tests.helpers import assert_starts_apart, finish, launch, run_cli, wait_for_records, wait_until

FAST = """
[crawl]
max_depth = -1
[fetch]
engine = "{engine}"
concurrency = 8
per_host_concurrency = 4
per_host_delay = {delay}
timeout = 5
backoff = 0.05
[parse]
workers = 1
[state]
backend = "redis"
redis_url = "{url}"
lease_timeout = {lease}
"""


def setup(tmp_path: Path, redis_url: str, seeds, rules: str = "", *, delay=0, lease=30, extra="",
          engine="threads") -> None:
    (tmp_path / "seeds.txt").write_text("\n".join(seeds) + "\n")
    (tmp_path / "settings.toml").write_text(FAST.format(url=redis_url, delay=delay, lease=lease, engine=engine)
                                            + extra + rules)


def worker(tmp_path: Path, wid: str, *extra: str) -> subprocess.Popen:
    """One worker, in a session of its own (so a test can kill it with its children)."""
    return launch(tmp_path, "crawl", "-s", "seeds.txt", "-o", "out.jsonl", "--worker-id", wid, "-q", *extra,
                  start_new_session=True)


def finish_all(procs: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str]]:
    return [finish(proc, timeout) for proc in procs]


def shard_records(tmp_path: Path) -> dict[str, list[dict]]:
    shards = {}
    for path in sorted(tmp_path.glob("out-*.jsonl")):
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), f"{path.name} ends in a torn line"
        shards[path.name] = [orjson.loads(line) for line in data.splitlines()]
    return shards


def assert_exactly_once(tmp_path: Path, catalog) -> list[dict]:
    records = [r for shard in shard_records(tmp_path).values() for r in shard]
    urls = Counter(r["url"] for r in records)
    assert set(urls) == set(catalog.expected), "exactly the reachable pages, nothing outside scope"
    assert max(urls.values()) == 1, f"duplicated: {[u for u, n in urls.items() if n > 1][:5]}"
    wrong = [r["url"] for r in records if r["data"] != catalog.expected[r["url"]]]
    assert wrong == [], f"{len(wrong)} records with wrong fields, e.g. {wrong[:3]}"
    return records


@pytest.mark.parametrize("engine", ["threads", "async"])
def test_three_workers_crawl_four_hosts_exactly_once(shop, redis_server, tmp_path, engine):
    served = shop(1000, hosts=4)
    catalog = served.catalog
    setup(tmp_path, redis_server.url, catalog.seeds, catalog.rules_toml, engine=engine)
    results = finish_all([worker(tmp_path, f"w{i}") for i in range(3)])
    assert [code for code, _ in results] == [0, 0, 0], results
    records = assert_exactly_once(tmp_path, catalog)
    assert len(records) == 4000
    shards = shard_records(tmp_path)
    assert sorted(shards) == ["out-w0.jsonl", "out-w1.jsonl", "out-w2.jsonl"]
    assert all(len(s) > 100 for s in shards.values()), {k: len(v) for k, v in shards.items()}
    server = served.server
    assert server.hits(host=catalog.out_of_scope_host) == 0
    for url in catalog.expected:
        parts = urlsplit(url)
        assert server.hits(parts.hostname, parts.path) == 1, f"{url} fetched more than once"
    assert all(server.hits(h, "/robots.txt") == 1 for h in catalog.hosts), "robots.txt once per crawl"
    # crawler status sees the whole crawl
    status = run_cli("status", "-o", "out.jsonl", "--format", "json", cwd=tmp_path)
    assert status.code == 0, status.stderr
    figures = orjson.loads(status.stdout)
    assert (figures["queued"], figures["leased"], figures["done"], figures["failed"]) == (0, 0, 4000, 0)
    assert sorted(w["worker"] for w in figures["workers"]) == ["w0", "w1", "w2"]
    # inspect reads the shards as one crawl
    inspect = run_cli("inspect", "out-*.jsonl", "--format", "json", "--fields", "url", cwd=tmp_path)
    assert inspect.code == 0, inspect.stderr
    assert len(inspect.stdout.splitlines()) == 4000


def index(n: int) -> Response:
    body = "".join(f'<a href="/p/{i}">{i}</a>' for i in range(n))
    return Response.html(f"<html><head><title>index</title></head><body>{body}</body></html>")


@pytest.mark.parametrize("engine", ["threads", "async"])
def test_politeness_holds_across_three_workers_at_the_server(redis_server, tmp_path, engine):
    site = Site()
    hosts = ["127.0.0.1", "127.0.0.2"]
    for host in hosts:
        site.add(host, "/", index(14))
        # Each page takes 0.5 s, longer than two delays: without a crawl-wide limit a third
        # request (from any worker) would start while two are still being answered.
        site.add(host, "*", Response.html("<title>p</title>", delay=0.5))
    with SiteServer(site, hosts) as server:
        setup(tmp_path, redis_server.url, [server.url(h, "/") for h in hosts], delay=0.2, engine=engine)
        settings = (tmp_path / "settings.toml").read_text().replace("per_host_concurrency = 4",
                                                                     "per_host_concurrency = 2")
        (tmp_path / "settings.toml").write_text(settings)
        results = finish_all([worker(tmp_path, f"w{i}") for i in range(3)])
        assert [code for code, _ in results] == [0, 0, 0], results
        records = [r for shard in shard_records(tmp_path).values() for r in shard]
        assert len(records) == 30 and all(r["error"] is None for r in records)
        assert sum(1 for s in shard_records(tmp_path).values() if s) >= 2, "the work was shared"
        for host in hosts:
            assert server.max_in_flight(host) == 2  # used, and never exceeded by the 3 workers
            starts = sorted(r.started for r in server.log if r.host == host)
            gaps = [round(b - a, 3) for a, b in zip(starts, starts[1:])]
            assert min(gaps) >= 0.18, gaps
            assert_starts_apart(starts, 0.2)


def test_a_killed_worker_loses_nothing(shop, redis_server, tmp_path):
    served = shop(400, hosts=4)
    catalog = served.catalog
    setup(tmp_path, redis_server.url, catalog.seeds, catalog.rules_toml, delay=0.01, lease=3)
    procs = [worker(tmp_path, f"w{i}") for i in range(3)]
    wait_for_records(tmp_path / "out-w1.jsonl", 50)
    client = redis.Redis.from_url(redis_server.url)
    wait_until(lambda: any(v.startswith(b"w1\t") for v in client.hvals("crawler:{out}:leases")),
               what="worker w1 holding leases")
    os.killpg(procs[1].pid, signal.SIGKILL)  # the worker, its writer and its parsers
    procs[1].wait()
    killed_at = time.monotonic()
    results = finish_all([procs[0], procs[2]])
    assert [code for code, _ in results] == [0, 0], results
    # the others took over its leases (after lease_timeout = 3 s) and finished the crawl
    assert time.monotonic() - killed_at < 60
    restarted = finish_all([worker(tmp_path, "w1")])
    assert restarted[0][0] == 0, restarted
    assert_exactly_once(tmp_path, catalog)


def test_a_killed_redis_restarted_on_its_aof_loses_nothing(shop, redis_server, tmp_path):
    served = shop(400, hosts=4)
    catalog = served.catalog
    setup(tmp_path, redis_server.url, catalog.seeds, catalog.rules_toml, delay=0.01)
    procs = [worker(tmp_path, f"w{i}") for i in range(3)]
    wait_for_records(tmp_path / "out-w0.jsonl", 100)
    redis_server.kill()
    time.sleep(3)
    redis_server.start()  # same port, same directory: it loads its AOF
    results = finish_all(procs)
    assert [code for code, _ in results] == [0, 0, 0], results
    assert_exactly_once(tmp_path, catalog)


def test_max_pages_holds_for_the_whole_crawl(shop, redis_server, tmp_path):
    served = shop(300, hosts=3)
    setup(tmp_path, redis_server.url, served.catalog.seeds, served.catalog.rules_toml)
    results = finish_all([worker(tmp_path, f"w{i}", "--max-pages", "57") for i in range(2)])
    assert [code for code, _ in results] == [0, 0], results
    records = [r for shard in shard_records(tmp_path).values() for r in shard]
    assert len(records) == 57 and len({r["url"] for r in records}) == 57


def test_bad_redis_settings_give_one_line_and_touch_nothing(shop, redis_server, tmp_path):
    served = shop(20, hosts=1)
    setup(tmp_path, redis_server.url, served.catalog.seeds, served.catalog.rules_toml)
    shard = tmp_path / "out-w1.jsonl"
    shard.write_bytes(b'{"kept": 1}\n')
    settings = (tmp_path / "settings.toml").read_text()

    def attempt(text: str):
        (tmp_path / "settings.toml").write_text(text)
        return run_cli("crawl", "-s", "seeds.txt", "-o", "out.jsonl", "--worker-id", "w1", "-q", cwd=tmp_path,
                       timeout=60)

    bad = attempt(settings.replace(redis_server.url, "http://127.0.0.1:6379/0"))
    assert bad.code == 2 and "redis_url" in bad.stderr and len(bad.stderr.splitlines()) == 1
    bad = attempt(settings.replace(redis_server.url, "redis://127.0.0.1:notaport/0"))
    assert bad.code == 2 and "redis_url" in bad.stderr and len(bad.stderr.splitlines()) == 1
    nobody = f"redis://127.0.0.1:{_closed_port()}/0"
    unreachable = attempt(settings.replace(redis_server.url, nobody))
    assert unreachable.code == 1 and nobody in unreachable.stderr
    assert len(unreachable.stderr.splitlines()) == 1
    assert shard.read_bytes() == b'{"kept": 1}\n'
    assert served.server.hits() == 0

    # Another crawl's keys under the same name: refused, nothing changed there or here.
    other = attempt(settings.replace("max_depth = -1", "max_depth = 3"))
    assert other.code == 0, other.stderr  # creates crawl "out" with max_depth 3
    client = redis.Redis.from_url(redis_server.url)
    keys = sorted(client.keys("*"))
    shard.write_bytes(b'{"kept": 2}\n')
    again = attempt(settings)
    assert again.code == 2 and "another crawl" in again.stderr, again.stderr
    assert sorted(client.keys("*")) == keys and shard.read_bytes() == b'{"kept": 2}\n'

    # A Redis that lost its data: the worker stops instead of starting a new crawl.
    client.flushall()
    lost = attempt(settings.replace("max_depth = -1", "max_depth = 3"))
    assert lost.code == 2 and "lose its data" in lost.stderr, lost.stderr
    assert client.keys("*") == [] and shard.read_bytes() == b'{"kept": 2}\n'


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: nothing listens there


def test_fresh_is_refused_while_a_worker_holds_leases(redis_server, tmp_path):
    site = Site()
    site.add("127.0.0.1", "/", index(40))
    site.add("127.0.0.1", "*", Response.html("<title>p</title>", delay=0.3))
    with SiteServer(site, ["127.0.0.1"]) as server:
        setup(tmp_path, redis_server.url, [server.url("127.0.0.1", "/")])
        running = worker(tmp_path, "w0")
        wait_for_records(tmp_path / "out-w0.jsonl", 3)
        refused = finish_all([worker(tmp_path, "w1", "--fresh")])[0]
        assert refused[0] == 2 and "hold leases" in refused[1], refused
        assert finish_all([running])[0][0] == 0
        records = shard_records(tmp_path)["out-w0.jsonl"]
        assert len(records) == 41 and len({r["url"] for r in records}) == 41


def test_a_frozen_worker_that_lost_its_leases_keeps_no_duplicate(redis_server, tmp_path):
    """A worker paused for longer than lease_timeout (its leases reclaimed and fetched by
    the others) is refused when it wakes: it exits 1 and cuts what it wrote since its last
    commit, so the shards never hold a URL twice."""
    site = Site()
    hosts = ["127.0.0.1", "127.0.0.2"]
    for host in hosts:
        site.add(host, "/", index(60))
        site.add(host, "*", Response.html("<title>p</title>", delay=0.3))  # leases are held a while
    with SiteServer(site, hosts) as server:
        setup(tmp_path, redis_server.url, [server.url(h, "/") for h in hosts], lease=2)
        settings = (tmp_path / "settings.toml").read_text()
        (tmp_path / "settings.toml").write_text(settings.replace("per_host_concurrency = 4",
                                                                 "per_host_concurrency = 12"))
        procs = [worker(tmp_path, f"w{i}") for i in range(3)]
        client = redis.Redis.from_url(redis_server.url)

        def w1_holds_leases() -> bool:
            return any(v.startswith(b"w1\t") for v in client.hvals("crawler:{out}:leases"))

        wait_until(w1_holds_leases, what="worker w1 holding leases")
        os.killpg(procs[1].pid, signal.SIGSTOP)
        time.sleep(4)  # > lease_timeout: the others reclaim its leases
        assert not w1_holds_leases()
        os.killpg(procs[1].pid, signal.SIGCONT)
        results = finish_all(procs)
    assert results[1][0] == 1 and "lost" in results[1][1], results[1]
    assert [results[0][0], results[2][0]] == [0, 0], results
    records = [r for shard in shard_records(tmp_path).values() for r in shard]
    urls = Counter(r["url"] for r in records)
    assert len(urls) == 122 and max(urls.values()) == 1


def test_recrawl_starts_one_new_run_over_the_shared_frontier(shop, redis_server, tmp_path):
    served = shop(60, hosts=2)
    catalog = served.catalog
    setup(tmp_path, redis_server.url, catalog.seeds, catalog.rules_toml)
    assert [c for c, _ in finish_all([worker(tmp_path, f"w{i}") for i in range(2)])] == [0, 0]
    first = {r["url"]: r for s in shard_records(tmp_path).values() for r in s}
    assert set(first) == set(catalog.expected)
    results = finish_all([worker(tmp_path, f"w{i}", "--recrawl") for i in range(2)])
    assert [c for c, _ in results] == [0, 0], results
    records = [r for s in shard_records(tmp_path).values() for r in s]
    second = [r for r in records if r["crawl_id"] != first[r["url"]]["crawl_id"]]
    assert sorted(r["url"] for r in second) == sorted(catalog.expected), "every page once more, once"
    assert len({r["crawl_id"] for r in second}) == 1, "both workers joined the same new run"
    assert all(r["changed"] is False and r["data"] == catalog.expected[r["url"]] for r in second)


def test_schedule_refuses_the_redis_backend_with_one_line(redis_server, tmp_path):
    setup(tmp_path, redis_server.url, ["http://127.0.0.1:9/"])
    run = run_cli("schedule", "--every", "1h", "-s", "seeds.txt", "-o", "out.jsonl", cwd=tmp_path)
    assert run.code == 2 and len(run.stderr.strip().splitlines()) == 1 and "--recrawl" in run.stderr


def test_each_worker_captures_its_own_pages_in_its_own_warc(shop, redis_server, tmp_path):
    from warcio.archiveiterator import ArchiveIterator

    served = shop(60, hosts=2)
    catalog = served.catalog
    setup(tmp_path, redis_server.url, catalog.seeds, catalog.rules_toml, delay=0.05,  # both get pages
          extra='[output]\nwarc = "crawl.warc.gz"\n')
    assert [c for c, _ in finish_all([worker(tmp_path, f"w{i}") for i in range(2)])] == [0, 0]
    assert_exactly_once(tmp_path, catalog)
    for wid in ("w0", "w1"):
        shard = {r["url"] for r in shard_records(tmp_path)[f"out-{wid}.jsonl"]}
        assert shard, f"worker {wid} crawled nothing"
        with open(tmp_path / f"crawl-{wid}.warc.gz", "rb") as f:
            responses = [rec.rec_headers.get_header("WARC-Target-URI") for rec in ArchiveIterator(f, check_digests="raise")
                         if rec.rec_type == "response"]
        pages = [u for u in responses if not u.endswith("/robots.txt")]
        assert sorted(pages) == sorted(shard), wid
