"""Time ``parse_page`` over a directory of real HTML files: link extraction versus the rest.

    .venv/bin/python bench/parse_bench.py [DIR] [--repeat 3] [--base http://127.0.0.1:8000/] [--against CHECKOUT]
                                              [--json FILE]

DIR defaults to the HTML of Debian's ``python3.11-doc`` package (``apt-get install
python3.11-doc``): about 530 pages of real documentation, some (the indexes) with thousands
of links. Every ``*.html`` file under DIR is read into memory first and becomes a Page at
BASE + its path, as a crawl of DIR served at BASE would see it; one WorkerState (one parser
process) then parses them all once, with the scope set to BASE's host and no depth limit.

Each pass runs in a fresh interpreter, so no cache is warm from an earlier pass: the figures
are what one parser process pays for one crawl of the site. The time of the link work is
measured by wrapping ``parsers.worker.extract_links`` and ``WorkerState.new_links`` (the two
steps from the page's tree to the links sent to the coordinator); the rest is decoding,
HTML parsing, the field rule and the record. Since the page's tree is walked once for its
links, robots tags and simple field paths (parsers/walk.py), that walk counts in the rest. Prints the median of ``--repeat`` passes.

To compare with another checkout in one sitting, ``--against ../old`` runs its passes
(with ``PYTHONPATH=../old``) interleaved with this checkout's and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_DIR = "/usr/share/doc/python3.11/html"


def one_pass(root: Path, base: str) -> dict:
    """Parse every file once in this process; return the timings (seconds) and counts."""
    import parsers.worker as worker
    from crawler.messages import FetchJob, Page
    from crawler.settings import build_rules
    from crawler.urls import Scope

    files = sorted(root.rglob("*.html"))
    pages = []
    for i, path in enumerate(files):
        url = base + path.relative_to(root).as_posix()
        job = FetchJob(id=i, url=url, host="127.0.0.1", depth=1)
        pages.append(Page(job=job, fetched_at="2026-01-01T00:00:00.000Z", final_url=url, status=200,
                          content_type="text/html", charset="utf-8", body=path.read_bytes()))
    rules = build_rules([{"name": "page", "match": ".*", "fields": {"title": {"xpath": "//title/text()"}}}],
                        "bench")
    host = base.split("//", 1)[1].split("/", 1)[0].split(":")[0]
    config = worker.WorkerConfig(crawl_id="bench", rules=rules, scope=Scope(domains=frozenset({host})),
                                 obey_robots=True, max_depth=-1, max_links=100_000)
    state = worker.WorkerState(config)

    link_seconds = 0.0
    extract, new_links = worker.extract_links, worker.WorkerState.new_links

    def timed_extract(*args, **kwargs):
        nonlocal link_seconds
        t = time.perf_counter()
        try:
            return extract(*args, **kwargs)
        finally:
            link_seconds += time.perf_counter() - t

    def timed_new_links(self, *args, **kwargs):
        nonlocal link_seconds
        t = time.perf_counter()
        try:
            return new_links(self, *args, **kwargs)
        finally:
            link_seconds += time.perf_counter() - t

    worker.extract_links = timed_extract
    worker.WorkerState.new_links = timed_new_links
    found = queued = 0
    start = time.perf_counter()
    for page in pages:
        result = worker.parse_page(page, state)
        found += json.loads(result.line)["links"]
        queued += len(result.links)
    total = time.perf_counter() - start
    return {"files": len(pages), "mb": sum(len(p.body) for p in pages) / 1e6, "total": total,
            "links": link_seconds, "rest": total - link_seconds, "links_found": found,
            "links_queued": queued, "code": str(Path(worker.__file__).resolve().parent.parent)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?", default=DEFAULT_DIR)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--base", default="http://127.0.0.1:8000/")
    ap.add_argument("--against", metavar="CHECKOUT", action="append", default=[],
                    help="also time the code of another checkout, its passes interleaved with ours")
    ap.add_argument("--json", metavar="FILE", help="also write every pass's figures to FILE")
    ap.add_argument("--one-pass", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = Path(args.dir)
    if not any(root.rglob("*.html")):
        print(f"parse_bench: no *.html under {root} (apt-get install python3.11-doc?)", file=sys.stderr)
        return 2
    if args.one_pass:
        print(json.dumps(one_pass(root, args.base)))
        return 0
    checkouts = [*args.against, None]  # None: the code this script imports by default
    runs: dict[str | None, list[dict]] = {c: [] for c in checkouts}
    for _ in range(args.repeat):  # interleaved, so load that drifts hits every checkout alike
        for checkout in checkouts:
            env = dict(os.environ, PYTHONPATH=checkout) if checkout else os.environ
            out = subprocess.run([sys.executable, __file__, str(root), "--base", args.base, "--one-pass"],
                                 check=True, capture_output=True, text=True, env=env).stdout
            runs[checkout].append(json.loads(out))
    medians = {}
    for checkout, passes in runs.items():
        med = medians[checkout] = {k: statistics.median(r[k] for r in passes) for k in ("total", "links", "rest")}
        first = passes[0]
        print(f"code: {first['code']}")
        print(f"  {first['files']} files, {first['mb']:.1f} MB, {first['links_found']} links found "
              f"(distinct per page), {first['links_queued']} queued; median of {len(passes)} passes")
        print(f"  parse_page total {med['total']:.2f} s | links {med['links']:.2f} s | "
              f"rest (decode, parse, fields, record) {med['rest']:.2f} s")
    for checkout in args.against:
        print(f"links: {medians[checkout]['links'] / medians[None]['links']:.1f}x faster than {checkout}; "
              f"parse_page: {medians[checkout]['total'] / medians[None]['total']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"medians": {str(k): v for k, v in medians.items()},
                                               "runs": {str(k): v for k, v in runs.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
