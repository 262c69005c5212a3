"""`crawler extract`: rules re-run over WARC files offline, same record format as a crawl."""

from __future__ import annotations

import io

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from sinks.schema import validate_record

RULES = """
[[parse.rules]]
name = "product"
match = "/p/"
fields.name = { css = "h1::text", required = true }
fields.price = { css = ".price::text", type = "number" }
"""
PAGES = {
    "http://127.0.0.9:8080/p/1": '<html><h1>Kettle</h1><b class="price">$1,299.00</b><a href="/p/2">2</a></html>',
    "http://127.0.0.9:8080/p/2": '<html><b class="price">1.299,00 €</b></html>',
    "http://127.0.0.9:8080/about": "<html><title>About</title></html>",
}


def write_foreign_warc(path, pages: dict[str, str], gzip: bool = True) -> None:
    """A WARC as another tool writes it: responses only, no metadata, plus a robots.txt."""
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=gzip)
        answers = {**pages, "http://127.0.0.9:8080/robots.txt": "User-agent: *\n"}
        for url, body in answers.items():
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body.encode()),
                                                          http_headers=http))


def test_extract_over_a_foreign_warc_gives_one_record_per_response(cli, tmp_path):
    write_foreign_warc(tmp_path / "site.warc.gz", PAGES)
    run = cli("extract", "site.warc.gz", "-o", "out.jsonl", settings=RULES)
    assert run.code == 0, run.stderr
    assert "extracted 3 pages (3 ok, 0 errors) from 4 WARC records" in run.stderr
    by_url = {r["url"]: r for r in run.records}
    assert sorted(by_url) == sorted(PAGES)  # robots.txt is not a page
    one, two, about = (by_url[u] for u in PAGES)
    assert (one["rule"], one["data"], one["links"], one["status"]) == ("product", {"name": "Kettle", "price": 1299.0},
                                                                      1, 200)
    assert two["data"] == {"name": None, "price": 1299.0} and two["missing"] == ["name"]
    assert about["rule"] is None and about["data"] == {}
    assert all(validate_record(r) == [] for r in run.records)
    assert len({r["crawl_id"] for r in run.records}) == 1


def test_extract_rewrites_its_output_and_takes_several_files(cli, tmp_path):
    write_foreign_warc(tmp_path / "a.warc.gz", dict(list(PAGES.items())[:1]))
    write_foreign_warc(tmp_path / "b.warc", dict(list(PAGES.items())[1:]), gzip=False)
    (tmp_path / "out.jsonl").write_text('{"old": "line"}\n')
    run = cli("extract", "a.warc.gz", "b.warc", "-o", "out.jsonl", "-q", settings=RULES)
    assert run.code == 0 and run.stderr == ""
    assert sorted(r["url"] for r in run.records) == sorted(PAGES)


def test_extract_missing_warc_or_bad_rules_exit_2_naming_them(cli, tmp_path):
    run = cli("extract", "nope.warc.gz", "-o", "out.jsonl", settings=RULES)
    assert run.code == 2 and run.stderr.strip() == "crawler: error: nope.warc.gz: WARC file not found"
    (tmp_path / "junk.warc").write_bytes(b"this is not a WARC\n" * 10)
    run = cli("extract", "junk.warc", "-o", "out.jsonl", settings=RULES)
    assert run.code == 2 and "junk.warc: not a readable WARC file" in run.stderr
    write_foreign_warc(tmp_path / "ok.warc.gz", PAGES)
    run = cli("extract", "ok.warc.gz", "-o", "out.jsonl", settings=RULES.replace('type = "number"', 'type = "euro"'))
    assert run.code == 2 and "fields.price.type: unknown type 'euro'" in run.stderr
    assert run.records == []
