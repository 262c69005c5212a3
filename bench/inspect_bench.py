"""Benchmark: how fast ``crawler inspect FILE --format json`` summarises a large file.

    python bench/inspect_bench.py [--lines 1000000] [--workers N] [--repeat 3] [--keep DIR]

It writes a realistic crawl output file (default 1,000,000 lines, about 560 bytes each: 300
hosts, 4 rules with 2-4 data fields, ~8 % errors of every type, 2 crawl ids, recrawl flags)
into a temporary directory, then runs the summary as a subprocess and reports:

- lines/s: lines divided by the wall time of the whole process (start-up included);
- peak RSS: the largest sum, over the process and all its children (the summary may use a
  pool of worker processes), of their resident sets, sampled every 20 ms with psutil. Forked
  workers share pages with their parent, and a plain sum counts those twice, so this errs
  high; the sum of PSS (each shared page split between its sharers) is printed beside it, and
  the "Maximum resident set size" of /usr/bin/time -v (the single largest process).

The target (docs/performance-inspect.md) is >= 200,000 lines/s and < 200 MB.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

import orjson
import psutil

ERRORS = ["timeout", "connection", "http", "too_large", "robots", "redirects", "blocked", "parse"]
RULES = {
    "product": ["title", "price", "sku", "tags"],
    "category": ["title", "count"],
    "article": ["title", "author", "published"],
    "page": ["title"],
}


def write_fixture(path: str, lines: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    hosts = [f"shop{i}.example{i % 7}.com" for i in range(300)]
    weights = [1 / (i + 1) for i in range(len(hosts))]  # a few big hosts, a long tail
    start = datetime(2026, 11, 22, 1, 0, tzinfo=timezone.utc)
    crawl_ids = ["20261122T010000Z-1a2b", "20261122T070000Z-3c4d"]
    with open(path, "wb") as f:
        batch = []
        for i in range(lines):
            host = rng.choices(hosts, weights)[0] if i % 64 == 0 else hosts[i % 37]
            rule = rng.choice(list(RULES))
            url = f"https://{host}/{rule}/{i}-{rng.randrange(10**6)}?ref=list&page={i % 50}"
            kind = None
            if rng.random() < 0.08:
                kind = rng.choice(ERRORS)
            status = None if kind in ("timeout", "connection", "robots", "blocked") else (
                rng.choice([404, 410, 500, 503]) if kind == "http" else rng.choice([200] * 30 + [301, 304]))
            data = {} if kind else {
                name: (None if rng.random() < 0.1 else ([f"t{rng.randrange(9)}"] if name == "tags" else
                                                        f"{name} value {rng.randrange(10**5)}"))
                for name in RULES[rule]
            }
            recrawl = i >= lines // 2
            rec = {
                "url": url,
                "final_url": None if status is None else url,
                "status": status,
                # about 250 pages/s, slightly out of order as parallel fetchers finish
                "fetched_at": (start + timedelta(milliseconds=i * 4 + rng.randrange(50)))
                .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "depth": min(int(rng.expovariate(0.7)), 12),
                "referrer": f"https://{host}/{rule}/",
                "content_type": None if status is None else "text/html; charset=utf-8",
                "bytes": 0 if status is None else rng.randrange(2_000, 400_000),
                "elapsed_ms": round(rng.lognormvariate(4.2, 0.9), 1),
                "attempts": 1 + (kind == "timeout") * 2,
                "crawl_id": crawl_ids[recrawl],
                "rule": None if kind in ("robots", "blocked") else rule,
                "data": data,
                "links": 0 if kind else rng.randrange(120),
                "changed": (rng.random() < 0.3) if recrawl and not kind else None,
                "error": {"type": kind, "message": f"{kind}: something went wrong"} if kind else None,
            }
            batch.append(orjson.dumps(rec))
            if len(batch) == 10_000:
                f.write(b"\n".join(batch) + b"\n")
                batch = []
        if batch:
            f.write(b"\n".join(batch) + b"\n")


def run_once(cmd: list[str]) -> tuple[float, int, int, int | None, float | None, bytes]:
    """(wall s, peak tree RSS, peak tree PSS, /usr/bin/time max RSS or None, CPU s or None,
    stdout); sizes in bytes. CPU is user + system time of the whole tree (pool workers are
    waited for, so their time is in it)."""
    time_bin = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    full = [time_bin, "-v", *cmd] if time_bin else cmd
    started = time.perf_counter()
    proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    root = psutil.Process(proc.pid)
    peak = peak_pss = 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            if time_bin:
                procs = procs[1:]  # leave out /usr/bin/time itself
            rss = pss = 0
            for p in procs:
                try:
                    info = p.memory_full_info()
                    rss += info.rss
                    pss += info.pss
                except psutil.Error:
                    pass
            peak, peak_pss = max(peak, rss), max(peak_pss, pss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"inspect failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    match = re.search(rb"Maximum resident set size \(kbytes\): (\d+)", err)
    cpu = [float(m) for m in re.findall(rb"(?:User|System) time \(seconds\): ([\d.]+)", err)]
    return wall, peak, peak_pss, int(match.group(1)) * 1024 if match else None, sum(cpu) if cpu else None, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, help="passed to inspect --workers (default: its own)")
    ap.add_argument("--repeat", type=int, default=3, help="runs; the best is reported with all of them")
    ap.add_argument("--keep", metavar="DIR", help="write the fixture here and keep it")
    args = ap.parse_args()
    tmp = args.keep or tempfile.mkdtemp(prefix="inspect-bench-")
    path = os.path.join(tmp, "crawl.jsonl")
    try:
        if not os.path.exists(path) or sum(1 for _ in open(path, "rb")) != args.lines:
            t0 = time.perf_counter()
            write_fixture(path, args.lines)
            print(f"fixture: {args.lines:,} lines, {os.path.getsize(path) / 2**20:,.0f} MiB "
                  f"written in {time.perf_counter() - t0:.1f} s")
        cmd = [sys.executable, "-m", "crawler", "inspect", path, "--format", "json"]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        print("command:", " ".join(["crawler", *cmd[3:]]))
        runs = []
        for _ in range(args.repeat):
            wall, peak, peak_pss, time_rss, cpu, out = run_once(cmd)
            summary = orjson.loads(out)
            assert summary["lines"] == args.lines and summary["bad_lines"]["count"] == 0, summary["bad_lines"]
            runs.append((wall, peak, peak_pss, cpu))
            print(f"  run: {wall:6.2f} s  {args.lines / wall:>10,.0f} lines/s  peak RSS (tree) "
                  f"{peak / 2**20:6.1f} MiB  PSS (tree) {peak_pss / 2**20:6.1f} MiB"
                  + (f"  time -v: {time_rss / 2**20:.1f} MiB" if time_rss else "")
                  + (f"  CPU {cpu:.2f} s, load {os.getloadavg()[0]:.1f}" if cpu else ""))
        best = min(runs)
        print(f"best: {args.lines / best[0]:,.0f} lines/s; peak RSS {max(r[1] for r in runs) / 2**20:.1f} MiB, "
              f"PSS {max(r[2] for r in runs) / 2**20:.1f} MiB (worst of {len(runs)} runs); "
              f"{psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        cpus = [r[3] for r in runs if r[3]]
        if cpus:
            # Other work on the machine stretches wall time but hardly CPU time; this is the
            # rate the same CPU time gives when it has the cores to itself.
            print(f"CPU: best {min(cpus):.2f} s for the tree = {args.lines / min(cpus):,.0f} lines per CPU-second, "
                  f"{args.lines * psutil.cpu_count() / min(cpus):,.0f} lines/s on {psutil.cpu_count()} idle cores")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
