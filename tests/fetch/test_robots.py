"""robots.txt (RFC 9309): what each answer means, caching, and crawls that obey it or not."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from crawler.fetch import robots as robots_mod
from crawler.api import crawl
from crawler.errors import Blocked
from crawler.fetch.commands import Response as Response_, drive
from crawler.fetch.policy import FetchPolicy
from crawler.fetch.requests_engine import RequestsFetcher
from crawler.fetch.robots import RobotsAnswer, RobotsCache, RobotsUnavailable
from crawler.demo.shop.server import Response, Site, SiteServer
from crawler.settings import load_settings
from tests.conftest import run_cli

UA = "crawler/0.1.0 (+https://github.com/crawler-dev/crawler)"
H = "127.0.0.1"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Answers:
    """A fake robots.txt fetch: answers in turn (the last one repeats), counting calls."""

    def __init__(self, *answers: RobotsAnswer):
        self.answers = list(answers)
        self.calls: list[str] = []

    def __call__(self, url: str) -> RobotsAnswer:
        self.calls.append(url)
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


def ok(text: str) -> RobotsAnswer:
    return RobotsAnswer(200, text.encode())


def test_robots_txt_is_fetched_once_per_origin_and_again_after_it_expires():
    clock, fetch = Clock(), Answers(ok("User-agent: *\nDisallow: /private/\n"))
    cache = RobotsCache(UA, fetch, clock=clock)
    assert cache.check("http://a.test/x") == (True, None)
    assert cache.check("http://a.test/private/y") == (False, None)
    assert cache.check("http://a.test:8080/x") == (True, None)  # another origin
    assert fetch.calls == ["http://a.test/robots.txt", "http://a.test:8080/robots.txt"]
    clock.now += robots_mod.EXPIRY + 1
    cache.check("http://a.test/x")
    assert len(fetch.calls) == 3


def test_threads_asking_at_once_share_one_fetch():
    release = threading.Event()

    def slow_fetch(url):
        release.wait(5)
        return ok("User-agent: *\nDisallow:\n")

    calls = []
    cache = RobotsCache(UA, lambda url: calls.append(url) or slow_fetch(url))
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.check("http://a.test/x"))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    release.set()
    for t in threads:
        t.join(5)
    assert len(calls) == 1 and results == [(True, None)] * 8


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_a_4xx_robots_txt_allows_everything(status):
    cache = RobotsCache(UA, Answers(RobotsAnswer(status)))
    assert cache.check("http://a.test/anything") == (True, None)


@pytest.mark.parametrize("answer", [RobotsAnswer(500), RobotsAnswer(503), RobotsAnswer(429), RobotsAnswer(None)])
def test_5xx_429_or_unreachable_disallows_for_now_and_asks_again_later(answer):
    clock = Clock()
    fetch = Answers(answer, answer, answer, ok("User-agent: *\nDisallow: /no/\n"))
    cache = RobotsCache(UA, fetch, clock=clock)
    for tries in range(1, robots_mod.MAX_UNREACHABLE + 1):
        with pytest.raises(RobotsUnavailable) as exc:
            cache.check("http://a.test/x")
        assert exc.value.final == (tries == robots_mod.MAX_UNREACHABLE)
        assert exc.value.retry_in == pytest.approx(robots_mod.RETRY_UNREACHABLE)
        with pytest.raises(RobotsUnavailable):  # cached until it expires: no new fetch
            cache.check("http://a.test/y")
        assert len(fetch.calls) == tries
        clock.now += robots_mod.RETRY_UNREACHABLE
    assert cache.check("http://a.test/x") == (True, None)  # it answered at last
    assert cache.check("http://a.test/no/x") == (False, None)


def test_an_origin_the_ssrf_guard_refused_makes_its_urls_blocked():
    cache = RobotsCache(UA, Answers(RobotsAnswer(None, blocked="refused: 10.0.0.1")))
    with pytest.raises(Blocked, match="10.0.0.1"):
        cache.check("http://intranet.test/x")


def test_crawl_delay_and_sitemaps_are_read_for_our_user_agent():
    cache = RobotsCache(UA, Answers(ok(
        "User-agent: crawler\nCrawl-delay: 2.5\nDisallow: /mine/\n\n"
        "User-agent: *\nCrawl-delay: 9\nDisallow: /\n\n"
        "Sitemap: http://a.test/sitemap.xml\nSitemap: http://a.test/news.xml\n")))
    assert cache.check("http://a.test/page") == (True, 2.5)
    assert cache.check("http://a.test/mine/x") == (False, 2.5)
    assert cache.sitemaps("http://a.test/") == ("http://a.test/sitemap.xml", "http://a.test/news.xml")


def test_fetch_robots_follows_five_redirects_but_not_six():
    site = Site()
    for i in range(6):
        site.add("*", f"/r{i}", Response.redirect(f"/r{i + 1}"))
    site.add("*", "/r6", Response(200, b"User-agent: *\nDisallow: /\n", (("Content-Type", "text/plain"),)))
    site.add("*", "/robots.txt", Response.redirect("/r2"))  # 5 hops: -> r2 -> r3 -> r4 -> r5 -> r6
    with SiteServer(site, [H, "127.0.0.2"]) as server:
        settings = load_settings(None, {"fetch.timeout": 2})
        fetcher = RequestsFetcher(FetchPolicy(settings.fetch, UA))
        assert fetcher.fetch_robots(server.url(H, "/robots.txt")) == \
            RobotsAnswer(200, b"User-agent: *\nDisallow: /\n")
        site.add("127.0.0.2", "/robots.txt", Response.redirect("/r1"))  # 6 hops: one too many
        answer = fetcher.fetch_robots(server.url("127.0.0.2", "/robots.txt"))
        assert answer.status in (301, 302) and RobotsCache(UA, lambda u: answer).check("http://x/") == (True, None)


def read(out) -> dict[str, dict]:
    return {r["url"]: r for r in map(orjson.loads, out.read_bytes().splitlines())}


def test_a_503_robots_txt_holds_the_host_back_until_it_answers(tmp_path, monkeypatch):
    monkeypatch.setattr(robots_mod, "RETRY_UNREACHABLE", 0.5)
    calls = []

    def robots(request):
        calls.append(time.monotonic())
        if len(calls) == 1:
            return Response(503, b"busy")
        return Response(200, b"User-agent: *\nDisallow: /private/\n", (("Content-Type", "text/plain"),))

    site = Site()
    site.add(H, "/robots.txt", robots)
    site.add(H, "/", Response.html('<title>home</title><a href="/private/x">x</a><a href="/ok">ok</a>'))
    site.add(H, "*", Response.html("<title>page</title>"))
    with SiteServer(site, [H]) as server:
        records = read_crawl(tmp_path, server.url(H, "/"))
        assert len(calls) == 2 and calls[1] - calls[0] >= 0.5
        home = [r for r in server.log if r.path == "/"]
        assert len(home) == 1 and home[0].started > calls[1]  # not before robots.txt answered
        assert records[server.url(H, "/private/x")]["error"]["type"] == "robots"
        assert server.hits(H, "/private/x") == 0
        assert records[server.url(H, "/ok")]["error"] is None


def test_a_robots_txt_that_never_answers_ends_in_robots_errors_and_no_page_request(tmp_path, monkeypatch):
    monkeypatch.setattr(robots_mod, "RETRY_UNREACHABLE", 0.3)
    site = Site()
    site.add(H, "/robots.txt", Response(500, b"down"))
    site.add(H, "*", Response.html("<title>page</title>"))
    with SiteServer(site, [H]) as server:
        records = read_crawl(tmp_path, server.url(H, "/"))
        assert records[server.url(H, "/")]["error"]["type"] == "robots"
        assert server.hits(H, "/robots.txt") == robots_mod.MAX_UNREACHABLE
        assert server.hits(H, "/") == 0


def read_crawl(tmp_path, seed: str) -> dict[str, dict]:
    out = tmp_path / "out.jsonl"
    crawl([seed], output=out, fresh=True, max_depth=1, per_host_delay=0, timeout=2, workers=1,
          handle_signals=False)
    return read(out)


def test_obey_robots_false_turns_off_robots_txt_and_page_directives(tmp_path):
    site = Site()
    site.add(H, "/robots.txt", Response(200, b"User-agent: *\nDisallow: /\n", (("Content-Type", "text/plain"),)))
    site.add(H, "/", Response.html('<html><head><meta name="robots" content="nofollow,noindex"><title>home</title>'
                                   '</head><body><a href="/a">a</a><a rel="nofollow" href="/b">b</a></body></html>'))
    site.add(H, "*", Response.html("<title>page</title>"))
    with SiteServer(site, [H]) as server:
        (tmp_path / "settings.toml").write_text("[crawl]\nmax_depth = 1\nobey_robots = false\n"
                                                "[fetch]\nper_host_delay = 0\n[parse]\nworkers = 1\n")
        run = run_cli("crawl", server.url(H, "/"), "-o", "out.jsonl", "-q", cwd=tmp_path,
                      output=tmp_path / "out.jsonl")
        assert run.code == 0, run.stderr
        assert server.hits(H, "/robots.txt") == 0
        assert server.hits(H, "/a") == 1 and server.hits(H, "/b") == 1
        home = next(r for r in run.records if r["url"] == server.url(H, "/"))
        assert home["data"] == {"title": "home"}  # noindex ignored too


def test_crawl_delay_is_honoured_up_to_max_crawl_delay():
    from crawler.engine.hosts import HostScheduler

    clock = Clock()
    scheduler = HostScheduler(1, 0.0, clock=clock)
    settings = load_settings(None, {"fetch.max_crawl_delay": 3})
    policy = FetchPolicy(settings.fetch, UA, scheduler=scheduler, robots=RobotsCache(UA, Answers(), clock=clock))
    first, second = job(1), job(2)
    scheduler.offer([first, second])
    assert scheduler.try_next()[0] is first
    served = Response_("http://a.test/robots.txt", 200, {}, b"User-agent: *\nCrawl-delay: 3600\n", 1.0)
    assert drive(policy.check_robots(first.url, first.host), lambda send: served) is True  # fetched just now
    scheduler.done(first)
    assert scheduler.try_next() == (None, 3.0)  # not an hour


def job(i: int):
    from crawler.messages import FetchJob

    return FetchJob(id=i, url=f"http://a.test/{i}", host="a.test", depth=0)


@pytest.mark.parametrize("url", [
    "http://a.test/x?y#z", "https://h.test:8443", "http://h.test?q", "http://h.test#f", "http://u:p@h.test:1/p",
    "http://[::1]:8/x", "http://h.test/a//b", "HTTP://H.test/x", "http://h.test\\x/y", " http://h.test/",
    "http://h.test\t/x", "http://", "http://h.test?/x#/", "ftp://h.test/x",
])
def test_origin_of_agrees_with_urlsplit(url):
    """origin_of cuts canonical URLs by hand (it is asked on every fetch); whatever the URL,
    it must give what scheme://netloc from urlsplit gives."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    assert robots_mod.origin_of(url) == f"{parts.scheme}://{parts.netloc}"
