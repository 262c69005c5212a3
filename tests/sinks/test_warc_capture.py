"""[output] warc: every HTTP exchange as WARC/1.1, committed with the JSON lines; and
`crawler extract` over that WARC gives the crawl's records back."""

from __future__ import annotations

import base64
import hashlib
import time
from collections import Counter

import pytest
from warcio.archiveiterator import ArchiveIterator

from crawler.demo.shop.server import Response, Site
from tests.conftest import read_records

FAST = "[crawl]\nmax_depth = -1\n[fetch]\nconcurrency = 8\nper_host_concurrency = 2\nper_host_delay = 0\n"
WARC = '[output]\nwarc = "out.warc.gz"\n'


def sha1(body: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(body).digest()).decode()


def warc_records(path) -> list[tuple[str, str | None, int | None, str | None, bytes]]:
    """(type, target URI, HTTP status, payload digest, payload) of every record, digests checked."""
    out = []
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, check_digests="raise"):
            status = int(rec.http_headers.get_statuscode()) if rec.http_headers and rec.rec_type != "request" else None
            out.append((rec.rec_type, rec.rec_headers.get_header("WARC-Target-URI"), status,
                        rec.rec_headers.get_header("WARC-Payload-Digest"), rec.content_stream().read()))
    return out


def served_body(site: Site, url: str) -> bytes:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return site.routes()[(parts.hostname, parts.path)].body


@pytest.mark.parametrize("engine", ["threads", "async"])
def test_warc_holds_one_response_per_fetched_url_with_matching_digests(shop, cli, tmp_path, engine):
    served = shop(150, hosts=2)
    catalog = served.catalog
    run = cli("crawl", *catalog.seeds, "-o", "out.jsonl", "-q", "--engine", engine,
              settings=FAST + catalog.rules_toml + WARC)
    assert run.code == 0, run.stderr
    assert sorted(r["url"] for r in run.records) == sorted(catalog.expected)
    recs = warc_records(tmp_path / "out.warc.gz")
    assert recs[0][0] == "warcinfo" and sum(r[0] == "warcinfo" for r in recs) == 1
    responses = Counter(uri for kind, uri, *_ in recs if kind == "response")
    assert responses == Counter(list(catalog.expected) + [f"http://{h}:{catalog.port}/robots.txt"
                                                          for h in catalog.hosts])
    assert Counter(uri for kind, uri, *_ in recs if kind == "request") == responses
    for kind, uri, status, digest, payload in recs:
        if kind == "response" and not uri.endswith("/robots.txt"):
            body = served_body(catalog.site, uri)
            assert (status, digest, payload) == (200, sha1(body), body)
    assert sorted(uri for kind, uri, *_ in recs if kind == "metadata") == sorted(catalog.expected)


def test_extract_over_the_crawl_warc_gives_the_crawl_records_in_a_fraction_of_the_time(shop, cli, tmp_path):
    served = shop(300, hosts=2)
    catalog = served.catalog
    # a polite crawl (a small delay per host: at least 6 s here), as crawls are
    settings = FAST.replace("per_host_delay = 0", "per_host_delay = 0.02") + catalog.rules_toml + WARC
    started = time.monotonic()
    crawl = cli("crawl", *catalog.seeds, "-o", "out.jsonl", "-q", settings=settings)
    crawl_s = time.monotonic() - started
    assert crawl.code == 0, crawl.stderr
    started = time.monotonic()
    run = cli("extract", "out.warc.gz", "-o", "extract.jsonl", settings=settings)
    extract_s = time.monotonic() - started
    assert run.code == 0, run.stderr
    assert f"extracted {len(crawl.records)} pages ({len(crawl.records)} ok, 0 errors)" in run.stderr
    again = read_records(tmp_path / "extract.jsonl")
    keys = ("url", "final_url", "status", "rule", "data", "links", "depth", "referrer", "fetched_at")
    assert sorted(tuple(str(r[k]) for k in keys) for r in again) == \
        sorted(tuple(str(r[k]) for k in keys) for r in crawl.records)
    assert {r["crawl_id"] for r in again} != {r["crawl_id"] for r in crawl.records}
    print(f"crawl {crawl_s:.2f}s, extract {extract_s:.2f}s")
    assert extract_s < crawl_s


def test_redirects_and_robots_are_captured_and_extract_follows_them(serve, cli, tmp_path):
    site = Site()
    server = serve(site, ["127.0.0.1"])
    url = lambda path: server.url("127.0.0.1", path)  # noqa: E731
    site.add("127.0.0.1", "/robots.txt", Response(200, b"User-agent: *\nDisallow: /private\n",
                                                   (("Content-Type", "text/plain"),)))
    site.add("127.0.0.1", "/", Response.html('<html><title>home</title><a href="/old">o</a>'
                                             '<a href="/private">p</a><a href="/missing">m</a></html>'))
    site.add("127.0.0.1", "/old", Response.redirect(url("/new"), 301))
    site.add("127.0.0.1", "/new", Response.html("<html><title>new home</title></html>"))
    site.add("127.0.0.1", "/missing", Response.html("<html><title>gone</title></html>", status=404))
    settings = FAST + WARC
    crawl = cli("crawl", url("/"), "-o", "out.jsonl", "-q", settings=settings)
    assert crawl.code == 0, crawl.stderr
    by_url = {r["url"]: r for r in crawl.records}
    assert by_url[url("/old")]["final_url"] == url("/new")
    assert by_url[url("/private")]["error"]["type"] == "robots"
    recs = warc_records(tmp_path / "out.warc.gz")
    responses = [(uri, status) for kind, uri, status, *_ in recs if kind == "response"]
    assert sorted(responses) == sorted([(url("/robots.txt"), 200), (url("/"), 200), (url("/old"), 301),
                                        (url("/new"), 200), (url("/missing"), 404)])
    run = cli("extract", "out.warc.gz", "-o", "extract.jsonl", "-q", settings=settings)
    assert run.code == 0, run.stderr
    again = {r["url"]: r for r in read_records(tmp_path / "extract.jsonl")}
    # every record that had a response comes back the same; the robots-denied one had none
    assert sorted(again) == sorted(set(by_url) - {url("/private")})
    for u, r in again.items():
        assert (r["final_url"], r["status"], r["rule"], r["data"], r["error"]) == \
            (by_url[u]["final_url"], by_url[u]["status"], by_url[u]["rule"], by_url[u]["data"], by_url[u]["error"])


def test_a_recrawl_stores_304_answers_as_revisit_records(serve, cli, tmp_path):
    pages = {"/": '<html><title>home</title><a href="/a">a</a><a href="/b">b</a></html>',
             "/a": "<html><title>a</title></html>", "/b": "<html><title>b</title></html>"}

    def handle(request) -> Response:
        body = pages.get(request.path)
        if body is None:
            return Response(404, b"")
        etag = '"' + hashlib.md5(body.encode()).hexdigest() + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(304, b"", (("ETag", etag),))
        return Response.html(body, headers=(("ETag", etag),))

    site = Site()
    site.add("127.0.0.1", "*", handle)
    server = serve(site, ["127.0.0.1"])
    settings = FAST + WARC
    assert cli("crawl", server.url("127.0.0.1", "/"), "-o", "out.jsonl", "-q", settings=settings).code == 0
    pages["/b"] = "<html><title>b, changed</title></html>"
    second = cli("crawl", "--recrawl", server.url("127.0.0.1", "/"), "-o", "out.jsonl", "-q", settings=settings)
    assert second.code == 0, second.stderr
    statuses = {(r["url"].removeprefix(server.url("127.0.0.1", "/")[:-1]), r["status"]) for r in second.records}
    assert {("/", 304), ("/a", 304), ("/b", 200)} <= statuses
    with open(tmp_path / "out.warc.gz", "rb") as f:
        revisits = [(rec.rec_headers.get_header("WARC-Target-URI"), rec.rec_headers.get_header("WARC-Profile"),
                     rec.http_headers.get_statuscode()) for rec in ArchiveIterator(f) if rec.rec_type == "revisit"]
    profile = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"
    assert sorted(revisits) == [(server.url("127.0.0.1", "/"), profile, "304"),
                                (server.url("127.0.0.1", "/a"), profile, "304")]
    recs = warc_records(tmp_path / "out.warc.gz")
    assert [uri for kind, uri, *_ in recs if kind == "response" and uri.endswith("/b")] == \
        [server.url("127.0.0.1", "/b")] * 2  # the first crawl's and the changed one


def test_fresh_starts_the_warc_over_with_the_output(serve, cli, tmp_path):
    site = Site()
    server = serve(site, ["127.0.0.1"])
    site.add("127.0.0.1", "/", Response.html('<html><title>home</title><a href="/a">a</a></html>'))
    site.add("127.0.0.1", "/a", Response.html("<html><title>a</title></html>"))
    for extra in ((), ("--fresh",)):
        run = cli("crawl", server.url("127.0.0.1", "/"), "-o", "out.jsonl", "-q", *extra, settings=FAST + WARC)
        assert run.code == 0, run.stderr
    recs = warc_records(tmp_path / "out.warc.gz")
    assert [kind for kind, *_ in recs].count("warcinfo") == 1
    assert sorted(uri for kind, uri, *_ in recs if kind == "metadata") == sorted(r["url"] for r in run.records)
    offsets = (tmp_path / "out.warc.gz.offsets").read_text().split()
    assert int(offsets[-2]) == (tmp_path / "out.jsonl").stat().st_size
    assert int(offsets[-1]) == (tmp_path / "out.warc.gz").stat().st_size


def test_a_warc_path_equal_to_the_output_exits_2_naming_the_key(cli, tmp_path):
    run = cli("crawl", "http://127.0.0.1:9/", "-o", "out.jsonl", settings='[output]\nwarc = "out.jsonl"\n')
    assert run.code == 2
    assert run.stderr.strip().endswith("[output] warc: 'out.jsonl' is the JSON-lines output itself")
