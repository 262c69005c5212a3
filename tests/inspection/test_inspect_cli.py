"""`crawler inspect` on the command line: --validate, exit codes and one-line usage errors."""

from __future__ import annotations

import orjson
import pytest
from fixtures.inspect_records import cli, inspect, lines_of, record, write_jsonl


@pytest.fixture
def bad_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        lines_of([record("https://v.example/1")]) + b"{not json}\n" + b"[1, 2, 3]\n"
        + lines_of([record("https://v.example/2", status=True)]) + lines_of([record("https://v.example/3")])
        + b'{"url": "https://v.example/torn", "sta'
    )
    return path


def test_validate_names_each_bad_line_by_file_and_number_and_exits_1(bad_file):
    result = cli(bad_file, "--validate")
    assert result.returncode == 1
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith(f"{bad_file}:2: not valid JSON (")  # then the JSON parser's words
    assert lines[1:] == [
        f"{bad_file}:3: not a JSON object (got an array)",
        f"{bad_file}:4: status must be an integer or null, got a boolean",
        f"{bad_file}:6: torn last line: no newline at end of file and not a whole record",
        "4 bad line(s) in 6 line(s) of 1 file(s)",
    ]


def test_validate_as_json_lines_for_scripts(bad_file):
    code, out, err = inspect(bad_file, "--validate", "--format", "json")
    assert code == 1
    assert [orjson.loads(line)["line"] for line in out.splitlines()] == [2, 3, 4, 6]
    assert "4 bad line(s)" in err


def test_validate_exits_0_on_good_files_across_shards(tmp_path):
    write_jsonl(tmp_path / "a-1.jsonl", [record(f"https://v.example/{i}") for i in range(50)])
    write_jsonl(tmp_path / "a-2.jsonl.gz", [record("https://v.example/z")], gz=True)
    result = cli(str(tmp_path / "a-*"), "--validate")
    assert result.returncode == 0
    assert result.stdout.decode().strip() == "0 bad line(s) in 51 line(s) of 2 file(s)"


def test_validate_checks_canonical_when_present_and_accepts_files_without_it(tmp_path):
    path = tmp_path / "c.jsonl"
    write_jsonl(path, [record("https://v.example/old"), record("https://v.example/a", canonical=None),
                       record("https://v.example/b", canonical="https://v.example/c"),
                       record("https://v.example/d", canonical=["https://v.example/c"])])
    result = cli(path, "--validate")
    assert result.returncode == 1
    assert result.stdout.decode().splitlines() == [
        f"{path}:4: canonical must be a string or null, got an array",
        "1 bad line(s) in 4 line(s) of 1 file(s)",
    ]


@pytest.mark.parametrize(("argv", "message"), [
    (["missing.jsonl"], "missing.jsonl: no such file"),
    (["nothing-*.jsonl"], "nothing-*.jsonl: no file matches this pattern"),
    (["{file}", "--limit", "-1"], "--limit must be 0 or more"),
    (["{file}", "--validate", "--follow"], "--validate cannot be combined"),
    (["{file}", "--fields", "url,,status"], "--fields: empty field name"),
])
def test_usage_errors_exit_2_with_one_line_naming_the_problem(tmp_path, argv, message):
    path = write_jsonl(tmp_path / "ok.jsonl", [record()])
    result = cli(*[a.format(file=path) for a in argv])
    assert result.returncode == 2 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crawler") and message in lines[0], lines


def test_help_documents_the_expression_syntax_with_examples():
    result = cli("--help")
    text = result.stdout.decode()
    assert result.returncode == 0
    assert "--where \"status >= 400\"" in text and "re_search" in text and "error.type == 'timeout'" in text
    assert "--follow-timeout" not in text  # for tests only


def test_piping_records_into_a_reader_that_stops_early_is_not_an_error(tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", [record(f"https://p.example/{i}") for i in range(20_000)])
    import subprocess
    import sys

    from fixtures.inspect_records import REPO

    pipeline = subprocess.run(
        f"{sys.executable} -m crawler inspect {path} --where 'status == `200`' --format json | head -n 2",
        shell=True, capture_output=True, cwd=REPO, timeout=60,
    )
    assert len(pipeline.stdout.splitlines()) == 2
    assert b"Traceback" not in pipeline.stderr
