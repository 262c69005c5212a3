"""crawler/inspection/sources.py: whole lines out of files, gzip and byte ranges, in bounded memory."""

from __future__ import annotations

import gzip
import io
import random

from fixtures.inspect_records import inspect_json, lines_of, record

from crawler.inspection import sources
from crawler.inspection.sources import OVERLONG, iter_line_batches, split_ranges


def random_lines(n: int, seed: int = 5) -> list[bytes]:
    rng = random.Random(seed)
    return [b"x" * rng.randrange(0, 300) for _ in range(n)]


def test_blocks_hold_whole_lines_whatever_the_block_size(monkeypatch):
    lines = random_lines(500)
    data = b"\n".join(lines) + b"\ntorn"
    for block in (7, 64, 1000, 1 << 20):
        monkeypatch.setattr(sources, "BLOCK", block)
        got, torn_flags = [], []
        for batch, torn in iter_line_batches(io.BytesIO(data)):
            got += batch
            torn_flags.append(torn)
        assert got == lines + [b"torn"]
        assert torn_flags[-1] is True and not any(torn_flags[:-1])


def test_a_line_longer_than_the_limit_is_reported_not_kept(monkeypatch):
    monkeypatch.setattr(sources, "BLOCK", 100)
    monkeypatch.setattr(sources, "MAX_LINE", 1000)
    data = b"short\n" + b"y" * 5000 + b"\nafter\n" + b"z" * 3000
    batches = list(iter_line_batches(io.BytesIO(data)))
    assert [line for lines, _ in batches for line in lines] == [b"short", OVERLONG, b"after", OVERLONG]
    assert batches[-1] == ([OVERLONG], True)


def test_byte_ranges_start_and_end_on_line_boundaries(tmp_path):
    lines = random_lines(2000)
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    ranges = split_ranges(str(path), 7)
    assert ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    data = path.read_bytes()
    assert all(data[end - 1:end] == b"\n" for _, end in ranges)
    assert len(ranges) == 7


def test_a_truncated_gzip_file_keeps_every_line_before_the_cut(tmp_path):
    records = [record(f"https://g.example/{i}", data={"title": f"{i}" * 40}) for i in range(3000)]
    whole = gzip.compress(lines_of(records))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    got = inspect_json(path)
    assert 1000 < got["records"] < 3000
    [bad] = got["bad_lines"]["first"]
    assert bad["line"] == got["records"] + 1 and "compressed data ends early" in bad["reason"]


def test_a_blank_line_is_a_bad_line(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_bytes(lines_of([record()]) + b"\n" + lines_of([record("https://b.example/2")]))
    got = inspect_json(path)
    assert got["records"] == 2
    assert got["bad_lines"]["first"] == [{"file": str(path), "line": 2, "reason": "empty line"}]


def test_an_overlong_line_is_one_bad_line_in_the_summary(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "BLOCK", 4096)
    monkeypatch.setattr(sources, "MAX_LINE", 10_000)
    path = tmp_path / "long.jsonl"
    path.write_bytes(lines_of([record()]) + b'{"url": "' + b"u" * 50_000 + b'"}\n' + lines_of([record()]))
    got = inspect_json(path)
    assert got["records"] == 2 and got["lines"] == 3
    [bad] = got["bad_lines"]["first"]
    assert bad["line"] == 2 and bad["reason"].startswith("line longer than")
