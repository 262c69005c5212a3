"""`crawler schedule`: periodic incremental recrawls with conditional requests."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime

from crawler.demo.shop.server import Response, Site
from tests.helpers import launch, read_records, records_by_url, run_cli, wait_until

RULES = '[[parse.rules]]\nname = "t"\ncallable = "tests.counting_rule:parse"\n'
SETTINGS = "[crawl]\nmax_depth = -1\n[fetch]\nper_host_delay = 0\nper_host_concurrency = 4\nconcurrency = 8\n" + RULES


class VersionedShop:
    """Pages whose content the test changes between runs; ETag / If-None-Match aware."""

    def __init__(self, pages: int, pad: int = 16000, delay: float = 0.0):
        self.pages, self.pad, self.delay = pages, pad, delay
        self.version = defaultdict(int)
        self.gone: set[str] = set()
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None, int]] = []  # (path, If-None-Match, bytes sent)

    def body(self, path: str) -> bytes:
        if path == "/":
            links = "".join(f'<a href="/p/{i}">{i}</a>' for i in range(self.pages))
            return f"<html><head><title>index</title></head><body>{links}</body></html>".encode()
        i = int(path.rsplit("/", 1)[1])
        v = self.version[path]
        return (f"<html><head><title>page {i} v{v}</title></head><body><span class='price'>{i}.{v}</span>"
                f"<p>{'x' * self.pad}</p></body></html>").encode()

    def handle(self, request) -> Response:
        path = request.path
        if path == "/robots.txt" or (path != "/" and not path.startswith("/p/")):
            response = Response(404, b"")
        elif path in self.gone:
            response = Response(404, b"gone")
        else:
            body = self.body(path)
            etag = '"' + hashlib.md5(body).hexdigest() + '"'
            if request.headers.get("if-none-match") == etag:
                response = Response(304, b"", (("ETag", etag),), self.delay)
            else:
                response = Response(200, body, (("Content-Type", "text/html"), ("ETag", etag)), self.delay)
        with self.lock:
            self.requests.append((path, request.headers.get("if-none-match"), len(response.wire(False))))
        return response

    def mark(self) -> int:
        with self.lock:
            return len(self.requests)

    def since(self, mark: int, until: int | None = None):
        with self.lock:
            return self.requests[mark:until]


def serve_shop(serve, shop):
    site = Site()
    site.add("127.0.0.1", "*", shop.handle)
    return serve(site, ["127.0.0.1"])


def parse_log(tmp_path) -> dict[str, str]:
    """counting_rule logs every page it parses to this file."""
    return {"CRAWLER_TEST_PARSE_LOG": str(tmp_path / "parsed.log")}


def start(tmp_path, server, *args, settings=SETTINGS):
    (tmp_path / "settings.toml").write_text(settings)
    return launch(tmp_path, "schedule", server.url("127.0.0.1", "/"), "-o", "out.jsonl", *args,
                  env=parse_log(tmp_path), start_new_session=True)


def records(path):
    return read_records(path, growing=True)  # the scheduler may be writing it


def runs_of(path):
    by_run = defaultdict(list)
    for r in records(path):
        by_run[r["crawl_id"]].append(r)
    return list(by_run.values())


def parsed(tmp_path) -> list[str]:
    log = tmp_path / "parsed.log"
    return log.read_text().split() if log.exists() else []


def test_three_runs_recrawl_conditionally_and_mark_what_changed(serve, tmp_path):
    shop = VersionedShop(50, pad=2000)
    server = serve_shop(serve, shop)
    out = tmp_path / "out.jsonl"
    proc = start(tmp_path, server, "--every", "3s", "--runs", "3")
    url = lambda p: server.url("127.0.0.1", p)  # noqa: E731

    wait_until(lambda: len(records(out)) == 51)
    parsed_1 = len(parsed(tmp_path))
    mark_2 = shop.mark()
    for i in range(5):  # 10% of the pages change
        shop.version[f"/p/{i}"] += 1
    shop.gone.add("/p/7")
    wait_until(lambda: len(records(out)) == 102)
    parsed_2 = parsed(tmp_path)[parsed_1:]
    mark_3 = shop.mark()
    for i in range(10, 15):
        shop.version[f"/p/{i}"] += 1
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    run1, run2, run3 = runs_of(out)

    assert len({run1[0]["crawl_id"], run2[0]["crawl_id"], run3[0]["crawl_id"]}) == 3
    assert all(r["changed"] is None for r in run1)
    # Run 2: every known URL asked conditionally; 5 changed pages re-parsed, the rest not.
    requests_2 = [(p, inm) for p, inm, _ in shop.since(mark_2, mark_3) if p != "/robots.txt"]
    assert len(requests_2) == 51 and all(inm for _, inm in requests_2)
    changed_2 = {r["url"] for r in run2 if r["changed"] is True}
    assert changed_2 == {url(f"/p/{i}") for i in range(5)}
    assert sorted(parsed_2) == sorted(changed_2), "unchanged pages must not be parsed again"
    by_url_2 = records_by_url(run2)
    assert by_url_2[url("/p/3")]["data"] == {"title": "page 3 v1", "price": "3.1"}
    assert by_url_2[url("/p/20")]["data"] == {"title": "page 20 v0", "price": "20.0"}
    assert by_url_2[url("/p/20")]["status"] == 304 and by_url_2[url("/p/20")]["changed"] is False
    gone = by_url_2[url("/p/7")]
    assert gone["status"] == 404 and gone["error"]["type"] == "http"
    # Run 3: the gone page is neither requested nor recorded again.
    assert url("/p/7") not in {r["url"] for r in run3} and len(run3) == 50
    requests_3 = [(p, inm) for p, inm, _ in shop.since(mark_3) if p != "/robots.txt"]
    assert "/p/7" not in {p for p, _ in requests_3}
    assert len(requests_3) == 50 and all(inm for _, inm in requests_3)
    assert {r["url"] for r in run3 if r["changed"]} == {url(f"/p/{i}") for i in range(10, 15)}


def test_unchanged_recrawl_downloads_under_5_percent_of_the_first(serve, tmp_path):
    shop = VersionedShop(100, pad=16000)
    server = serve_shop(serve, shop)
    proc = start(tmp_path, server, "--every", "1s", "--runs", "2")
    wait_until(lambda: len(records(tmp_path / "out.jsonl")) == 101)
    mark = shop.mark()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    first = sum(n for _, _, n in shop.since(0, mark))
    second = sum(n for _, _, n in shop.since(mark))
    assert second < 0.05 * first, (first, second)
    run1, run2 = runs_of(tmp_path / "out.jsonl")
    assert all(r["changed"] is False for r in run2)
    print(f"first crawl {first} bytes, unchanged recrawl {second} bytes ({100 * second / first:.2f}%)")


def test_runs_never_overlap_and_the_skipped_tick_is_logged(serve, tmp_path):
    shop = VersionedShop(12, pad=100, delay=0.2)  # a run takes ~1.5 s; ticks every 0.5 s
    server = serve_shop(serve, shop)
    settings = SETTINGS.replace("per_host_concurrency = 4", "per_host_concurrency = 2")
    proc = start(tmp_path, server, "--every", "0.5s", "--runs", "2", settings=settings)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "skipped the tick" in err
    run1, run2 = runs_of(tmp_path / "out.jsonl")
    assert max(r["fetched_at"] for r in run1) < min(r["fetched_at"] for r in run2)


def test_killed_run_is_resumed_not_restarted_and_stays_exactly_once(serve, tmp_path):
    shop = VersionedShop(40, pad=100, delay=0.1)
    server = serve_shop(serve, shop)
    out = tmp_path / "out.jsonl"
    proc = start(tmp_path, server, "--every", "1h", "--runs", "1")
    wait_until(lambda: len(records(out)) >= 10)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    crawl_id = records(out)[0]["crawl_id"]
    proc = start(tmp_path, server, "--every", "1h", "--runs", "1")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "resuming" in err
    out_records = records(out)
    assert {r["crawl_id"] for r in out_records} == {crawl_id}
    counts = Counter(r["url"] for r in out_records)
    assert len(counts) == 41 and max(counts.values()) == 1


def test_second_scheduler_on_the_same_state_exits_2(serve, tmp_path):
    shop = VersionedShop(5, pad=100, delay=0.05)
    server = serve_shop(serve, shop)
    first = start(tmp_path, server, "--every", "1h")
    try:
        wait_until(lambda: (tmp_path / "out.jsonl.state" / "schedule.json").exists())
        second = start(tmp_path, server, "--every", "1h", "--runs", "1")
        _, err = second.communicate(timeout=30)
        assert second.returncode == 2
        assert "another `crawler schedule` is already running" in err
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def test_output_path_placeholders_give_one_file_per_run(serve, tmp_path):
    shop = VersionedShop(5, pad=100)
    server = serve_shop(serve, shop)
    (tmp_path / "settings.toml").write_text(SETTINGS)
    run = run_cli("schedule", server.url("127.0.0.1", "/"), "-o", "runs/{crawl_id}.jsonl", "--every", "1s",
                  "--runs", "2", cwd=tmp_path, env=parse_log(tmp_path), timeout=60)
    assert run.code == 0, run.stderr
    files = sorted((tmp_path / "runs").glob("*.jsonl"))
    assert len(files) == 2
    for f in files:
        rs = records(f)
        assert len(rs) == 6 and {r["crawl_id"] for r in rs} == {f.stem}


def test_print_cron_and_systemd_run_the_equivalent_crawl(tmp_path):
    cron = run_cli("schedule", "--every", "6h", "-o", "x.jsonl", "--print-cron", "http://127.0.0.1:9/",
                   cwd=tmp_path)
    assert cron.code == 0
    assert cron.stdout.startswith("0 */6 * * * cd ")
    assert "crawl --recrawl -o x.jsonl http://127.0.0.1:9/" in cron.stdout
    unit = run_cli("schedule", "--cron", "30 2 * * *", "--print-systemd", "http://127.0.0.1:9/", cwd=tmp_path)
    assert unit.code == 0
    assert "OnCalendar=*-*-* 2:30:00" in unit.stdout and "crawl --recrawl" in unit.stdout


def test_ticks_missed_while_stopped_coalesce_into_one_catch_up_run(serve, tmp_path):
    shop = VersionedShop(3, pad=100)
    server = serve_shop(serve, shop)
    proc = start(tmp_path, server, "--every", "1s", "--runs", "1")
    assert proc.wait(timeout=60) == 0
    time.sleep(3.5)  # three ticks pass with no scheduler running
    proc = start(tmp_path, server, "--every", "1s", "--runs", "2")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "tick(s) missed" in err and "one catch-up run now" in err
    run1, catch_up, after = runs_of(tmp_path / "out.jsonl")
    gap = (datetime.fromisoformat(min(r["fetched_at"] for r in after).rstrip("Z"))
           - datetime.fromisoformat(max(r["fetched_at"] for r in catch_up).rstrip("Z"))).total_seconds()
    assert gap > 0.3, "the run after a catch-up waits for its tick: no burst"

