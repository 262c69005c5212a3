"""Settings: defaults < file < flags, and every bad input is one line naming the key."""

from pathlib import Path

import pytest

from crawler.api import resolve_settings
from crawler.errors import UsageError
from crawler.settings import DEFAULTS_PATH, load_settings

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, text):
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return path


def error_of(tmp_path, text) -> str:
    with pytest.raises(UsageError) as info:
        load_settings(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_repo_settings_file_is_the_packaged_defaults():
    assert (REPO / "settings.toml").read_bytes() == DEFAULTS_PATH.read_bytes()


def test_defaults_match_the_documented_contract():
    s = load_settings(None)
    assert (s.crawl.max_depth, s.crawl.max_pages, s.crawl.obey_robots) == (5, 0, True)
    assert (s.fetch.engine, s.fetch.concurrency, s.fetch.per_host_concurrency) == ("threads", 32, 2)
    assert (s.fetch.per_host_delay, s.fetch.timeout, s.fetch.max_bytes) == (0.5, 15.0, 10485760)
    assert (s.fetch.retries, s.fetch.backoff, s.fetch.max_redirects) == (2, 0.5, 10)
    assert s.fetch.retry_statuses == [408, 429, 500, 502, 503, 504, 522, 524]
    assert s.state.backend == "sqlite" and s.output.path == "crawl.jsonl"
    assert [r.name for r in s.parse.rules] == ["page"]


def test_file_overrides_defaults_and_flags_override_file(tmp_path):
    path = write(tmp_path, "[fetch]\nconcurrency = 7\nper_host_delay = 1\n")
    s = load_settings(path, {"fetch.per_host_delay": 0.25})
    assert s.fetch.concurrency == 7
    assert s.fetch.per_host_delay == 0.25
    assert s.fetch.timeout == 15.0  # untouched default


def test_invalid_toml_names_the_line(tmp_path):
    message = error_of(tmp_path, "[crawl]\nmax_depth = = 3\n")
    assert "invalid TOML" in message and "line 2" in message


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    message = error_of(tmp_path, "[fetch]\nconcurency = 3\n")
    assert "[fetch] concurency: unknown key" in message
    assert 'did you mean "concurrency"' in message


def test_unknown_section_is_named(tmp_path):
    assert "unknown section [fetcher]" in error_of(tmp_path, "[fetcher]\nx = 1\n")


def test_wrong_type_names_key_and_value(tmp_path):
    message = error_of(tmp_path, '[fetch]\nconcurrency = "many"\n')
    assert "[fetch] concurrency: expected an integer, got 'many'" in message


def test_bool_is_not_accepted_as_an_integer(tmp_path):
    assert "[crawl] max_pages" in error_of(tmp_path, "[crawl]\nmax_pages = true\n")


def test_out_of_range_value_is_refused(tmp_path):
    assert 'one of "threads", "async"' in error_of(tmp_path, '[fetch]\nengine = "curl"\n')


def test_bad_xpath_names_the_rule_and_field(tmp_path):
    message = error_of(tmp_path, """
[[parse.rules]]
name = "product"
match = "/p/"
fields.price = { xpath = "//span[@class='price'" }
""")
    assert '[[parse.rules]] #1 "product": fields.price.xpath: invalid XPath' in message


def test_bad_regex_names_the_rule_and_field(tmp_path):
    message = error_of(tmp_path, """
[[parse.rules]]
name = "product"
fields.sku = { regex = 'SKU-([0-9+' }
""")
    assert '#1 "product": fields.sku.regex: invalid regex' in message


def test_bad_allow_regex_is_named(tmp_path):
    assert "[crawl] allow[1]: invalid regex" in error_of(tmp_path, '[crawl]\nallow = ["ok", "(bad"]\n')


def test_field_without_xpath_or_regex_is_refused(tmp_path):
    message = error_of(tmp_path, '[[parse.rules]]\nname = "x"\nfields.a = { many = true }\n')
    assert "fields.a: needs a source (xpath, css or jsonld), a regex, or both" in message


def test_unimportable_callable_is_refused(tmp_path):
    message = error_of(tmp_path, '[[parse.rules]]\nname = "x"\ncallable = "no_such_module_xyz:f"\n')
    assert "callable: cannot import 'no_such_module_xyz'" in message


def test_api_overrides_use_plain_key_names():
    s = resolve_settings(None, {"max_pages": 3, "per_host_delay": 0, "concurrency": 5})
    assert (s.crawl.max_pages, s.fetch.per_host_delay, s.fetch.concurrency) == (3, 0.0, 5)


def test_api_rejects_unknown_override():
    with pytest.raises(UsageError, match="unknown setting 'max_pagez'"):
        resolve_settings(None, {"max_pagez": 3})
