"""``crawler inspect FILE... --diff OTHER``: what changed between two crawls, URL by URL.

The two sides, like diff(1) reads them, old then new:

- ``--diff PATH_OR_GLOB``: old = the records of FILE..., new = the records of OTHER;
- ``--diff NEW_ID``: both from FILE...; new = crawl ``NEW_ID``, old = the crawl id that sorts
  just before it (ids start with their UTC start time, so that is the previous crawl);
- ``--diff OLD_ID..NEW_ID``: both from FILE..., named.

When one side holds a URL more than once, its last record counts. ``--where`` filters both
sides first. Reported: new URLs (only in new), gone URLs (only in old), status changes, and per
``data`` field the URLs whose value changed (a missing field counts as null).

Both sides go through a SQLite file in a temporary directory rather than dicts, so memory stays
bounded however many URLs the crawls hold; the joins run on its (side, url) primary key.
"""

from __future__ import annotations

import glob
import os
import sqlite3
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crawler.errors import UsageError
from crawler.inspection.scanning import scan
from crawler.inspection.sources import STDIN, Source, expand_sources
from crawler.inspection.summary import BadLines

EXAMPLES = 10  # per list in the text view
BATCH = 5000


class DiffStore:
    """Records of both sides, one row per (side, url), in a throwaway SQLite file."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path)
        # A scratch database: nothing to recover after a crash, so no journal and no fsync.
        self.db.executescript("""
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            PRAGMA cache_size = -32000;
            CREATE TABLE rec (
                side TEXT NOT NULL, url TEXT NOT NULL, status INTEGER, error TEXT, data BLOB,
                PRIMARY KEY (side, url)
            ) WITHOUT ROWID;
        """)
        self.pending: list[tuple] = []

    def add(self, side: str, rec: dict) -> None:
        error = rec["error"]
        data = orjson.dumps(rec["data"], option=orjson.OPT_SORT_KEYS)
        self.pending.append((side, rec["url"], rec["status"], error and error["type"], data))
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.db.executemany("INSERT OR REPLACE INTO rec VALUES (?, ?, ?, ?, ?)", self.pending)
            self.db.commit()
            self.pending = []

    def sides(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT DISTINCT side FROM rec ORDER BY side")]

    def count(self, side: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM rec WHERE side = ?", (side,)).fetchone()[0]

    def only_in(self, side: str, other: str) -> Iterator[str]:
        rows = self.db.execute(
            "SELECT a.url FROM rec a WHERE a.side = ? AND NOT EXISTS "
            "(SELECT 1 FROM rec b WHERE b.side = ? AND b.url = a.url) ORDER BY a.url", (side, other))
        return (url for (url,) in rows)

    def status_changes(self, old: str, new: str) -> Iterator[tuple]:
        return self.db.execute(
            "SELECT o.url, o.status, n.status, o.error, n.error FROM rec o JOIN rec n "
            "ON n.side = ? AND n.url = o.url WHERE o.side = ? AND o.status IS NOT n.status "
            "ORDER BY o.url", (new, old))

    def data_changes(self, old: str, new: str) -> Iterator[tuple[str, dict[str, tuple[Any, Any]]]]:
        rows = self.db.execute(
            "SELECT o.url, o.data, n.data FROM rec o JOIN rec n ON n.side = ? AND n.url = o.url "
            "WHERE o.side = ? AND o.data != n.data ORDER BY o.url", (new, old))
        for url, old_data, new_data in rows:
            changes = field_changes(orjson.loads(old_data), orjson.loads(new_data))
            if changes:
                yield url, changes

    def close(self) -> None:
        self.db.close()


def field_changes(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """Fields whose value differs, as {name: (old, new)}; a missing field is null."""
    return {
        name: (old.get(name), new.get(name))
        for name in sorted(old.keys() | new.keys())
        if old.get(name) != new.get(name)
    }


def run_diff(
    sources: list[Source], other: str, fmt: str, where_text: str | None, console: Console,
    limit: int | None = None,
) -> int:
    where = None
    if where_text:
        from crawler.inspection.query import compile_where

        where = compile_where(where_text)
    other_sources = _other_files(other)
    bad = BadLines()
    with tempfile.TemporaryDirectory(prefix="crawler-diff-") as tmp:
        store = DiffStore(os.path.join(tmp, "diff.sqlite"))
        try:
            if other_sources is not None:
                old, new = "old", "new"
                scan(sources, lambda rec: store.add(old, rec), bad, where)
                scan(other_sources, lambda rec: store.add(new, rec), bad, where)
                labels = (_label(sources), _label(other_sources))
            else:
                scan(sources, lambda rec: store.add(rec["crawl_id"], rec), bad, where)
                store.flush()
                old, new = _pick_crawls(other, store.sides())
                labels = (f"crawl {old}", f"crawl {new}")
            store.flush()
            head = diff_counts(store, old, new, labels)
            head["bad_lines"] = bad.to_dict()
            lists = diff_lists(store, old, new)
            if fmt == "json":
                write_json(sys.stdout.buffer, head, lists, limit)
                sys.stdout.buffer.flush()
            else:
                shown = EXAMPLES if limit is None else min(limit, EXAMPLES)
                render_diff(console, {**head, **{k: list(islice(v, shown)) for k, v in lists.items()}})
        finally:
            store.close()
    return 0


def compare_crawls(sources: list[Source], old: str, new: str, where_text: str | None,
                   keep: int) -> dict[str, Any]:
    """Crawl ``old`` against crawl ``new``, both read from ``sources``: the counts, and the first
    ``keep`` items of each list. (For the report's recrawl section.)"""
    where = None
    if where_text:
        from crawler.inspection.query import compile_where

        where = compile_where(where_text)
    wanted = {old, new}

    def add(rec: dict) -> None:
        if rec["crawl_id"] in wanted:
            store.add(rec["crawl_id"], rec)

    with tempfile.TemporaryDirectory(prefix="crawler-diff-") as tmp:
        store = DiffStore(os.path.join(tmp, "diff.sqlite"))
        try:
            scan(sources, add, BadLines(), where)
            store.flush()
            result = diff_counts(store, old, new, (f"crawl {old}", f"crawl {new}"))
            result.update({key: list(islice(items, keep)) for key, items in diff_lists(store, old, new).items()})
        finally:
            store.close()
    return result


def _other_files(other: str) -> list[Source] | None:
    """The sources --diff names, or None when it names crawl ids instead."""
    if other == STDIN or os.path.exists(other) or (any(c in other for c in "*?[") and glob.glob(other)):
        return expand_sources([other])
    return None


def _pick_crawls(spec: str, crawl_ids: list[str]) -> tuple[str, str]:
    found = ", ".join(crawl_ids[:5]) + (", ..." if len(crawl_ids) > 5 else "") or "none"
    if ".." in spec:
        old, _, new = spec.partition("..")
        for crawl_id in (old, new):
            if crawl_id not in crawl_ids:
                raise UsageError(f"--diff: crawl id {crawl_id!r} is not in the input (crawl ids found: {found})")
        return old, new
    if spec not in crawl_ids:
        raise UsageError(f"--diff: {spec!r} is neither a file nor a crawl id in the input (crawl ids found: {found})")
    earlier = [crawl_id for crawl_id in crawl_ids if crawl_id < spec]
    if not earlier:
        raise UsageError(f"--diff: crawl {spec!r} is the earliest in the input, so there is nothing to compare it with")
    return earlier[-1], spec


def _label(sources: list[Source]) -> str:
    names = [s.name for s in sources]
    return names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more"


def diff_counts(store: DiffStore, old: str, new: str, labels: tuple[str, str]) -> dict[str, Any]:
    """Everything but the lists: how many URLs are new, gone or changed, and how."""
    transitions: Counter[str] = Counter()
    for _, old_status, new_status, old_error, new_error in store.status_changes(old, new):
        transitions[f"{_outcome(old_status, old_error)} -> {_outcome(new_status, new_error)}"] += 1
    per_field: Counter[str] = Counter()
    data_changed = 0
    for _, changes in store.data_changes(old, new):
        data_changed += 1
        per_field.update(changes.keys())
    return {
        "old": {"source": labels[0], "urls": store.count(old)},
        "new": {"source": labels[1], "urls": store.count(new)},
        "counts": {
            "new_urls": sum(1 for _ in store.only_in(new, old)),
            "gone_urls": sum(1 for _ in store.only_in(old, new)),
            "status_changed": sum(transitions.values()),
            "data_changed": data_changed,
        },
        "status_transitions": dict(transitions.most_common()),
        "field_changes": dict(sorted(per_field.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def diff_lists(store: DiffStore, old: str, new: str) -> dict[str, Iterator[Any]]:
    """The URLs behind the counts, each list in URL order, produced lazily."""
    return {
        "new_urls": store.only_in(new, old),
        "gone_urls": store.only_in(old, new),
        "status_changed": (
            {"url": url, "old": a, "new": b, "old_error": ae, "new_error": be}
            for url, a, b, ae, be in store.status_changes(old, new)
        ),
        "data_changed": (
            {"url": url, "fields": {name: {"old": a, "new": b} for name, (a, b) in changes.items()}}
            for url, changes in store.data_changes(old, new)
        ),
    }


def write_json(out, head: dict[str, Any], lists: dict[str, Iterator[Any]], limit: int | None) -> None:
    """One JSON document; the lists are streamed, item by item, so they may be any length."""
    body = orjson.dumps(head, option=orjson.OPT_INDENT_2)
    out.write(body[:-2])  # without the closing "\n}"
    for key, items in lists.items():
        out.write(b",\n  " + orjson.dumps(key) + b": [")
        for i, item in enumerate(islice(items, limit)):
            out.write((b"\n    " if i == 0 else b",\n    ") + orjson.dumps(item))
        out.write(b"\n  ]")
    out.write(b"\n}\n")


def _outcome(status: int | None, error: str | None) -> str:
    return str(status) if status is not None else (error or "null")


def render_diff(console: Console, result: dict[str, Any]) -> None:
    counts = result["counts"]
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("old", Text(f"{result['old']['source']}  ({result['old']['urls']:,} URLs)"))
    head.add_row("new", Text(f"{result['new']['source']}  ({result['new']['urls']:,} URLs)"))
    for key in ("new_urls", "gone_urls", "status_changed", "data_changed"):
        head.add_row(key.replace("_", " "), f"{counts[key]:,}")
    console.print(head)
    if result["status_transitions"]:
        table = Table("status change", "URLs", box=None, pad_edge=False)
        for change, n in result["status_transitions"].items():
            table.add_row(Text(change), f"{n:,}")
        console.print(table)
    if result["field_changes"]:
        table = Table("data field", "URLs changed", box=None, pad_edge=False)
        for name, n in result["field_changes"].items():
            table.add_row(Text(name), f"{n:,}")
        console.print(table)
    for key, title in (("new_urls", "new URLs"), ("gone_urls", "gone URLs")):
        if result[key]:
            console.print(Text(f"{title} (first {len(result[key])} of {counts[key]:,}):", style="bold"))
            for url in result[key]:
                console.print(Text("  " + url), soft_wrap=True)
    if result["status_changed"]:
        console.print(Text(f"status changes (first {len(result['status_changed'])}):", style="bold"))
        for row in result["status_changed"]:
            change = f"{_outcome(row['old'], row['old_error'])} -> {_outcome(row['new'], row['new_error'])}"
            console.print(Text(f"  {change}  {row['url']}"), soft_wrap=True)
    if result["data_changed"]:
        console.print(Text(f"data changes (first {len(result['data_changed'])}):", style="bold"))
        for row in result["data_changed"]:
            console.print(Text("  " + row["url"]), soft_wrap=True)
            for name, change in row["fields"].items():
                console.print(Text(f"    {name}: {_short(change['old'])} -> {_short(change['new'])}"), soft_wrap=True)
    if result["bad_lines"]["count"]:
        console.print(Text(f"{result['bad_lines']['count']:,} bad line(s) skipped (--validate lists them)"))


def _short(value: Any, width: int = 80) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"
