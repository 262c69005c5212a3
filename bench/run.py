"""Our crawler against Scrapy, on the same local site, in one run.

    site server (subprocess) ◄── HTTP on 127.0.0.1-4 ──► contender (subprocess tree)
          │ SIGUSR1: stats                                  │ psutil samples: CPU, RSS
          ▼                                                 ▼
       hits, server CPU                  out.jsonl ─► checked against Catalog.expected

The site (`python -m crawler.demo.shop --catalog bench`) runs in its own process, so its CPU
is not counted against a contender and is reported on its own. Each contender crawls the whole
catalog from the hosts' "/" pages with 64 concurrent requests, 16 per host, no delay, robots.txt
obeyed and no depth limit. A run counts only if every expected page was fetched with status 200,
and no request went to the out-of-scope host.

    .venv/bin/python bench/run.py [--hosts 4] [--pages-per-host 2500] [--only ours|async|scrapy]
                                  [--with-async] [--repeat N] [--json FILE] [--latency S]

With ``--latency S`` (the latency-bound scenario) the site waits S seconds before every answer,
so no contender can beat 64 / S pages/s (the ceiling); each run then also reports its share of
the ceiling and the requests in flight at the server over the first seconds (from the times
the site saw each request arrive).

See bench/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from importlib import metadata
from pathlib import Path

import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout: import the sample site from it

from crawler.demo.shop.catalog import build_catalog, canonical_url, loopback_hosts  # noqa: E402
from crawler.demo.shop.catalog import BENCH_OUT_OF_SCOPE_HOST  # noqa: E402

CONTENDERS = ("ours", "async", "scrapy")
SAMPLE_SECONDS = 0.1
CONCURRENCY = 64  # requests in flight, as in OUR_SETTINGS and bench/scrapy_spider.py
TIMELINE_STEP = 0.25  # seconds per bucket of the in-flight timeline (latency-bound scenario)
TIMELINE_SHOWN = 12  # buckets printed per run (the JSON file has them all)

OUR_SETTINGS = """\
[crawl]
max_depth = -1
obey_robots = true

[fetch]
engine = "{engine}"
concurrency = 64
per_host_concurrency = 16
per_host_delay = 0

"""


# -- the site --

class SiteProcess:
    """The sample site in a subprocess: started once, asked for stats between contenders."""

    def __init__(self, hosts: int, pages: int, page_bytes: int, workdir: Path, latency: float = 0.0) -> None:
        self.stats_file = workdir / "site-stats.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crawler.demo.shop", "--catalog", "bench", "--hosts", str(hosts),
             "--pages", str(pages), "--page-bytes", str(page_bytes), "--stats-file", str(self.stats_file),
             "--latency", str(latency)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.proc.kill()
            raise SystemExit(f"the sample site did not start (said {line!r})")
        self.port = int(line.split()[1])
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def take_stats(self) -> dict:
        """Hits since the last call (the server resets them when it writes them)."""
        self.stats_file.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not self.stats_file.exists():
            if time.monotonic() > deadline:
                raise SystemExit("the sample site did not write its stats")
            time.sleep(0.02)
        return json.loads(self.stats_file.read_text())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- one contender run --

class TreeSampler(threading.Thread):
    """Polls a process and all its descendants: the last CPU times of each, and peak total RSS."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.cpu: dict[tuple[int, float], float] = {}  # (pid, create time): user + system
        self.peak_rss = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(SAMPLE_SECONDS):
            self.sample()

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    rss += proc.memory_info().rss
                    self.cpu[(proc.pid, proc.create_time())] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        self.peak_rss = max(self.peak_rss, rss)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def compile_ours() -> None:
    """Byte-compile our packages before they are timed, as ``pip install`` does for an
    installed package (Scrapy's were compiled when it was installed). An editable install
    has no cached bytecode, and where PYTHONDONTWRITEBYTECODE is set Python never writes
    it: every run would then compile about 200 modules in each of its processes, about
    0.1 s of start-up each."""
    import compileall

    for package in ("crawler", "parsers", "sinks"):
        compileall.compile_dir(ROOT / package, quiet=1)


def command(contender: str, workdir: Path, seeds: Path, rules_toml: str) -> tuple[list[str], Path]:
    out = workdir / f"{contender}.jsonl"
    if contender == "scrapy":
        return [sys.executable, "-m", "scrapy", "runspider", str(ROOT / "bench" / "scrapy_spider.py"),
                "-a", f"seeds_file={seeds}", "-O", f"{out}:jsonlines"], out
    settings = workdir / f"{contender}.toml"
    engine = "async" if contender == "async" else "threads"
    settings.write_text(OUR_SETTINGS.format(engine=engine) + rules_toml)
    script = Path(sys.executable).with_name("crawler")
    cli = [str(script)] if script.exists() else [sys.executable, "-c",
                                                  "import sys; from crawler.cli import main; sys.exit(main())"]
    return [*cli, "crawl", "-s", str(seeds), "-c", str(settings), "-o", str(out), "--fresh", "-q"], out


def run_contender(contender: str, site: SiteProcess, catalog, workdir: Path, timeout: float,
                  latency: float = 0.0) -> dict:
    seeds = workdir / "seeds.txt"
    seeds.write_text("\n".join(catalog.seeds) + "\n")
    argv, out = command(contender, workdir, seeds, catalog.rules_toml)
    out.unlink(missing_ok=True)
    site.take_stats()  # resets the site's counters
    site_cpu, cpu_before = site.cpu(), children_cpu()
    log = open(workdir / f"{contender}.log", "wb")
    returncode, wall, sampler = measure(argv, log, workdir, timeout)
    started = time.monotonic() - wall  # the same clock as the site's (CLOCK_MONOTONIC)
    log.close()
    cpu = max(children_cpu() - cpu_before, sum(sampler.cpu.values()))  # see README
    served = site.take_stats()
    result = {"contender": contender, "returncode": returncode, "wall_s": round(wall, 3),
              "cpu_s": round(cpu, 3), "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
              "site_cpu_s": round(site.cpu() - site_cpu, 3), "site_requests": served["total"],
              "out_of_scope_requests": served["hits"].get(BENCH_OUT_OF_SCOPE_HOST, 0)}
    result.update(check_output(out, catalog.expected))
    pages = max(result["pages"], 1)
    result["pages_per_s"] = round(result["pages"] / wall, 1)
    result["cpu_ms_per_page"] = round(1000 * cpu / pages, 2)
    result["site_cpu_ms_per_page"] = round(1000 * result["site_cpu_s"] / pages, 2)
    if latency > 0:
        result["ceiling_pct"] = round(100 * result["pages_per_s"] * latency / CONCURRENCY, 1)
        result["in_flight"] = in_flight_timeline(
            [t for times in served.get("started", {}).values() for t in times], started, latency)
        result["in_flight_by_host"] = {host: in_flight_timeline(times, started, latency)
                                       for host, times in served.get("started", {}).items() if times}
    problems = []
    if returncode != 0:
        problems.append(f"exit status {returncode} (see {workdir / (contender + '.log')})")
    if result["missing"]:
        problems.append(f"{result['missing']} of {len(catalog.expected)} pages missing")
    if result["wrong_data"]:
        problems.append(f"{result['wrong_data']} pages with wrong fields")
    if result["out_of_scope_requests"]:
        problems.append(f"{result['out_of_scope_requests']} requests to the out-of-scope host")
    result["valid"] = not problems
    result["problems"] = problems
    return result


PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
ORPHANS_WAIT_SECONDS = 10.0


def become_subreaper() -> None:
    """Make this process the one that inherits a contender's orphaned descendants (Linux),
    so that they are reaped here and ``getrusage(RUSAGE_CHILDREN)`` counts their CPU. Our
    crawler's children come from a multiprocessing fork server, which outlives the crawler's
    main process by a moment and would otherwise be reaped by init, its CPU and its
    children's uncounted."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap_orphans(pids: set[int]) -> None:
    """Wait for the descendants in ``pids`` that became this process's children when their
    parent exited (see become_subreaper): at most ORPHANS_WAIT_SECONDS in all. Any other
    pid (reaped already, or never ours) is passed over."""
    deadline = time.monotonic() + ORPHANS_WAIT_SECONDS
    for pid in pids:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not ours: reaped by its own parent
                break
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.01)


def measure(argv: list[str], log, cwd: Path, timeout: float) -> tuple[int | str, float, TreeSampler]:
    """Run ``argv`` to its end (killed after ``timeout`` s): exit status or "timeout", wall
    seconds from start to exit, and the sampler that watched its process tree. Descendants
    left behind are reaped after the wall time is taken, so their CPU counts."""
    become_subreaper()
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    try:
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        returncode = "timeout"
    wall = time.monotonic() - started
    sampler.stopping.set()
    sampler.join()
    reap_orphans({pid for pid, _ in sampler.cpu})
    return returncode, wall, sampler


def in_flight_timeline(starts: list[float], origin: float, latency: float) -> list[float]:
    """Mean requests in flight at the site in each TIMELINE_STEP from ``origin`` (the
    contender's start) to the last answer: every request is in flight for ``latency``
    seconds after it arrived."""
    if not starts:
        return []
    count = int((max(starts) + latency - origin) // TIMELINE_STEP) + 1
    buckets = [0.0] * count
    for start in starts:
        begin, end = start - origin, start - origin + latency
        first = max(int(begin // TIMELINE_STEP), 0)
        for i in range(first, min(int(end // TIMELINE_STEP) + 1, count)):
            lo, hi = i * TIMELINE_STEP, (i + 1) * TIMELINE_STEP
            buckets[i] += max(0.0, min(end, hi) - max(begin, lo))
    return [round(b / TIMELINE_STEP, 1) for b in buckets]


def kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def check_output(path: Path, expected: dict[str, dict]) -> dict:
    """Which expected pages the output holds with status 200 and the right fields."""
    records, urls, fetched, wrong = 0, Counter(), set(), 0
    errors: Counter[str] = Counter()
    if path.exists():
        with open(path, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                record = orjson.loads(line)
                records += 1
                url = canonical_url(record["url"], "")
                urls[url] += 1
                error = record.get("error")
                if error:
                    errors[error.get("type", "?")] += 1
                elif url in expected and record.get("status") == 200 and url not in fetched:
                    fetched.add(url)
                    wrong += record.get("data") != expected[url]
    return {"records": records, "pages": len(fetched), "missing": len(expected) - len(fetched),
            "duplicates": sum(n - 1 for n in urls.values()), "wrong_data": wrong,
            "errors": dict(errors)}


# -- report --

COLUMNS = [  # (heading, key, format)
    ("contender", "contender", "{}"), ("valid", "valid", "{}"), ("wall s", "wall_s", "{:.1f}"),
    ("pages", "pages", "{}"), ("pages/s", "pages_per_s", "{:.1f}"), ("CPU ms/page", "cpu_ms_per_page", "{:.2f}"),
    ("cores", "cores", "{:.2f}"), ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("site CPU ms/page", "site_cpu_ms_per_page", "{:.2f}"), ("requests", "site_requests", "{}"),
    ("x Scrapy pages/s", "vs_scrapy", "{}"), ("Scrapy CPU / ours", "cpu_vs_scrapy", "{}"),
]
LATENCY_COLUMNS = [("% of ceiling", "ceiling_pct", "{:.1f}")]
NUMERIC = ("wall_s", "cpu_s", "peak_rss_mb", "site_cpu_s", "site_requests", "records", "pages",
           "missing", "duplicates", "wrong_data", "pages_per_s", "cpu_ms_per_page", "site_cpu_ms_per_page",
           "ceiling_pct")


def summarize(runs: list[dict]) -> dict:
    """The median of each figure over repeated runs of one contender."""
    summary = {key: statistics.median(run[key] for run in runs) for key in NUMERIC if key in runs[0]}
    summary.update(contender=runs[0]["contender"], valid=all(run["valid"] for run in runs), repeats=len(runs))
    summary["cores"] = summary["cpu_s"] / summary["wall_s"] if summary["wall_s"] else 0.0
    return summary


def print_table(summaries: list[dict]) -> None:
    scrapy = next((s for s in summaries if s["contender"] == "scrapy"), None)
    for summary in summaries:
        ratio = summary["pages_per_s"] / scrapy["pages_per_s"] if scrapy and scrapy["pages_per_s"] else None
        summary["vs_scrapy"] = f"{ratio:.2f}" if ratio is not None else "-"
        # CPU per page is the steadier comparison when other work shares the machine.
        cpu = scrapy["cpu_ms_per_page"] / summary["cpu_ms_per_page"] if scrapy and summary["pages"] else None
        summary["cpu_vs_scrapy"] = f"{cpu:.2f}" if cpu is not None else "-"
    columns = COLUMNS + (LATENCY_COLUMNS if "ceiling_pct" in summaries[0] else [])
    rows = [[heading for heading, _, _ in columns]]
    rows += [[fmt.format(summary[key]) for _, key, fmt in columns] for summary in summaries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--pages-per-host", type=int, default=2500)
    parser.add_argument("--page-bytes", type=int, default=16384)
    parser.add_argument("--only", action="append", choices=CONTENDERS,
                        help="run only this contender (repeatable); default: ours and scrapy")
    parser.add_argument("--with-async", action="store_true", help="add our async engine as a third contender")
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender; the table shows medians")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a run is killed")
    parser.add_argument("--json", type=Path, help="write every run and the medians here")
    parser.add_argument("--keep", type=Path, help="keep outputs and logs in this directory")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds the site waits before every answer (the latency-bound scenario: "
                             "try 0.1)")
    args = parser.parse_args(argv)
    contenders = args.only or ["ours", *(["async"] if args.with_async else []), "scrapy"]
    compile_ours()

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="crawler-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    site = SiteProcess(args.hosts, args.pages_per_host, args.page_bytes, workdir, args.latency)
    runs: dict[str, list[dict]] = {c: [] for c in contenders}
    try:
        hosts = loopback_hosts(args.hosts)
        # Same arguments as the server's: the same site. page_bytes does not change `expected`.
        catalog = build_catalog(hosts, site.port, args.pages_per_host, page_bytes=0,
                                out_of_scope_host=BENCH_OUT_OF_SCOPE_HOST)
        print(f"site: {args.hosts} hosts x {args.pages_per_host} pages of ~{args.page_bytes} bytes "
              f"on port {site.port}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
              f"(other work skews pages/s more than CPU/page); outputs in {workdir}", flush=True)
        for round_ in range(args.repeat):  # interleaved, so drifting machine load hits all alike
            for contender in contenders:
                result = run_contender(contender, site, catalog, workdir, args.timeout, args.latency)
                runs[contender].append(result)
                note = "" if result["valid"] else "  INVALID: " + "; ".join(result["problems"])
                if args.latency > 0:
                    note += (f", {result['ceiling_pct']:.1f}% of the ceiling; in flight per "
                             f"{TIMELINE_STEP} s: {result['in_flight'][:TIMELINE_SHOWN]}")
                print(f"  {contender} run {round_ + 1}: {result['pages']} pages in {result['wall_s']:.1f} s, "
                      f"{result['pages_per_s']:.1f} pages/s, {result['cpu_ms_per_page']:.2f} CPU ms/page{note}",
                      flush=True)
    finally:
        site.stop()
    summaries = [summarize(runs[c]) for c in contenders]
    print()
    print_table(summaries)
    for summary in summaries:
        if not summary["valid"]:
            print(f"WARNING: {summary['contender']} did not crawl the whole site correctly; "
                  f"its figures are not comparable (see the run lines above)")
    if args.json:
        args.json.write_text(json.dumps({
            "params": {"hosts": args.hosts, "pages_per_host": args.pages_per_host,
                       "page_bytes": args.page_bytes, "repeat": args.repeat, "latency": args.latency},
            "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()[0],
                        "python": platform.python_version(),
                        "platform": platform.platform(), "scrapy": _version("scrapy")},
            "summaries": summaries, "runs": runs}, indent=1))
    valid = all(s["valid"] for s in summaries)
    if valid and args.keep is None:
        shutil.rmtree(workdir)  # outputs of a bad run stay, for a look at the logs
    return 0 if valid else 1


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
