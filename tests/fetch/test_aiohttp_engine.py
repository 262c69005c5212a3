"""The async engine (`--engine async`): the same crawl, politeness and failure handling as
the threads engine, from one asyncio loop in one thread."""

from __future__ import annotations

import gzip
import itertools
import queue
import signal
import socket
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

import orjson
import psutil
import pytest

from crawler.fetch.aiohttp_engine import HANDOFF_PAGES, AiohttpEngine
from crawler.fetch.policy import FetchPolicy
from crawler.fetch.guard import AddressGuard
from crawler.messages import FetchJob, Page
from crawler.engine.hosts import HostScheduler
from crawler.fetch.robots import RobotsAnswer, RobotsCache
from crawler.demo.shop.server import HANG, RESET, Drip, Response, Site
from crawler.settings import DEFAULTS_PATH, load_settings
from tests.conftest import FAST
from tests.engine.test_crawl import write_seeds
from tests.fetch.test_fetch_limits import Dripper
from tests.engine.test_hosts import Clock
from tests.engine.test_stopping import descendants, slow_site, start_crawl, wait_for_records

ASYNC = ("--engine", "async")
QUICK = FAST.replace("timeout = 5", "timeout = 0.5")  # deadline = 4 x timeout = 2 s


def page(title: str, links: str = "", status: int = 200, headers=(), delay: float = 0.0) -> Response:
    return Response.html(f"<html><head><title>{title}</title></head><body>{links}</body></html>",
                         status, headers, delay)


def by_url(records: list[dict]) -> dict[str, dict]:
    return {r["url"]: r for r in records}


def test_async_crawl_of_four_hosts_writes_one_correct_record_per_page(shop, cli, tmp_path):
    served = shop(250, hosts=4)
    catalog = served.catalog
    write_seeds(tmp_path, catalog.seeds)
    run = cli("crawl", "-s", "seeds.txt", "-o", "out.jsonl", "-q", *ASYNC,
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


def test_async_requests_in_flight_to_one_host_never_exceed_per_host_concurrency(serve, cli, tmp_path):
    hosts = ["127.0.0.1", "127.0.0.2"]
    server = slow_hosts(serve, hosts, pages=12, delay=0.2)
    settings = FAST.replace("per_host_concurrency = 4", "per_host_concurrency = 2")
    run = cli("crawl", *(server.url(h) for h in hosts), "-o", "out.jsonl", "-q", *ASYNC, settings=settings)
    assert run.code == 0, run.stderr
    assert len(run.records) == 2 * 13
    assert [server.max_in_flight(h) for h in hosts] == [2, 2]  # used, and never more


def test_async_requests_in_flight_in_total_never_exceed_concurrency(serve, cli, tmp_path):
    server = slow_hosts(serve, ["127.0.0.1"], pages=8, delay=0.1)
    settings = FAST.replace("concurrency = 16", "concurrency = 1")  # per host it stays 4
    run = cli("crawl", server.url("127.0.0.1"), "-o", "out.jsonl", "-q", *ASYNC, settings=settings)
    assert run.code == 0, run.stderr
    assert len(run.records) == 9
    assert server.max_in_flight("127.0.0.1") == 1


def first_fails(status: int, headers=()):
    """A handler that answers `status` the first time and a page afterwards."""
    seen = Counter()

    def handle(request):
        seen[request.path] += 1
        if seen[request.path] == 1:
            return page("busy", status=status, headers=headers)
        return page("ok")

    return handle


def test_async_retried_503_then_200_is_recorded_once_with_two_attempts(serve, cli):
    site = Site()
    site.add("127.0.0.1", "/", first_fails(503))
    server = serve(site, ["127.0.0.1"])
    run = cli("crawl", server.url("127.0.0.1"), "-o", "out.jsonl", "-q", *ASYNC, settings=FAST)
    assert run.code == 0, run.stderr
    [record] = run.records
    assert (record["status"], record["error"], record["attempts"]) == (200, None, 2)
    assert record["data"]["title"] == "ok"
    assert server.hits("127.0.0.1", "/") == 2


def test_async_endless_body_times_out_within_the_deadline(serve, cli):
    site = Site()
    site.add("127.0.0.1", "/", Drip(200, b"x" * 10_000_000, (("Content-Type", "text/html"),),
                                    chunk_size=100, interval=0.05))
    server = serve(site, ["127.0.0.1"])
    run = cli("crawl", server.url("127.0.0.1"), "-o", "out.jsonl", "-q", *ASYNC,
              settings=QUICK + "retries = 0\n")
    [record] = run.records
    assert record["error"]["type"] == "timeout"
    assert "deadline" in record["error"]["message"]
    assert 1900 <= record["elapsed_ms"] < 3000  # deadline = 4 x timeout


def test_async_headers_dripped_byte_by_byte_end_at_the_deadline(engine):
    dripper = Dripper(interval=0.1, in_body=False)  # one header byte every 0.1 s, never done
    try:
        result = engine(timeout=0.5, retries=0).fetch(f"http://127.0.0.1:{dripper.port}/")
    finally:
        dripper.close()
    assert result.error[0] == "timeout" and "deadline" in result.error[1]
    assert 1900 <= result.elapsed_ms < 3000  # deadline = 4 x timeout


def test_async_max_bytes_bounds_the_decoded_size(serve, cli):
    bomb = gzip.compress(b"<html>" + b" " * 1_000_000 + b"</html>")
    assert len(bomb) < 10_000
    site = Site()
    site.add("127.0.0.1", "/", Response(200, bomb, (("Content-Type", "text/html"),
                                                    ("Content-Encoding", "gzip"))))
    server = serve(site, ["127.0.0.1"])
    run = cli("crawl", server.url("127.0.0.1"), "-o", "out.jsonl", "-q", *ASYNC,
              settings=FAST + "max_bytes = 100000\n")
    [record] = run.records
    assert record["error"]["type"] == "too_large"
    assert record["attempts"] == 1


def test_ctrl_c_with_the_async_engine_exits_130_and_resume_loses_nothing(serve, tmp_path):
    server = slow_site(serve, pages=150)
    proc = start_crawl(tmp_path, server, *ASYNC)
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
    resumed = start_crawl(tmp_path, server, *ASYNC)
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    records = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert len(records) == len({r["url"] for r in records}) == 150


# -- the engine without the pipeline (no parser processes: quick) --

class EngineRun:
    """An AiohttpEngine on its own HostScheduler; ``fetch`` hands it jobs and waits for them."""

    def __init__(self, guard: AddressGuard, fetch: dict, gate: threading.Event | None = None):
        overrides = {"fetch.per_host_delay": 0, "fetch.timeout": 2, "fetch.backoff": 0.05}
        overrides.update({f"fetch.{k}": v for k, v in fetch.items()})
        settings = load_settings(DEFAULTS_PATH, overrides)
        self.scheduler = HostScheduler(settings.fetch.per_host_concurrency, settings.fetch.per_host_delay)
        self.policy = FetchPolicy(settings.fetch, "test-agent", scheduler=self.scheduler)
        self.engine = AiohttpEngine(self.policy, guard)
        self.settled: queue.Queue = queue.Queue()
        self.threads = self.engine.start(self.scheduler, self.on_page, lambda job: self.settled.put(("released", job)))
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


@pytest.fixture
def engine():
    """engine(**fetch_settings) -> a running EngineRun (loopback allowed), stopped afterwards."""
    runs: list[EngineRun] = []

    def start(guard: AddressGuard | None = None, gate: threading.Event | None = None, **fetch) -> EngineRun:
        runs.append(EngineRun(guard or AddressGuard(allow_private=True), fetch, gate))
        return runs[-1]

    yield start
    for run in runs:
        if run.gate is not None:
            run.gate.set()
        run.stop()


def request_times(server, path: str) -> list[float]:
    return [r.started for r in server.log if r.path == path]


def test_async_retry_waits_for_retry_after(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/", first_fails(503, (("Retry-After", "1"),)))
    server = serve(site, ["127.0.0.1"])
    result = engine().fetch(server.url("127.0.0.1"))
    assert (result.status, result.attempts) == (200, 2)
    first, second = request_times(server, "/")
    assert second - first >= 1.0


def test_async_retry_waits_for_the_hosts_turn(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/", first_fails(503))
    server = serve(site, ["127.0.0.1"])
    result = engine(per_host_delay=0.5).fetch(server.url("127.0.0.1"))  # backoff is 0.05
    assert (result.status, result.attempts) == (200, 2)
    first, second = request_times(server, "/")
    assert second - first >= 0.45  # the host's turn comes 0.5 s after the job started


def test_async_retries_are_capped_at_retries_plus_one(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/", page("down", status=503))
    server = serve(site, ["127.0.0.1"])
    result = engine(retries=2).fetch(server.url("127.0.0.1"))
    assert (result.status, result.error[0], result.attempts) == (503, "http", 3)
    assert server.hits("127.0.0.1", "/") == 3


def test_async_refused_connection_is_retried_and_counted(serve, engine):
    site = Site()
    server = serve(site, ["127.0.0.1"])
    closed = server.url("127.0.0.1").replace(str(server.port), str(free_port()))
    result = engine(retries=1).fetch(closed)
    assert result.error == ("connection", f"connection refused: {closed}")
    assert result.attempts == 2


def test_async_attempts_count_every_request_sent(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/", RESET)
    server = serve(site, ["127.0.0.1"])
    result = engine(retries=1).fetch(server.url("127.0.0.1"))
    assert result.error[0] == "connection"
    assert result.attempts == server.hits("127.0.0.1", "/") == 2  # aiohttp sends nothing on its own


def test_async_silent_server_times_out_after_the_read_timeout(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/", HANG)
    server = serve(site, ["127.0.0.1"])
    result = engine(timeout=0.5, retries=0).fetch(server.url("127.0.0.1"))
    assert result.error[0] == "timeout" and "read timed out" in result.error[1]
    assert 450 <= result.elapsed_ms < 1500


def test_async_redirect_is_followed_and_counts_as_one_attempt(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/", Response.redirect("/moved", 301))
    site.add("127.0.0.1", "/moved", page("moved"))
    server = serve(site, ["127.0.0.1"])
    result = engine().fetch(server.url("127.0.0.1"))
    assert result.final_url == server.url("127.0.0.1", "/moved")
    assert (result.status, result.attempts, result.error) == (200, 1, None)


def test_async_connection_to_a_private_address_is_blocked_and_never_requested(serve, engine):
    site = Site()
    site.add("127.0.0.2", "/inside", page("inside"))
    server = serve(site, ["127.0.0.1", "127.0.0.2"])
    run = engine(AddressGuard(allow_private=False, trusted_hosts={"127.0.0.1"}))
    result = run.fetch(server.url("127.0.0.2", "/inside"))
    assert result.error[0] == "blocked" and result.attempts == 1
    assert server.hits(host="127.0.0.2") == 0
    assert run.fetch(server.url("127.0.0.1", "/")).status == 404  # a trusted (seed) host is reached


def test_async_refused_address_is_never_connected_to(engine):
    with socket.socket() as listener:  # a loopback address that is not a seed's
        listener.bind(("127.0.0.3", 0))
        listener.listen()
        listener.setblocking(False)
        url = f"http://127.0.0.3:{listener.getsockname()[1]}/"
        result = engine(AddressGuard(allow_private=False)).fetch(url)
        assert result.error[0] == "blocked"
        with pytest.raises(BlockingIOError):
            listener.accept()  # not even a connection was made


def test_async_redirect_to_another_host_waits_for_a_slot_there(serve, engine):
    a, b = "127.0.0.1", "127.0.0.2"
    site = Site()
    server = serve(site, [a, b])
    for i in range(4):
        site.add(a, f"/r/{i}", Response.redirect(server.url(b, f"/landing/{i}")))
    site.add(b, "*", page("b", delay=0.1))
    run = engine(per_host_concurrency=1, concurrency=8)
    run.offer(*(server.url(a, f"/r/{i}") for i in range(4)), *(server.url(b, f"/own/{i}") for i in range(4)))
    assert all(run.settled.get(timeout=10).status == 200 for _ in range(8))
    assert server.hits(b) == 8
    assert server.max_in_flight(b) == 1  # hops from a waited for b's one slot


def test_async_fetch_robots_follows_five_redirects_but_not_six(serve):
    site = Site()
    for i in range(6):
        site.add("*", f"/r{i}", Response.redirect(f"/r{i + 1}"))
    site.add("*", "/r6", Response(200, b"User-agent: *\nDisallow: /\n", (("Content-Type", "text/plain"),)))
    site.add("127.0.0.1", "/robots.txt", Response.redirect("/r2"))  # 5 hops
    site.add("127.0.0.2", "/robots.txt", Response.redirect("/r1"))  # 6 hops: one too many
    server = serve(site, ["127.0.0.1", "127.0.0.2"])
    settings = load_settings(DEFAULTS_PATH, {"fetch.timeout": 2})
    engine = AiohttpEngine(FetchPolicy(settings.fetch, "test-agent"))  # not started: a session of its own
    assert engine.fetch_robots(server.url("127.0.0.1", "/robots.txt")) == \
        RobotsAnswer(200, b"User-agent: *\nDisallow: /\n")
    assert engine.fetch_robots(server.url("127.0.0.2", "/robots.txt")).status == 302


def test_async_robots_asked_by_another_thread_meanwhile_is_fetched_once_without_deadlock(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/robots.txt", Response(200, b"User-agent: *\nDisallow: /no\n", delay=0.3))
    site.add("127.0.0.1", "*", page("yes"))
    server = serve(site, ["127.0.0.1"])
    run = engine()
    run.policy.robots = RobotsCache("test-agent", run.engine.fetch_robots)
    other = threading.Thread(target=run.policy.robots.check, args=(server.url("127.0.0.1", "/x"),))
    other.start()  # another thread (sitemaps, say) owns the robots.txt fetch ...
    time.sleep(0.05)
    run.offer(*(server.url("127.0.0.1", f"/{p}/{i}") for i in range(3) for p in ("yes", "no")))
    results = [run.settled.get(timeout=10) for _ in range(6)]  # ... while the loop's jobs wait for it
    other.join(5)
    assert Counter(p.error[0] if p.error else p.status for p in results) == {200: 3, "robots": 3}
    assert server.hits("127.0.0.1", "/robots.txt") == 1


def test_async_engine_exchange_serves_other_threads_while_it_runs(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/sitemap.xml", Response(200, b"<urlset/>", (("Content-Type", "text/xml"),)))
    server = serve(site, ["127.0.0.1"])
    run = engine()
    response = run.engine.exchange(server.url("127.0.0.1", "/sitemap.xml"), {}, limit=1000)
    assert (response.status, response.body) == (200, b"<urlset/>")


def test_async_cookies_set_by_an_ip_host_are_sent_back(serve, engine):
    cookies = []
    site = Site()
    site.add("127.0.0.1", "/", page("seed", headers=(("Set-Cookie", "s=42; Path=/"),)))
    site.add("127.0.0.1", "/next", lambda request: cookies.append(request.headers.get("cookie")) or page("next"))
    server = serve(site, ["127.0.0.1"])
    run = engine()
    run.fetch(server.url("127.0.0.1", "/"))
    run.fetch(server.url("127.0.0.1", "/next"))
    assert cookies == ["s=42"]


def test_async_engine_sends_conditional_headers_from_the_job(serve, engine):
    seen = []
    site = Site()
    site.add("127.0.0.1", "/", lambda request: seen.append(request.headers) or Response(304))
    server = serve(site, ["127.0.0.1"])
    result = engine().fetch(server.url("127.0.0.1"), etag='"v1"', last_modified="Sun, 22 Nov 2026 01:00:00 GMT")
    assert result.status == 304
    assert seen[0]["if-none-match"] == '"v1"'
    assert seen[0]["if-modified-since"] == "Sun, 22 Nov 2026 01:00:00 GMT"


def test_async_engine_thread_ends_once_the_scheduler_closes_and_work_is_settled(serve, engine):
    site = Site()
    site.add("127.0.0.1", "*", page("slow", delay=0.3))
    server = serve(site, ["127.0.0.1"])
    run = engine()
    jobs = run.offer(server.url("127.0.0.1", "/a"), server.url("127.0.0.1", "/b"))
    time.sleep(0.1)  # both requests are in flight now
    run.scheduler.close()
    for t in run.threads:
        t.join(5)
        assert not t.is_alive()
    pages = [run.settled.get_nowait() for _ in jobs]
    assert sorted(p.job.id for p in pages) == [j.id for j in jobs] and all(p.status == 200 for p in pages)
    assert run.settled.empty()


def test_async_engine_fetches_ahead_only_a_little_while_on_page_blocks(serve, engine):
    site = Site()
    site.add("127.0.0.1", "*", page("p"))
    server = serve(site, ["127.0.0.1"])
    gate = threading.Event()
    run = engine(gate=gate, concurrency=4, per_host_concurrency=4)
    run.offer(*(server.url("127.0.0.1", f"/{i}") for i in range(60)))
    time.sleep(0.5)  # the parser pool is "full": on_page blocks
    assert server.hits() <= HANDOFF_PAGES + 1 + 4  # queued + in on_page + tasks waiting to queue
    gate.set()
    assert len({run.settled.get(timeout=10).job.id for _ in range(60)}) == 60


def test_async_wait_between_attempts_gives_the_job_back_when_the_crawl_stops(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/", page("down", status=503, headers=(("Retry-After", "30"),)))
    server = serve(site, ["127.0.0.1"])
    run = engine()
    [job] = run.offer(server.url("127.0.0.1"))
    while server.hits() == 0:
        time.sleep(0.01)
    started = time.monotonic()
    run.policy.stop.set()
    run.scheduler.close()
    assert run.settled.get(timeout=5) == ("released", job)
    assert time.monotonic() - started < 1


def test_try_turn_takes_the_hosts_turn_only_once_its_delay_has_passed():
    clock = Clock()
    s = HostScheduler(2, 0.5, clock=clock)
    s.offer([FetchJob(1, "http://a/1", "a", 0)])
    job, _ = s.try_next()
    assert s.try_turn(job) == pytest.approx(0.5)
    clock.now += 0.5
    assert s.try_turn(job) == 0.0
    assert s.try_turn(job) == pytest.approx(0.5)  # taking the turn pushed the next start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
