"""README "Writing rules" shows a page, rules and the record they give: this keeps it true."""

from __future__ import annotations

import json
import re

from crawler.demo.shop.server import Response, Site
from tests.conftest import REPO


def readme_blocks(section: str) -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    body = text[text.index(f"## {section}"):]
    body = body[:body.index("\n## ", 4)]
    first: dict[str, str] = {}
    for lang, code in re.findall(r"```(\w+)\n(.*?)```", body, re.S):
        first.setdefault(lang, code)
    return first


def test_readme_writing_rules_example_gives_the_record_it_shows(serve, cli):
    blocks = readme_blocks("Writing rules")
    site = Site()
    server = serve(site, ["127.0.0.1"])
    site.add("127.0.0.1", "/product/moka", Response.html(blocks["html"]))
    settings = "[fetch]\nper_host_delay = 0\n" + blocks["toml"]
    run = cli("crawl", server.url("127.0.0.1", "/product/moka"), "-o", "out.jsonl", "-q", settings=settings)
    assert run.code == 0, run.stderr
    (record,) = run.records
    shown = json.loads(blocks["json"])
    assert {key: record.get(key) for key in shown} == shown
    assert "invalid" not in record  # the README shows none
