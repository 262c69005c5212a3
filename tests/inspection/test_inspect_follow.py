"""`crawler inspect FILE --follow`: new matching records show within a second; Ctrl-C ends it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time

import orjson
from fixtures.inspect_records import REPO, failed, lines_of, record, write_jsonl

from tests.helpers import launch


class Lines:
    """Lines of a pipe, read without blocking for longer than asked."""

    def __init__(self, pipe) -> None:
        self.fd = pipe.fileno()
        self.buffer = b""

    def next(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


def follow(path, *options: str) -> subprocess.Popen:
    return launch(REPO, "inspect", str(path), "--follow", *options, text=False)


def url_of(line: bytes) -> str:
    return orjson.loads(line)["url"]


def test_follow_shows_each_new_matching_record_within_a_second_and_stops_on_ctrl_c(tmp_path):
    path = write_jsonl(tmp_path / "live.jsonl",
                       [record("https://l.example/ok"), failed("https://l.example/0", "timeout")])
    proc = follow(path, "--where", "error != null", "--format", "json", "--follow-timeout", "60")
    out = Lines(proc.stdout)
    try:
        # Like tail, the last matching records already in the file come first; then it polls.
        assert url_of(out.next(timeout=20)) == "https://l.example/0"
        with open(path, "ab") as f:
            for i in range(1, 6):
                f.write(lines_of([record(f"https://l.example/ok{i}"), failed(f"https://l.example/{i}", "timeout")]))
                f.flush()
                started = time.monotonic()
                line = out.next(timeout=1.0)
                assert line is not None, f"record {i} did not show within 1 s"
                assert url_of(line) == f"https://l.example/{i}"
                assert time.monotonic() - started < 1.0
            # A line caught half-written is not a bad record: it waits for its end.
            half = lines_of([failed("https://l.example/half", "connection")])
            f.write(half[:25])
            f.flush()
            assert out.next(timeout=0.8) is None
            f.write(half[25:])
            f.flush()
            assert url_of(out.next(timeout=1.0)) == "https://l.example/half"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
        err = proc.stderr.read().decode()
        assert "13 records from 1 file(s)" in err and "bad line" not in err
    finally:
        proc.kill()
        proc.wait()


def test_follow_prints_a_rolling_summary_and_ends_after_its_timeout(tmp_path):
    path = write_jsonl(tmp_path / "live.jsonl", [record(f"https://r.example/{i}") for i in range(3)])
    proc = follow(path, "--format", "json", "--follow-timeout", "2.5", "--summary-every", "0.5")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert len(out.splitlines()) == 3
    rolling = [line for line in err.decode().splitlines() if line.startswith("[")]
    assert rolling and "3 records (3 ok, 0 failed)" in rolling[-1]


def test_follow_picks_up_a_file_cut_back_by_a_resumed_crawl(tmp_path):
    path = write_jsonl(tmp_path / "live.jsonl", [record("https://c.example/1"), record("https://c.example/2")])
    proc = follow(path, "--format", "json", "--fields", "url", "--follow-timeout", "60")
    out = Lines(proc.stdout)
    try:
        assert orjson.loads(out.next(timeout=20)) == {"url": "https://c.example/1"}
        assert orjson.loads(out.next(timeout=5)) == {"url": "https://c.example/2"}
        keep = len(lines_of([record("https://c.example/1")]))
        os.truncate(path, keep)
        time.sleep(0.5)
        with open(path, "ab") as f:
            f.write(lines_of([record("https://c.example/3")]))
        assert orjson.loads(out.next(timeout=2)) == {"url": "https://c.example/3"}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert b"shrank" in proc.stderr.read()
