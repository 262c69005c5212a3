"""The command line: a thin layer over crawler.api (DESIGN §3 "Command line"):
crawl, schedule, inspect, extract and demo.

Exit codes: 0 finished (failed pages are still records), 1 aborted (resumable),
2 usage or configuration error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from crawler import __version__
from crawler.errors import CrawlerError, UsageError

log = logging.getLogger("crawler")

EXIT_OK, EXIT_ABORTED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_crawl_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("urls", nargs="*", metavar="URL", help="seed URLs (added to -s files and [crawl] seeds)")
    p.add_argument("-s", "--seeds", action="append", default=[], metavar="SEEDS_FILE",
                   help="file with one URL per line; blank lines and # comments are skipped (repeatable)")
    p.add_argument("-c", "--config", metavar="settings.toml",
                   help="settings file (default: ./settings.toml if present, else the packaged defaults)")
    p.add_argument("-o", "--output", metavar="out.jsonl", help="JSON-lines output (default: [output] path)")
    p.add_argument("--state", metavar="DIR", help="crawl state directory (default: <output>.state/)")
    p.add_argument("--max-pages", type=int, metavar="N", help="stop after N URLs are settled (0 = no limit)")
    p.add_argument("--max-depth", type=int, metavar="N", help="link depth; 0 = seeds only, -1 = unlimited")
    p.add_argument("--engine", choices=("threads", "async"), help="fetch engine")
    p.add_argument("--fresh", action="store_true",
                   help="discard the saved state and start over (the output file is emptied)")
    p.add_argument("--recrawl", action="store_true",
                   help="if the saved crawl finished, start a new incremental run over every URL it knows "
                        "(conditional requests; records say whether each page changed)")
    p.add_argument("--worker-id", metavar="ID",
                   help='with [state] backend = "redis": this worker\'s name (default: the host name); '
                        "it writes <output stem>-<ID>.jsonl")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line and no summary")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")


def crawl_overrides(args: argparse.Namespace) -> dict:
    return {
        "crawl.max_pages": args.max_pages,
        "crawl.max_depth": args.max_depth,
        "fetch.engine": args.engine,
        "output.path": args.output,
    }


def cmd_crawl(args: argparse.Namespace) -> int:
    from crawler.api import crawl, wants_progress

    overrides = {k: v for k, v in crawl_overrides(args).items() if v is not None}
    result = crawl(args.urls, settings=args.config, state=args.state, fresh=args.fresh,
                   progress=wants_progress(args.quiet), seeds_files=args.seeds, recrawl=args.recrawl,
                   worker_id=args.worker_id, **overrides)
    if not args.quiet:
        print(result.summary(), file=sys.stderr)
    return EXIT_INTERRUPTED if result.interrupted else EXIT_OK


def cmd_schedule(args: argparse.Namespace) -> int:
    from crawler.api import resolve_settings
    from crawler.engine.progress import wants_progress
    from crawler.engine.recurring import Cadence, RunScheduler, print_cron, print_systemd, schedule_signals
    from crawler.engine.seeds import read_seeds, require_seeds

    overrides = {k: v for k, v in crawl_overrides(args).items() if v is not None}
    conf = resolve_settings(args.config, overrides)
    if conf.state.backend == "redis":
        raise UsageError('crawler schedule runs one machine\'s crawl; with [state] backend = "redis" run '
                         '`crawler crawl --recrawl` on every worker from cron or a systemd timer instead')
    if args.every or args.cron:
        cadence = Cadence(args.every or "", args.cron or "")
    else:
        cadence = Cadence(conf.schedule.every, conf.schedule.cron, where="[schedule] every/cron")
    if args.print_cron:
        print(print_cron(cadence, args.raw_argv))
        return EXIT_OK
    if args.print_systemd:
        print(print_systemd(cadence, args.raw_argv), end="")
        return EXIT_OK
    if args.runs is not None and args.runs < 1:
        raise UsageError(f"--runs: must be at least 1, got {args.runs}")
    urls = require_seeds(read_seeds(args.urls, args.seeds, conf.crawl.seeds))
    logging.getLogger("crawler.engine.recurring").setLevel(logging.ERROR if args.quiet else logging.INFO)
    scheduler = RunScheduler(conf, urls, output=conf.output.path, state_dir=args.state, cadence=cadence,
                          runs=args.runs or 0, progress=wants_progress(args.quiet), fresh=args.fresh)
    schedule_signals(scheduler)
    return scheduler.run()


def cmd_extract(args: argparse.Namespace) -> int:
    from crawler.api import extract, wants_progress

    result = extract(args.warcs, settings=args.config, output=args.output, progress=wants_progress(args.quiet))
    if not args.quiet:
        print(result.summary(), file=sys.stderr)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from crawler.demo.command import run_demo

    return run_demo(args.output_dir, quiet=args.quiet)


def cmd_status(args: argparse.Namespace) -> int:
    from crawler.api import resolve_settings
    from crawler.engine.status import crawl_status, render_status

    overrides = {"output.path": args.output} if args.output else {}
    conf = resolve_settings(args.config, overrides)
    status = crawl_status(conf, state=args.state, hosts=args.hosts)
    print(render_status(status, args.format))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crawler", description="A parallel, polite, crash-safe web crawler.")
    parser.add_argument("--version", action="version", version=f"crawler {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("crawl", help="crawl from seeds, writing one JSON line per URL")
    add_crawl_options(p)
    p.set_defaults(func=cmd_crawl)

    p = sub.add_parser("schedule", help="rerun the crawl on an interval or cron schedule (incremental)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--every", metavar="INTERVAL", help="30s, 30m, 6h, 1d ... (default: [schedule] every)")
    when.add_argument("--cron", metavar="EXPR", help='five-field cron expression, e.g. "0 */6 * * *"')
    p.add_argument("--runs", type=int, metavar="N", help="stop after N runs (default: run forever)")
    p.add_argument("--print-cron", action="store_true", help="print a crontab line running the crawl instead")
    p.add_argument("--print-systemd", action="store_true", help="print a systemd service and timer instead")
    add_crawl_options(p)
    p.set_defaults(func=cmd_schedule)

    try:
        from crawler.inspection import command as inspecting
    except ImportError:
        inspecting = None
    if inspecting is not None:
        p = sub.add_parser("inspect", help="summarise, query, validate, diff or report crawl output")
        inspecting.configure_parser(p)
        p.set_defaults(func=inspecting.run)

    p = sub.add_parser("status", help="how far a crawl is: counts, workers, busiest hosts")
    p.add_argument("-c", "--config", metavar="settings.toml", help="the crawl's settings (as for crawl)")
    p.add_argument("-o", "--output", metavar="out.jsonl", help="the crawl's output (default: [output] path)")
    p.add_argument("--state", metavar="DIR", help="a local crawl's state directory (default: <output>.state/)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--hosts", type=int, default=10, metavar="N", help="busiest hosts to show (default: 10)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("extract", help="re-run the parse rules over WARC files, offline (crawl once, extract many)")
    p.add_argument("warcs", nargs="+", metavar="WARC", help="WARC files ([output] warc of a crawl, or any WARC)")
    p.add_argument("-c", "--config", metavar="settings.toml",
                   help="settings file (default: ./settings.toml if present, else the packaged defaults)")
    p.add_argument("-o", "--output", metavar="out.jsonl",
                   help="JSON-lines output, rewritten from the start (default: extract.jsonl)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line and no summary")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("demo", help="crawl the bundled sample site on loopback")
    p.add_argument("--output-dir", default="demo-output", help="where the demo writes (default: demo-output)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from crawler.engine.progress import setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    args.raw_argv = list(argv if argv is not None else sys.argv[1:])[1:]
    setup_logging(getattr(args, "verbose", False), getattr(args, "quiet", False))
    try:
        return args.func(args)
    except CrawlerError as exc:
        print(f"crawler: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        if argv is None:  # the process's own command line: it exits next
            spare_the_exit()


def spare_the_exit() -> None:
    """Called when the command is over and the process is about to exit. Every file the
    command wrote is closed (the crawl's output and state are closed, and committed, before
    ``crawl`` returns), so shutdown has no garbage left that matters. Freezing the heap
    spares the interpreter's shutdown its garbage collections over every object the imports
    made: 0.1 s of each crawl's exit on a 2-core machine (docs/performance.md). Atexit
    handlers (logging's flush, multiprocessing's clean-up) still run."""
    gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
