"""A crawl ends as soon as its last record is on disk, and nothing waits for a batch to fill
when no other record can join it.

The coordinator batches records for the writer (up to BATCH_AGE for a batch to fill) and
waits up to a round's wait for events. Both waits used to sit at the end of every crawl,
after the last page was parsed: the last batch waited out its age, and the writer's ack
was only seen when the round's wait on the event queue ran out. Here both are made 30 s,
so a crawl that still waited for either would take over 30 s; it must take a moment.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from crawler.api import crawl
from crawler.demo.shop.server import Response, Site
from crawler.engine import coordinator as coordinator_mod
from tests.helpers import read_records

LONG = 30.0  # what either wait would cost
A = "127.0.0.1"


@pytest.fixture
def long_waits(monkeypatch):
    monkeypatch.setattr(coordinator_mod, "BATCH_AGE", LONG)
    monkeypatch.setattr(coordinator_mod.Coordinator, "wait_time", lambda self: LONG)


@pytest.mark.parametrize("engine", ["threads", "async"])
def test_the_last_record_is_written_and_acked_without_waiting(serve, tmp_path, long_waits, engine):
    site = Site()
    site.add(A, "/", Response.html('<html><head><title>home</title></head><body><a href="/a">a</a>'
                                   '<a href="/b">b</a></body></html>'))
    site.add(A, "/a", Response.html("<html><head><title>page a</title></head><body></body></html>"))
    site.add(A, "/b", Response.html("<html><head><title>page b</title></head><body></body></html>"))
    server = serve(site, [A])
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    result = crawl([server.url(A, "/")], output=out, state=tmp_path / "state", engine=engine,
                   per_host_delay=0, max_depth=-1, obey_robots=False, handle_signals=False,
                   rules=[{"name": "t", "match": ".", "fields": {"title": {"xpath": "//title/text()"}}}])
    took = time.monotonic() - started
    assert result.pages == 3 and not result.errors
    got = {r["url"]: r["data"]["title"] for r in read_records(out)}
    assert got == {server.url(A, "/"): "home", server.url(A, "/a"): "page a", server.url(A, "/b"): "page b"}
    assert took < LONG / 3, f"the crawl took {took:.1f} s: it waited for a batch to fill or for a round to end"


PROBE = """
import gc, sys
from crawler.cli import main
args = {args!r}
if {as_program!r}:
    sys.argv = ["crawler", *args]
    code = main()
else:
    code = main(args)
print(code, gc.get_freeze_count() > 0)
"""


@pytest.mark.parametrize("as_program", [True, False])
def test_the_command_line_freezes_the_heap_only_when_the_process_exits_next(serve, tmp_path, as_program):
    """Run as the program, ``main`` freezes the heap once the command is over, so that
    interpreter shutdown skips its collections over every imported object; called with
    arguments (from Python), it leaves the caller's heap alone. The output is whole either way."""
    site = Site()
    site.add(A, "/", Response.html("<html><head><title>home</title></head><body></body></html>"))
    server = serve(site, [A])
    (tmp_path / "settings.toml").write_text("[fetch]\nper_host_delay = 0\n")
    args = ["crawl", server.url(A, "/"), "-c", "settings.toml", "-o", "out.jsonl", "-q"]
    proc = subprocess.run([sys.executable, "-c", PROBE.format(args=args, as_program=as_program)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", str(as_program)]
    assert [r["url"] for r in read_records(tmp_path / "out.jsonl")] == [server.url(A, "/")]
