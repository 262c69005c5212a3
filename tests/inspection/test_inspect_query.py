"""`crawler inspect --where/--fields/--format/--limit`: the matching records, and only them."""

from __future__ import annotations

import csv
import io
import re

import orjson
import pytest
from fixtures.inspect_records import cli, failed, inspect, record, write_jsonl

RECORDS = [
    record("https://shop.example.com/products/1", data={"title": "Cheap", "price": "9.50"}),
    record("https://shop.example.com/products/2", data={"title": "Dear", "price": "120"}),
    record("https://shop.example.com/about", data={"title": "About", "price": None}),
    record("https://blog.example.com/post/7", depth=3, data={"title": "Post"}),
    failed("https://shop.example.com/products/3", "timeout", depth=2),
    failed("https://blog.example.com/gone", "http", status=404),
    failed("https://blog.example.com/broken", "http", status=500, depth=0),
    failed("https://other.example.org/x", "connection"),
    record("https://shop.example.com/products/4", changed=True, data={"title": "Re", "price": "19.99"}),
]


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("q") / "crawl.jsonl", RECORDS)


def matching_urls(path, expression: str) -> list[str]:
    code, out, err = inspect(path, "--where", expression, "--format", "json")
    assert code == 0, err
    return [orjson.loads(line)["url"] for line in out.splitlines()]


def urls_where(predicate) -> list[str]:
    return [r["url"] for r in RECORDS if predicate(r)]


def price(r: dict) -> float | None:
    value = r["data"].get("price")
    return None if value is None else float(value)


@pytest.mark.parametrize(("expression", "predicate"), [
    ("status >= 400", lambda r: r["status"] is not None and r["status"] >= 400),
    ("status >= `400`", lambda r: r["status"] is not None and r["status"] >= 400),
    ("error.type == 'timeout'", lambda r: r["error"] and r["error"]["type"] == "timeout"),
    ("to_number(data.price) < 20", lambda r: price(r) is not None and price(r) < 20),
    ("to_number(data.price) < 19.5", lambda r: price(r) is not None and price(r) < 19.5),
    (r"re_search('/products/\d+$', url)", lambda r: re.search(r"/products/\d+$", r["url"])),
    ("status == 200 and not re_search('^https://shop[.]', url)",
     lambda r: r["status"] == 200 and not r["url"].startswith("https://shop.")),
    ("(error.type == 'timeout' or error.type == 'connection') and depth <= 1",
     lambda r: r["error"] and r["error"]["type"] in ("timeout", "connection") and r["depth"] <= 1),
    ("error.type == 'http' || depth > `2`", lambda r: (r["error"] and r["error"]["type"] == "http") or r["depth"] > 2),
    ("changed == true && data.title != null", lambda r: r["changed"] is True and r["data"].get("title") is not None),
    ("error != null", lambda r: r["error"] is not None),
    ("error != null and not (depth > 1)", lambda r: r["error"] is not None and not r["depth"] > 1),
    ("host(url) == 'blog.example.com'", lambda r: "//blog.example.com/" in r["url"]),
])
def test_where_selects_exactly_the_matching_records(crawl, expression, predicate):
    assert matching_urls(crawl, expression) == urls_where(predicate)


def test_fields_project_and_csv_prints_one_row_per_match(crawl):
    code, out, _ = inspect(crawl, "--where", "error != null", "--fields", "url,status,error.type,data.title",
                           "--format", "csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["url", "status", "error.type", "data.title"]
    assert rows[1:] == [[r["url"], "" if r["status"] is None else str(r["status"]), r["error"]["type"], ""]
                        for r in RECORDS if r["error"]]


def test_json_with_fields_gives_objects_keyed_by_the_field_paths(crawl):
    code, out, _ = inspect(crawl, "--fields", "url,data.price", "--format", "json", "--limit", "2")
    assert code == 0
    assert [orjson.loads(line) for line in out.splitlines()] == [
        {"url": r["url"], "data.price": r["data"].get("price")} for r in RECORDS[:2]]


def test_limit_caps_the_records_printed(crawl):
    assert len(matching_urls(crawl, "status == `200`")) == 5
    code, out, _ = inspect(crawl, "--where", "status == `200`", "--limit", "2", "--format", "json")
    assert code == 0 and len(out.splitlines()) == 2


def test_table_shows_whole_urls_and_no_markup_from_records(tmp_path):
    hostile = record("https://example.com/[red]x[/red]/" + "long-segment-" * 6 + "end")
    path = write_jsonl(tmp_path / "h.jsonl", [hostile])
    code, out, _ = inspect(path, "--where", "status == `200`")
    assert code == 0
    first_column = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert "".join(first_column) == hostile["url"]


def test_csv_without_fields_has_every_record_key(crawl):
    code, out, _ = inspect(crawl, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == len(RECORDS)
    assert orjson.loads(rows[0]["data"]) == RECORDS[0]["data"] and rows[0]["error"] == ""


@pytest.mark.parametrize(("expression", "message"), [
    ("status >> 400", "--where: syntax error at column 8"),
    ("status >=", "--where: the expression ends too early"),
    ("status = 3", "--where: unexpected character '=' at column 7"),
    ("error.type == \"timeout\"", "for the string write 'timeout' (single quotes)"),
    ("nope(url)", "--where: unknown function nope()"),
    ("re_search(url)", "--where: re_search() takes 2 argument(s), got 1"),
    ("re_search('(', url)", "--where: re_search: bad regular expression"),
])
def test_a_bad_expression_exits_2_with_one_line_naming_the_problem(crawl, expression, message):
    result = cli(crawl, "--where", expression)
    assert result.returncode == 2
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_an_expression_that_fails_on_some_records_skips_them_with_a_warning(crawl):
    code, out, err = inspect(crawl, "--where", "length(data.title) > `3`", "--format", "json")
    assert code == 0
    assert [orjson.loads(line)["url"] for line in out.splitlines()] == urls_where(
        lambda r: isinstance(r["data"].get("title"), str) and len(r["data"]["title"]) > 3)
    assert "could not be evaluated on 4 record(s)" in err


def test_bad_lines_are_skipped_with_a_warning_when_printing_records(tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", RECORDS[:2], tail=b"oops\n")
    code, out, err = inspect(path, "--where", "status == `200`", "--format", "json")
    assert code == 0 and len(out.splitlines()) == 2
    assert "skipped 1 bad line(s), first" in err and "b.jsonl:3" in err


def test_a_line_that_is_not_strict_json_is_bad_in_every_mode(tmp_path):
    # A lone surrogate escape: the dict path (orjson) and the fast path (msgspec) both refuse it.
    line = orjson.dumps(record("https://example.com/s")).replace(b'"title":"A"', b'"title":"\\ud800"')
    path = tmp_path / "s.jsonl"
    path.write_bytes(orjson.dumps(record()) + b"\n" + line + b"\n")
    code, out, err = inspect(path, "--where", "status == `200`", "--format", "json")
    assert code == 0 and len(out.splitlines()) == 1 and "s.jsonl:2: not valid JSON" in err
    code, out, _ = inspect(path, "--validate")
    assert code == 1 and out.startswith(f"{path}:2: not valid JSON")
    code, out, _ = inspect(path, "--format", "json")
    assert orjson.loads(out)["records"] == 1 and orjson.loads(out)["bad_lines"]["count"] == 1
