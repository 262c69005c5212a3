"""[[fetch.hosts]] per-host rules through the CLI (issue 11, part 2): a matching host gets
its own concurrency, delay, User-Agent and headers, measured at the server; the first
matching table wins; a bad table exits 2 naming it, before anything is fetched."""

from __future__ import annotations

import pytest

from crawler.demo.shop.server import Site
from crawler.hostrules import HostRules, build_host_rules
from tests.conftest import FAST
from tests.engine.test_throttle import records_of
from tests.fetch.test_transports import page

A, B = "127.0.0.1", "127.0.0.2"
PAGES = 12

RULES = """
[[fetch.hosts]]
match = "127.0.0.2"
concurrency = 1
delay = 0.3
user_agent = "special-agent/1.0"
headers = { "X-Team" = "crawl", "Accept-Language" = "de" }

[[fetch.hosts]]
match = "127.0.0.*"
user_agent = "never-used-for-.2"
"""


def two_slow_hosts() -> Site:
    site = Site()
    links = "".join(f'<a href="/p/{i}">{i}</a>' for i in range(PAGES))
    for host in (A, B):
        site.add(host, "/", page("index", links))
        site.add(host, "*", page("p", delay=0.2))
    return site


def crawl_settings(engine: str, backend: str, request) -> str:
    toml = FAST.replace("[fetch]\n", f'[fetch]\nengine = "{engine}"\n') + "[parse]\nworkers = 1\n"
    if backend == "redis":
        toml += f'[state]\nbackend = "redis"\nredis_url = "{request.getfixturevalue("redis_server").url}"\n'
        return toml + RULES.replace("concurrency = 1\n", "")
    return toml + RULES


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
@pytest.mark.parametrize("engine", ["threads", "async"])
def test_a_matching_host_gets_its_own_limits_agent_and_headers_at_the_server(
        serve, cli, request, tmp_path, engine, backend):
    server = serve(two_slow_hosts(), [A, B])
    run = cli("crawl", server.url(A), server.url(B), "-o", "out.jsonl", "-q",
              settings=crawl_settings(engine, backend, request))
    assert run.code == 0, run.stderr
    records = records_of(run, tmp_path)
    assert len(records) == 2 * (PAGES + 1) and all(r["error"] is None for r in records)
    log = server.log
    on_b = [r for r in log if r.host == B]
    starts = sorted(r.started for r in on_b)
    gaps = [y - x for x, y in zip(starts, starts[1:])]
    assert min(gaps) >= 0.9 * 0.3, [round(g, 3) for g in gaps]  # its delay, where [fetch] has 0
    assert {r.headers.get("user-agent") for r in on_b} == {"special-agent/1.0"}  # robots.txt too
    assert all(r.headers.get("x-team") == "crawl" and r.headers.get("accept-language") == "de" for r in on_b)
    on_a = [r for r in log if r.host == A]
    assert {r.headers.get("user-agent") for r in on_a} == {"never-used-for-.2"}  # the second table
    assert not any("x-team" in r.headers for r in on_a)
    if backend == "sqlite":  # [[fetch.hosts]] concurrency is refused with Redis (see below)
        assert server.max_in_flight(B) == 1
        assert server.max_in_flight(A) > 1, "the defaults (per_host_concurrency = 4) still apply to A"


@pytest.mark.parametrize("table, message", [
    ('match = "*.example.com"\ndelai = 1\n', '[[fetch.hosts]] #2 (match = "*.example.com"): delai: unknown key '
                                             '(did you mean "delay"?)'),
    ('match = "https://example.com/"\ndelay = 1\n', '[[fetch.hosts]] #2 (match = "https://example.com/"): match: '
                                                     'not a host pattern'),
    ('match = "example.com:8080"\ndelay = 1\n', "match: not a host pattern"),
    ('delay = 1\n', "[[fetch.hosts]] #2: match: expected a host pattern"),
    ('match = "a.example.com"\n', '#2 (match = "a.example.com"): overrides nothing'),
    ('match = "a.example.com"\nconcurrency = 0\n', "concurrency: must be an integer >= 1, got 0"),
    ('match = "a.example.com"\nheaders = { "X-A" = 1 }\n', "headers: expected a table of header names"),
])
def test_a_bad_host_table_exits_2_naming_it_before_anything_is_fetched(serve, cli, table, message):
    server = serve(two_slow_hosts(), [A])
    toml = FAST + '[[fetch.hosts]]\nmatch = "ok.example.com"\ndelay = 1\n\n[[fetch.hosts]]\n' + table
    run = cli("crawl", server.url(A), "-o", "out.jsonl", "-q", settings=toml)
    assert run.code == 2
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert server.hits() == 0


def test_host_concurrency_is_refused_with_the_redis_backend(serve, cli):
    server = serve(two_slow_hosts(), [A])
    toml = FAST + '[state]\nbackend = "redis"\n' + RULES
    run = cli("crawl", server.url(A), "-o", "out.jsonl", "-q", settings=toml)
    assert run.code == 2
    assert ('[[fetch.hosts]] #1 (match = "127.0.0.2"): concurrency: not supported with [state] backend = "redis"'
            in run.stderr), run.stderr
    assert server.hits() == 0


def test_the_first_matching_rule_wins_and_patterns_are_host_globs():
    rules = HostRules(build_host_rules([
        {"match": "*.Example.com", "delay": 1},
        {"match": "example.com", "delay": 2},
        {"match": "*", "concurrency": 3},
        {"match": "::1", "delay": 4},
    ], "test"))
    assert rules.delay("shop.example.com", 0.5) == 1.0
    assert rules.delay("SHOP.EXAMPLE.COM", 0.5) == 1.0
    assert rules.delay("example.com", 0.5) == 2.0  # "*." wants a subdomain
    assert rules.delay("other.org", 0.5) == 0.5 and rules.concurrency("other.org", 2) == 3
    assert rules.delay("::1", 0.5) == 0.5, "the catch-all came first"
    assert HostRules().for_host("example.com") is None
