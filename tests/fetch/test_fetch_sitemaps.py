"""Sitemaps: start URLs from robots.txt Sitemap: lines, nested indexes, gzip, limits."""

from __future__ import annotations

import gzip
import threading
import time

import orjson

from crawler.api import crawl
from crawler.fetch.policy import FetchPolicy
from crawler.fetch.requests_engine import RequestsFetcher
from crawler.fetch.guard import AddressGuard
from crawler.messages import FetchJob
from crawler.engine.hosts import HostScheduler
from crawler.fetch.robots import RobotsCache, origin_of
from crawler.demo.shop.server import Response, Site, SiteServer
from crawler.settings import load_settings
from crawler.fetch.sitemaps import discover, parse, polite_fetch
from crawler.urls import Scope

H = "127.0.0.1"
NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(*locs: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><urlset {NS}>'
            + "".join(f"<url><loc> {loc} </loc><lastmod>2026-01-01</lastmod></url>" for loc in locs)
            + "</urlset>").encode()


def index(*locs: str) -> bytes:
    return (f'<?xml version="1.0"?><sitemapindex {NS}>'
            + "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs) + "</sitemapindex>").encode()


def xml(body: bytes) -> Response:
    return Response(200, body, (("Content-Type", "application/xml"),))


def test_parse_reads_urlsets_indexes_and_text_sitemaps():
    assert parse(urlset("http://a.test/1", "http://a.test/2")) == ("urlset", ["http://a.test/1", "http://a.test/2"])
    assert parse(index("http://a.test/s1.xml")) == ("sitemapindex", ["http://a.test/s1.xml"])
    assert parse(b"http://a.test/1\n\nnot a url\nhttps://a.test/2\n") == \
        ("text", ["http://a.test/1", "https://a.test/2"])


def test_parse_resolves_no_entities_and_survives_broken_xml():
    xxe = (b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
           b'<urlset><url><loc>http://a.test/&e;</loc></url></urlset>')
    kind, locs = parse(xxe)
    assert not any("root:" in loc for loc in locs)
    kind, locs = parse(urlset("http://a.test/1")[:-20] + b"\x00<<garbage")
    assert locs == ["http://a.test/1"]


def crawl_parts(server: SiteServer, scheduler=None):
    settings = load_settings(None, {"fetch.timeout": 2, "crawl.allowed_domains": [H]})
    scope = Scope.from_settings(settings, [server.url(H)]).compile()
    fetcher = RequestsFetcher(FetchPolicy(settings.fetch, "test-agent", scheduler=scheduler, scope=scope),
                              AddressGuard(allow_private=False, trusted_hosts={H}))
    robots = RobotsCache("test-agent", fetcher.fetch_robots)
    fetch = polite_fetch(fetcher, max_bytes=settings.fetch.max_bytes)
    return fetch, (lambda origin: robots.sitemaps(origin + "/")), scope.allows


def test_discover_follows_robots_sitemaps_through_nested_gzip_indexes(serve):
    site = Site()
    server = serve(site, [H, "127.0.0.2"])
    u = server.url
    site.add(H, "/robots.txt", Response(200, f"User-agent: *\nSitemap: {u(H, '/index.xml')}\n".encode(),
                                        (("Content-Type", "text/plain"),)))
    site.add(H, "/index.xml", xml(index(u(H, "/sub-index.xml"), u(H, "/a.xml.gz"), u(H, "/index.xml"),
                                        u("127.0.0.2", "/elsewhere.xml"))))
    site.add(H, "/sub-index.xml", xml(index("/b.xml", "/moved.xml")))
    site.add(H, "/a.xml.gz", Response(200, gzip.compress(urlset(u(H, "/p/1"), u(H, "/p/2#frag"))),
                                      (("Content-Type", "application/x-gzip"),)))
    site.add(H, "/b.xml", xml(urlset(u(H, "/p/2"), u(H, "/p/3"), u("127.0.0.2", "/out-of-scope"),
                                     "mailto:x@example.com")))
    site.add(H, "/moved.xml", Response.redirect("/c.txt"))
    site.add(H, "/c.txt", Response(200, f"{u(H, '/p/4')}\n".encode(), (("Content-Type", "text/plain"),)))
    fetch, robots_sitemaps, allows = crawl_parts(server)
    found = list(discover([origin_of(u(H))], fetch, robots_sitemaps, allows, limit=100, max_bytes=1 << 20))
    assert sorted(found) == [u(H, f"/p/{i}") for i in (1, 2, 3, 4)]
    assert server.hits(H, "/index.xml") == 1  # listed in itself: read once
    assert server.hits("127.0.0.2") == 0  # an index entry out of scope is not fetched


def test_discover_falls_back_to_sitemap_xml_and_stops_at_the_limit(serve):
    site = Site()
    server = serve(site, [H])
    site.add(H, "/sitemap.xml", xml(urlset(*(server.url(H, f"/p/{i}") for i in range(50)))))
    fetch, robots_sitemaps, allows = crawl_parts(server)
    found = list(discover([origin_of(server.url(H))], fetch, robots_sitemaps, allows, limit=10,
                          max_bytes=1 << 20))
    assert found == [server.url(H, f"/p/{i}") for i in range(10)]


def test_sitemap_requests_take_their_turn_with_the_hosts_pages(serve):
    site = Site()
    server = serve(site, [H])
    site.add(H, "/sitemap.xml", xml(urlset(server.url(H, "/p/1"))))
    scheduler = HostScheduler(1, 0.5)
    page = FetchJob(id=1, url=server.url(H, "/p/0"), host=H, depth=0)
    scheduler.offer([page])
    page_started = time.monotonic()
    assert scheduler.try_next()[0] is page  # a page request holds the host's one slot
    fetch, robots_sitemaps, allows = crawl_parts(server, scheduler)
    got = []
    t = threading.Thread(target=lambda: got.append(fetch(server.url(H, "/sitemap.xml"))))
    t.start()
    time.sleep(0.2)
    assert got == [] and server.hits(H, "/sitemap.xml") == 0  # waits for the slot
    released = time.monotonic()
    scheduler.done(page)
    t.join(5)
    assert got and got[0].startswith(b"<?xml")
    (request,) = [r for r in server.log if r.path == "/sitemap.xml"]
    assert request.started >= released  # it waited for the slot
    assert request.started - page_started >= 0.5  # and for the delay since the page started


def test_sitemap_redirects_are_checked_by_the_scope_and_robots_txt_like_any_other(serve, tmp_path, engine_name):
    """Issue 11 #8: a sitemap that redirects out of scope, or into a path robots.txt
    disallows, is not followed there (on either engine)."""
    out_host = "127.0.0.9"  # bound, but out of scope
    site = Site()
    server = serve(site, [H, out_host])
    u = server.url
    site.add(H, "/robots.txt", Response(200, (f"User-agent: *\nDisallow: /private/\n"
                                              f"Sitemap: {u(H, '/to-outside.xml')}\n"
                                              f"Sitemap: {u(H, '/to-private.xml')}\n"
                                              f"Sitemap: {u(H, '/plain.xml')}\n").encode(),
                                        (("Content-Type", "text/plain"),)))
    site.add(H, "/to-outside.xml", Response.redirect(u(out_host, "/sitemap.xml")))
    site.add(H, "/to-private.xml", Response.redirect("/private/sitemap.xml"))
    site.add(H, "/plain.xml", xml(urlset(u(H, "/p/listed"))))
    site.add(H, "/private/sitemap.xml", xml(urlset(u(H, "/p/from-private"))))
    site.add(out_host, "/sitemap.xml", xml(urlset(u(H, "/p/from-outside"))))
    site.add(H, "*", Response.html("<html><head><title>page</title></head><body></body></html>"))
    out = tmp_path / "out.jsonl"
    crawl([u(H, "/")], output=out, max_depth=0, per_host_delay=0, timeout=2, workers=1, sitemaps=True,
          engine=engine_name, handle_signals=False)
    urls = {orjson.loads(line)["url"] for line in out.read_bytes().splitlines()}
    assert urls == {u(H, "/"), u(H, "/p/listed")}
    assert server.hits(out_host) == 0
    assert server.hits(H, "/private/sitemap.xml") == 0
