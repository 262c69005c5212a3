"""The policy suite on both transports: each test runs on the threads engine and on the
async engine (``engine`` fixture, tests/fetch/conftest.py) against the same scripted
server answers: retries, redirects, robots.txt, limits, deadlines, the SSRF guard,
politeness, shutdown."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections import Counter

import pytest

from crawler.demo.shop.server import HANG, RESET, Response, Site
from crawler.engine.hosts import HostScheduler
from crawler.fetch.aiohttp_engine import HANDOFF_PAGES
from crawler.fetch.guard import AddressGuard
from crawler.fetch.policy import FetchPolicy
from crawler.fetch.robots import RobotsAnswer, RobotsCache
from crawler.messages import FetchJob
from crawler.settings import DEFAULTS_PATH, load_settings
from tests.engine.test_hosts import Clock
from tests.fetch.conftest import EngineRun, make_transport
from tests.fetch.test_fetch_limits import Dripper


def page(title: str, links: str = "", status: int = 200, headers=(), delay: float = 0.0) -> Response:
    return Response.html(f"<html><head><title>{title}</title></head><body>{links}</body></html>",
                         status, headers, delay)


def first_fails(status: int, headers=()):
    """A handler that answers `status` the first time and a page afterwards."""
    seen = Counter()

    def handle(request):
        seen[request.path] += 1
        if seen[request.path] == 1:
            return page("busy", status=status, headers=headers)
        return page("ok")

    return handle


def test_headers_dripped_byte_by_byte_end_at_the_deadline(engine):
    dripper = Dripper(interval=0.1, in_body=False)  # one header byte every 0.1 s, never done
    try:
        result = engine(timeout=0.5, retries=0).fetch(f"http://127.0.0.1:{dripper.port}/")
    finally:
        dripper.close()
    assert result.error[0] == "timeout" and "deadline" in result.error[1]
    assert 1900 <= result.elapsed_ms < 3000  # deadline = 4 x timeout


def test_credentials_in_the_url_are_sent_as_basic_auth(serve, engine):
    site = Site()
    site.add("127.0.0.1", "*", page("any"))
    server = serve(site, ["127.0.0.1"])
    url = server.url("127.0.0.1", "/private").replace("http://", "http://reader:s%40cret@")
    assert engine().fetch(url).status == 200
    [seen] = server.log
    assert seen.path == "/private"  # the credentials are not in the request line
    assert seen.headers["authorization"] == "Basic " + base64.b64encode(b"reader:s@cret").decode()


def request_times(server, path: str) -> list[float]:
    return [r.started for r in server.log if r.path == path]


def test_retry_waits_for_retry_after(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/", first_fails(503, (("Retry-After", "1"),)))
    server = serve(site, ["127.0.0.1"])
    result = engine().fetch(server.url("127.0.0.1"))
    assert (result.status, result.attempts) == (200, 2)
    first, second = request_times(server, "/")
    assert second - first >= 1.0


def test_retry_waits_for_the_hosts_turn(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/", first_fails(503))
    server = serve(site, ["127.0.0.1"])
    result = engine(per_host_delay=0.5).fetch(server.url("127.0.0.1"))  # backoff is 0.05
    assert (result.status, result.attempts) == (200, 2)
    first, second = request_times(server, "/")
    assert second - first >= 0.45  # the host's turn comes 0.5 s after the job started


def test_retries_are_capped_at_retries_plus_one(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/", page("down", status=503))
    server = serve(site, ["127.0.0.1"])
    result = engine(retries=2).fetch(server.url("127.0.0.1"))
    assert (result.status, result.error[0], result.attempts) == (503, "http", 3)
    assert server.hits("127.0.0.1", "/") == 3


def test_refused_connection_is_retried_and_counted(serve, engine):
    site = Site()
    server = serve(site, ["127.0.0.1"])
    closed = server.url("127.0.0.1").replace(str(server.port), str(free_port()))
    result = engine(retries=1).fetch(closed)
    assert result.error == ("connection", f"connection refused: {closed}")
    assert result.attempts == 2


def test_attempts_count_every_request_sent(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/", RESET)
    server = serve(site, ["127.0.0.1"])
    result = engine(retries=1).fetch(server.url("127.0.0.1"))
    assert result.error[0] == "connection"
    assert result.attempts == server.hits("127.0.0.1", "/") == 2  # aiohttp sends nothing on its own


def test_silent_server_times_out_after_the_read_timeout(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/", HANG)
    server = serve(site, ["127.0.0.1"])
    result = engine(timeout=0.5, retries=0).fetch(server.url("127.0.0.1"))
    assert result.error[0] == "timeout" and "read timed out" in result.error[1]
    assert 450 <= result.elapsed_ms < 1500


def test_redirect_is_followed_and_counts_as_one_attempt(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/", Response.redirect("/moved", 301))
    site.add("127.0.0.1", "/moved", page("moved"))
    server = serve(site, ["127.0.0.1"])
    result = engine().fetch(server.url("127.0.0.1"))
    assert result.final_url == server.url("127.0.0.1", "/moved")
    assert (result.status, result.attempts, result.error) == (200, 1, None)


def test_connection_to_a_private_address_is_blocked_and_never_requested(serve, engine):
    site = Site()
    site.add("127.0.0.2", "/inside", page("inside"))
    server = serve(site, ["127.0.0.1", "127.0.0.2"])
    run = engine(AddressGuard(allow_private=False, trusted_hosts={"127.0.0.1"}))
    result = run.fetch(server.url("127.0.0.2", "/inside"))
    assert result.error[0] == "blocked" and result.attempts == 1
    assert server.hits(host="127.0.0.2") == 0
    assert run.fetch(server.url("127.0.0.1", "/")).status == 404  # a trusted (seed) host is reached


def test_refused_address_is_never_connected_to(engine):
    with socket.socket() as listener:  # a loopback address that is not a seed's
        listener.bind(("127.0.0.3", 0))
        listener.listen()
        listener.setblocking(False)
        url = f"http://127.0.0.3:{listener.getsockname()[1]}/"
        result = engine(AddressGuard(allow_private=False)).fetch(url)
        assert result.error[0] == "blocked"
        with pytest.raises(BlockingIOError):
            listener.accept()  # not even a connection was made


def test_redirect_to_another_host_waits_for_a_slot_there(serve, engine):
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


def test_fetch_robots_follows_five_redirects_but_not_six(serve, engine_name):
    site = Site()
    for i in range(6):
        site.add("*", f"/r{i}", Response.redirect(f"/r{i + 1}"))
    site.add("*", "/r6", Response(200, b"User-agent: *\nDisallow: /\n", (("Content-Type", "text/plain"),)))
    site.add("127.0.0.1", "/robots.txt", Response.redirect("/r2"))  # 5 hops
    site.add("127.0.0.2", "/robots.txt", Response.redirect("/r1"))  # 6 hops: one too many
    server = serve(site, ["127.0.0.1", "127.0.0.2"])
    settings = load_settings(DEFAULTS_PATH, {"fetch.timeout": 2})
    engine = make_transport(engine_name, FetchPolicy(settings.fetch, "test-agent"))  # not started
    assert engine.fetch_robots(server.url("127.0.0.1", "/robots.txt")) == \
        RobotsAnswer(200, b"User-agent: *\nDisallow: /\n")
    assert engine.fetch_robots(server.url("127.0.0.2", "/robots.txt")).status == 302


def test_robots_asked_by_another_thread_meanwhile_is_fetched_once_without_deadlock(serve, engine):
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


def test_engine_exchange_serves_other_threads_while_it_runs(serve, engine):
    site = Site()
    site.add("127.0.0.1", "/sitemap.xml", Response(200, b"<urlset/>", (("Content-Type", "text/xml"),)))
    server = serve(site, ["127.0.0.1"])
    run = engine()
    response = run.engine.exchange(server.url("127.0.0.1", "/sitemap.xml"), {}, limit=1000)
    assert (response.status, response.body) == (200, b"<urlset/>")


def test_cookies_set_by_an_ip_host_are_sent_back(serve, engine):
    cookies = []
    site = Site()
    site.add("127.0.0.1", "/", page("seed", headers=(("Set-Cookie", "s=42; Path=/"),)))
    site.add("127.0.0.1", "/next", lambda request: cookies.append(request.headers.get("cookie")) or page("next"))
    server = serve(site, ["127.0.0.1"])
    run = engine()
    run.fetch(server.url("127.0.0.1", "/"))
    run.fetch(server.url("127.0.0.1", "/next"))
    assert cookies == ["s=42"]


def test_engine_sends_conditional_headers_from_the_job(serve, engine):
    seen = []
    site = Site()
    site.add("127.0.0.1", "/", lambda request: seen.append(request.headers) or Response(304))
    server = serve(site, ["127.0.0.1"])
    result = engine().fetch(server.url("127.0.0.1"), etag='"v1"', last_modified="Sun, 22 Nov 2026 01:00:00 GMT")
    assert result.status == 304
    assert seen[0]["if-none-match"] == '"v1"'
    assert seen[0]["if-modified-since"] == "Sun, 22 Nov 2026 01:00:00 GMT"


def test_engine_thread_ends_once_the_scheduler_closes_and_work_is_settled(serve, engine):
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


def test_engine_fetches_ahead_only_a_little_while_on_page_blocks(serve, engine):
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


def test_async_engine_hands_pages_on_from_its_loop_while_the_pool_has_room(serve):
    """try_page (the parser pool's non-blocking submit) runs on the engine's own thread;
    once it says the pool is full, pages go to the blocking on_page, with the same bound
    on fetching ahead as before."""
    site = Site()
    site.add("127.0.0.1", "*", page("p"))
    server = serve(site, ["127.0.0.1"])
    room, tried = 10, []

    def try_page(job, page):
        tried.append(threading.current_thread().name)
        if len(tried) > room:
            return False
        run.settled.put(page)
        return True

    gate = threading.Event()
    run = EngineRun("async", AddressGuard(allow_private=True), {"concurrency": 4, "per_host_concurrency": 4},
                    gate, try_page)
    try:
        run.offer(*(server.url("127.0.0.1", f"/{i}") for i in range(60)))
        time.sleep(0.5)  # room for 10, then on_page blocks
        assert set(tried) == {"aiofetch"}
        assert server.hits() <= room + HANDOFF_PAGES + 1 + 4
        gate.set()
        pages = [run.settled.get(timeout=10) for _ in range(60)]
        assert sorted(p.job.id for p in pages) == list(range(1, 61))  # each page once
        assert run.settled.empty()
    finally:
        gate.set()
        run.stop()


def test_wait_between_attempts_gives_the_job_back_when_the_crawl_stops(serve, engine):
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


@pytest.mark.parametrize("url", ["http://a.b/", "http://a.b:8080/x/y?q=1&r=%20", "http://u:p@a.b/p?",
                                 "http://a.b/p#f", "https://a.b/%7E/x?", "http://[::1]:80/p", "http://a.b/p?x#y",
                                 "http://a.b/a%zz/b?c=d/e", "https://xn--bcher-kva.example/b?"])
def test_guarded_adapter_sends_the_target_and_picks_the_pool_as_requests_does(url):
    """GuardedAdapter cuts the request target out of the URL and remembers pool keys per
    origin instead of parsing each URL: the results must be requests' own."""
    import requests
    from requests.adapters import HTTPAdapter

    from crawler.fetch.requests_adapter import GuardedAdapter, prepared_get

    ours, theirs = GuardedAdapter(), HTTPAdapter()
    prep = prepared_get(url, {}, requests.cookies.RequestsCookieJar())
    assert ours.request_url(prep, {}) == theirs.request_url(prep, {})
    for _ in range(2):  # worked out, then remembered
        assert ours.build_connection_pool_key_attributes(prep, True) == \
            theirs.build_connection_pool_key_attributes(prep, True)
