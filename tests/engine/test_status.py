"""`crawler status` on a local crawl (the shared one: tests/engine/test_shared_crawl.py)."""

from __future__ import annotations

import orjson

from tests.conftest import FAST


def test_status_reports_a_local_crawl(shop, cli, tmp_path):
    served = shop(40, hosts=2)
    (tmp_path / "seeds.txt").write_text("\n".join(served.catalog.seeds) + "\n")
    run = cli("crawl", "-s", "seeds.txt", "-o", "out.jsonl", "-q", "--max-pages", "30",
              settings=FAST + served.catalog.rules_toml)
    assert run.code == 0, run.stderr
    status = cli("status", "-o", "out.jsonl", "--format", "json")
    assert status.code == 0, status.stderr
    figures = orjson.loads(status.stdout)
    assert figures["done"] == 30 and figures["leased"] == 0 and figures["failed"] == 0
    assert figures["queued"] == len(served.catalog.expected) - 30 > 0
    assert figures["workers"] == [{"worker": "local", "running": False}]
    assert sum(h["queued"] for h in figures["hosts"]) == figures["queued"]
    text = cli("status", "-o", "out.jsonl")
    assert "done 30" in text.stdout and "not running" in text.stdout
    missing = cli("status", "-o", "nothing.jsonl")
    assert missing.code == 2 and "no crawl state" in missing.stderr
