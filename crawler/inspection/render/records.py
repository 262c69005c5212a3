"""Writing matching records out: ``--format table|json|csv``, projected by ``--fields``.

- json: one JSON object per line (JSON lines), the whole record or the chosen fields;
- csv: a header row, then one row per record; objects and arrays are JSON text, null is empty;
- table: rich tables of up to ``TABLE_ROWS`` rows each, so memory stays bounded; with
  ``follow=True`` one plain line per record, printed at once.

Record content is shown as plain text: rich markup in a URL or a title is not interpreted, and
control characters are dropped.
"""

from __future__ import annotations

import csv
import sys
from typing import IO, Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crawler.inspection.query import Fields
from sinks.schema import RECORD_KEYS

TABLE_ROWS = 1000
DEFAULT_TABLE_FIELDS = "url,status,error.type,elapsed_ms,depth,rule"


class JsonLinesWriter:
    def __init__(self, fields: Fields | None, out: IO[bytes]) -> None:
        self.fields = fields
        self.out = out

    def write(self, rec: dict) -> None:
        value = self.fields.project(rec) if self.fields else rec
        self.out.write(orjson.dumps(value) + b"\n")

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        self.flush()


class CsvWriter:
    def __init__(self, fields: Fields | None, out: IO[str]) -> None:
        self.fields = fields
        self.out = out
        self.writer = csv.writer(out, lineterminator="\n")
        self.writer.writerow(fields.names if fields else RECORD_KEYS)

    def write(self, rec: dict) -> None:
        values = self.fields.values(rec) if self.fields else [rec.get(k) for k in RECORD_KEYS]
        self.writer.writerow([csv_cell(v) for v in values])

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        self.flush()


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


class TableWriter:
    def __init__(self, fields: Fields | None, console: Console, follow: bool = False) -> None:
        self.fields = fields or Fields(DEFAULT_TABLE_FIELDS)
        self.console = console
        self.follow = follow
        self.rows: list[list[Text]] = []

    def write(self, rec: dict) -> None:
        cells = [Text(table_cell(v)) for v in self.fields.values(rec)]
        if self.follow:
            self.console.print(Text("  ").join(cells), soft_wrap=True)
            return
        self.rows.append(cells)
        if len(self.rows) >= TABLE_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            table = Table(*self.fields.names, show_lines=False, expand=False)
            for column in table.columns:
                column.overflow = "fold"  # a URL is shown whole, over several lines if need be
            for row in self.rows:
                table.add_row(*row)
            self.console.print(table)
            self.rows = []
        self.console.file.flush()

    def close(self) -> None:
        self.flush()


def table_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def make_writer(fmt: str, fields: Fields | None, console: Console, follow: bool = False):
    """A writer with write(rec), flush() and close(), printing to stdout."""
    if fmt == "json":
        return JsonLinesWriter(fields, sys.stdout.buffer)
    if fmt == "csv":
        return CsvWriter(fields, sys.stdout)
    return TableWriter(fields, console, follow=follow)
