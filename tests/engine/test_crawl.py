"""End-to-end crawls through the CLI against the generated catalog site."""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlsplit

import pytest
from lxml import html as lxml_html

from crawler.demo.shop.catalog import canonical_url
from crawler.demo.shop.server import Response, Site
from tests.conftest import FAST
from tests.helpers import write_seeds  # also imported from here by tests/fetch


def link_graph(served) -> dict[str, list[str]]:
    """In-scope links of every page, computed from the served bodies (not by the crawler)."""
    catalog = served.catalog
    graph = {}
    for url in catalog.expected:
        parts = urlsplit(url)
        body = catalog.site.get(parts.hostname, parts.path).body
        tree = lxml_html.fromstring(body)
        base = tree.xpath("//base/@href")
        links = []
        for href in tree.xpath("//a/@href | //area/@href"):
            target = canonical_url(base[0] if base else url, href)
            if target in catalog.expected:
                links.append(target)
        graph[url] = links
    return graph


def shortest_depths(served) -> dict[str, int]:
    graph = link_graph(served)
    depth = {seed: 0 for seed in served.catalog.seeds}
    frontier = list(served.catalog.seeds)
    while frontier:
        nxt = []
        for url in frontier:
            for link in graph[url]:
                if link not in depth:
                    depth[link] = depth[url] + 1
                    nxt.append(link)
        frontier = nxt
    return depth


def test_crawl_of_four_hosts_writes_one_correct_record_per_page(shop, cli, tmp_path):
    served = shop(1000, hosts=4)
    catalog = served.catalog
    write_seeds(tmp_path, catalog.seeds)
    run = cli("crawl", "-s", "seeds.txt", "-o", "out.jsonl", "-q",
              settings=FAST + catalog.rules_toml, timeout=300)
    assert run.code == 0, run.stderr
    urls = Counter(r["url"] for r in run.records)
    assert len(catalog.expected) == 4000
    assert set(urls) == set(catalog.expected), "exactly the reachable pages, nothing outside scope"
    assert max(urls.values()) == 1, "one record per page"
    wrong = [r["url"] for r in run.records if r["data"] != catalog.expected[r["url"]]]
    assert wrong == [], f"{len(wrong)} records with wrong fields, e.g. {wrong[:3]}"
    assert all(r["error"] is None and r["status"] == 200 for r in run.records)
    server = served.server
    assert server.hits(host=catalog.out_of_scope_host) == 0
    for url in catalog.expected:
        parts = urlsplit(url)
        assert server.hits(parts.hostname, parts.path) == 1, f"{url} fetched more than once"
    assert all(server.hits(h, "/robots.txt") == 1 for h in catalog.hosts)
    assert server.hits() == 4000 + 4


def test_max_depth_is_honoured_exactly(shop, cli, tmp_path):
    served = shop(300, hosts=2)
    write_seeds(tmp_path, served.catalog.seeds)
    depths = shortest_depths(served)
    run = cli("crawl", "-s", "seeds.txt", "-o", "out.jsonl", "-q", "--max-depth", "1",
              settings=FAST + served.catalog.rules_toml)
    assert run.code == 0, run.stderr
    expected = {u for u, d in depths.items() if d <= 1}
    assert {r["url"]: r["depth"] for r in run.records} == {u: depths[u] for u in expected}
    assert served.server.hits() == len(expected) + 2  # + robots.txt per host


def test_max_depth_zero_fetches_only_the_seeds(shop, cli, tmp_path):
    served = shop(50, hosts=2)
    write_seeds(tmp_path, served.catalog.seeds)
    run = cli("crawl", "-s", "seeds.txt", "-o", "out.jsonl", "-q", "--max-depth", "0",
              settings=FAST + served.catalog.rules_toml)
    assert sorted(r["url"] for r in run.records) == sorted(served.catalog.seeds)


@pytest.mark.parametrize("engine", ["threads", "async"])
def test_max_pages_is_honoured_exactly(shop, cli, tmp_path, engine):
    served = shop(300, hosts=3)
    write_seeds(tmp_path, served.catalog.seeds)
    run = cli("crawl", "-s", "seeds.txt", "-o", "out.jsonl", "-q", "--max-pages", "57", "--engine", engine,
              settings=FAST + served.catalog.rules_toml)
    assert run.code == 0, run.stderr
    assert len(run.records) == 57
    assert len({r["url"] for r in run.records}) == 57
    robots = sum(served.server.hits(h, "/robots.txt") for h in served.catalog.hosts)
    assert served.server.hits() - robots == 57


def test_cli_flags_override_settings_file(shop, cli, tmp_path):
    served = shop(50, hosts=1)
    settings = FAST.replace("max_depth = -1", "max_depth = 0\nmax_pages = 1") + served.catalog.rules_toml
    run = cli("crawl", served.catalog.seeds[0], "-o", "out.jsonl", "-q", "--max-pages", "5",
              "--max-depth", "-1", settings=settings)
    assert run.code == 0, run.stderr
    assert len(run.records) == 5


def ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here; tests/test_urls.py covers the scope")
@pytest.mark.parametrize("engine", ["threads", "async"])
def test_an_ipv6_seed_follows_its_own_links(serve, cli, engine):
    """Issue 11 #4: with a seed on [::1], the seed's links are in scope and crawled."""
    site = Site()
    links = "".join(f'<a href="/p/{i}">{i}</a>' for i in range(3))
    site.add("::1", "/", Response.html(f"<html><title>home</title>{links}</html>"))
    for i in range(3):
        site.add("::1", f"/p/{i}", Response.html(f"<html><title>page {i}</title></html>"))
    server = serve(site, ["::1"])
    run = cli("crawl", server.url("::1"), "-o", "out.jsonl",
              settings=FAST + f"engine = \"{engine}\"\n")
    assert run.code == 0, run.stderr
    expected = {server.url("::1")} | {server.url("::1", f"/p/{i}") for i in range(3)}
    assert {r["url"] for r in run.records} == expected
    assert len(run.records) == 4
    assert all(r["status"] == 200 for r in run.records)
    assert server.hits("::1", "/p/0") == 1
