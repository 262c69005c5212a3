"""Locked outputs, Ctrl-C, leaving no process behind, and how the children start."""

from __future__ import annotations

import importlib.util
import multiprocessing
import signal
import time
from contextlib import contextmanager

import psutil
import pytest

from crawler.procname import PRELOAD, child_context

# descendants, slow_site and wait_for_records are imported from here by other test modules too
from tests.helpers import (descendants, finish, launch, one_error_line, read_records, slow_site,
                           wait_for_records)

SLOW = "[fetch]\nper_host_delay = 0\nconcurrency = 4\nper_host_concurrency = 4\n[crawl]\nmax_depth = -1\n"


def start_crawl(tmp_path, server, *extra):
    (tmp_path / "settings.toml").write_text(SLOW)
    return launch(tmp_path, "crawl", server.url("127.0.0.1", "/p/0"), "-o", "out.jsonl", "-q", *extra)


@contextmanager
def crawl_under_way(tmp_path, server, *extra, records=1):
    """A crawl running in the background with ``records`` written; killed on the way out
    if it is still running."""
    proc = start_crawl(tmp_path, server, *extra)
    try:
        wait_for_records(tmp_path / "out.jsonl", records)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_second_crawl_on_a_locked_output_exits_2(serve, tmp_path):
    server = slow_site(serve)
    with crawl_under_way(tmp_path, server):
        code, err = finish(start_crawl(tmp_path, server, "--state", "other.state"), timeout=60)
        assert code == 2
        assert "locked by another running crawl" in err
        code, err = finish(start_crawl(tmp_path, server), timeout=60)  # same output, same (default) state
        assert code == 2
        assert "in use by another running crawl" in err


def test_ctrl_c_drains_exits_130_and_leaves_no_process(serve, tmp_path):
    server = slow_site(serve)
    proc = start_crawl(tmp_path, server)
    wait_for_records(tmp_path / "out.jsonl", 5)
    children = descendants(proc.pid)
    assert len(children) >= 2  # parser processes and the writer
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    records = read_records(tmp_path / "out.jsonl")  # ends with a whole line, each one JSON
    assert 5 <= len(records) < 400 and len({r["url"] for r in records}) == len(records)


def test_crawl_that_finishes_leaves_no_process(serve, tmp_path):
    server = slow_site(serve, pages=20, delay=0)
    proc = start_crawl(tmp_path, server)
    seen = set()
    while proc.poll() is None:
        seen.update(descendants(proc.pid))
        time.sleep(0.02)
    assert proc.returncode == 0
    assert seen, "the crawl should have started child processes"
    gone, alive = psutil.wait_procs(list(seen), timeout=10)
    assert alive == []


def test_sigterm_drains_like_ctrl_c(serve, tmp_path):
    server = slow_site(serve)
    proc = start_crawl(tmp_path, server)
    wait_for_records(tmp_path / "out.jsonl", 5)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 130


def test_second_ctrl_c_exits_at_once_and_resume_loses_nothing(serve, tmp_path):
    server = slow_site(serve, pages=200, delay=0.05)
    proc = start_crawl(tmp_path, server)
    wait_for_records(tmp_path / "out.jsonl", 5)
    children = descendants(proc.pid)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert time.monotonic() - started < 5
    psutil.wait_procs(children, timeout=10)  # children see their pipes close and exit
    resumed = start_crawl(tmp_path, server)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    urls = [r["url"] for r in read_records(tmp_path / "out.jsonl")]
    assert len(urls) == len(set(urls)) == 200


CHAIN = 150  # pages of the slow site for the --fresh tests


def chain_urls(server) -> list[str]:
    return sorted(server.url("127.0.0.1", f"/p/{i}") for i in range(CHAIN))


def assert_fresh_refused(tmp_path, first, command: list[str], kept: str, message: str) -> None:
    """While ``first`` runs, ``crawler COMMAND`` (a --fresh) exits 2 with one line saying
    ``message``, and has changed nothing: the output still holds what it held, ``kept``
    (a path in ``tmp_path``) is still there; then ``first`` finishes as if nothing had happened."""
    out = tmp_path / "out.jsonl"
    before = out.read_bytes()
    code, err = finish(launch(tmp_path, *command), timeout=60)
    assert out.read_bytes()[:len(before)] == before  # nothing emptied or rewritten
    assert (tmp_path / kept).exists()
    assert code == 2, err
    assert message in one_error_line(err)
    code, err = finish(first, timeout=120)
    assert code == 0, err


def test_fresh_on_a_running_crawl_exits_2_and_changes_nothing(serve, tmp_path):
    """Issue 11 #1: `--fresh` against a crawl that is running on the same output and state
    is refused before it deletes the state or empties the output; the first crawl then
    finishes with every page exactly once, and a resume finds nothing left to do."""
    server = slow_site(serve, pages=CHAIN, delay=0.02)
    out = tmp_path / "out.jsonl"
    with crawl_under_way(tmp_path, server, records=20) as first:
        assert_fresh_refused(tmp_path, first, ["crawl", server.url("127.0.0.1", "/p/0"), "-o", "out.jsonl",
                                               "--fresh"],
                             "out.jsonl.state/frontier.sqlite", "in use by another running crawl")
    urls = [r["url"] for r in read_records(out)]
    assert sorted(urls) == chain_urls(server)  # each page exactly once
    code, err = finish(start_crawl(tmp_path, server))
    assert code == 0, err
    assert [r["url"] for r in read_records(out)] == urls  # the resume had nothing to redo


def test_fresh_on_an_output_another_state_is_writing_exits_2_and_empties_nothing(serve, tmp_path):
    """The output's own lock: a --fresh crawl with another state directory must not empty
    the file a running crawl writes (nor delete its own state) before being refused."""
    server = slow_site(serve, pages=CHAIN, delay=0.02)
    (tmp_path / "other.state").mkdir()
    (tmp_path / "other.state" / "keep.txt").write_text("left alone")
    with crawl_under_way(tmp_path, server, "--state", "mine.state", records=20) as first:
        assert_fresh_refused(tmp_path, first, ["crawl", server.url("127.0.0.1", "/p/0"), "-o", "out.jsonl",
                                               "--state", "other.state", "--fresh"],
                             "other.state/keep.txt", "output out.jsonl is locked by another running crawl")
    assert sorted(r["url"] for r in read_records(tmp_path / "out.jsonl")) == chain_urls(server)


def test_schedule_fresh_on_a_running_crawl_exits_2_and_changes_nothing(serve, tmp_path):
    """`crawler schedule --fresh` starts over under the crawl's lock too: against a crawl
    running on the same state it is refused before deleting or emptying anything."""
    server = slow_site(serve, pages=CHAIN, delay=0.02)
    with crawl_under_way(tmp_path, server, records=20) as first:
        assert_fresh_refused(tmp_path, first, ["schedule", server.url("127.0.0.1", "/p/0"), "-o", "out.jsonl",
                                               "--every", "1h", "--runs", "1", "--fresh"],
                             "out.jsonl.state/frontier.sqlite", "in use by another running crawl")
    assert sorted(r["url"] for r in read_records(tmp_path / "out.jsonl")) == chain_urls(server)


def _loaded_at_start(conn) -> None:
    import sys

    conn.send([name for name in PRELOAD if name in sys.modules])
    conn.close()


@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(), reason="spawn platform")
def test_children_start_with_the_parser_and_writer_modules_already_loaded():
    # The fork server ignores a preload module it cannot import: a wrong name in PRELOAD
    # would silently bring back the per-child imports.
    assert all(importlib.util.find_spec(name) is not None for name in PRELOAD)
    ctx = child_context(start=True)
    assert ctx.get_start_method() == "forkserver"
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_loaded_at_start, args=(theirs,))
    child.start()
    try:
        assert ours.poll(30)
        assert ours.recv() == PRELOAD
    finally:
        child.join(10)
    assert child.exitcode == 0
