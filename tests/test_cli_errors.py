"""Bad input through the CLI: exit 2, one line naming the problem, nothing fetched."""

from __future__ import annotations

import pytest

from crawler.demo.shop.server import Response, Site
from tests.helpers import one_error_line


@pytest.fixture
def one_page(serve):
    site = Site()
    site.add("127.0.0.1", "/", Response.html("<html><title>x</title></html>"))
    return serve(site, ["127.0.0.1"])


def error_line(run) -> str:
    return one_error_line(run.stderr)


@pytest.mark.parametrize("settings,needle", [
    ("[crawl\nmax_depth = 1\n", "invalid TOML"),
    ("[crawl]\nmax_dept = 1\n", "[crawl] max_dept: unknown key"),
    ('[fetch]\ntimeout = "soon"\n', "[fetch] timeout: expected a number"),
    ('[[parse.rules]]\nname = "p"\nfields.t = { xpath = "//title[" }\n', '"p": fields.t.xpath: invalid XPath'),
    ('[[parse.rules]]\nname = "p"\nfields.t = { regex = "(" }\n', '"p": fields.t.regex: invalid regex'),
])
def test_bad_settings_exit_2_with_one_line_and_fetch_nothing(one_page, cli, settings, needle):
    run = cli("crawl", one_page.url("127.0.0.1"), "-o", "out.jsonl", settings=settings)
    assert run.code == 2
    assert needle in error_line(run)
    assert one_page.hits() == 0


def test_seed_file_bad_lines_are_reported_by_line_number(one_page, cli, tmp_path):
    (tmp_path / "seeds.txt").write_text(f"# seeds\nhttp://\n{one_page.url('127.0.0.1')}\nnot-a-url\n")
    run = cli("crawl", "-s", "seeds.txt", "-o", "out.jsonl", settings="[fetch]\nper_host_delay = 0\n")
    assert run.code == 0, run.stderr
    assert "seeds.txt:2: invalid seed" in run.stderr
    assert "seeds.txt:4: invalid seed" in run.stderr
    assert [r["url"] for r in run.records] == [one_page.url("127.0.0.1")]


def test_no_valid_seed_exits_2(cli, tmp_path):
    (tmp_path / "seeds.txt").write_text("nope\n")
    run = cli("crawl", "-s", "seeds.txt", "-o", "out.jsonl")
    assert run.code == 2
    assert "no valid seed URL" in run.stderr


def test_unknown_flag_exits_2(cli):
    run = cli("crawl", "--max-pagez", "3")
    assert run.code == 2


def test_an_unreachable_redis_exits_1_naming_it_and_fetches_nothing(one_page, cli):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on once it is closed
        s.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    run = cli("crawl", one_page.url("127.0.0.1"), "-o", "out.jsonl",
              settings=f'[state]\nbackend = "redis"\nredis_url = "{url}"\n')
    assert run.code == 1
    assert f"cannot reach Redis at {url}" in error_line(run)
    assert one_page.hits() == 0
