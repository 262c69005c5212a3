"""The parser pool on its own: a stuck worker is killed and its page settled."""

import threading

import orjson

from crawler.messages import FetchJob, Page
from crawler.settings import build_rules
from crawler.urls import Scope
from parsers.pool import ParserPool
from parsers.worker import WorkerConfig


def test_a_worker_stuck_on_a_page_is_killed_and_the_page_becomes_a_parse_error(tmp_path, monkeypatch):
    (tmp_path / "stuckrule.py").write_text(
        "import time\ndef parse(url, text, tree):\n    if 'stuck' in url:\n        time.sleep(3600)\n"
        "    return {'ok': True}\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    rules = build_rules([{"name": "r", "callable": "stuckrule:parse"}], "test")
    config = WorkerConfig(crawl_id="t", rules=rules, scope=Scope(domains=frozenset({"127.0.0.1"})),
                          obey_robots=True, max_depth=1, max_links=10)
    results, done = [], threading.Event()

    def on_result(result):
        results.append(result)
        if len(results) == 3:
            done.set()

    pool = ParserPool(1, config, on_result, parse_timeout=1.0)
    try:
        for i, path in enumerate(["/a", "/stuck", "/b"]):
            job = FetchJob(id=i, url=f"http://127.0.0.1:1{path}", host="127.0.0.1", depth=0)
            pool.submit(Page(job=job, fetched_at="2026-11-22T00:00:00.000Z", status=200,
                             content_type="text/html", body=b"<html><title>x</title></html>"))
        assert done.wait(30), f"only {len(results)} results"
    finally:
        pool.close()
    by_id = {r.job_id: orjson.loads(r.line) for r in results}
    assert by_id[0]["data"] == {"ok": True} and by_id[2]["data"] == {"ok": True}
    assert by_id[1]["error"]["type"] == "parse" and "died 2 times" in by_id[1]["error"]["message"]
    assert pool.deaths >= 2  # a death with several pages held strikes none of them


def test_pages_of_every_size_come_back_once_each_in_batches_across_workers():
    """Pages go to a worker in one message up to BATCH_BYTES of bodies; a mix of small pages
    and pages larger than a batch all come back parsed, each exactly once, with its own data."""
    from parsers.pool import BATCH_BYTES

    rules = build_rules([{"name": "r", "match": ".", "fields": {"title": {"xpath": "//title/text()"}}}], "test")
    config = WorkerConfig(crawl_id="t", rules=rules, scope=Scope(domains=frozenset({"127.0.0.1"})),
                          obey_robots=True, max_depth=1, max_links=10)
    sizes = [100, BATCH_BYTES + 10, 100, 100, BATCH_BYTES // 2, BATCH_BYTES // 2, 100] * 6
    results, done = [], threading.Event()

    def on_result(result):
        results.append(result)
        if len(results) == len(sizes):
            done.set()

    pool = ParserPool(2, config, on_result)
    try:
        for i, size in enumerate(sizes):
            job = FetchJob(id=i, url=f"http://127.0.0.1:1/p{i}", host="127.0.0.1", depth=0)
            body = f"<html><title>t{i}</title><body>".encode() + b"x" * size + b"</body></html>"
            pool.submit(Page(job=job, fetched_at="2026-11-22T00:00:00.000Z", status=200,
                             content_type="text/html", body=body))
        assert done.wait(60), f"only {len(results)} of {len(sizes)} results"
    finally:
        pool.close()
    assert sorted(r.job_id for r in results) == list(range(len(sizes)))
    assert all(orjson.loads(r.line)["data"] == {"title": f"t{r.job_id}"} for r in results)


def test_pages_are_parsed_at_a_lower_cpu_priority_than_the_crawl(tmp_path, monkeypatch):
    """Parsers yield the CPU to the crawl's GIL-bound main process (see NICENESS): a rule's
    callable, run by the pool, sees its process NICENESS nicer than this one."""
    import os

    from parsers.worker import NICENESS

    (tmp_path / "nicerule.py").write_text("import os\ndef parse(url, text, tree):\n    return {'nice': os.nice(0)}\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    rules = build_rules([{"name": "r", "callable": "nicerule:parse"}], "test")
    config = WorkerConfig(crawl_id="t", rules=rules, scope=Scope(domains=frozenset({"127.0.0.1"})),
                          obey_robots=True, max_depth=1, max_links=10)
    results, done = [], threading.Event()

    def on_result(result):
        results.append(result)
        if len(results) == 2:
            done.set()

    pool = ParserPool(2, config, on_result)
    try:
        for i in range(2):
            job = FetchJob(id=i, url=f"http://127.0.0.1:1/{i}", host="127.0.0.1", depth=0)
            pool.submit(Page(job=job, fetched_at="2026-12-02T00:00:00.000Z", status=200,
                             content_type="text/html", body=b"<html><title>x</title></html>"))
        assert done.wait(30), f"only {len(results)} results"
    finally:
        pool.close()
    assert [orjson.loads(r.line)["data"] for r in results] == [{"nice": min(19, os.nice(0) + NICENESS)}] * 2
