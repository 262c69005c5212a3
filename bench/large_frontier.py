"""Large-frontier benchmark: memory stays bounded however many URLs are queued.

Every page of the local site links to LINKS pages nobody has seen yet, so the frontier
grows by LINKS URLs per page fetched while ``max_pages`` caps the fetching: 5,000
pages x 200 links puts about 1,000,000 URLs in the frontier. It reports the peak RSS
summed over the crawler's whole process tree (sampled every 0.1 s), the frontier's
final size, and separately how long inserting 1,000,000 URLs into an empty frontier
takes, in batches of LINKS as a crawl does.

    .venv/bin/python bench/large_frontier.py [--pages 5000] [--links 200] [--hosts 4]

Only loopback addresses are used (127.0.0.1 .. 127.0.0.N, one port).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from crawler.engine.frontier import SQLiteFrontier  # noqa: E402
from crawler.demo.shop.server import Request, Response, Site, SiteServer  # noqa: E402


def make_site(links: int) -> Site:
    """/p/<n> links to /p/<n*links+1> .. /p/<n*links+links>: a tree, every link new."""
    site = Site()
    pad = "<p>" + "filler text " * 40 + "</p>"

    def page(request: Request) -> Response:
        path = request.path
        n = int(path.rsplit("/", 1)[1]) if path.startswith("/p/") else 0
        hrefs = "".join(f'<a href="/p/{n * links + i}">{i}</a>' for i in range(1, links + 1))
        body = f"<html><head><title>page {n}</title></head><body>{hrefs}{pad}</body></html>"
        return Response.html(body)

    site.add("*", "*", page)
    site.add("*", "/robots.txt", Response(404, b"", (("Content-Type", "text/plain"),)))
    return site


def peak_tree_rss(proc: subprocess.Popen) -> tuple[int, float]:
    """Wait for ``proc``; return (peak RSS summed over its tree in bytes, wall seconds)."""
    root = psutil.Process(proc.pid)
    peak = 0
    started = time.monotonic()
    while proc.poll() is None:
        total = 0
        try:
            for p in [root] + root.children(recursive=True):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.1)
    return peak, time.monotonic() - started


def crawl(pages: int, links: int, hosts: int, workdir: Path) -> dict:
    names = [f"127.0.0.{i + 1}" for i in range(hosts)]
    with SiteServer(make_site(links), names, keep_log=False) as server:
        (workdir / "seeds.txt").write_text("".join(server.url(h, "/") + "\n" for h in names))
        (workdir / "settings.toml").write_text(
            "[crawl]\nmax_depth = -1\n[fetch]\nconcurrency = 32\nper_host_concurrency = 8\n"
            "per_host_delay = 0\n[[parse.rules]]\nname = \"page\"\nfields.title = { xpath = \"//title/text()\" }\n")
        cmd = [sys.executable, "-m", "crawler", "crawl", "-s", "seeds.txt", "-c", "settings.toml",
               "-o", "out.jsonl", "--fresh", "-q", "--max-pages", str(pages)]
        proc = subprocess.Popen(cmd, cwd=workdir, env=dict(os.environ, PYTHONPATH=str(REPO)))
        peak, wall = peak_tree_rss(proc)
        if proc.returncode != 0:
            raise SystemExit(f"crawl failed with exit code {proc.returncode}")
    db = sqlite3.connect(workdir / "out.jsonl.state" / "frontier.sqlite")
    (total,) = db.execute("SELECT count(*) FROM urls").fetchone()
    (done,) = db.execute("SELECT count(*) FROM urls WHERE state = 2").fetchone()
    records = (workdir / "out.jsonl").read_bytes().count(b"\n")
    return {"pages": records, "done": done, "frontier_urls": total, "wall_s": round(wall, 1),
            "pages_per_s": round(records / wall, 1), "peak_rss_mb": round(peak / 2**20, 1)}


def insert_rate(n: int, batch: int, workdir: Path) -> dict:
    frontier = SQLiteFrontier(workdir / "insert.sqlite")
    started = time.monotonic()
    for start in range(0, n, batch):
        host = f"127.0.0.{1 + (start // batch) % 4}"
        frontier.add((f"http://{host}:8080/p/{i}", host, 3, "http://127.0.0.1:8080/") for i in range(start, start + batch))
    frontier.commit()
    elapsed = time.monotonic() - started
    assert frontier.counts().queued == n
    frontier.close()
    return {"inserted": n, "seconds": round(elapsed, 1), "urls_per_s": round(n / elapsed)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=5000, help="max_pages for the crawl")
    ap.add_argument("--links", type=int, default=200, help="new links on every page")
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--inserts", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="large-frontier-") as tmp:
        workdir = Path(tmp)
        ins = insert_rate(args.inserts, args.links, workdir)
        print(f"insert: {ins['inserted']:,} URLs into an empty frontier in {ins['seconds']} s "
              f"({ins['urls_per_s']:,} URLs/s, batches of {args.links})")
        res = crawl(args.pages, args.links, args.hosts, workdir)
        print(f"crawl: {res['pages']:,} pages (max_pages {args.pages:,}) in {res['wall_s']} s, "
              f"{res['pages_per_s']} pages/s; frontier {res['frontier_urls']:,} URLs; "
              f"peak RSS of all crawler processes {res['peak_rss_mb']} MB")
        ok = res["pages"] == args.pages and res["frontier_urls"] >= args.pages * args.links * 0.99
        print("valid" if ok else "INVALID: the crawl did not settle max_pages or the frontier did not grow")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
