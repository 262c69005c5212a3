"""`crawler demo` serves the sample shop on loopback, crawls it and checks every record."""

from tests.helpers import read_records, run_cli


def test_demo_crawls_the_sample_site_and_every_record_matches(tmp_path):
    run = run_cli("demo", "--output-dir", "out", cwd=tmp_path, timeout=180)
    assert run.code == 0, run.stderr
    records = read_records(tmp_path / "out" / "crawl.jsonl")
    assert len(records) == 360
    assert len({r["url"] for r in records}) == 360
    assert {r["url"].split("/")[2].split(":")[0] for r in records} == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
    assert "all 360 records match" in run.stderr
    assert "crawler inspect" in run.stderr
    assert (tmp_path / "out" / "settings.toml").exists()
