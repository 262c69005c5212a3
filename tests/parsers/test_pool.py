"""The parser pool on its own: a stuck worker is killed and its page settled; pages of every
size come back once each; parsers run at a lower CPU priority."""

import os
import threading

import orjson

from crawler.messages import FetchJob, Page
from crawler.settings import build_rules
from crawler.urls import Scope
from parsers.pool import ParserPool
from parsers.worker import NICENESS, WorkerConfig


def config_for(rule: dict) -> WorkerConfig:
    return WorkerConfig(crawl_id="t", rules=build_rules([rule], "test"),
                        scope=Scope(domains=frozenset({"127.0.0.1"})), obey_robots=True, max_depth=1,
                        max_links=10)


def callable_rule(tmp_path, monkeypatch, source: str) -> dict:
    """A rule whose callable is ``parse`` in ``source``, importable by the pool's processes."""
    (tmp_path / "poolrule.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    return {"name": "r", "callable": "poolrule:parse"}


def parse_all(config: WorkerConfig, bodies: dict[str, bytes], workers: int, **pool_options) -> tuple[dict, int]:
    """Submit one page per path (job ids in order) and wait for every result:
    ({job id: record}, how many worker deaths the pool saw)."""
    results, done = [], threading.Event()

    def on_result(result):
        results.append(result)
        if len(results) == len(bodies):
            done.set()

    pool = ParserPool(workers, config, on_result, **pool_options)
    try:
        for i, (path, body) in enumerate(bodies.items()):
            job = FetchJob(id=i, url=f"http://127.0.0.1:1{path}", host="127.0.0.1", depth=0)
            pool.submit(Page(job=job, fetched_at="2026-11-22T00:00:00.000Z", status=200,
                             content_type="text/html", body=body))
        assert done.wait(60), f"only {len(results)} of {len(bodies)} results"
    finally:
        pool.close()
    assert sorted(r.job_id for r in results) == list(range(len(bodies)))  # each exactly once
    return {r.job_id: orjson.loads(r.line) for r in results}, pool.deaths


def test_a_worker_stuck_on_a_page_is_killed_and_the_page_becomes_a_parse_error(tmp_path, monkeypatch):
    rule = callable_rule(tmp_path, monkeypatch,
                         "import time\ndef parse(url, text, tree):\n    if 'stuck' in url:\n"
                         "        time.sleep(3600)\n    return {'ok': True}\n")
    page = b"<html><title>x</title></html>"
    by_id, deaths = parse_all(config_for(rule), {"/a": page, "/stuck": page, "/b": page}, 1, parse_timeout=1.0)
    assert by_id[0]["data"] == {"ok": True} and by_id[2]["data"] == {"ok": True}
    assert by_id[1]["error"]["type"] == "parse" and "died 2 times" in by_id[1]["error"]["message"]
    assert deaths >= 2  # a death with several pages held strikes none of them


def test_pages_of_every_size_come_back_once_each_in_batches_across_workers():
    """Pages go to a worker in one message up to BATCH_BYTES of bodies; a mix of small pages
    and pages larger than a batch all come back parsed, each exactly once, with its own data."""
    from parsers.pool import BATCH_BYTES

    rule = {"name": "r", "match": ".", "fields": {"title": {"xpath": "//title/text()"}}}
    sizes = [100, BATCH_BYTES + 10, 100, 100, BATCH_BYTES // 2, BATCH_BYTES // 2, 100] * 6
    bodies = {f"/p{i}": f"<html><title>t{i}</title><body>".encode() + b"x" * size + b"</body></html>"
              for i, size in enumerate(sizes)}
    by_id, _ = parse_all(config_for(rule), bodies, 2)
    assert all(record["data"] == {"title": f"t{i}"} for i, record in by_id.items())


def test_pages_are_parsed_at_a_lower_cpu_priority_than_the_crawl(tmp_path, monkeypatch):
    """Parsers yield the CPU to the crawl's GIL-bound main process (see NICENESS): a rule's
    callable, run by the pool, sees its process NICENESS nicer than this one."""
    rule = callable_rule(tmp_path, monkeypatch, "import os\ndef parse(url, text, tree):\n    return {'nice': os.nice(0)}\n")
    page = b"<html><title>x</title></html>"
    by_id, _ = parse_all(config_for(rule), {"/0": page, "/1": page}, 2)
    assert [r["data"] for r in by_id.values()] == [{"nice": min(19, os.nice(0) + NICENESS)}] * 2


def test_workers_that_die_again_and_again_are_replaced_and_every_page_is_settled(tmp_path, monkeypatch):
    """Each death replaces a worker, whose new pipe and sentinel often take the dead one's
    descriptor numbers: the manager's selector must let go of the old ones first. Every
    poisonous page ends as a parse error, every other page with its data."""
    rule = callable_rule(tmp_path, monkeypatch,
                         "import os\ndef parse(url, text, tree):\n    if 'die' in url:\n"
                         "        os._exit(3)\n    return {'ok': True}\n")
    page = b"<html><title>x</title></html>"
    bodies = {(f"/die{i}" if i % 5 == 2 else f"/ok{i}"): page for i in range(25)}
    by_id, deaths = parse_all(config_for(rule), bodies, 2)
    for i, path in enumerate(bodies):
        if "die" in path:
            assert by_id[i]["error"]["type"] == "parse" and "exit code 3" in by_id[i]["error"]["message"], by_id[i]
        else:
            assert by_id[i]["data"] == {"ok": True}, by_id[i]
    assert deaths >= 2 * 5
