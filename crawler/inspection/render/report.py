"""``crawler inspect FILE... --report report.html``: one self-contained HTML file.

Sections: the summary; status classes and errors over time; the latency histogram; pages per
host; the error table with URLs; for recrawls (``changed`` not null) what changed; field
coverage per rule and the records without required fields; one row per crawl id; skipped lines.

Offline and inert by construction: no script, no external file (charts are inline SVG from
crawler/inspection/render/svg.py), and a Content-Security-Policy that forbids both anyway. Every value
from a record is escaped, so a hostile URL or title shows as text. Tables keep the first
``MAX_ROWS`` rows (memory stays bounded) and say how many there were in all.

``ReportData`` is what a pass gathers besides the Summary; like it, it can be merged.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from html import escape
from typing import Any

import orjson

from crawler.inspection.completeness import headline
from crawler.inspection.latency import LatencyHistogram
from crawler.inspection.summary import CrawlStats
from crawler.inspection.render.svg import bars, hbars, stacked_bars

MAX_ROWS = 500
STATUS_CLASSES = (("2xx", "#59a14f"), ("3xx", "#4e79a7"), ("4xx", "#f28e2b"), ("5xx", "#e15759"),
                  ("no response", "#9c9c9c"))
ERROR_COLOURS = {"timeout": "#e15759", "connection": "#b07aa1", "http": "#f28e2b", "too_large": "#edc948",
                 "robots": "#76b7b2", "redirects": "#4e79a7", "blocked": "#9c755f", "parse": "#ff9da7"}


class Timeline:
    """Counts per time bucket. Buckets are 2**k seconds wide and widen (merging pairs) so that
    first to last spans at most MAX_BUCKETS, so a crawl of any length fits in one chart."""

    MAX_BUCKETS = 240

    def __init__(self) -> None:
        self.width = 1
        self.buckets: dict[int, dict[str, int]] = {}
        self.lo: int | None = None
        self.hi: int | None = None

    def add(self, seconds: float, keys: tuple[str, ...]) -> None:
        index = int(seconds // self.width)
        bucket = self.buckets.get(index)
        if bucket is None:
            while self.lo is not None and max(self.hi, index) - min(self.lo, index) >= self.MAX_BUCKETS:
                self._widen()
                index = int(seconds // self.width)
            bucket = self.buckets.get(index)
            if bucket is None:
                bucket = self.buckets[index] = {}
                self.lo = index if self.lo is None else min(self.lo, index)
                self.hi = index if self.hi is None else max(self.hi, index)
        for key in keys:
            bucket[key] = bucket.get(key, 0) + 1

    def _widen(self) -> None:
        merged: dict[int, dict[str, int]] = {}
        for index, counts in self.buckets.items():
            target = merged.setdefault(index // 2, {})
            for key, n in counts.items():
                target[key] = target.get(key, 0) + n
        self.buckets = merged
        self.width *= 2
        if self.lo is not None:
            self.lo, self.hi = self.lo // 2, self.hi // 2

    def merge(self, other: Timeline) -> None:
        while self.width < other.width:
            self._widen()
        factor = self.width // other.width
        for index, counts in other.buckets.items():
            target = self.buckets.setdefault(index // factor, {})
            for key, n in counts.items():
                target[key] = target.get(key, 0) + n
        if self.buckets:
            self.lo, self.hi = min(self.buckets), max(self.buckets)
            while self.hi - self.lo >= self.MAX_BUCKETS:
                self._widen()

    def rows(self) -> list[tuple[datetime, dict[str, int]]]:
        """Every bucket from the first to the last, empty ones included, in time order."""
        if self.lo is None:
            return []
        return [(datetime.fromtimestamp(i * self.width, timezone.utc), self.buckets.get(i, {}))
                for i in range(self.lo, self.hi + 1)]


class ReportData:
    """What the report needs beyond the Summary: the timeline and the first rows of tables.

    Fed RecordStructs, a batch at a time, like the Summary.
    """

    def __init__(self) -> None:
        self.timeline = Timeline()
        self.errors: list[tuple] = []  # (fetched_at, url, status, type, message)
        self.changed: list[tuple] = []  # (fetched_at, url, crawl_id, status, data)
        self._seconds: dict[str, float] = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch seconds, per batch

    def add_batch(self, recs: list) -> None:
        seconds = self._seconds
        for rec in recs:
            status, error, when = rec.status, rec.error, rec.fetched_at
            klass = "no response" if status is None else f"{status // 100}xx"
            keys = (klass,) if error is None else (klass, "error:" + error.type)
            if len(when) == 24 and when[23] == "Z":
                # Records of one second share the parse; the milliseconds do not move a bucket.
                epoch = seconds.get(when[:19])
                if epoch is None:
                    epoch = seconds[when[:19]] = datetime.fromisoformat(when[:19] + "+00:00").timestamp()
            else:
                epoch = datetime.fromisoformat(when).timestamp()
            self.timeline.add(epoch, keys)
            if error is not None and len(self.errors) < MAX_ROWS:
                self.errors.append((when, rec.url, status, error.type, error.message))
            if rec.changed and len(self.changed) < MAX_ROWS:
                self.changed.append((when, rec.url, rec.crawl_id, status, rec.data))
        seconds.clear()

    def add(self, rec) -> None:
        self.add_batch([rec])

    def merge(self, other: ReportData) -> None:
        self.timeline.merge(other.timeline)
        self.errors += other.errors[: MAX_ROWS - len(self.errors)]
        self.changed += other.changed[: MAX_ROWS - len(self.changed)]


def write_report(path: str, summary: dict[str, Any], total: CrawlStats, data: ReportData,
                 comparison: dict[str, Any] | None = None) -> None:
    """Write the report to ``path`` atomically (a reader never sees half a file).

    ``comparison`` is the last crawl against the one before (crawler.inspection.diffing.compare_crawls).
    """
    text = render_report(summary, total, data, comparison)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def render_report(summary: dict[str, Any], total: CrawlStats, data: ReportData,
                  comparison: dict[str, Any] | None = None) -> str:
    sections = [
        _summary_section(summary),
        _timeline_section(data.timeline),
        _latency_section(total.latency, summary["elapsed_ms"]),
        _hosts_section(total),
        _counts_section(summary),
        _errors_section(data.errors, summary["failed"]),
        _recrawl_section(summary, data.changed, comparison),
        _coverage_section(summary["rules"], summary["incomplete_examples"]),
        _crawls_section(summary["crawls"]),
        _bad_lines_section(summary["bad_lines"]),
    ]
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    files = ", ".join(summary.get("files") or [])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Crawl report</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Crawl report</h1>
<p class="meta">{e(files)} &middot; generated {e(generated)}</p>
{''.join(sections)}
</body>
</html>
"""


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
td,th{border-bottom:1px solid #eee;padding:.2rem .6rem;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.url{word-break:break-all;max-width:520px}
.meta,.note{color:#666;font-size:.85rem}
.grid{display:flex;flex-wrap:wrap;gap:2rem;align-items:flex-start}
.scroll{max-height:32rem;overflow:auto;border:1px solid #eee}
code{font-size:.8rem;word-break:break-all}
"""


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f'<th class="n">{e(h)}</th>' if i in numeric else f"<th>{e(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            cls = ' class="n"' if i in numeric else (' class="url"' if headers[i] == "url" else "")
            cells.append(f"<td{cls}>{e(_fmt(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if value is None:
        return "-"
    return str(value)


def _summary_section(s: dict[str, Any]) -> str:
    lat, t = s["elapsed_ms"], s["time"]
    rows = [
        ["records", s["records"]], ["ok", s["ok"]], ["failed", s["failed"]],
        ["bytes", s["bytes"]],
        ["elapsed_ms p50 / p95 / p99 (±1%)",
         " / ".join("-" if lat[k] is None else f"{lat[k]:,.1f}" for k in ("p50", "p95", "p99"))],
        ["first fetched_at", t["first"]], ["last fetched_at", t["last"]],
        ["duration (s)", t["duration_s"]], ["pages/s", t["pages_per_s"]],
        ["bad lines skipped", s["bad_lines"]["count"]],
    ]
    return '<section id="summary"><h2>Summary</h2>' + _table(["", "value"], rows, {1}) + "</section>"


def _timeline_section(timeline: Timeline) -> str:
    rows = timeline.rows()
    if not rows:
        return '<section id="timeline"><h2>Over time</h2><p class="note">No records.</p></section>'
    labels = [moment.strftime("%Y-%m-%d %H:%M:%S") for moment, _ in rows]
    span = (rows[-1][0] - rows[0][0]).total_seconds()
    short = slice(11, 19) if span < 86400 else slice(5, 16)  # "01:02:03", or "11-22 01:02"
    ticks = [(i, labels[i][short]) for i in sorted({0, len(rows) // 2, len(rows) - 1})]
    status_series = [(name, colour, [counts.get(name, 0) for _, counts in rows]) for name, colour in STATUS_CLASSES]
    kinds = sorted({k[6:] for _, counts in rows for k in counts if k.startswith("error:")})
    error_series = [(kind, ERROR_COLOURS.get(kind, "#bab0ac"), [counts.get("error:" + kind, 0) for _, counts in rows])
                    for kind in kinds]
    width = f"each bar is {timeline.width:,} s; times are UTC"
    out = ['<section id="timeline"><h2>Over time</h2>',
           f'<h3>Records by status class</h3><p class="note">{e(width)}</p>',
           stacked_bars("Records by status class over time", labels, status_series, ticks)]
    if error_series:
        out += ["<h3>Errors by type</h3>",
                stacked_bars("Errors by type over time", labels, error_series, ticks)]
    out.append("</section>")
    return "".join(out)


# Histogram bin edges in ms: 1-2-5 steps, wide enough for any request.
_EDGES = [0.0] + [m * 10.0**k for k in range(-1, 7) for m in (1, 2, 5)]


def _latency_section(hist: LatencyHistogram, lat: dict[str, Any]) -> str:
    if not hist.count:
        return '<section id="latency"><h2>Latency</h2><p class="note">No records.</p></section>'
    counts = [0] * len(_EDGES)
    counts[0] = hist.zeros
    for key, n in hist.buckets.items():
        value = hist.bucket_value(key)
        i = next((j for j in range(1, len(_EDGES)) if value < _EDGES[j]), len(_EDGES)) - 1
        counts[i] += n
    used = [i for i, n in enumerate(counts) if n]
    lo, hi = used[0], used[-1]
    labels = [_edge_label(i) for i in range(lo, hi + 1)]
    chart = bars("Latency histogram (elapsed_ms)", labels, counts[lo:hi + 1], x_title="elapsed_ms (bin lower edge)")
    stats = " · ".join(f"{k} {lat[k]:,.1f} ms" for k in ("p50", "p95", "p99") if lat[k] is not None)
    return f'<section id="latency"><h2>Latency</h2><p class="note">{e(stats)} (±1%)</p>{chart}</section>'


def _edge_label(i: int) -> str:
    edge = _EDGES[i]
    if edge >= 1000:
        return f"{edge / 1000:g}s"
    return f"{edge:g}"


def _hosts_section(total: CrawlStats) -> str:
    hosts = total.hosts()
    top = sorted(hosts.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    note = "approximate: too many hosts to count them all" if total.hosts_pruned else f"{len(hosts):,} hosts"
    chart = hbars("Pages per host (top 20)", [(h or "(none)", n) for h, n in top])
    return f'<section id="hosts"><h2>Pages per host</h2><p class="note">{e(note)}</p>{chart}</section>'


def _counts_section(s: dict[str, Any]) -> str:
    status = _table(["status", "records"], [[k, n] for k, n in s["status"].items()], {1})
    errors = _table(["error.type", "records"], [[k, n] for k, n in s["errors"].items()], {1})
    depth = _table(["depth", "records"], [[k, n] for k, n in s["depth"].items()], {1})
    return f'<section id="counts"><h2>Counts</h2><div class="grid">{status}{errors}{depth}</div></section>'


def _errors_section(rows: list[tuple], failed: int) -> str:
    note = f"{failed:,} failed records" + (f"; the first {len(rows):,} are listed" if failed > len(rows) else "")
    table = _table(["fetched_at", "url", "status", "error.type", "message"], [list(r) for r in rows], {2})
    return (f'<section id="errors"><h2>Errors</h2><p class="note">{e(note)}</p>'
            f'<div class="scroll">{table}</div></section>')


def _recrawl_section(s: dict[str, Any], rows: list[tuple], comparison: dict[str, Any] | None) -> str:
    changed = s["changed"]
    out = ['<section id="recrawl"><h2>Recrawl changes</h2>']
    if comparison is not None:
        out.append(_comparison(comparison))
    if not (changed["true"] or changed["false"]):
        out.append('<p class="note">No recrawled records (changed is null everywhere).</p></section>')
        return "".join(out)
    out.append(_table(["crawl_id", "changed", "unchanged"],
                      [[c["crawl_id"], c["changed"]["true"], c["changed"]["false"]] for c in s["crawls"]
                       if c["changed"]["true"] or c["changed"]["false"]], {1, 2}))
    shown = f" (the first {len(rows):,})" if changed["true"] > len(rows) else ""
    out.append(f'<p class="note">{e(f"Pages with changed = true, and what they hold now{shown}.")}</p>')
    out.append('<div class="scroll">' + _table(
        ["fetched_at", "url", "crawl_id", "status", "data"],
        [[t, u, c, st, orjson.dumps(d).decode()[:300]] for t, u, c, st, d in rows], {3}) + "</div></section>")
    return "".join(out)


def _comparison(c: dict[str, Any]) -> str:
    """The last crawl against the previous one: counts, then field by field."""
    counts = c["counts"]
    lead = (f"{c['old']['source']} ({c['old']['urls']:,} URLs) → {c['new']['source']} ({c['new']['urls']:,} URLs): "
            f"{counts['new_urls']:,} new, {counts['gone_urls']:,} gone, {counts['status_changed']:,} status "
            f"changes, {counts['data_changed']:,} with changed data.")
    out = [f'<h3>Compared with the previous crawl</h3><p class="note">{e(lead)}</p><div class="grid">',
           _table(["data field", "URLs changed"], [[k, n] for k, n in c["field_changes"].items()], {1}),
           _table(["status change", "URLs"], [[k, n] for k, n in c["status_transitions"].items()], {1}),
           "</div>"]
    rows = [[item["url"], name, _json_text(change["old"]), _json_text(change["new"])]
            for item in c["data_changed"] for name, change in item["fields"].items()]
    if rows:
        out.append('<div class="scroll">' + _table(["url", "field", "old", "new"], rows) + "</div>")
    return "".join(out)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()[:200]


def _coverage_section(rules: dict[str, Any], examples: list[str]) -> str:
    rows = []
    for rule, info in rules.items():
        for name, share in info["coverage"].items():
            rows.append([rule, info["records"], name, f"{share:.1%}"])
    table = _table(["rule", "records", "data field", "non-null share"], rows, {1, 3})
    return f'<section id="coverage"><h2>Field coverage per rule</h2>{table}{_incomplete_table(rules, examples)}</section>'


def _incomplete_table(rules: dict[str, Any], examples: list[str]) -> str:
    """Per rule, its records without required fields and per field the missing and invalid
    counts (the ``missing``/``invalid`` record keys), then the first such pages; as the
    summary on the terminal shows them. Nothing when every record is complete."""
    rows = []
    for rule, info in rules.items():
        for name in dict.fromkeys([*info["missing"], *info["invalid"]]):
            rows.append([rule, info["incomplete"], name, info["missing"].get(name, 0), info["invalid"].get(name, 0)])
    if not rows:
        return ""
    heading = f"<h3>{e(headline(rules))}</h3>"
    table = _table(["rule", "incomplete records", "field", "missing", "invalid"], rows, {1, 3, 4})
    first = _table(["url"], [[url] for url in examples]) if examples else ""
    return heading + table + first


def _crawls_section(crawls: list[dict[str, Any]]) -> str:
    rows = [[c["crawl_id"], c["records"], c["ok"], c["failed"], c["time"]["first"], c["time"]["last"],
             c["time"]["pages_per_s"], c["elapsed_ms"]["p95"]] for c in crawls]
    table = _table(["crawl_id", "records", "ok", "failed", "first", "last", "pages/s", "p95 ms"], rows,
                   {1, 2, 3, 6, 7})
    return f'<section id="crawls"><h2>Crawls</h2>{table}</section>'


def _bad_lines_section(bad: dict[str, Any]) -> str:
    if not bad["count"]:
        return ""
    rows = [[b["file"], b["line"], b["reason"]] for b in bad["first"]]
    note = f"{bad['count']:,} lines were skipped; the first {len(rows)} are listed (--validate lists all)."
    return (f'<section id="bad-lines"><h2>Skipped lines</h2><p class="note">{e(note)}</p>'
            f'{_table(["file", "line", "reason"], rows, {1})}</section>')
