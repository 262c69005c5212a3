"""``python -m crawler.demo.shop --latency S``: the latency-bound site of ``bench/run.py --latency``."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_latency_delays_every_answer_and_the_stats_say_when_each_request_arrived(tmp_path) -> None:
    stats_file = tmp_path / "stats.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawler.demo.shop", "--hosts", "2", "--pages", "20", "--page-bytes", "1000",
         "--stats-file", str(stats_file), "--latency", "0.3"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready ")
        port = int(line.split()[1])
        sent = []
        for host, path, status in [("127.0.0.2", "/p/3.html", 200), ("127.0.0.1", "/robots.txt", 200),
                                   ("127.0.0.1", "/no/such/page", 404)]:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            sent.append(time.monotonic())
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            took = time.monotonic() - sent[-1]
            conn.close()
            assert response.status == status
            if status == 200:  # the catalog's responses wait; the fallback 404 is not one of them
                assert took >= 0.3, f"{host}{path} answered after {took:.3f} s"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    stats = json.loads(stats_file.read_text())
    assert stats["total"] == 3
    started = stats["started"]
    assert len(started["127.0.0.2"]) == 1 and len(started["127.0.0.1"]) == 2
    # The same clock as ours (CLOCK_MONOTONIC): each arrival is just after we sent it.
    arrivals = [started["127.0.0.2"][0], *started["127.0.0.1"]]
    for arrived, at in zip(arrivals, sent):
        assert 0 <= arrived - at + 0.001 < 1.0
