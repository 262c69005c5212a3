"""Canonical URLs collapse every equivalent spelling to one; scope follows the settings."""

import pytest

from crawler.urls import BadURL, Scope, canonicalize


@pytest.mark.parametrize("variant", [
    "http://127.0.0.2:8080/p/12.html",
    "HTTP://127.0.0.2:8080/p/12.html",           # scheme case
    "http://127.0.0.2:8080/c/../p/12.html",       # dot-segments
    "http://127.0.0.2:8080/./p/12.html",
    "http://127.0.0.2:8080/p/12.html#reviews",    # fragment
])
def test_equivalent_spellings_collapse(variant):
    assert canonicalize(variant) == "http://127.0.0.2:8080/p/12.html"


def test_host_case_and_default_port_collapse():
    assert canonicalize("http://Shop.Example.COM:80/a") == "http://shop.example.com/a"
    assert canonicalize("https://shop.example.com:443/a") == "https://shop.example.com/a"
    assert canonicalize("https://shop.example.com:8443/a") == "https://shop.example.com:8443/a"


def test_percent_encoding_case_collapses():
    assert canonicalize("http://h.example/a%2fb%c3%a9") == canonicalize("http://h.example/a%2Fb%C3%A9")
    assert canonicalize("http://h.example/%7Euser") == canonicalize("http://h.example/~user")


def test_query_order_is_normalised():
    assert canonicalize("http://h.example/s?b=2&a=1") == canonicalize("http://h.example/s?a=1&b=2")


@pytest.mark.parametrize("bad", ["mailto:a@b.c", "javascript:void(0)", "ftp://h.example/x", "http://", "/relative"])
def test_non_http_urls_are_refused(bad):
    with pytest.raises(BadURL):
        canonicalize(bad)


class FakeSettings:
    class crawl:
        allowed_domains = []
        allow = []
        deny = []
        max_url_length = 100


def test_scope_defaults_to_seed_hosts_with_subdomains_and_any_port():
    scope = Scope.from_settings(FakeSettings, ["http://example.com/"]).compile()
    assert scope.allows("http://example.com:8080/x")
    assert scope.allows("https://shop.example.com/x")
    assert not scope.allows("http://notexample.com/x")
    assert not scope.allows("http://example.com.evil.test/x")


def test_scope_allow_and_deny_regexes():
    scope = Scope(domains=frozenset({"example.com"}), allow=(r"/p/",), deny=(r"/p/secret",)).compile()
    assert scope.allows("http://example.com/p/1")
    assert not scope.allows("http://example.com/c/1")
    assert not scope.allows("http://example.com/p/secret-1")


def test_scope_refuses_overlong_urls():
    scope = Scope(domains=frozenset({"example.com"}), max_url_length=40).compile()
    assert scope.allows("http://example.com/short")
    assert not scope.allows("http://example.com/" + "a" * 40)


@pytest.mark.parametrize("seed, inside, outside", [
    ("http://[::1]:8080/", "http://[::1]:8080/p/1", "http://127.0.0.1:8080/p/1"),
    ("http://[2001:db8::1]/", "http://[2001:db8::1]:81/x", "http://[2001:db8::2]/x"),
    ("http://example.com:8080/", "http://example.com/x", "http://[::1]/x"),
])
def test_scope_of_a_seed_keeps_its_host_whatever_the_address_family(seed, inside, outside):
    """Issue 11 #4: an IPv6 seed's own links are in scope (split(":") made its host "")."""
    scope = Scope.from_settings(FakeSettings, [seed])
    assert "" not in scope.domains
    compiled = scope.compile()
    assert compiled.allows(canonicalize(inside))
    assert not compiled.allows(canonicalize(outside))


@pytest.mark.parametrize("domain, host", [
    ("example.com:8080", "example.com"), ("[::1]:8080", "::1"), ("[::1]", "::1"), ("::1", "::1"),
    ("Shop.Example.COM.", "shop.example.com"), ("127.0.0.1:99", "127.0.0.1"),
])
def test_allowed_domains_drop_a_port_but_keep_ipv6_literals(domain, host):
    settings = type("S", (), {"crawl": type("C", (FakeSettings.crawl,), {"allowed_domains": [domain]})})
    assert Scope.from_settings(settings, []).domains == frozenset({host})
