"""``crawler inspect``: summarise, query, validate, diff, follow and report crawl output.

::

    crawler inspect FILE... [--where EXPR] [--fields a,b] [--format table|json|csv] [--validate]
                            [--diff OTHER] [--follow] [--report report.html] [--limit N]

FILE is a path, a glob (quote it: ``'out-*.jsonl'``) or ``-`` for stdin; ``.jsonl.gz`` is
read as is. Every mode streams: memory stays bounded whatever the size of the input.

Which mode runs:

- ``--validate``: every line is checked against the record schema; bad lines are listed as
  ``file:line: reason``; exit 1 if there is any.
- ``--diff OTHER``: compare two crawls by URL (crawler/inspection/diffing.py).
- ``--follow``: tail files a running crawl is still writing (crawler/inspection/follow.py).
- ``--where``, ``--fields``, ``--limit`` or ``--format csv``: print the matching records.
- otherwise (or with ``--summary``): print a summary of the (matching) records.
- ``--report FILE.html`` also writes a self-contained HTML report (crawler/inspection/render/report.py).

Expressions (``--where``) are JMESPath evaluated on each record, plus bare numbers,
``and``/``or``/``not``, ``true``/``false``/``null``, ``re_search(pattern, value)`` and
``host(url)``; strings take single quotes (details in crawler/inspection/query.py)::

    status >= 400
    error.type == 'timeout'
    to_number(data.price) < 20
    re_search('/products/[0-9]+$', url)
    (error.type == 'timeout' or error.type == 'connection') and not (depth > 2)
    changed == true and data.title != null

``not`` binds tighter than a comparison, as in JMESPath: write ``not (depth > 2)``.
``--fields url,status,data.title`` takes paths in the same syntax.

Exit codes: 0 ok, 1 ``--validate`` found bad lines, 2 usage error (one line on stderr naming
the problem), 130 interrupted.

Module map: sources.py (reading), scanning.py (the pass over lines), sinks/schema.py (what a
valid record is), summary.py + latency.py (the numbers), summary_view.py (printing them),
query.py (--where/--fields), record_output.py (--format), validating.py, diffing.py,
follow.py, report.py + svg_charts.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

import orjson

from crawler.errors import UsageError
from crawler.inspection.render import warn
from crawler.inspection.sources import Source, expand_sources

if TYPE_CHECKING:  # rich is imported when inspect runs, not whenever the CLI starts
    from rich.console import Console

EXIT_OK, EXIT_BAD_LINES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

EXPRESSION_HELP = """\
expressions (--where): JMESPath evaluated on each record, plus bare numbers,
and/or/not, true/false/null, re_search(pattern, value) and host(url).
Strings take single quotes; "not" binds tighter than comparisons: not (depth > 2).
Examples:
  --where "status >= 400"
  --where "error.type == 'timeout'"
  --where "to_number(data.price) < 20"
  --where "re_search('/products/[0-9]+$', url)"
  --where "status == 200 and not re_search('^https://shop[.]', url)"
  --where "(error.type == 'timeout' or error.type == 'connection') and depth <= 2"
  --where "changed == true and data.title != null"
  --fields url,status,data.title --format csv

modes: --validate lists bad lines (exit 1 if any); --diff OTHER compares two crawls by URL
(OTHER is a file/glob, the new side, or a crawl id in FILE..., or OLD_ID..NEW_ID);
--follow tails growing files; with --where/--fields/--limit/--format csv the matching
records are printed, otherwise a summary (--summary forces it).
exit codes: 0 ok, 1 --validate found bad lines, 2 usage error, 130 interrupted.
"""


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the inspect arguments and options to the parser the CLI made for the verb."""
    p.description = "Summarise, query, validate, diff, follow or report crawl output (JSON lines)."
    p.epilog = EXPRESSION_HELP
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="JSON lines file(s): paths, globs, .jsonl.gz, or - for stdin")
    p.add_argument("--where", metavar="EXPR", help="only records for which EXPR is true (see below)")
    p.add_argument("--fields", metavar="a,b", help="print these fields (paths such as data.title)")
    p.add_argument("--format", choices=("table", "json", "csv"), default=None,
                   help="output format (default: table; json for machines)")
    p.add_argument("--validate", action="store_true", help="check every line against the record schema")
    p.add_argument("--diff", metavar="OTHER", help="compare with OTHER: a file/glob, or crawl id(s)")
    p.add_argument("--follow", action="store_true", help="keep reading as the files grow (Ctrl-C stops)")
    p.add_argument("--report", metavar="report.html", help="also write a self-contained HTML report")
    p.add_argument("--limit", type=int, metavar="N", help="print at most N matching records")
    p.add_argument("--summary", action="store_true", help="summarise the matching records instead of printing them")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes for summarising large files (default: one per CPU)")
    # For tests and scripts: stop following after SECONDS (exit 0), print the rolling
    # summary every SECONDS.
    p.add_argument("--follow-timeout", type=float, metavar="SECONDS", help=argparse.SUPPRESS)
    p.add_argument("--summary-every", type=float, default=5.0, metavar="SECONDS", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Run ``crawler inspect`` with parsed ``args``; return the exit code."""
    try:
        return _run(args)
    except UsageError as exc:
        warn(f"crawler inspect: {exc}")
        return EXIT_USAGE
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            # The reader went away (| head): stop quietly, and keep Python from complaining
            # about the flush at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        warn(f"crawler inspect: {exc.filename or ''}: {exc.strerror or exc}".replace(" : ", " "))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    _check_args(args)
    sources = expand_sources(args.files)
    fmt = args.format or "table"
    if args.validate:
        from crawler.inspection.validating import validate_sources

        return validate_sources(sources, fmt)
    if args.diff is not None:
        from crawler.inspection.diffing import run_diff

        return run_diff(sources, args.diff, fmt, args.where, _console(), args.limit)
    if args.follow:
        from crawler.inspection.follow import run_follow

        from rich.console import Console

        return run_follow(sources, args, _console(), Console(file=sys.stderr, highlight=False))
    if wants_records(args):
        return _print_records(sources, args, fmt)
    return _print_summary(sources, args, fmt)


def _check_args(args: argparse.Namespace) -> None:
    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must be 0 or more")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be 1 or more")
    if args.validate and (args.diff is not None or args.follow or args.report):
        raise UsageError("--validate cannot be combined with --diff, --follow or --report")
    if args.diff is not None and args.follow:
        raise UsageError("--diff cannot be combined with --follow")
    if args.report and (args.diff is not None or args.follow):
        raise UsageError("--report cannot be combined with --diff or --follow")
    if args.report and not os.path.isdir(os.path.dirname(os.path.abspath(args.report))):
        raise UsageError(f"--report: the directory of {args.report} does not exist")
    if args.follow_timeout is not None and args.follow_timeout < 0:
        raise UsageError("--follow-timeout must be 0 or more")
    if args.summary_every <= 0:
        raise UsageError("--summary-every must be more than 0")
    if args.format == "csv" and args.summary:
        raise UsageError("--format csv prints records; a summary is table or json")


def wants_records(args: argparse.Namespace) -> bool:
    """Whether records are printed (rather than a summary)."""
    if args.summary:
        return False
    return bool(args.where or args.fields or args.limit is not None or args.format == "csv")


def _console() -> Console:
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False)


def _print_summary(sources: list[Source], args: argparse.Namespace, fmt: str) -> int:
    from crawler.inspection.scanning import summarize
    from crawler.inspection.render.summary import render_summary

    if args.where:
        from crawler.inspection.query import compile_where

        compile_where(args.where)  # a bad expression is reported before any reading
    result = summarize(sources, args.where, args.workers, with_report=bool(args.report))
    _warn_where(result.where_errors, result.where_first_error)
    summary = result.summary.to_dict([s.name for s in sources])
    if args.report:
        _write_report(args.report, result, summary, _recrawl_comparison(sources, summary, args.where))
    if fmt == "json":
        sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.buffer.flush()
    else:
        render_summary(_console(), summary)
    return EXIT_OK


def _print_records(sources: list[Source], args: argparse.Namespace, fmt: str) -> int:
    from crawler.inspection.query import Fields, compile_where
    from crawler.inspection.render.records import make_writer
    from crawler.inspection.render.report import ReportData
    from crawler.inspection.scanning import PassResult, StopScan, scan
    from crawler.inspection.summary import Summary
    from sinks.schema import record_struct

    where = compile_where(args.where) if args.where else None
    fields = Fields(args.fields) if args.fields else None
    writer = make_writer(fmt, fields, _console())
    result = PassResult(Summary(), ReportData() if args.report else None)
    limit = args.limit
    printed = 0

    def on_record(rec: dict) -> None:
        nonlocal printed
        if limit is None or printed < limit:
            writer.write(rec)
            printed += 1
        elif result.report is None:
            raise StopScan  # enough printed, and no report to complete: stop reading
        if result.report is not None:
            struct = record_struct(rec)
            result.summary.add(struct)
            result.report.add(struct)

    try:
        result.summary.lines = scan(sources, on_record, result.summary.bad, where)
    finally:
        writer.close()
    if where is not None:
        _warn_where(where.errors, where.first_error)
    bad = result.summary.bad
    if bad.count:
        file, line, reason = bad.first[0]
        warn(f"warning: skipped {bad.count:,} bad line(s), first {file}:{line}: {reason} "
             "(--validate lists them all)")
    if args.report:
        _write_report(args.report, result, result.summary.to_dict([s.name for s in sources]))
    return EXIT_OK


def _warn_where(errors: int, first: str | None) -> None:
    if errors:
        warn(f"warning: --where could not be evaluated on {errors:,} record(s), "
             f"which did not match (first: {first})")


def _recrawl_comparison(sources: list[Source], summary: dict, where: str | None) -> dict | None:
    """For the report: the last two crawls compared URL by URL, when the input holds two and
    can be read again (stdin cannot)."""
    from crawler.inspection.diffing import compare_crawls
    from crawler.inspection.render.report import MAX_ROWS
    from crawler.inspection.summary import OTHER_CRAWLS

    crawl_ids = [c["crawl_id"] for c in summary["crawls"] if c["crawl_id"] != OTHER_CRAWLS]
    if len(crawl_ids) < 2 or any(s.is_stdin for s in sources):
        return None
    return compare_crawls(sources, crawl_ids[-2], crawl_ids[-1], where, keep=MAX_ROWS)


def _write_report(path: str, result: Any, summary: dict, comparison: dict | None = None) -> None:
    from crawler.inspection.render.report import write_report

    write_report(path, summary, result.summary.total(), result.report, comparison)
    warn(f"wrote {path}")
