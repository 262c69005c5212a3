"""Seeds come from arguments, files and settings; bad lines are named and skipped."""

import pytest

from crawler.errors import UsageError
from crawler.engine.seeds import read_seeds, require_seeds


def test_seed_file_skips_comments_blanks_and_reports_bad_lines_by_number(tmp_path):
    path = tmp_path / "seeds.txt"
    path.write_text("# my seeds\n\nhttp://127.0.0.1:9/a\nnot a url\nftp://127.0.0.1/x\nhttp://127.0.0.1:9/a#dup\n")
    seeds = read_seeds([], [str(path)], [])
    assert seeds.urls == ["http://127.0.0.1:9/a"]
    assert [p.split(": ")[0] for p in seeds.problems] == [f"{path}:4", f"{path}:5"]


def test_all_sources_are_combined_in_order():
    seeds = read_seeds(["http://127.0.0.3/"], [], ["http://127.0.0.2/"])
    assert seeds.urls == ["http://127.0.0.2/", "http://127.0.0.3/"]


def test_no_valid_seed_is_a_usage_error(tmp_path):
    path = tmp_path / "seeds.txt"
    path.write_text("nope\n")
    with pytest.raises(UsageError, match="no valid seed URL"):
        require_seeds(read_seeds([], [str(path)], []))


def test_missing_seed_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read seeds file"):
        read_seeds([], [str(tmp_path / "missing.txt")], [])
