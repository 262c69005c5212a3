"""Crash safety (DESIGN §4): kill -9 at any moment, dead parsers, a poison page, a full
disk and a lost writer all end in exactly one record per page once the crawl resumes."""

from __future__ import annotations

import os
import random
import resource
import signal
import time
from collections import Counter

import psutil

from crawler.demo.shop.server import Response, Site
from tests.helpers import (count_lines, finish, launch, one_error_line, read_records, wait_for_records,
                           wait_until, write_seeds)

SETTINGS = """
[crawl]
max_depth = -1
[fetch]
concurrency = 8
per_host_concurrency = 2
per_host_delay = 0.015  # ~270 pages/s over 4 hosts: long enough to be killed 5 times
timeout = 5
"""


def popen(tmp_path, *extra, preexec_fn=None):
    return launch(tmp_path, "crawl", "-s", "seeds.txt", "-o", "out.jsonl", *extra,
                  start_new_session=True, preexec_fn=preexec_fn)


def records(tmp_path):
    return read_records(tmp_path / "out.jsonl")  # every line must be valid JSON


def record_count(tmp_path):
    return count_lines(tmp_path / "out.jsonl")


def child_after(proc, tmp_path, records_written, name):
    """The crawl's process called ``name`` (a child of its fork server), once ``records_written``
    lines exist."""
    wait_for_records(tmp_path / "out.jsonl", records_written, timeout=60)
    children = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == name]
    assert children, f"no {name} process found"
    return children[0]


def prepare(tmp_path, served, rules=None):
    write_seeds(tmp_path, served.catalog.seeds)
    (tmp_path / "settings.toml").write_text(SETTINGS + (rules or served.catalog.rules_toml))


def assert_exactly_once(tmp_path, expected):
    urls = Counter(r["url"] for r in records(tmp_path))
    duplicated = [u for u, n in urls.items() if n > 1]
    lost = set(expected) - set(urls)
    assert (len(lost), len(duplicated)) == (0, 0), f"lost {sorted(lost)[:3]}, duplicated {duplicated[:3]}"
    assert set(urls) == set(expected)


def assert_resume_completes_exactly_once(tmp_path, expected):
    code, err = finish(popen(tmp_path))
    assert code == 0, err
    assert_exactly_once(tmp_path, expected)


def kill_9_at_random_moments(tmp_path, times: int, seed: int) -> None:
    """Start the crawl and kill -9 its whole process group, ``times`` times."""
    rng = random.Random(seed)
    kills = 0
    while kills < times:
        proc = popen(tmp_path)
        time.sleep(rng.uniform(0.8, 2.5))
        if proc.poll() is not None:
            break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1  # the file may now end in a torn line: resume must cut it away
    assert kills == times, f"the crawl finished before it could be killed {times} times; make it longer"


def test_kill_9_at_five_random_moments_loses_and_duplicates_nothing(shop, tmp_path):
    served = shop(1000, hosts=4)
    prepare(tmp_path, served)
    kill_9_at_random_moments(tmp_path, 5, 20261122)
    code, err = finish(popen(tmp_path))
    assert code == 0, err
    assert "resuming crawl" in err
    assert_exactly_once(tmp_path, served.catalog.expected)
    wrong = [r["url"] for r in records(tmp_path) if r["data"] != served.catalog.expected[r["url"]]]
    assert wrong == []


def test_parser_killed_mid_crawl_is_replaced_and_nothing_is_lost(shop, tmp_path):
    served = shop(500, hosts=4)
    prepare(tmp_path, served)
    proc = popen(tmp_path)
    child_after(proc, tmp_path, 200, "crawler-parser").kill()
    code, err = finish(proc)
    assert code == 0, err
    assert "died" in err and "replacing it" in err
    assert_exactly_once(tmp_path, served.catalog.expected)


def test_poison_page_ends_as_one_parse_error_and_the_crawl_completes(serve, tmp_path):
    site = Site()
    links = "".join(f'<a href="/p/{i}">p{i}</a>' for i in range(30)) + '<a href="/poison">x</a>'
    site.add("127.0.0.1", "/", Response.html(f"<html><title>home</title>{links}</html>"))
    for i in range(30):
        site.add("127.0.0.1", f"/p/{i}", Response.html(f"<html><title>page {i}</title></html>"))
    site.add("127.0.0.1", "/poison", Response.html("<html><title>poison</title></html>"))
    server = serve(site, ["127.0.0.1"])
    (tmp_path / "seeds.txt").write_text(server.url("127.0.0.1", "/") + "\n")
    (tmp_path / "settings.toml").write_text(
        SETTINGS + '[[parse.rules]]\nname = "t"\ncallable = "tests.poison_rule:parse"\n')
    code, err = finish(popen(tmp_path))
    assert code == 0, err
    out = records(tmp_path)
    assert len(out) == 32 and len({r["url"] for r in out}) == 32
    (poison,) = [r for r in out if r["url"].endswith("/poison")]
    assert poison["error"]["type"] == "parse" and "died 2 times" in poison["error"]["message"]
    assert all(r["error"] is None for r in out if r is not poison)


def limit_file_size(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_exits_1_with_a_clear_message_then_resume_completes_exactly_once(shop, tmp_path):
    served = shop(500, hosts=4)
    prepare(tmp_path, served)
    proc = popen(tmp_path, preexec_fn=limit_file_size(300_000))
    code, err = finish(proc)
    assert code == 1, err
    line = one_error_line(err)
    assert "out.jsonl" in line or "frontier.sqlite" in line
    partial = records(tmp_path)  # whole lines only
    assert 0 < len(partial) < len(served.catalog.expected)
    assert_resume_completes_exactly_once(tmp_path, served.catalog.expected)


def test_lost_writer_exits_1_and_resume_completes_exactly_once(shop, tmp_path):
    served = shop(500, hosts=4)
    prepare(tmp_path, served)
    proc = popen(tmp_path)
    child_after(proc, tmp_path, 100, "crawler-writer").kill()
    code, err = finish(proc)
    assert code == 1, err
    assert "output writer died" in err
    assert_resume_completes_exactly_once(tmp_path, served.catalog.expected)


def test_resume_refuses_an_output_that_was_truncated(shop, tmp_path):
    served = shop(100, hosts=1)
    prepare(tmp_path, served)
    proc = popen(tmp_path, "--max-pages", "20")
    assert finish(proc)[0] == 0
    data = (tmp_path / "out.jsonl").read_bytes()
    (tmp_path / "out.jsonl").write_bytes(data[: len(data) // 2])
    code, err = finish(popen(tmp_path, "--max-pages", "40"))
    assert code == 2
    assert "truncated or replaced" in err


def test_rerun_of_a_finished_crawl_adds_nothing_and_fresh_starts_over(shop, tmp_path):
    served = shop(50, hosts=1)
    prepare(tmp_path, served)
    assert finish(popen(tmp_path))[0] == 0
    first = records(tmp_path)
    code, err = finish(popen(tmp_path))
    assert code == 0 and records(tmp_path) == first
    code, err = finish(popen(tmp_path, "--fresh"))
    assert code == 0
    again = records(tmp_path)
    assert sorted(r["url"] for r in again) == sorted(r["url"] for r in first)
    assert again[0]["crawl_id"] != first[0]["crawl_id"]


def test_writer_lost_with_two_batches_in_flight_exits_1_naming_the_output(shop, tmp_path):
    """Issue 11 #2: the writer stops (SIGSTOP) so that batches pile up unacknowledged, the
    crawl fetches every page meanwhile (so at least two batches went out and the coordinator
    can send no more), then the writer is SIGKILLed. The crawl must end, exit 1 with one
    line naming the output, and a resume must write every page exactly once."""
    served = shop(100, hosts=4)
    prepare(tmp_path, served)
    proc = popen(tmp_path)
    try:
        writer = child_after(proc, tmp_path, 20, "crawler-writer")
        writer.suspend()  # SIGSTOP
        wait_until(lambda: served.server.hits() >= len(served.catalog.expected), timeout=60,
                   what="every page fetched while the writer is stopped")
        time.sleep(0.5)  # the last pages' batches are sent (BATCH_AGE is 0.05 s)
        stopped_at = record_count(tmp_path)
        writer.kill()  # SIGKILL
        code, err = finish(proc, timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert code == 1, err
    line = one_error_line(err)
    assert "output writer died" in line and "out.jsonl" in line
    assert record_count(tmp_path) == stopped_at < len(served.catalog.expected)
    assert_resume_completes_exactly_once(tmp_path, served.catalog.expected)
