"""Crawl-level wiring of sitemaps and of redirect-target dedup against the frontier."""

from __future__ import annotations

from crawler.demo.shop.server import Response, Site
from tests.helpers import records_by_url

FAST = "[crawl]\nmax_depth = -1\n[fetch]\nper_host_delay = 0\nper_host_concurrency = 2\nconcurrency = 4\n"


def test_sitemaps_true_adds_the_sitemap_urls_as_start_urls(serve, cli):
    site = Site()
    server = serve(site, ["127.0.0.1"])
    base = server.url("127.0.0.1", "/").rstrip("/")
    site.add("127.0.0.1", "/robots.txt", Response(200, f"User-agent: *\nSitemap: {base}/sm.xml\n".encode()))
    locs = "".join(f"<url><loc>{base}/only-in-sitemap/{i}</loc></url>" for i in range(5))
    site.add("127.0.0.1", "/sm.xml", Response(200, f'<?xml version="1.0"?><urlset>{locs}</urlset>'.encode(),
                                               (("Content-Type", "application/xml"),)))
    site.add("127.0.0.1", "/", Response.html("<html><title>home</title></html>"))
    for i in range(5):
        site.add("127.0.0.1", f"/only-in-sitemap/{i}", Response.html(f"<html><title>s{i}</title></html>"))
    run = cli("crawl", base + "/", "-o", "out.jsonl", "-q",
              settings=FAST.replace("max_depth = -1", "max_depth = -1\nsitemaps = true"))
    assert run.code == 0, run.stderr
    urls = sorted(r["url"] for r in run.records)
    assert urls == sorted([base + "/"] + [f"{base}/only-in-sitemap/{i}" for i in range(5)])
    assert all(r["depth"] == 0 for r in run.records)


def test_sitemaps_off_by_default(serve, cli):
    site = Site()
    server = serve(site, ["127.0.0.1"])
    site.add("127.0.0.1", "/", Response.html("<html><title>home</title></html>"))
    run = cli("crawl", server.url("127.0.0.1", "/"), "-o", "out.jsonl", "-q", settings=FAST)
    assert run.code == 0 and len(run.records) == 1
    assert server.hits("127.0.0.1", "/sitemap.xml") == 0


def test_a_redirect_target_that_is_also_linked_is_fetched_once(serve, cli):
    site = Site()
    server = serve(site, ["127.0.0.1"])
    # the index links the old URL (which redirects) and, later, the target itself
    links = '<a href="/old">old</a>' + "".join(f'<a href="/p/{i}">p</a>' for i in range(20)) + '<a href="/new">new</a>'
    site.add("127.0.0.1", "/", Response.html(f"<html><title>home</title>{links}</html>"))
    site.add("127.0.0.1", "/old", Response.redirect(server.url("127.0.0.1", "/new"), 301))
    site.add("127.0.0.1", "/new", Response.html("<html><title>new</title></html>"))
    for i in range(20):
        site.add("127.0.0.1", f"/p/{i}", Response.html(f"<html><title>{i}</title></html>"))
    run = cli("crawl", server.url("127.0.0.1", "/"), "-o", "out.jsonl", "-q", settings=FAST)
    assert run.code == 0, run.stderr
    assert server.hits("127.0.0.1", "/new") == 1
    by_url = records_by_url(run.records)
    old, new = server.url("127.0.0.1", "/old"), server.url("127.0.0.1", "/new")
    assert old in by_url and by_url[old]["final_url"] == new
    assert len(run.records) == 23 - (new not in by_url)  # /new has its own record only if fetched directly
