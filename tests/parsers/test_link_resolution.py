"""Links are followed as a browser follows them: every case of the WHATWG URL test data
(web-platform-tests' urltestdata.json, tests/data/README.md) whose base is http(s), put on a
page at that base as ``<a href="INPUT">`` and run through parse_page.

The crawler must queue exactly the URL the browser's parser gives (both compared in the
crawler's canonical form, ``crawler.urls.resolve``), and nothing where the browser fails to
parse, where the result is not http(s) (the crawler fetches only http(s)), or where the href
is a same-document reference ("#x": a browser scrolls and requests nothing).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import orjson
import pytest

from crawler.messages import FetchJob, Page
from crawler.settings import build_rules
from crawler.urls import Scope, host_of, resolve
from parsers.worker import WorkerConfig, WorkerState, parse_page

DATA = Path(__file__).resolve().parents[1] / "data" / "urltestdata.json"
C0_SPACE = "".join(map(chr, range(0x21)))


def http_cases() -> list[dict]:
    cases = [c for c in json.loads(DATA.read_text(encoding="utf-8")) if isinstance(c, dict)]
    return [c for c in cases if (c.get("base") or "").split(":")[0].lower() in ("http", "https")]


CASES = http_cases()


def browser_follows(case: dict) -> str | None:
    """What a browser requests for this link, in the crawler's canonical form, or None."""
    if case.get("failure") or case["input"].lstrip(C0_SPACE).startswith("#"):
        return None
    return resolve(case["href"])  # None for a scheme other than http(s)


# Every host a right answer can have, so the scope lets each one through (and a wrong URL
# elsewhere is still counted by the record's `links`).
HOSTS = frozenset(host_of(u) for u in map(browser_follows, CASES) if u is not None)


def test_the_data_has_the_cases_we_expect():
    assert len(CASES) == 202
    assert sum(1 for c in CASES if c.get("failure")) == 52
    assert sum(1 for c in CASES if browser_follows(c) is not None) == 108


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['input']!r} on {c['base']}")
def test_crawler_follows_what_a_browser_follows(case):
    rules = build_rules([{"name": "t", "match": ".*", "fields": {"title": {"xpath": "//title/text()"}}}], "t")
    state = WorkerState(WorkerConfig(crawl_id="t", rules=rules, scope=Scope(domains=HOSTS), obey_robots=True,
                                     max_depth=-1, max_links=1000))
    body = (f'<!doctype html><html><head><meta charset="utf-8"><title>t</title></head>'
            f'<body><a href="{html.escape(case["input"], quote=True)}">link</a></body></html>').encode()
    job = FetchJob(id=1, url=case["base"], host="h", depth=0)
    page = Page(job=job, fetched_at="2026-01-01T00:00:00.000Z", final_url=case["base"], status=200,
                content_type="text/html", charset="utf-8", body=body)
    result = parse_page(page, state)
    expected = browser_follows(case)
    assert orjson.loads(result.line)["links"] == (0 if expected is None else 1)
    assert result.links == ([] if expected is None else [(expected, host_of(expected))])
