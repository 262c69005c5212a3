"""The WARC is committed with the JSON lines: kill -9 at random moments, resume, and every
record's exchanges are in the WARC exactly once."""

from __future__ import annotations

from collections import Counter

from tests.engine.test_durability import (SETTINGS, assert_exactly_once, finish, kill_9_at_random_moments, popen,
                                          records)
from tests.sinks.test_warc_capture import WARC, warc_records


def test_kill_9_three_times_then_resume_leaves_each_response_in_the_warc_once(shop, tmp_path):
    served = shop(800, hosts=4)
    (tmp_path / "seeds.txt").write_text("\n".join(served.catalog.seeds) + "\n")
    (tmp_path / "settings.toml").write_text(SETTINGS + served.catalog.rules_toml + WARC)
    kill_9_at_random_moments(tmp_path, 3, 20261202)  # both files may end torn: resume cuts both back
    code, err = finish(popen(tmp_path))
    assert code == 0, err
    assert "resuming crawl" in err
    assert_exactly_once(tmp_path, served.catalog.expected)
    lines = Counter(r["url"] for r in records(tmp_path))
    recs = warc_records(tmp_path / "out.warc.gz")  # reads every record, digests checked
    pages = Counter(uri for kind, uri, *_ in recs if kind == "metadata")
    responses = Counter(uri for kind, uri, *_ in recs if kind == "response" and not uri.endswith("/robots.txt"))
    assert pages == lines
    assert responses == lines
    assert sum(kind == "warcinfo" for kind, *_ in recs) == 1
