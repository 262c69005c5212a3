"""Crawl once, extract many: the bench catalog crawled without and with `[output] warc`,
then `crawler extract` over that WARC, with wall time and CPU (all processes) for each.

    .venv/bin/python bench/extract_loop.py [--hosts 4] [--pages-per-host 2500] [--engine async]
                                           [--polite]

By default the crawl is the fastest one `bench/run.py` runs (no politeness delay, 64
concurrent requests, 16 per host), so the extract's share is an upper bound. ``--polite``
crawls with the packaged politeness defaults instead (2 requests in flight and 0.5 s
between request starts per host), as a crawl of someone else's site would. The extract's records are checked against the crawl's (url, final_url, status, rule,
data), and the WARC's size is reported.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import OUR_SETTINGS, SiteProcess  # noqa: E402

from crawler.demo.shop.catalog import rules_toml  # noqa: E402


def timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree) for one command, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def keyed(path: Path) -> dict[str, tuple]:
    out = {}
    for line in path.read_bytes().splitlines():
        r = orjson.loads(line)
        out[r["url"]] = (r["final_url"], r["status"], r["rule"], orjson.dumps(r["data"], option=orjson.OPT_SORT_KEYS))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--pages-per-host", type=int, default=2500)
    ap.add_argument("--engine", choices=("threads", "async"), default="async")
    ap.add_argument("--polite", action="store_true", help="per_host_concurrency = 2, per_host_delay = 0.5")
    args = ap.parse_args()
    crawler = [sys.executable, "-m", "crawler"]
    with tempfile.TemporaryDirectory(prefix="extract-bench-") as tmp:
        work = Path(tmp)
        site = SiteProcess(args.hosts, args.pages_per_host, 16384, work)
        try:
            seeds = [f"http://127.0.0.{i + 1}:{site.port}/" for i in range(args.hosts)]
            settings = OUR_SETTINGS.format(engine=args.engine) + rules_toml()
            if args.polite:
                settings = settings.replace("per_host_concurrency = 16", "per_host_concurrency = 2").replace(
                    "per_host_delay = 0", "per_host_delay = 0.5")
            (work / "plain.toml").write_text(settings)
            (work / "warc.toml").write_text(settings + '\n[output]\nwarc = "crawl.warc.gz"\n')
            plain = timed([*crawler, "crawl", *seeds, "-c", "plain.toml", "-o", "plain.jsonl", "-q"], work)
            warc = timed([*crawler, "crawl", *seeds, "-c", "warc.toml", "-o", "crawl.jsonl", "-q"], work)
            extract = timed([*crawler, "extract", "crawl.warc.gz", "-c", "plain.toml", "-o", "extract.jsonl", "-q"],
                            work)
        finally:
            site.stop()
        crawled, extracted = keyed(work / "crawl.jsonl"), keyed(work / "extract.jsonl")
        same = crawled == extracted
        size = (work / "crawl.warc.gz").stat().st_size
    pages = len(crawled)
    print(f"pages={pages} engine={args.engine} polite={args.polite} records_equal={same} warc_bytes={size:,}")
    for name, (wall, cpu) in (("crawl", plain), ("crawl+warc", warc), ("extract", extract)):
        print(f"{name:<11} wall {wall:6.2f}s  {pages / wall:7.0f} pages/s  cpu {cpu:6.2f}s  "
              f"{cpu / pages * 1e3:5.2f} ms cpu/page")
    print(f"extract / crawl+warc wall: {extract[0] / warc[0]:.2f}")
    if not same:
        raise SystemExit("extract's records differ from the crawl's")


if __name__ == "__main__":
    main()
