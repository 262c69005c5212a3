"""`crawler inspect FILE`: every summary number against the same number computed here, naively."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import orjson
import pytest
from fixtures.inspect_records import cli, failed, inspect, inspect_json, lines_of, record, write_jsonl

from crawler.inspection import scanning
from crawler.inspection.latency import LatencyHistogram
from crawler.inspection.sources import expand_sources

ERROR_TYPES = ["timeout", "connection", "http", "too_large", "robots", "redirects", "blocked", "parse"]
CRAWLS = ["20261122T010000Z-1a2b", "20261123T010000Z-3c4d"]


def known_records(n: int = 1500, seed: int = 3) -> list[dict]:
    """Records with every kind of value the summary distinguishes."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 22, 1, 0, tzinfo=timezone.utc)
    hosts = [f"h{i}.example.com" for i in range(14)] + ["127.0.0.2:8080", "EXAMPLE.org"]
    out = []
    for i in range(n):
        host = hosts[min(int(rng.expovariate(0.25)), len(hosts) - 1)]
        url = f"http://{host}/p/{i}?q={i % 7}"
        crawl_id = CRAWLS[i * 3 // n == 2]  # the last third is a recrawl
        when = (start + timedelta(milliseconds=37 * i + rng.randrange(20))).isoformat(timespec="milliseconds")
        common = dict(
            fetched_at=when.replace("+00:00", "Z"), depth=rng.randrange(5), crawl_id=crawl_id,
            elapsed_ms=rng.choice([0, 0.0, round(rng.lognormvariate(3.5, 1.2), 1), rng.randrange(1, 3000)]),
            changed=rng.choice([True, False]) if crawl_id == CRAWLS[1] else None,
        )
        roll = rng.random()
        if roll < 0.2:
            kind = rng.choice(ERROR_TYPES)
            status = rng.choice([404, 500, 503]) if kind == "http" else None
            rule = None if kind in ("robots", "blocked") else "page"
            out.append(failed(url, kind, status=status, rule=rule, **common))
        elif roll < 0.6:
            data = {"title": rng.choice([None, "", f"Item {i}"]), "price": rng.choice([None, f"{i % 90}.99"]),
                    "tags": rng.choice([[], ["a"], ["a", "b"]])}
            rec = record(url, status=rng.choice([200, 200, 200, 301]), rule="product", data=data,
                         bytes=rng.randrange(100_000), **common)
            # price is required and typed: a missing one is listed, and so is a price that was
            # found but could not be read (then it is null, and invalid too)
            if data["price"] is None:
                rec["missing"] = ["price"]
                if rng.random() < 0.3:
                    rec["invalid"] = ["price"]
            out.append(rec)
        else:
            out.append(record(url, status=200, rule="page", data={"title": rng.choice([None, f"Page {i}"])},
                              bytes=rng.randrange(100_000), **common))
    return out


def expected(records: list[dict]) -> dict:
    """The summary, computed the obvious way."""
    n = len(records)
    hosts = Counter(urlsplit(r["url"]).hostname for r in records)
    times = sorted(datetime.fromisoformat(r["fetched_at"]) for r in records)
    duration = (times[-1] - times[0]).total_seconds()
    coverage: dict = {}
    for rule in {r["rule"] for r in records}:
        mine = [r for r in records if r["rule"] == rule]
        names = sorted({k for r in mine for k in r["data"]})
        coverage["null" if rule is None else rule] = {
            "records": len(mine),
            "coverage": {k: sum(1 for r in mine if r["data"].get(k) not in (None, [])) / len(mine) for k in names},
            "incomplete": sum(1 for r in mine if r.get("missing")),
            "missing": dict(Counter(k for r in mine for k in r.get("missing", []))),
            "invalid": dict(Counter(k for r in mine for k in r.get("invalid", []))),
        }
    return {
        "records": n,
        "ok": sum(r["error"] is None for r in records),
        "failed": sum(r["error"] is not None for r in records),
        "status": {("null" if s is None else str(s)): c for s, c in Counter(r["status"] for r in records).items()},
        "errors": dict(Counter(r["error"]["type"] for r in records if r["error"])),
        "hosts_top": sorted(hosts.items(), key=lambda kv: (-kv[1], kv[0]))[:10],
        "hosts_distinct": len(hosts),
        "depth": {str(d): c for d, c in Counter(r["depth"] for r in records).items()},
        "bytes": sum(r["bytes"] for r in records),
        "elapsed": sorted(r["elapsed_ms"] for r in records),
        "duration_s": duration,
        "pages_per_s": n / duration,
        "first": times[0], "last": times[-1],
        "changed": {"true": sum(r["changed"] is True for r in records),
                    "false": sum(r["changed"] is False for r in records)},
        "rules": coverage,
    }


def assert_section_matches(got: dict, records: list[dict]) -> None:
    want = expected(records)
    for key in ("records", "ok", "failed", "bytes", "changed", "rules"):
        assert got[key] == want[key], key
    assert got["status"] == want["status"]
    assert got["errors"] == want["errors"]
    assert got["depth"] == want["depth"]
    assert [(h["host"], h["records"]) for h in got["hosts"]["top"]] == want["hosts_top"]
    assert got["hosts"]["distinct"] == want["hosts_distinct"]
    values = want["elapsed"]
    assert got["elapsed_ms"]["count"] == len(values)
    assert got["elapsed_ms"]["mean"] == pytest.approx(sum(values) / len(values))
    for q in (0.50, 0.95, 0.99):
        exact = values[math.ceil(q * len(values)) - 1]  # nearest rank
        reported = got["elapsed_ms"][f"p{round(q * 100)}"]
        assert abs(reported - exact) <= LatencyHistogram.RELATIVE_ERROR * exact + 1e-9, (q, reported, exact)
    assert got["time"]["duration_s"] == pytest.approx(want["duration_s"])
    assert got["time"]["pages_per_s"] == pytest.approx(want["pages_per_s"])
    assert datetime.fromisoformat(got["time"]["first"]) == want["first"]
    assert datetime.fromisoformat(got["time"]["last"]) == want["last"]


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    records = known_records()
    path = write_jsonl(tmp_path_factory.mktemp("known") / "crawl.jsonl", records)
    return path, records


def test_summary_counts_match_independent_computation(known):
    path, records = known
    got = inspect_json(path)
    assert got["lines"] == len(records)
    assert got["bad_lines"]["count"] == 0
    assert_section_matches(got, records)


def test_summary_has_one_section_per_crawl_id_with_its_own_numbers(known):
    path, records = known
    got = inspect_json(path)
    assert [c["crawl_id"] for c in got["crawls"]] == sorted(CRAWLS)
    for section in got["crawls"]:
        assert_section_matches(section, [r for r in records if r["crawl_id"] == section["crawl_id"]])


def test_summary_counts_the_same_when_a_file_is_split_across_processes(known, monkeypatch):
    path, records = known
    # Force byte ranges of a few KB so that four workers share this small file.
    monkeypatch.setattr(scanning, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(scanning, "RANGE_BYTES", 40_000)
    with_bad = path.with_name("with-bad.jsonl")
    with_bad.write_bytes(path.read_bytes() + b"[1]\n" + lines_of(records[:5]) + b"{torn")
    one = inspect_json(with_bad, "--workers", "1")
    four = inspect_json(with_bad, "--workers", "4")
    assert len(scanning.plan_tasks(expand_sources([str(with_bad)]), 4)) > 4
    # The float sum behind the mean depends on the order of addition, nothing else may differ.
    for section in [one, four, *one["crawls"], *four["crawls"]]:
        section["elapsed_ms"]["mean"] = round(section["elapsed_ms"]["mean"], 9)
    assert four == one
    assert [(b["line"], b["reason"][:10]) for b in four["bad_lines"]["first"]] == [
        (len(records) + 1, "not a JSON"), (len(records) + 7, "torn last ")]


def test_percentiles_stay_within_one_percent_on_a_wide_spread():
    rng = random.Random(9)
    values = [rng.lognormvariate(4, 2) for _ in range(20_000)] + [0.0] * 300
    hist = LatencyHistogram()
    hist.add_many(values)
    ordered = sorted(values)
    for q in (0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        assert abs(hist.quantile(q) - exact) <= 0.01 * exact + 1e-12
    assert len(hist.buckets) < 2500  # bounded by the value range, not the count


def test_bad_lines_are_counted_named_and_skipped(tmp_path):
    good = [record(f"https://example.com/{i}") for i in range(4)]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        lines_of(good[:2]) + b"this is not json\n" + b'["an", "array"]\n' + lines_of(good[2:])
        + b'{"url": "https://example.com/torn", "status": 2'
    )
    got = inspect_json(path)
    assert got["records"] == 4 and got["lines"] == 7
    assert got["bad_lines"]["count"] == 3
    reasons = {b["line"]: b["reason"] for b in got["bad_lines"]["first"]}
    assert set(reasons) == {3, 4, 7}
    assert reasons[3].startswith("not valid JSON")
    assert reasons[4] == "not a JSON object (got an array)"
    assert reasons[7].startswith("torn last line")


def test_schema_violations_are_bad_lines_not_crashes(tmp_path):
    weird = [record(status="200"), record(depth=-1), record(error={"type": "dns", "message": "x"}),
             record(fetched_at="yesterday"), {"url": 1}, record(data=None)]
    path = write_jsonl(tmp_path / "weird.jsonl", [record()] + weird)
    got = inspect_json(path)
    assert got["records"] == 1
    assert got["bad_lines"]["count"] == len(weird)


def test_a_complete_last_line_without_newline_still_counts(tmp_path):
    path = tmp_path / "no-newline.jsonl"
    path.write_bytes(lines_of([record("https://a.example/1"), record("https://a.example/2")])[:-1])
    got = inspect_json(path)
    assert got["records"] == 2 and got["bad_lines"]["count"] == 0


def test_globs_gzip_and_stdin_are_read_like_plain_files(tmp_path, known):
    _, records = known
    write_jsonl(tmp_path / "shard-1.jsonl", records[:500])
    write_jsonl(tmp_path / "shard-2.jsonl.gz", records[500:1000], gz=True)
    rest = lines_of(records[1000:])
    result = cli(str(tmp_path / "shard-*"), "-", "--format", "json", stdin=rest)
    assert result.returncode == 0, result.stderr
    got = orjson.loads(result.stdout)
    assert got["files"] == [str(tmp_path / "shard-1.jsonl"), str(tmp_path / "shard-2.jsonl.gz"), "<stdin>"]
    assert_section_matches(got, records)


def test_times_in_other_iso_forms_are_ordered_by_the_time_they_name(tmp_path):
    recs = [record("https://a.example/1", fetched_at="2026-11-22T01:00:00.500Z"),
            record("https://a.example/2", fetched_at="2026-11-22T02:00:10+01:00"),  # 01:00:10 UTC
            record("https://a.example/3", fetched_at="2026-11-22T00:59:59Z")]
    got = inspect_json(write_jsonl(tmp_path / "t.jsonl", recs))
    assert got["time"]["first"] == "2026-11-22T00:59:59.000Z"
    assert got["time"]["last"] == "2026-11-22T01:00:10.000Z"
    assert got["time"]["duration_s"] == 11


def test_summary_of_matching_records_only_with_where_and_summary(known):
    path, records = known
    got = inspect_json(path, "--where", "status >= 400", "--summary")
    assert_section_matches(got, [r for r in records if r["status"] is not None and r["status"] >= 400])


def test_text_summary_shows_the_key_numbers(known):
    path, records = known
    code, out, _ = inspect(path)
    assert code == 0
    want = expected(records)
    assert f"{want['records']:,}" in out and f"{want['failed']:,}" in out
    assert "p50 / p95 / p99" in out and "field coverage" in out
    assert all(f"crawl {c}" in out for c in CRAWLS)


def test_an_empty_file_gives_an_empty_summary(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    got = inspect_json(path)
    assert got["records"] == 0 and got["elapsed_ms"]["p50"] is None and got["time"]["first"] is None
    assert inspect(path)[0] == 0
