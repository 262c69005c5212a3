"""Whole crawls through the CLI on both engines (`--engine threads` and `--engine async`):
the same records, politeness and failure handling, whichever transport performs the
fetch policy's commands."""

from __future__ import annotations

import gzip
import signal
from collections import Counter

import orjson
import psutil
import pytest

from crawler.demo.shop.server import RESET, Drip, Response, Site
from tests.conftest import FAST
from tests.engine.test_crawl import write_seeds
from tests.engine.test_stopping import descendants, slow_site, start_crawl, wait_for_records
from tests.fetch.test_fetch_faults import first_then
from tests.fetch.test_transports import first_fails, page

QUICK = FAST.replace("timeout = 5", "timeout = 0.5")  # deadline = 4 x timeout = 2 s


def by_url(records: list[dict]) -> dict[str, dict]:
    return {r["url"]: r for r in records}


def test_crawl_of_four_hosts_writes_one_correct_record_per_page(shop, cli, tmp_path, engine_name):
    served = shop(250, hosts=4)
    catalog = served.catalog
    write_seeds(tmp_path, catalog.seeds)
    run = cli("crawl", "-s", "seeds.txt", "-o", "out.jsonl", "-q", "--engine", engine_name,
              settings=FAST + catalog.rules_toml)
    assert run.code == 0, run.stderr
    urls = Counter(r["url"] for r in run.records)
    assert set(urls) == set(catalog.expected), "exactly the reachable pages, nothing outside scope"
    assert max(urls.values()) == 1, "one record per page"
    wrong = [r["url"] for r in run.records if r["data"] != catalog.expected[r["url"]]]
    assert wrong == [], f"{len(wrong)} records with wrong fields, e.g. {wrong[:3]}"
    assert all(r["error"] is None and r["status"] == 200 and r["attempts"] == 1 for r in run.records)
    server = served.server
    assert server.hits(host=catalog.out_of_scope_host) == 0
    assert all(server.hits(h, "/robots.txt") == 1 for h in catalog.hosts)
    assert server.hits() == len(catalog.expected) + len(catalog.hosts)


def slow_hosts(serve, hosts: list[str], pages: int, delay: float):
    """Every host: "/" links to `pages` pages that each answer after `delay` seconds."""
    site = Site()
    links = "".join(f'<a href="/p/{i}">{i}</a>' for i in range(pages))
    for host in hosts:
        site.add(host, "/", page("index", links))
        for i in range(pages):
            site.add(host, f"/p/{i}", page(f"p{i}", delay=delay))
    return serve(site, hosts)


def test_requests_in_flight_to_one_host_never_exceed_per_host_concurrency(serve, cli, tmp_path, engine_name):
    hosts = ["127.0.0.1", "127.0.0.2"]
    server = slow_hosts(serve, hosts, pages=12, delay=0.2)
    settings = FAST.replace("per_host_concurrency = 4", "per_host_concurrency = 2")
    run = cli("crawl", *(server.url(h) for h in hosts), "-o", "out.jsonl", "-q", "--engine", engine_name, settings=settings)
    assert run.code == 0, run.stderr
    assert len(run.records) == 2 * 13
    assert [server.max_in_flight(h) for h in hosts] == [2, 2]  # used, and never more


def test_requests_in_flight_in_total_never_exceed_concurrency(serve, cli, tmp_path, engine_name):
    server = slow_hosts(serve, ["127.0.0.1"], pages=8, delay=0.1)
    settings = FAST.replace("concurrency = 16", "concurrency = 1")  # per host it stays 4
    run = cli("crawl", server.url("127.0.0.1"), "-o", "out.jsonl", "-q", "--engine", engine_name, settings=settings)
    assert run.code == 0, run.stderr
    assert len(run.records) == 9
    assert server.max_in_flight("127.0.0.1") == 1




def test_retried_503_then_200_is_recorded_once_with_two_attempts(serve, cli, engine_name):
    site = Site()
    site.add("127.0.0.1", "/", first_fails(503))
    server = serve(site, ["127.0.0.1"])
    run = cli("crawl", server.url("127.0.0.1"), "-o", "out.jsonl", "-q", "--engine", engine_name, settings=FAST)
    assert run.code == 0, run.stderr
    [record] = run.records
    assert (record["status"], record["error"], record["attempts"]) == (200, None, 2)
    assert record["data"]["title"] == "ok"
    assert server.hits("127.0.0.1", "/") == 2


def test_endless_body_times_out_within_the_deadline(serve, cli, engine_name):
    site = Site()
    site.add("127.0.0.1", "/", Drip(200, b"x" * 10_000_000, (("Content-Type", "text/html"),),
                                    chunk_size=100, interval=0.05))
    server = serve(site, ["127.0.0.1"])
    run = cli("crawl", server.url("127.0.0.1"), "-o", "out.jsonl", "-q", "--engine", engine_name,
              settings=QUICK + "retries = 0\n")
    [record] = run.records
    assert record["error"]["type"] == "timeout"
    assert "deadline" in record["error"]["message"]
    assert 1900 <= record["elapsed_ms"] < 3000  # deadline = 4 x timeout


def test_max_bytes_bounds_the_decoded_size(serve, cli, engine_name):
    bomb = gzip.compress(b"<html>" + b" " * 1_000_000 + b"</html>")
    assert len(bomb) < 10_000
    site = Site()
    site.add("127.0.0.1", "/", Response(200, bomb, (("Content-Type", "text/html"),
                                                    ("Content-Encoding", "gzip"))))
    server = serve(site, ["127.0.0.1"])
    run = cli("crawl", server.url("127.0.0.1"), "-o", "out.jsonl", "-q", "--engine", engine_name,
              settings=FAST + "max_bytes = 100000\n")
    [record] = run.records
    assert record["error"]["type"] == "too_large"
    assert record["attempts"] == 1


def test_ctrl_c_exits_130_and_resume_loses_nothing(serve, tmp_path, engine_name):
    server = slow_site(serve, pages=150)
    proc = start_crawl(tmp_path, server, "--engine", engine_name)
    wait_for_records(tmp_path / "out.jsonl", 5)
    children = descendants(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    for noise in ("Unclosed", "Task was destroyed", "Traceback", "was never awaited"):
        assert noise not in err
    assert psutil.wait_procs(children, timeout=10)[1] == []
    interrupted = len((tmp_path / "out.jsonl").read_bytes().splitlines())
    assert interrupted < 150
    resumed = start_crawl(tmp_path, server, "--engine", engine_name)
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    records = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert len(records) == len({r["url"] for r in records}) == 150


FAULT_RUNS = [(1, 0)] + [(2, attempt) for attempt in range(5)]
FAULTS = ["/flaky", "/reset-once", "/slow-once", "/moved"]
FAULT_PATHS = [f"/p/{i}" for i in range(10)] + FAULTS
CRAWL_DELAY = 0.2


def fault_site(h: str) -> Site:
    """Crawl-delay 0.2; a 503 once, a reset once, a timeout once (with timeout = 0.5), a
    redirect whose target another page links to, and pages that keep the parsers busy."""
    site = Site()
    site.add(h, "/robots.txt", Response(200, f"User-agent: *\nCrawl-delay: {CRAWL_DELAY}\n".encode(),
                                        (("Content-Type", "text/plain"),)))
    site.add(h, "/", page("home", "".join(f'<a href="{p}">{p}</a>' for p in FAULT_PATHS)))
    site.add(h, "/flaky", first_fails(503))
    site.add(h, "/reset-once", first_then(RESET, page("ok")))
    site.add(h, "/slow-once", first_then(page("slow", delay=1.5), page("ok")))  # beyond timeout = 0.5
    site.add(h, "/moved", Response.redirect("/landing"))
    site.add(h, "/p/3", page("p3", '<a href="/landing">landing</a>' + "x" * 200_000))
    site.add(h, "*", page("page", "<p>" + "x " * 100_000 + "</p>"))  # parsing work for the pool
    return site


def fault_settings(per_host: int) -> str:
    return FAST.replace("per_host_concurrency = 4", f"per_host_concurrency = {per_host}").replace(
        "per_host_delay = 0", "per_host_delay = 0.1").replace("timeout = 5", "timeout = 0.5") + (
        "[parse]\nworkers = 2\n")


def check_fault_crawl(server, h: str, records: list[dict], per_host: int) -> None:
    """At the server: no two starts closer than the Crawl-delay (10 % for the stamps'
    granularity), never more than ``per_host`` in flight, no healthy page twice."""
    by = by_url(records)
    assert len(by) == len(records), "one record per URL"
    landing = server.url(h, "/landing")  # its own record if the link claimed it before the hop
    assert set(by) - {landing} == {server.url(h, p) for p in ["/"] + FAULT_PATHS}
    assert all(r["error"] is None for r in records), [r for r in records if r["error"]]
    log = [r for r in server.log if r.host == h]
    ordered = sorted(log, key=lambda r: r.started)
    gaps = [(b.started - a.started, a.path, b.path) for a, b in zip(ordered, ordered[1:])]
    # robots.txt, "/", each path and /landing once; the 503, the reset and the timeout once more
    assert len(ordered) == 1 + 1 + len(FAULT_PATHS) + 1 + 3
    assert min(gaps)[0] >= 0.9 * CRAWL_DELAY, [(round(g, 3), a, b) for g, a, b in gaps]
    assert server.max_in_flight(h) <= per_host
    twice = {path: n for path, n in Counter(r.path for r in log).items() if n > 1 and path not in FAULTS}
    assert twice == {}, "healthy pages requested more than once"


@pytest.mark.parametrize("per_host,attempt", FAULT_RUNS)
def test_the_delay_holds_at_the_server_through_retries_redirects_resets_and_timeouts(
        serve, cli, engine_name, per_host, attempt):
    """Issue 11, part 2: per_host_delay 0.1 and Crawl-delay 0.2, with the parser pool busy
    (two workers, large pages), on a site with retries, redirects, resets and timeouts.
    The crawl with two slots runs five times: "no healthy page is fetched twice" (the
    redirect target is also linked from a page, the race that once fetched a page twice)."""
    h = "127.0.0.1"
    server = serve(fault_site(h), [h])
    run = cli("crawl", server.url(h), "-o", "out.jsonl", "-q", "--engine", engine_name,
              settings=fault_settings(per_host))
    assert run.code == 0, run.stderr
    check_fault_crawl(server, h, run.records, per_host)


@pytest.mark.parametrize("attempt", range(3))
def test_a_redirect_target_linked_while_its_redirect_is_in_flight_is_fetched_once(serve, cli, engine_name, attempt):
    """Issue 11, part 2 ("no healthy page is fetched twice"): /a redirects to /t, which is
    slow; meanwhile /b, answered 0.3 s later (so that the redirect has surely claimed /t:
    a link that came first would rightly end /a's record at the redirect instead), links
    to /t while /t is still being fetched, so the link must not fetch it again."""
    h = "127.0.0.1"
    site = Site()
    site.add(h, "/", page("home", '<a href="/a">a</a> <a href="/b">b</a>'))
    site.add(h, "/a", Response.redirect("/t"))
    site.add(h, "/b", page("b", '<a href="/t">t</a>', delay=0.3))
    site.add(h, "/t", page("t", delay=1.0))
    server = serve(site, [h])
    run = cli("crawl", server.url(h), "-o", "out.jsonl", "-q", "--engine", engine_name, settings=FAST)
    assert run.code == 0, run.stderr
    assert server.hits(h, "/t") == 1
    by = {r["url"]: r for r in run.records}
    assert set(by) == {server.url(h, p) for p in ("/", "/a", "/b")}
    assert by[server.url(h, "/a")]["final_url"] == server.url(h, "/t")
