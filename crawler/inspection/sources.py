"""Where ``crawler inspect`` gets its lines: files, globs, ``.jsonl.gz`` and stdin.

Everything is read in blocks of ``BLOCK`` bytes and split on ``\\n``, so memory stays bounded
whatever the size of a file (a line longer than ``MAX_LINE`` is skipped and reported, not
buffered). A plain file can also be cut into byte ranges that start and end on a line
boundary, so several processes can read one large file at once (see crawler/inspection/scanning.py).

A line here never includes its ``\\n``. A last line without one is *torn*: the crawl that
wrote it was cut off, or is still writing.
"""

from __future__ import annotations

import glob
import gzip
import os
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from crawler.errors import UsageError

STDIN = "-"
# 128 KiB, ~250 lines. The summary makes a dozen passes over a block's decoded records; kept
# this small they stay in the core's L2 cache (512 KiB here) between passes. With 1 MiB blocks
# the same work took 25 % more CPU; below 64 KiB the per-block costs start to show.
BLOCK = 1 << 17
MAX_LINE = 1 << 26  # 64 MiB: a line longer than this is reported as bad, not kept in memory
GZIP_MAGIC = b"\x1f\x8b"

# Stands in, inside a batch of lines, for a line longer than MAX_LINE.
OVERLONG = None


@dataclass(frozen=True)
class Source:
    """One input: a path, or stdin when ``path`` is None. ``name`` is what messages show."""

    name: str
    path: str | None

    @property
    def is_stdin(self) -> bool:
        return self.path is None

    def is_gzip(self) -> bool:
        if self.path is None:
            return False
        with open(self.path, "rb") as f:
            return f.read(2) == GZIP_MAGIC


def expand_sources(args: Sequence[str]) -> list[Source]:
    """Turn FILE arguments (paths, globs, ``-``) into sources, in order, without repeats.

    Raises UsageError naming the argument when a path is missing, a glob matches nothing or an
    argument is a directory.
    """
    sources: list[Source] = []
    seen: set[str] = set()
    for arg in args:
        if arg == STDIN:
            if STDIN in seen:
                raise UsageError("'-' (stdin) is given more than once")
            seen.add(STDIN)
            sources.append(Source("<stdin>", None))
            continue
        if any(ch in arg for ch in "*?["):
            matches = sorted(glob.glob(arg))
            if not matches:
                raise UsageError(f"{arg}: no file matches this pattern")
        elif not os.path.exists(arg):
            raise UsageError(f"{arg}: no such file")
        else:
            matches = [arg]
        for path in matches:
            if os.path.isdir(path):
                raise UsageError(f"{path}: is a directory, not a JSON lines file")
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                sources.append(Source(path, path))
    return sources


def open_source(source: Source) -> BinaryIO:
    """Open for binary reading; gzip (found by its magic bytes, not the name) is decompressed."""
    if source.path is None:
        raw = sys.stdin.buffer
        # peek() never consumes, so a plain stream is read from its first byte.
        head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        return gzip.GzipFile(fileobj=raw, mode="rb") if head == GZIP_MAGIC else raw
    f = open(source.path, "rb")
    if f.read(2) == GZIP_MAGIC:
        f.seek(0)
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    f.seek(0)
    return f


class TruncatedInput(Exception):
    """A compressed stream ended early or is corrupt; the lines before it were yielded."""


def _chunks(f: BinaryIO, length: int | None) -> Iterator[bytes]:
    """About BLOCK bytes at a time; at most ``length`` in all. TruncatedInput comes only after
    every byte that could be read: read1() hands over what one decompression step produced,
    where read(n) would drop it all when the stream breaks before n bytes."""
    read = getattr(f, "read1", f.read)
    remaining = length
    broken: Exception | None = None
    while broken is None and (remaining is None or remaining > 0):
        want = BLOCK if remaining is None else min(BLOCK, remaining)
        parts: list[bytes] = []
        got = 0
        while got < want:
            try:
                piece = read(want - got)
            except (EOFError, OSError, zlib.error) as exc:
                broken = exc
                break
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        if not got:
            break
        if remaining is not None:
            remaining -= got
        yield parts[0] if len(parts) == 1 else b"".join(parts)
    if broken is not None:
        raise TruncatedInput(f"compressed data ends early or is corrupt ({broken})") from broken


def iter_line_batches(f: BinaryIO, length: int | None = None) -> Iterator[tuple[list, bool]]:
    """Yield ``(lines, torn)``: lists of whole lines, without their ``\\n``, read from ``f``
    (at most ``length`` bytes if given).

    Only the last batch can be torn: then it holds one line that had no ``\\n``. A line longer
    than MAX_LINE appears as OVERLONG (None). Raises TruncatedInput when a gzip stream is cut
    short, after yielding every complete line before the cut.
    """
    # Each chunk is split as it is, and only the line that straddles two chunks is glued
    # back together: the bytes are copied once, into the lines, and never into a bigger block.
    rest = b""  # the start of a line whose end has not been read yet
    skipping = False  # inside an overlong line: drop bytes until its newline
    for chunk in _chunks(f, length):
        lines = chunk.split(b"\n")
        if len(lines) == 1:  # no line ends in this chunk
            if not skipping:
                rest += chunk
                if len(rest) > MAX_LINE:
                    rest, skipping = b"", True
            continue
        if skipping:
            lines[0] = OVERLONG
            skipping = False
        elif rest:
            lines[0] = rest + lines[0]
            if len(lines[0]) > MAX_LINE:
                lines[0] = OVERLONG
        rest = lines.pop()
        yield lines, False
    if skipping:
        yield [OVERLONG], True
    elif rest:
        yield [rest], True


def split_ranges(path: str, parts: int) -> list[tuple[int, int]]:
    """Cut a plain file into about ``parts`` byte ranges, each ending just after a ``\\n``."""
    size = os.path.getsize(path)
    bounds = [0]
    with open(path, "rb") as f:
        for i in range(1, parts):
            target = size * i // parts
            if target <= bounds[-1]:
                continue
            f.seek(target - 1)
            while (piece := f.readline(BLOCK)) and not piece.endswith(b"\n"):
                pass  # to the end of the line that holds byte target - 1, in bounded reads
            pos = f.tell()
            if pos >= size:
                break
            if pos > bounds[-1]:
                bounds.append(pos)
    bounds.append(size)
    return list(zip(bounds, bounds[1:]))
