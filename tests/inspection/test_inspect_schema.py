"""sinks/schema.py: validate_record is the definition; the fast batch path never disagrees."""

from __future__ import annotations

import json
import re

import orjson
import pytest
from fixtures.inspect_records import failed, record

from sinks.schema import RECORD_KEYS, decode_batch, record_struct, validate_record

# Values to put in each field, valid or not, to hold the two paths side by side.
CANDIDATES = [
    None, True, False, 0, -1, 1, 99, 100, 599, 600, 1.5, -0.5, 2**63 - 1, 2**63, 2**64 + 5,
    "", "x", "https://example.com/", [], [1], {}, {"type": "timeout", "message": "m"},
    {"type": "timeout"}, {"type": "nope", "message": "m"}, {"type": "http", "message": 3},
    {"type": "parse", "message": "m", "extra": 1}, {"title": None},
    "2026-11-22T01:00:00.123Z", "2026-11-22T01:00:00Z", "2026-11-22T01:00:00.123+01:00",
    "2026-02-29T01:00:00.000Z", "2028-02-29T01:00:00.000Z", "2026-13-01T01:00:00.000Z",
    "2026-11-22T24:00:00.000Z", "2026-11-22T01:00:60.000Z", "2026-11-22", "2026-11-22T01:00:00.123",
    "0000-01-01T00:00:00.000Z", "2026-11-22t01:00:00.123Z", "2026-11-22T01:00:00.12Z",
]


def test_a_record_in_the_contract_format_is_valid():
    assert validate_record(record()) == []
    assert validate_record(failed("https://example.com/x", "timeout")) == []
    assert validate_record(record(extra_key_from_a_newer_writer=1)) == []


@pytest.mark.parametrize(("change", "problem"), [
    ({"status": "200"}, "status must be an integer or null, got a string"),
    ({"depth": True}, "depth must be an integer, got a boolean"),
    ({"status": 99}, "status 99 is not an HTTP status"),
    ({"depth": -1}, "depth -1 is out of range"),
    ({"bytes": 2**63}, "bytes 9223372036854775808 is out of range"),
    ({"elapsed_ms": -0.1}, "elapsed_ms -0.1 is not a finite number"),
    ({"url": ""}, "url is empty"),
    ({"fetched_at": "yesterday"}, "is not an ISO 8601 timestamp"),
    ({"fetched_at": "2026-11-22T01:00:00"}, "lacks a time or a time zone"),
    ({"error": {"type": "dns", "message": "x"}}, "error.type 'dns' is not one of"),
    ({"error": {"type": "http"}}, "error.message must be a string, got null"),
    ({"status": None}, "a record without error must have a status"),
    ({"data": []}, "data must be an object, got an array"),
])
def test_each_broken_rule_is_named(change, problem):
    problems = validate_record(record(**change))
    assert len(problems) == 1 and problem in problems[0], problems


def test_canonical_is_checked_when_present_and_may_be_absent():
    assert "canonical" not in record() and validate_record(record()) == []
    assert validate_record(record(canonical=None)) == []
    assert validate_record(record(canonical="https://example.com/c")) == []
    assert validate_record(record(canonical=3)) == ["canonical must be a string or null, got an integer"]
    assert validate_record(record(canonical="")) == ["canonical is empty"]
    assert decode_batch([orjson.dumps(record())])[0].canonical is None


def test_missing_keys_are_listed_in_record_order():
    rec = record()
    del rec["status"], rec["error"]
    assert validate_record(rec) == ["missing keys status, error"]
    assert validate_record([1, 2]) == ["not a JSON object (got an array)"]


def test_the_fast_path_accepts_exactly_the_valid_records_in_the_writers_form():
    """Every (field, value) pair: the batch decoder never accepts a line validate_record
    refuses, and refuses a valid one only to leave a time in another ISO form to the exact path."""
    checked = 0
    for key in RECORD_KEYS:
        for value in CANDIDATES:
            for base in (record(), failed("https://example.com/f", "timeout")):
                rec = {**base, key: value}
                line = json.dumps(rec).encode()  # json, not orjson: it writes ints past 64 bits
                truth = validate_record(orjson.loads(line)) == []
                fast = decode_batch([line]) is not None
                if fast:
                    assert truth, (key, value)
                if truth:
                    assert fast or not _writer_form(rec["fetched_at"]), (key, value)
                    assert record_struct(orjson.loads(line)).url == rec["url"]
                checked += 1
    assert checked == len(RECORD_KEYS) * len(CANDIDATES) * 2


def _writer_form(when: str) -> bool:
    return re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3}Z", when) is not None


def test_the_fast_path_refuses_a_whole_batch_with_one_bad_line():
    good = [orjson.dumps(record(f"https://example.com/{i}")) for i in range(5)]
    assert len(decode_batch(good)) == 5
    assert decode_batch(good + [orjson.dumps(record(status=None))]) is None
    assert decode_batch(good + [b"[1]"]) is None
