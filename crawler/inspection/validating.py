"""``crawler inspect --validate``: every line checked, every bad one named, exit 1 if any.

Output, one line per bad line as it is found (memory stays bounded)::

    out.jsonl:17: not valid JSON (unexpected character)
    out.jsonl:18: not a JSON object (got an array)

then a closing count. ``--format json`` prints ``{"file", "line", "reason"}`` objects as JSON
lines instead, and the count goes to stderr.
"""

from __future__ import annotations

import sys

import orjson

from crawler.inspection.scanning import scan_fast
from crawler.inspection.sources import Source
from crawler.inspection.summary import BadLines


class PrintedBadLines(BadLines):
    """BadLines that prints each bad line at once instead of keeping examples."""

    def __init__(self, fmt: str) -> None:
        super().__init__(keep=0)
        self.fmt = fmt

    def add(self, file: str, line: int, reason: str) -> None:
        self.count += 1
        if self.fmt == "json":
            sys.stdout.buffer.write(orjson.dumps({"file": file, "line": line, "reason": reason}) + b"\n")
        else:
            sys.stdout.write(f"{file}:{line}: {reason}\n")


def validate_sources(sources: list[Source], fmt: str) -> int:
    """Check every line of ``sources``; return 1 if any line is bad, else 0."""
    bad = PrintedBadLines(fmt)
    lines = scan_fast(sources, _ignore, bad)
    sys.stdout.flush()
    verdict = f"{bad.count:,} bad line(s) in {lines:,} line(s) of {len(sources)} file(s)"
    print(verdict, file=sys.stderr if fmt == "json" else sys.stdout)
    return 1 if bad.count else 0


def _ignore(recs: list, canonical_times: bool) -> None:
    pass
