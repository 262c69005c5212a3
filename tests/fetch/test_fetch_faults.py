"""One crawl through the CLI of a hostile local site: every misbehaviour in issue 3's
table, each on its own path, and every URL must end in exactly one record with the
right status or error.

The site is crawled once per engine (threads, async: the same server answers for both;
a crawl takes ~10 s, mostly the deadline of the dripping page); each test then checks
one property of that crawl, from the records and from what the server saw.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from crawler.demo.shop.server import HANG, RESET, Drip, Response, Site, SiteServer
from tests.conftest import assert_starts_apart, run_cli
from tests.fetch.conftest import ENGINES

H = "127.0.0.1"  # the fault rows
R = "127.0.0.2"  # robots.txt: Disallow: /private/, Crawl-delay: 0.5
OUTSIDE = "127.0.0.9"  # bound, but out of scope: nothing may reach it
CRAWL_DELAY = 0.5
TIMEOUT = 1.0
RETRIES = 1

SETTINGS = f"""
[crawl]
max_depth = 1
max_links_per_page = 5
[fetch]
concurrency = 16
per_host_concurrency = 8
per_host_delay = 0
timeout = {TIMEOUT}
retries = {RETRIES}
backoff = 0.05
max_crawl_delay = 5
[parse]
workers = 1
"""


def page(title: str, body: str = "") -> Response:
    return Response.html(f"<html><head><title>{title}</title></head><body>{body}</body></html>")


def first_then(first, then):
    """A handler answering ``first`` to the first request and ``then`` to every other."""
    calls = itertools.count()
    return lambda request: first if next(calls) == 0 else then


def links(*paths: str) -> str:
    return "".join(f'<a href="{p}">{p}</a> ' for p in paths)


def build_site(port_holder: dict) -> Site:
    site = Site()
    add = lambda path, response, host=H: site.add(host, path, response)  # noqa: E731

    add("/", page("home", links("/old")))
    add("/old", lambda request: Response.redirect(f"http://{H}:{port_holder['port']}/", 301))
    add("/flaky503", first_then(Response(503, b"busy"), page("recovered")))
    add("/always500", Response.html("<p>broken</p>", 500))
    add("/missing", Response.html("<p>gone</p>", 404))
    for i in range(1, 4):
        add(f"/chain/{i}", Response.redirect(f"/chain/{i + 1}" if i < 3 else "/chain/end", 301))
    add("/chain/end", page("end of chain"))
    add("/loop/a", Response.redirect("/loop/b"))
    add("/loop/b", Response.redirect("/loop/a"))
    for i in range(12):  # 12 hops from /long/0: more than max_redirects = 10
        add(f"/long/{i}", Response.redirect(f"/long/{i + 1}"))
    add("/long/12", page("too far"))
    add("/slow", Response(200, b"<title>late</title>", (("Content-Type", "text/html"),), delay=3 * TIMEOUT))
    add("/hang", HANG)
    add("/drip", Drip(200, b"<html>" + b"x" * 10_000, (("Content-Type", "text/html"),),
                      chunk_size=10, interval=TIMEOUT / 4))
    add("/reset-once", first_then(RESET, page("after reset")))
    add("/reset-always", RESET)
    add("/r429", first_then(Response(429, b"slow down", (("Retry-After", "1"),)), page("after 429")))
    add("/gbk", Response(200, '<html><head><meta charset="gbk"><title>中文标题</title></head>'
                              f'<body>{"x" * 50}</body></html>'.encode("gbk"),
                         (("Content-Type", "text/html"),)))
    add("/sjis", Response(200, f'<html><head><title>日本語のタイトル</title></head><body>{"x" * 50}'
                               '</body></html>'.encode("shift_jis"),
                          (("Content-Type", "text/html; charset=Shift_JIS"),)))
    add("/bom", Response(200, '<html><head><title>BOM ✓ ü</title></head><body></body></html>'.encode("utf-8-sig"),
                         (("Content-Type", "text/html"),)))
    add("/latin1", Response(200, f'<html><head><title>Crème brûlée</title></head><body>{"x" * 50}'
                                 '</body></html>'.encode("latin-1"),
                            (("Content-Type", "text/html; charset=iso-8859-1"),)))
    add("/doc.pdf", Response(200, b"%PDF-1.7\n<a href='/from-pdf'>x</a>\n%%EOF",
                             (("Content-Type", "application/pdf"),)))
    add("/junk", Response(200, b"<html><head><title>ok\x00 \xff\xfe title</title></head>"
                               b"<body>\x00\x00<a href='/after-junk'>a</a></body></html>",
                          (("Content-Type", "text/html; charset=utf-8"),)))
    add("/after-junk", page("after junk"))
    add("/binary", Response(200, random.Random(3).randbytes(20_000), (("Content-Type", "text/html"),)))
    add("/meta-nofollow", Response.html('<html><head><meta name="ROBOTS" content="NoFollow"><title>mn</title>'
                                        f'</head><body>{links("/nf/meta")}</body></html>'))
    add("/rel-nofollow", Response.html('<html><head><title>rn</title></head><body>'
                                       '<a rel="nofollow" href="/nf/rel">x</a> <a href="/nf/followed">y</a>'
                                       '</body></html>'))
    add("/noindex", Response.html('<html><head><meta name="robots" content="noindex"><title>ni</title>'
                                  f'</head><body>{links("/nf/from-noindex")}</body></html>'))
    for path in ("/nf/meta", "/nf/rel", "/nf/followed", "/nf/from-noindex", "/from-pdf"):
        add(path, page(path))
    add("/dup/1", Response.redirect("/dup/target", 301))
    add("/dup/2", Response.redirect("/dup/target", 301))
    add("/dup/target", page("dup target"))
    add("/many-links", page("many", links(*(f"/cap/{i}" for i in range(8)))))
    add("/long-link", page("long", links("/short", "/" + "x" * 3000)))
    add("/outside", lambda request: Response.redirect(f"http://{OUTSIDE}:{port_holder['port']}/x"))
    add("*", page("outside"), host=OUTSIDE)

    add("/robots.txt", Response(200, f"User-agent: *\nDisallow: /private/\nCrawl-delay: {CRAWL_DELAY}\n"
                                     "Sitemap: /sitemap.xml\n".encode(), (("Content-Type", "text/plain"),)),
        host=R)
    add("/", page("robots home", links("/public/1", "/public/2", "/private/a", "/private/b",
                                         "/public/moved")), host=R)
    add("/public/1", page("p1"), host=R)
    add("/public/2", page("p2"), host=R)
    add("/public/moved", Response.redirect("/private/c", 301), host=R)
    add("/private/a", page("secret"), host=R)
    add("/private/b", page("secret"), host=R)
    add("/private/c", page("secret"), host=R)
    return site


SEEDS_H = ["/", "/flaky503", "/always500", "/missing", "/chain/1", "/loop/a", "/long/0", "/slow",
           "/hang", "/drip", "/reset-once", "/reset-always", "/r429", "/gbk", "/sjis", "/bom", "/latin1",
           "/doc.pdf", "/junk", "/binary", "/meta-nofollow", "/rel-nofollow", "/noindex", "/dup/1",
           "/dup/2", "/outside", "/many-links", "/long-link"]


class Crawled:
    def __init__(self, server: SiteServer, run):
        self.server = server
        self.run = run
        self.records = run.records
        self.by_url = {r["url"]: r for r in run.records}

    def url(self, path: str, host: str = H) -> str:
        return self.server.url(host, path)

    def rec(self, path: str, host: str = H) -> dict:
        return self.by_url[self.url(path, host)]

    def hits(self, path: str, host: str = H) -> int:
        return self.server.hits(host, path)

    def starts(self, host: str, path: str | None = None) -> list[float]:
        return sorted(r.started for r in self.server.log if r.host == host and (path is None or r.path == path))


@pytest.fixture(scope="module", params=ENGINES)
def crawled(request, tmp_path_factory):
    port_holder: dict = {}
    site = build_site(port_holder)
    with SiteServer(site, [H, R, OUTSIDE]) as server:
        port_holder["port"] = server.port
        tmp = tmp_path_factory.mktemp("faults")
        seeds = [server.url(H, p) for p in SEEDS_H] + [server.url(R, "/")]
        (tmp / "seeds.txt").write_text("\n".join(seeds) + "\n")
        (tmp / "settings.toml").write_text(SETTINGS)
        run = run_cli("crawl", "-s", "seeds.txt", "-o", "out.jsonl", "-q", "--engine", request.param,
                      cwd=tmp, timeout=120,
                      output=tmp / "out.jsonl")
        assert run.code == 0, run.stderr
        yield Crawled(server, run)


def test_every_url_ends_in_exactly_one_record(crawled):
    counts = Counter(r["url"] for r in crawled.records)
    assert max(counts.values()) == 1
    expected = {crawled.url(p) for p in SEEDS_H} | {crawled.url(p, R) for p in
                                                   ("/", "/public/1", "/public/2", "/private/a",
                                                    "/private/b", "/public/moved")}
    expected |= {crawled.url(p) for p in ("/old", "/after-junk", "/nf/followed", "/nf/from-noindex", "/short",
                                          *(f"/cap/{i}" for i in range(5)))}
    assert set(counts) == expected


def test_a_503_then_200_is_recovered_on_the_second_attempt(crawled):
    r = crawled.rec("/flaky503")
    assert (r["status"], r["error"], r["attempts"], r["data"]["title"]) == (200, None, 2, "recovered")
    assert crawled.hits("/flaky503") == 2


def test_an_always_500_page_is_requested_retries_plus_one_times_and_recorded_as_an_error(crawled):
    r = crawled.rec("/always500")
    assert crawled.hits("/always500") == RETRIES + 1
    assert (r["status"], r["error"]["type"], r["attempts"]) == (500, "http", RETRIES + 1)


def test_a_404_is_requested_once_and_not_retried(crawled):
    r = crawled.rec("/missing")
    assert crawled.hits("/missing") == 1
    assert (r["status"], r["error"]["type"], r["attempts"]) == (404, "http", 1)


def test_a_301_chain_records_where_it_ended(crawled):
    r = crawled.rec("/chain/1")
    assert r["final_url"] == crawled.url("/chain/end")
    assert (r["status"], r["error"], r["attempts"], r["data"]["title"]) == (200, None, 1, "end of chain")


def test_a_redirect_loop_is_a_redirects_error(crawled):
    r = crawled.rec("/loop/a")
    assert r["error"]["type"] == "redirects" and "loop" in r["error"]["message"]
    assert crawled.hits("/loop/a") == 1 and crawled.hits("/loop/b") == 1


def test_more_hops_than_max_redirects_is_a_redirects_error(crawled):
    r = crawled.rec("/long/0")
    assert r["error"]["type"] == "redirects"
    assert crawled.hits("/long/10") == 1 and crawled.hits("/long/11") == 0  # 10 hops followed, no more


def test_a_response_slower_than_the_timeout_is_a_timeout_error_within_the_timeouts(crawled):
    r = crawled.rec("/slow")
    assert r["error"]["type"] == "timeout"
    assert crawled.hits("/slow") == RETRIES + 1
    # each attempt gave up after the read timeout, before the answer 3 timeouts later
    assert r["elapsed_ms"] < (RETRIES + 1) * 3 * TIMEOUT * 1000 - 1000


def test_a_server_that_never_answers_is_a_timeout_error(crawled):
    r = crawled.rec("/hang")
    assert r["error"]["type"] == "timeout" and crawled.hits("/hang") == RETRIES + 1


def test_a_dripping_body_is_cut_off_at_the_deadline(crawled):
    r = crawled.rec("/drip")
    deadline = 4 * TIMEOUT  # each read succeeds; only the per-request deadline stops it
    assert r["error"]["type"] == "timeout" and "deadline" in r["error"]["message"]
    assert crawled.hits("/drip") == RETRIES + 1
    assert (RETRIES + 1) * deadline * 1000 <= r["elapsed_ms"] < ((RETRIES + 1) * deadline + 3) * 1000


def test_a_connection_reset_on_the_first_request_is_recovered(crawled):
    r = crawled.rec("/reset-once")
    assert (r["status"], r["error"], r["attempts"]) == (200, None, 2)


def test_a_connection_reset_every_time_is_a_connection_error_after_all_attempts(crawled):
    r = crawled.rec("/reset-always")
    assert r["error"]["type"] == "connection" and r["attempts"] == RETRIES + 1
    assert crawled.hits("/reset-always") == RETRIES + 1


def test_429_with_retry_after_1_delays_the_second_attempt_by_at_least_1s(crawled):
    first, second = crawled.starts(H, "/r429")
    assert second - first >= 1.0
    r = crawled.rec("/r429")
    assert (r["status"], r["error"], r["attempts"]) == (200, None, 2)


@pytest.mark.parametrize("path,title", [("/gbk", "中文标题"), ("/sjis", "日本語のタイトル"),
                                        ("/bom", "BOM ✓ ü"), ("/latin1", "Crème brûlée")])
def test_titles_decode_right_whatever_the_encoding_and_where_it_is_declared(crawled, path, title):
    assert crawled.rec(path)["data"]["title"] == title


def test_a_pdf_is_recorded_but_not_parsed(crawled):
    r = crawled.rec("/doc.pdf")
    assert (r["status"], r["error"], r["content_type"], r["rule"], r["data"], r["links"]) == \
        (200, None, "application/pdf", None, {}, 0)
    assert r["bytes"] > 0 and crawled.hits("/from-pdf") == 0


def test_markup_with_nul_and_invalid_utf8_bytes_is_parsed(crawled):
    r = crawled.rec("/junk")
    assert r["error"] is None and r["data"]["title"].startswith("ok")
    assert crawled.hits("/after-junk") == 1  # its link was extracted and followed


def test_binary_junk_served_as_html_still_makes_one_record(crawled):
    r = crawled.rec("/binary")
    assert r["status"] == 200 and r["bytes"] == 20_000 and (r["error"] is None or r["error"]["type"] == "parse")


def test_robots_txt_disallowed_urls_are_recorded_and_never_requested(crawled):
    for path in ("/private/a", "/private/b"):
        r = crawled.rec(path, R)
        assert (r["error"]["type"], r["status"], r["attempts"]) == ("robots", None, 0)
    assert crawled.server.hits(R) == sum(crawled.hits(p, R) for p in
                                         ("/robots.txt", "/", "/public/1", "/public/2", "/public/moved"))
    assert all(crawled.hits(p, R) == 0 for p in ("/private/a", "/private/b", "/private/c"))


def test_a_redirect_into_a_disallowed_path_is_a_robots_error_and_the_hop_is_never_requested(crawled):
    r = crawled.rec("/public/moved", R)
    assert r["error"]["type"] == "robots" and crawled.hits("/private/c", R) == 0


def test_robots_txt_is_fetched_once_per_host(crawled):
    assert crawled.hits("/robots.txt", R) == 1
    assert crawled.hits("/robots.txt", H) == 1  # a 404: everything allowed


def test_crawl_delay_separates_every_request_start_to_the_host(crawled):
    starts = crawled.starts(R)
    assert len(starts) == 5  # robots.txt, /, /public/1, /public/2, /public/moved
    assert_starts_apart(starts, CRAWL_DELAY)


def test_meta_robots_nofollow_and_rel_nofollow_links_are_not_followed(crawled):
    assert crawled.hits("/nf/meta") == 0 and crawled.hits("/nf/rel") == 0
    assert crawled.hits("/nf/followed") == 1


def test_meta_robots_noindex_drops_the_data_but_still_follows_links(crawled):
    r = crawled.rec("/noindex")
    assert (r["status"], r["rule"], r["data"]) == (200, None, {})
    assert crawled.hits("/nf/from-noindex") == 1


def test_two_redirects_to_one_target_fetch_it_once(crawled):
    assert crawled.hits("/dup/target") == 1
    one, two = crawled.rec("/dup/1"), crawled.rec("/dup/2")
    assert {one["final_url"], two["final_url"]} == {crawled.url("/dup/target")}
    assert sorted([one["status"], two["status"]]) == [200, 301]  # one fetched it, one ended at the 301
    assert one["error"] is None and two["error"] is None


def test_a_redirect_to_a_url_already_fetched_ends_at_the_redirect(crawled):
    r = crawled.rec("/old")
    assert (r["status"], r["final_url"], r["error"], r["bytes"]) == (301, crawled.url("/"), None, 0)
    assert crawled.hits("/") == 1


def test_a_redirect_out_of_scope_is_a_redirects_error_and_never_followed(crawled):
    r = crawled.rec("/outside")
    assert r["error"]["type"] == "redirects" and "scope" in r["error"]["message"]
    assert crawled.server.hits(OUTSIDE) == 0


def test_no_more_than_max_links_per_page_are_followed(crawled):
    assert crawled.rec("/many-links")["links"] == 5
    assert sum(crawled.hits(f"/cap/{i}") for i in range(8)) == 5


def test_links_longer_than_max_url_length_are_not_followed(crawled):
    assert crawled.hits("/short") == 1  # the page's other link was read
    assert max(len(r.path) for r in crawled.server.log) < 2048
