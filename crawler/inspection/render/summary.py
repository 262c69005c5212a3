"""Printing a summary (the dict from ``Summary.to_dict``) with rich.

The text view is made from the same dict that ``--format json`` prints, so the two can never
disagree. Host names, rule names and reasons come from the records: they go through ``Text``,
never through rich markup.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from crawler.inspection.completeness import headline


def render_summary(console: Console, summary: dict[str, Any]) -> None:
    files = summary.get("files") or []
    title = f"{summary['records']:,} records from {len(files)} file(s)" if files else "summary"
    console.print(Panel(Group(*_stats_blocks(summary)), title=Text(title), expand=False))
    bad = summary["bad_lines"]
    if bad["count"]:
        console.print(_bad_lines_table(bad))
    crawls = summary["crawls"]
    if len(crawls) > 1:
        for crawl in crawls:
            console.print(Panel(Group(*_stats_blocks(crawl)), title=Text(f"crawl {crawl['crawl_id']}"), expand=False))


def _stats_blocks(s: dict[str, Any]) -> list:
    overview = Table.grid(padding=(0, 2))
    overview.add_column(style="bold")
    overview.add_column(justify="right")
    rows = [
        ("records", f"{s['records']:,}"),
        ("ok", f"{s['ok']:,}"),
        ("failed", f"{s['failed']:,}"),
        ("bytes", f"{s['bytes']:,} ({human_bytes(s['bytes'])})"),
    ]
    lat = s["elapsed_ms"]
    if lat["count"]:
        rows.append(("elapsed_ms p50 / p95 / p99",
                     f"{fmt_ms(lat['p50'])} / {fmt_ms(lat['p95'])} / {fmt_ms(lat['p99'])}  (±1%)"))
    t = s["time"]
    if t["first"]:
        rows.append(("first / last fetched_at", f"{t['first']} / {t['last']}"))
        rows.append(("duration", f"{t['duration_s']:,.1f} s"))
        if t["pages_per_s"] is not None:
            rows.append(("pages/s", f"{t['pages_per_s']:,.1f}"))
    changed = s["changed"]
    if changed["true"] or changed["false"]:
        rows.append(("recrawl: changed / unchanged", f"{changed['true']:,} / {changed['false']:,}"))
    for name, value in rows:
        overview.add_row(name, value)
    blocks: list = [overview]
    side = Table.grid(padding=(0, 4))
    side.add_row(
        counts_table("status", s["status"]),
        counts_table("error.type", s["errors"]) if s["errors"] else Text(""),
        counts_table("depth", s["depth"]),
    )
    blocks.append(side)
    hosts = s["hosts"]
    if hosts["top"]:
        label = "host (top 10, approximate)" if hosts["approximate"] else f"host (top 10 of {hosts['distinct']:,})"
        blocks.append(counts_table(label, {h["host"] or "(none)": h["records"] for h in hosts["top"]}))
    if s["rules"]:
        blocks.append(_coverage_table(s["rules"]))
    if any(info["incomplete"] or info["invalid"] for info in s["rules"].values()):
        blocks.append(_incomplete_table(s["rules"], s["incomplete_examples"]))
    return blocks


def counts_table(label: str, counts: dict[str, int]) -> Table:
    table = Table(label, "records", box=None, pad_edge=False)
    table.columns[1].justify = "right"
    for key, n in counts.items():
        table.add_row(Text(str(key)), f"{n:,}")
    return table


def _coverage_table(rules: dict[str, Any]) -> Table:
    table = Table("rule", "records", "field coverage (non-null share)", box=None, pad_edge=False)
    for rule, info in rules.items():
        shares = "  ".join(f"{name} {share:.1%}" for name, share in info["coverage"].items()) or "-"
        table.add_row(Text(rule), f"{info['records']:,}", Text(shares))
    return table


def _incomplete_table(rules: dict[str, Any], examples: list[str]) -> Table:
    """Rules whose records lack required fields; the first such pages (all: --where 'missing')."""
    table = Table("rule", "records", "missing required / invalid fields", title=Text(headline(rules)),
                  box=None, pad_edge=False, title_justify="left")
    for rule, info in rules.items():
        if info["incomplete"] or info["invalid"]:
            missing = "  ".join(f"{name} {n:,}" for name, n in info["missing"].items())
            invalid = "  ".join(f"{name} {n:,}" for name, n in info["invalid"].items())
            table.add_row(Text(rule), f"{info['incomplete']:,}", Text(f"{missing or '-'} / {invalid or '-'}"))
    for url in examples:
        table.add_row(Text("  e.g."), "", Text(url))
    return table


def _bad_lines_table(bad: dict[str, Any]) -> Table:
    shown = len(bad["first"])
    title = f"{bad['count']:,} bad line(s) skipped" + (f", first {shown}" if shown < bad["count"] else "")
    table = Table("file", "line", "reason", title=Text(title), box=None, pad_edge=False)
    for item in bad["first"]:
        table.add_row(Text(item["file"]), str(item["line"]), Text(item["reason"]))
    return table


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"
