"""`crawler inspect OLD --diff NEW`: new, gone and changed URLs, against known answers."""

from __future__ import annotations

import orjson
import pytest
from fixtures.inspect_records import cli, failed, inspect, record, write_jsonl

OLD_ID, NEW_ID, NEWEST_ID = "20261122T010000Z-aaaa", "20261123T010000Z-bbbb", "20261124T010000Z-cccc"

OLD = [
    record("https://s.example/1", data={"title": "One", "price": "1.00"}),
    record("https://s.example/2", data={"title": "Two", "price": "2.00"}),
    record("https://s.example/3", data={"title": "Three"}),
    record("https://s.example/4", data={"title": "Four", "price": "4.00"}),
    record("https://s.example/gone", data={"title": "Gone"}),
    failed("https://s.example/flaky", "timeout"),
]
NEW = [
    record("https://s.example/1", data={"title": "One", "price": "1.50"}, changed=True),  # price
    record("https://s.example/2", data={"title": "Two", "price": "2.00"}, changed=False),  # same
    failed("https://s.example/3", "http", status=404),  # status, and data now {}
    record("https://s.example/4", data={"title": "FOUR", "price": None}, changed=True),  # title, price
    record("https://s.example/new", data={"title": "New"}),
    record("https://s.example/flaky", data={"title": "Back"}),  # null -> 200, data
]


def with_crawl(records, crawl_id):
    return [{**r, "crawl_id": crawl_id} for r in records]


@pytest.fixture
def files(tmp_path):
    old = write_jsonl(tmp_path / "old.jsonl", with_crawl(OLD, OLD_ID))
    new = write_jsonl(tmp_path / "new.jsonl", with_crawl(NEW, NEW_ID))
    return old, new


def diff_json(*argv) -> dict:
    code, out, err = inspect(*argv, "--format", "json")
    assert code == 0, err
    return orjson.loads(out)


EXPECTED_LISTS = {
    "new_urls": ["https://s.example/new"],
    "gone_urls": ["https://s.example/gone"],
    "status_changed": [
        {"url": "https://s.example/3", "old": 200, "new": 404, "old_error": None, "new_error": "http"},
        {"url": "https://s.example/flaky", "old": None, "new": 200, "old_error": "timeout", "new_error": None},
    ],
    "data_changed": [
        {"url": "https://s.example/1", "fields": {"price": {"old": "1.00", "new": "1.50"}}},
        {"url": "https://s.example/3", "fields": {"title": {"old": "Three", "new": None}}},
        {"url": "https://s.example/4", "fields": {"price": {"old": "4.00", "new": None},
                                                  "title": {"old": "Four", "new": "FOUR"}}},
        {"url": "https://s.example/flaky", "fields": {"title": {"old": None, "new": "Back"}}},
    ],
}


def test_diff_of_two_files_lists_new_gone_and_changed_urls(files):
    old, new = files
    got = diff_json(old, "--diff", new)
    assert got["old"] == {"source": str(old), "urls": 6} and got["new"] == {"source": str(new), "urls": 6}
    assert got["counts"] == {"new_urls": 1, "gone_urls": 1, "status_changed": 2, "data_changed": 4}
    assert got["status_transitions"] == {"200 -> 404": 1, "timeout -> 200": 1}
    assert got["field_changes"] == {"title": 3, "price": 2}
    for key, value in EXPECTED_LISTS.items():
        assert got[key] == value, key


def test_diff_by_crawl_id_compares_with_the_previous_crawl_in_the_same_files(tmp_path):
    newest = [record("https://s.example/1", data={"title": "One", "price": "9.99"})]
    both = write_jsonl(tmp_path / "all.jsonl", with_crawl(OLD, OLD_ID) + with_crawl(NEW, NEW_ID)
                       + with_crawl(newest, NEWEST_ID))
    got = diff_json(both, "--diff", NEW_ID)
    assert got["old"]["source"] == f"crawl {OLD_ID}" and got["new"]["source"] == f"crawl {NEW_ID}"
    for key, value in EXPECTED_LISTS.items():
        assert got[key] == value, key
    named = diff_json(both, "--diff", f"{OLD_ID}..{NEWEST_ID}")
    assert named["counts"] == {"new_urls": 0, "gone_urls": 5, "status_changed": 0, "data_changed": 1}
    assert named["data_changed"] == [
        {"url": "https://s.example/1", "fields": {"price": {"old": "1.00", "new": "9.99"}}}]


def test_where_filters_both_sides_before_comparing(files):
    old, new = files
    got = diff_json(old, "--diff", new, "--where", "re_search('/[0-9]$', url)")
    assert got["counts"] == {"new_urls": 0, "gone_urls": 0, "status_changed": 1, "data_changed": 3}


def test_the_text_diff_is_a_summary_with_examples(files):
    old, new = files
    code, out, _ = inspect(old, "--diff", new)
    assert code == 0
    assert "new urls" in out and "gone urls" in out and "200 -> 404" in out
    assert "https://s.example/gone" in out and 'price: "4.00" -> null' in out


def test_limit_caps_each_list_of_the_json_diff(files):
    old, new = files
    got = diff_json(old, "--diff", new, "--limit", "1")
    assert got["counts"]["data_changed"] == 4 and len(got["data_changed"]) == 1


def test_an_unknown_crawl_id_or_missing_file_exits_2_naming_it(files):
    old, _ = files
    result = cli(old, "--diff", "no-such.jsonl")
    assert result.returncode == 2
    [line] = result.stderr.decode().splitlines()
    assert "'no-such.jsonl' is neither a file nor a crawl id in the input" in line and OLD_ID in line
    result = cli(old, "--diff", OLD_ID)
    assert result.returncode == 2 and b"is the earliest in the input" in result.stderr
