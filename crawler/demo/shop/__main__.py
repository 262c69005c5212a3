"""``python -m crawler.demo.shop``: the benchmark catalog, served in a process of its own.

The bench runs the sample site here so that its CPU is not counted against the crawler.
SIGUSR1 writes the server's stats (hits, in-flight peaks, its own CPU) and resets them.
With ``--latency S`` every answer waits S seconds before it is sent (a latency-bound site),
and the stats also hold when each request arrived, so in-flight counts over time can be
computed from them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from dataclasses import replace
from typing import Sequence

from crawler.demo.shop.catalog import BENCH_OUT_OF_SCOPE_HOST, build_catalog, loopback_hosts
from crawler.demo.shop.responses import Response, Site
from crawler.demo.shop.server import SiteServer


def _write_stats(server: SiteServer, path: str | None) -> None:
    times = os.times()
    stats = {
        "hits": {host: server.hits(host) for host in server.hosts},
        "total": server.hits(),
        "max_in_flight": {host: server.max_in_flight(host) for host in server.hosts},
        "cpu_seconds": round(times.user + times.system, 3),
    }
    if server.keeps_log:
        started: dict[str, list[float]] = {host: [] for host in server.hosts}
        for request in server.log:
            started[request.host].append(round(request.started, 4))
        stats["started"] = started
    text = json.dumps(stats, indent=1, sort_keys=True)
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)  # readers never see half a file
    else:
        print(text, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a generated catalog until SIGTERM/SIGINT; SIGUSR1 writes the stats and resets them."""
    parser = argparse.ArgumentParser(prog="python -m crawler.demo.shop", description=main.__doc__)
    parser.add_argument("--catalog", choices=["bench"], default="bench")
    parser.add_argument("--hosts", type=int, default=4, help="in-scope hosts: 127.0.0.1, 127.0.0.2, ...")
    parser.add_argument("--pages", type=int, default=2500, help="HTML pages per host")
    parser.add_argument("--page-bytes", type=int, default=16384)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stats-file", help="JSON stats written here on exit and on SIGUSR1")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds every answer waits before it is sent (and log request starts)")
    args = parser.parse_args(argv)

    hosts = loopback_hosts(args.hosts)
    out_of_scope = BENCH_OUT_OF_SCOPE_HOST
    site = Site()
    # The out-of-scope host is bound too, so that a crawler wrongly following a link there
    # shows up in the hits instead of in a connection error.
    server = SiteServer(site, [*hosts, out_of_scope], args.port, keep_log=args.latency > 0).start()
    build_catalog(hosts, server.port, args.pages, page_bytes=args.page_bytes,
                  out_of_scope_host=out_of_scope, site=site, prerender=True)
    if args.latency > 0:
        for (host, path), target in site.routes().items():
            if isinstance(target, Response):
                site.add(host, path, replace(target, delay=args.latency))

    stopping = threading.Event()

    def on_stop(signum: int, frame: object) -> None:
        stopping.set()

    def on_dump(signum: int, frame: object) -> None:
        _write_stats(server, args.stats_file)
        server.reset_stats()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGUSR1, on_dump)
    print(f"ready {server.port}", flush=True)
    while not stopping.wait(0.5):
        pass
    server.stop()
    _write_stats(server, args.stats_file)



if __name__ == "__main__":
    main()
