"""Issue 11, the fetch side: nothing hung, nothing lost, on either engine.

- #3: a fetch engine that dies (a fetcher thread, or the async engine's loop thread)
  makes the crawl abort (exit 1, resumable) instead of hanging on its leased jobs; a
  failure handing one page on loses nothing.
- #6: the async engine's loop never blocks: not on a robots.txt that another thread is
  fetching, not on the redirect-claim hook (which reads SQLite).
"""

from __future__ import annotations

import itertools
import threading
import time

import orjson
import pytest

from crawler.api import crawl
from crawler.demo.shop.server import Response, Site
from crawler.engine.crawl import Crawl
from crawler.engine.hosts import HostScheduler
from crawler.errors import AbortError
from crawler.fetch.robots import RobotsAnswer, RobotsCache

A, B = "127.0.0.1", "127.0.0.2"
PAGES = 30


def small_site(serve):
    site = Site()
    links = "".join(f'<a href="/p/{i}">{i}</a>' for i in range(PAGES))
    site.add(A, "/", Response.html(f"<html><head><title>home</title></head><body>{links}</body></html>"))
    site.add(A, "*", Response.html("<html><head><title>page</title></head><body></body></html>"))
    return serve(site, [A])


def crawl_within(seconds: float, **kw):
    """Run a crawl in a thread; its result or its exception, or fail if it hangs."""
    box: dict = {}

    def run():
        try:
            box["result"] = crawl(**kw)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the crawl hung (still running after {seconds} s)"
    return box


def records(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def settings_for(server, tmp_path, engine_name: str) -> dict:
    return dict(seeds=[server.url(A, "/")], output=tmp_path / "out.jsonl", max_depth=1, per_host_delay=0,
                timeout=2, workers=1, concurrency=1, engine=engine_name, handle_signals=False)


def test_a_fetch_engine_that_dies_aborts_the_crawl_and_resume_loses_nothing(serve, tmp_path, engine_name,
                                                                             monkeypatch):
    server = small_site(serve)
    method = "next_job" if engine_name == "threads" else "try_next"  # how each engine takes work
    real, calls = getattr(HostScheduler, method), itertools.count()

    def dying(self, *args, **kwargs):
        if next(calls) == 5:
            raise RuntimeError("injected: the fetch engine dies")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(HostScheduler, method, dying)
    box = crawl_within(30, **settings_for(server, tmp_path, engine_name))
    assert isinstance(box.get("error"), AbortError), box
    assert "fetch engine" in str(box["error"]) and "injected" in str(box["error"])
    monkeypatch.undo()
    box = crawl_within(30, **settings_for(server, tmp_path, engine_name))  # resumes
    assert "error" not in box, box
    urls = [r["url"] for r in records(tmp_path / "out.jsonl")]
    assert len(urls) == len(set(urls)) == PAGES + 1


def test_a_failure_handing_a_page_on_loses_nothing(serve, tmp_path, engine_name, monkeypatch):
    server = small_site(serve)
    real, calls = Crawl._fetched, itertools.count()

    def failing_once(self, *args, **kwargs):
        if next(calls) == 3:
            raise RuntimeError("injected: handing the page on failed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Crawl, "_fetched", failing_once)
    box = crawl_within(30, **settings_for(server, tmp_path, engine_name))
    assert "error" not in box, box
    urls = [r["url"] for r in records(tmp_path / "out.jsonl")]
    assert len(urls) == len(set(urls)) == PAGES + 1


def settle_times(run, count: int, since: float) -> dict[str, tuple[object, float]]:
    """The next ``count`` pages by URL, each with the seconds from ``since`` to its arrival."""
    pages = {}
    for _ in range(count):
        page = run.settled.get(timeout=10)
        pages[page.job.url] = (page, time.monotonic() - since)
    return pages


def two_hosts(serve):
    site = Site()
    for host in (A, B):
        site.add(host, "/", Response.html(f"<html><head><title>{host}</title></head></html>"))
    site.add(A, "/r", Response.redirect("/target"))
    site.add(A, "/target", Response.html("<html><head><title>target</title></head></html>"))
    return serve(site, [A, B])


def test_a_robots_txt_another_thread_is_fetching_holds_up_no_other_host(serve, engine):
    server = two_hosts(serve)
    run = engine(concurrency=4)
    release = threading.Event()

    def fetch_robots(url: str) -> RobotsAnswer:  # A's robots.txt takes long (a sitemap thread has it)
        if A in url:
            release.wait(5)
            return RobotsAnswer(404)
        return run.engine.fetch_robots(url)

    run.policy.robots = RobotsCache("test-agent", fetch_robots)
    other = threading.Thread(target=run.policy.robots.check, args=(server.url(A, "/x"),))
    other.start()
    time.sleep(0.05)
    run.offer(server.url(A, "/"))  # waits for the other thread's robots.txt ...
    time.sleep(0.1)
    started = time.monotonic()
    run.offer(server.url(B, "/"))  # ... which must not hold B up
    threading.Timer(1.5, release.set).start()
    pages = settle_times(run, 2, started)
    other.join(5)
    (a_page, _), (b_page, b_took) = pages[server.url(A, "/")], pages[server.url(B, "/")]
    assert (a_page.status, b_page.status) == (200, 200)
    assert b_took < 1.0, f"B waited {b_took:.2f} s for A's robots.txt"
    assert server.hits(A, "/robots.txt") == 0  # the test's fetch answered for A


def test_the_redirect_claim_hook_holds_up_no_other_fetch(serve, engine):
    server = two_hosts(serve)
    run = engine(concurrency=4)
    entered = threading.Event()

    def slow_claim(url: str) -> bool:  # as a SQLite read on a busy disk
        entered.set()
        time.sleep(1.0)
        return True

    run.policy.claim = slow_claim
    run.offer(server.url(A, "/r"))
    assert entered.wait(5)
    started = time.monotonic()
    run.offer(server.url(B, "/"))
    pages = settle_times(run, 2, started)
    (a_page, _), (b_page, b_took) = pages[server.url(A, "/r")], pages[server.url(B, "/")]
    assert b_page.status == 200 and a_page.final_url == server.url(A, "/target")
    assert b_took < 0.6, f"B waited {b_took:.2f} s for A's redirect claim"


@pytest.mark.parametrize("missing", ["_new_conn"])
def test_the_one_urllib3_shim_fails_loudly_if_its_hook_is_gone(monkeypatch, missing):
    """The threads engine's SSRF guard needs urllib3's HTTPConnection._new_conn (no public
    hook opens a connection's socket): if an upgrade drops it, importing the engine fails."""
    from urllib3.connection import HTTPConnection

    from crawler.fetch import requests_engine

    requests_engine.require_shim()  # today's urllib3 has it
    monkeypatch.delattr(HTTPConnection, missing)
    with pytest.raises(ImportError, match=missing):
        requests_engine.require_shim()
