"""The shared (Redis) frontier, measured: memory per URL, script throughput, and scaling.

    python bench/shared_frontier.py                  # all three
    python bench/shared_frontier.py memory           # seen-set and queue bytes per URL
    python bench/shared_frontier.py throughput       # enqueue + lease + commit, URLs/s
    python bench/shared_frontier.py scale            # 1 worker vs 3 on a latency-bound site

Each scenario starts its own redis-server on a free loopback port, in a temporary
directory, with the settings docs/design.md recommends for a crawl (appendonly yes,
appendfsync always, maxmemory-policy noeviction). It needs redis-server on PATH
(Debian: apt-get install redis-server).

- memory: marks 1,000,000 distinct URLs seen through the frontier's own script (the
  path redirect targets take) and reports Redis ``used_memory`` per URL; then queues
  100,000 URLs of realistic length and reports what a queued URL costs.
- throughput: 200,000 URLs over 200 hosts, queued, leased and committed (with the facts
  a commit stores) through the frontier's scripts, 500 at a time, as a worker would.
- scale: the sample site with every page answering after 200 ms, 8 hosts; one worker
  with 16 concurrent requests, then three, each a `crawler crawl` process; the ratio of
  pages/s (the crawl-wide limits are set high enough not to bind).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import orjson  # noqa: E402

from crawler.demo.shop.catalog import build_catalog, loopback_hosts  # noqa: E402
from crawler.demo.shop.responses import Response, Site  # noqa: E402
from crawler.demo.shop.server import SiteServer  # noqa: E402
from crawler.engine.shared.redis_frontier import RedisFrontier, connect  # noqa: E402
from crawler.settings import load_settings  # noqa: E402
from engine.conftest import RedisServer  # noqa: E402  (the tests' redis-server launcher)


def redis_server(tmp: Path) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH (Debian: apt-get install redis-server)")
    return RedisServer(binary, tmp).start()


def frontier(url: str, worker: str = "bench", **overrides) -> RedisFrontier:
    settings = load_settings(None, {"state.backend": "redis", "state.redis_url": url,
                                    "fetch.per_host_delay": 0, "fetch.per_host_concurrency": 1000,
                                    **overrides})
    f = RedisFrontier(connect(url), url, "bench", worker, settings=settings)
    f.open("bench")
    f.recover()
    return f


def used_memory(f: RedisFrontier) -> int:
    return int(f.client.info("memory")["used_memory"])


def bench_memory(tmp: Path) -> dict:
    server = redis_server(tmp)
    try:
        f = frontier(server.url)
        before = used_memory(f)
        n, batch = 1_000_000, 5000
        for start in range(0, n, batch):
            f.cover((f"https://site{i % 997}.example/path/{i}/page.html", "", 0, None)
                    for i in range(start, start + batch))
        seen = used_memory(f) - before
        encodings = {f.client.object("encoding", k) for k in f.client.scan_iter(match="crawler:*seen:*",
                                                                                 count=5000)}
        q, before = 100_000, used_memory(f)
        urls = [f"https://shop{i % 50}.example/catalog/product-{i:07d}.html?ref=list" for i in range(q)]
        for start in range(0, q, batch):
            f.add((u, u.split("/")[2], 2, f"https://shop{i % 50}.example/catalog/")
                  for i, u in enumerate(urls[start:start + batch]))
        queued = used_memory(f) - before
        mean_len = sum(map(len, urls)) / q
        return {"seen_urls": n, "seen_bytes_per_url": round(seen / n, 2),
                "seen_set_encodings": sorted(e.decode() for e in encodings),
                "queued_urls": q, "queued_bytes_per_url": round(queued / q, 1),
                "queued_url_chars": round(mean_len, 1), "referrer_chars": 29}
    finally:
        server.stop()


def bench_throughput(tmp: Path) -> dict:
    server = redis_server(tmp)
    try:
        f = frontier(server.url)
        n, batch = 200_000, 500
        urls = [(f"http://h{i % 200}.test/p/{i}", f"h{i % 200}.test", 1, "http://h0.test/") for i in range(n)]
        started = time.perf_counter()
        for i in range(0, n, batch):
            f.add(urls[i:i + batch])
        queued = time.perf_counter()
        done = 0
        while done < n:
            jobs, _ = f.lease(batch)
            if not jobs:
                continue
            facts = [(200, None, None, "h", b'["p",{},0]', 0, j.id) for j in jobs]
            f.complete([j.id for j in jobs], done, "", facts)
            f.finish([(j.id, j.host) for j in jobs])
            done += len(jobs)
        ended = time.perf_counter()
        return {"urls": n, "batch": batch, "enqueue_per_s": round(n / (queued - started)),
                "lease_commit_per_s": round(n / (ended - queued)),
                "all_three_per_s": round(n / (ended - started)), "aof": "appendfsync always"}
    finally:
        server.stop()


def bench_scale(tmp: Path) -> dict:
    (tmp / "redis").mkdir()
    server = redis_server(tmp / "redis")
    site = Site()
    hosts = loopback_hosts(8)
    web = SiteServer(site, hosts, keep_log=False).start()
    try:
        catalog = build_catalog(hosts, web.port, 250, site=site, page_bytes=4096)
        for (host, path), resp in site.routes().items():
            if isinstance(resp, Response) and resp.status == 200 and path != "/robots.txt":
                site.add(host, path, dataclasses.replace(resp, delay=0.2))
        rates = {}
        for workers in (1, 3):
            work = tmp / f"w{workers}"
            work.mkdir()
            (work / "seeds.txt").write_text("\n".join(catalog.seeds) + "\n")
            (work / "settings.toml").write_text(catalog.rules_toml + f"""
[crawl]
max_depth = -1
[fetch]
concurrency = 16
per_host_concurrency = 16
per_host_delay = 0
[parse]
workers = 1
[state]
backend = "redis"
redis_url = "{server.url}"
redis_key = "scale{workers}"
""")
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            started = time.monotonic()
            procs = [subprocess.Popen([sys.executable, "-m", "crawler", "crawl", "-s", "seeds.txt", "-o", "out.jsonl",
                                       "--worker-id", f"w{i}", "-q"], cwd=work, env=env) for i in range(workers)]
            for p in procs:
                p.wait()
            elapsed = time.monotonic() - started
            records = sum(len(p.read_bytes().splitlines()) for p in work.glob("out-*.jsonl"))
            assert records == len(catalog.expected), (records, len(catalog.expected))
            rates[workers] = records / elapsed
        return {"pages": len(catalog.expected), "latency_s": 0.2, "per_worker_concurrency": 16,
                "one_worker_pages_per_s": round(rates[1], 1), "three_workers_pages_per_s": round(rates[3], 1),
                "ratio": round(rates[3] / rates[1], 2)}
    finally:
        web.stop()
        server.stop()


SCENARIOS = {"memory": bench_memory, "throughput": bench_throughput, "scale": bench_scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], default=list(SCENARIOS))
    args = parser.parse_args()
    for name in args.scenarios or SCENARIOS:
        with tempfile.TemporaryDirectory() as tmp:
            result = SCENARIOS[name](Path(tmp))
        print(name, orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
