"""The WARC is committed with the JSON lines: kill -9 at random moments, resume, and every
record's exchanges are in the WARC exactly once."""

from __future__ import annotations

from collections import Counter

from crawler.demo.shop.server import Response, Site
from tests.conftest import run_cli
from tests.engine.test_durability import (SETTINGS, assert_exactly_once, finish, kill_9_at_random_moments, popen,
                                          records)
from tests.sinks.test_warc_capture import WARC, warc_records


def test_kill_9_three_times_then_resume_leaves_each_response_in_the_warc_once(shop, tmp_path):
    served = shop(800, hosts=4)
    (tmp_path / "seeds.txt").write_text("\n".join(served.catalog.seeds) + "\n")
    (tmp_path / "settings.toml").write_text(SETTINGS + served.catalog.rules_toml + WARC)
    kill_9_at_random_moments(tmp_path, 3, 20261202)  # both files may end torn: resume cuts both back
    code, err = finish(popen(tmp_path))
    assert code == 0, err
    assert "resuming crawl" in err
    assert_exactly_once(tmp_path, served.catalog.expected)
    lines = Counter(r["url"] for r in records(tmp_path))
    recs = warc_records(tmp_path / "out.warc.gz")  # reads every record, digests checked
    pages = Counter(uri for kind, uri, *_ in recs if kind == "metadata")
    responses = Counter(uri for kind, uri, *_ in recs if kind == "response" and not uri.endswith("/robots.txt"))
    assert pages == lines
    assert responses == lines
    assert sum(kind == "warcinfo" for kind, *_ in recs) == 1


def test_a_poison_page_is_in_the_warc_and_extract_records_it_as_the_crawl_did(serve, tmp_path):
    site = Site()
    site.add("127.0.0.1", "/", Response.html('<html><title>home</title><a href="/p/1">1</a><a href="/poison">x</a></html>'))
    site.add("127.0.0.1", "/p/1", Response.html("<html><title>one</title></html>"))
    site.add("127.0.0.1", "/poison", Response.html("<html><title>poison</title></html>"))
    server = serve(site, ["127.0.0.1"])
    (tmp_path / "seeds.txt").write_text(server.url("127.0.0.1", "/") + "\n")
    (tmp_path / "settings.toml").write_text(
        SETTINGS + '[[parse.rules]]\nname = "t"\ncallable = "tests.poison_rule:parse"\n' + WARC)
    code, err = finish(popen(tmp_path))
    assert code == 0, err
    crawled = {r["url"]: r for r in records(tmp_path)}
    recs = warc_records(tmp_path / "out.warc.gz")
    assert sorted(uri for kind, uri, *_ in recs if kind == "metadata") == sorted(crawled)
    poison = server.url("127.0.0.1", "/poison")
    assert [status for kind, uri, status, *_ in recs if kind == "response" and uri == poison] == [200]
    run = run_cli("extract", "out.warc.gz", "-o", "extract.jsonl", "-q", cwd=tmp_path,
                  output=tmp_path / "extract.jsonl")
    assert run.code == 0, run.stderr
    again = {r["url"]: r for r in run.records}
    assert sorted(again) == sorted(crawled)
    assert again[poison]["error"]["type"] == crawled[poison]["error"]["type"] == "parse"
    assert all(again[u]["data"] == crawled[u]["data"] for u in crawled)
