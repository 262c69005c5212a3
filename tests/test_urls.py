"""Canonical URLs collapse every equivalent spelling to one; scope follows the settings."""

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from ada_url import join_url
from w3lib.url import canonicalize_url

from crawler import urls
from crawler.urls import (_ALREADY_CANONICAL, BadURL, Scope, canonicalize, clear_caches, encode_query, resolve,
                          resolve_all)

DATA = Path(__file__).resolve().parent / "data" / "urltestdata.json"


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

# -- resolution as a browser does it (the full WHATWG data: tests/parsers/test_link_resolution.py)

@pytest.mark.parametrize("href,expected", [
    ("..\\x\\y.html", "http://h.example/x/y.html"),           # backslashes are slashes
    ("https:other.example/p", "https://other.example/p"),     # another scheme: absolute
    ("http:q.html", "http://h.example/a/q.html"),             # the page's scheme: relative
    ("\t/p\n/q\r.html ", "http://h.example/p/q.html"),        # tabs and newlines removed
    ("//Other.Example:80/./x", "http://other.example/x"),
    ("?b=2&a=1", "http://h.example/a/b.html?a=1&b=2"),
    ("", "http://h.example/a/b.html?z=1"),                     # a link to the page itself
    ("http:", "http://h.example/a/b.html?z=1"),                # the same
    ("http://ex%41mple.com/", "http://example.com/"),          # hosts are percent-decoded
    ("http://0x7f.1/", "http://127.0.0.1/"),                   # and IPv4 forms normalised
])
def test_resolve_follows_the_url_standard(href, expected):
    assert resolve(href, "http://h.example/a/b.html?z=1") == expected


@pytest.mark.parametrize("href", ["http://exa mple.com/", "http://[::1/", "http://h.example:99999/",
                                  "https://", "http://a%00b/", "mailto:x@h.example", "ftp://h.example/"])
def test_resolve_gives_none_where_a_browser_fails_or_for_other_schemes(href):
    assert resolve(href, "http://h.example/") is None


def test_canonical_form_is_a_fixed_point_and_keeps_userinfo_and_ports():
    for url in ["http://u:p@h.example:8080/a%2fb?b=&a=%7e", "https://h.example/%C3%A9|x", "http://[::1]:81/"]:
        canon = canonicalize(url)
        assert resolve(canon) == canon and canonicalize(canon) == canon


def test_cached_resolution_agrees_with_the_parser_on_every_base():
    """The per-directory cache must never hand one base's answer to another."""
    cases = [c for c in json.loads(DATA.read_text()) if isinstance(c, dict)]
    hrefs = [c["input"] for c in cases]
    # Scheme-relative forms, in every spelling the parser folds together.
    hrefs += [f"{s}{sep}{rest}" for s in ("http", "HTTP", "https", " http", "\thttp")
              for sep in (":", ":\t", ":\n", ": ") for rest in ("", "?q", "#f", "x", "/x", "//x", "\\x", " ")]
    bases = ["http://example.org/foo/bar", "http://example.org/foo/baz?x#y", "https://example.org/foo/bar",
             "http://example.org/foo/", "http://other.example:81/foo/bar", "http://example.org/"]
    clear_caches()
    for base in bases:
        for href, got in zip(hrefs, resolve_all(hrefs, base)):
            assert got == reference(href, base), (href, base)


def reference(href, base):
    """The two steps of crawler.urls done directly, with no cache and no shortcut."""
    try:
        url = join_url(base, href)
    except ValueError:
        return None
    if not url.startswith(("http://", "https://")):
        return None
    canon = canonicalize_url(url, keep_fragments=False)
    return canon, urlsplit(canon).hostname


def resolve_all_one(url):
    clear_caches()
    return next(resolve_all([url], None))


def test_the_already_canonical_shortcut_agrees_with_w3lib():
    urls = ["http://h.example/a/b.html", "http://h.example:8080/a-b_c.d~e/!$&'()*+,;=:@/",
            "https://xn--bcher-kva.example/", "http://127.0.0.1/x//y/"]
    for url in urls:
        assert _ALREADY_CANONICAL(url) and canonicalize_url(url, keep_fragments=False) == url
        assert resolve_all_one(url) == (url, urlsplit(url).hostname)  # the host is cut out by hand
    for url in ["http://h.example/a b", "http://h.example/%7e", "http://h.example/a|b", "http://H.example/",
                "http://u@h.example/", "http://[::1]/", "http://h.example/?a"]:
        assert not _ALREADY_CANONICAL(url)


def test_allowed_domains_are_spelled_as_hosts_are():
    class Settings(FakeSettings):
        class crawl(FakeSettings.crawl):
            allowed_domains = ["Bücher.Example", "shop.example:8080", ".dotted.example."]
    scope = Scope.from_settings(Settings, []).compile()
    assert scope.allows(resolve("http://BÜCHER.example/a"))
    assert scope.allows("http://www.shop.example/x") and scope.allows("http://dotted.example/")
    assert not scope.allows("http://bucher.example/a")


def test_huge_hrefs_resolve_but_are_not_kept():
    clear_caches()
    href = "/big?" + "x" * 100_000
    assert resolve(href, "http://h.example/a/") == "http://h.example/big?" + "x" * 100_000 + "="
    assert resolve("data:text/plain," + "y" * 100_000, "http://h.example/a/") is None
    assert all(len(key[1]) < 5000 for key in urls._by_dir) and all(len(u) < 5000 for u in urls._by_absolute)


def test_ipv6_domains_keep_their_colons():
    class Settings(FakeSettings):
        class crawl(FakeSettings.crawl):
            allowed_domains = ["::1", "[2001:DB8::1]:8080"]
    scope = Scope.from_settings(Settings, []).compile()
    assert scope.allows(canonicalize("http://[::1]:8080/x")) and scope.allows(canonicalize("http://[2001:db8::1]/"))
    assert not scope.allows(canonicalize("http://[::2]/"))


@pytest.mark.parametrize("href,encoded", [
    ("/a?q=é", "/a?q=%E9"),
    ("/é?q=é#é", "/é?q=%E9#é"),          # only the query: the path and fragment are the parser's
    ("/a#x?q=é", "/a#x?q=é"),             # a "?" after "#" is in the fragment
    ("/a?q=€&r=✓", "/a?q=%80&r=%26%2310003%3B"),
    ("/a?q=plain", "/a?q=plain"),
])
def test_encode_query_uses_the_pages_encoding_for_the_query_only(href, encoded):
    assert encode_query(href, "cp1252") == encoded


def test_resolve_with_a_legacy_encoding_and_the_cache_keep_pages_apart():
    clear_caches()
    assert resolve("s?q=中", "http://h.example/d/p", "gb18030") == "http://h.example/d/s?q=%D6%D0"
    assert resolve("s?q=中", "http://h.example/d/p") == "http://h.example/d/s?q=%E4%B8%AD"
    assert resolve("s?q=中", "http://h.example/d/p", "utf-16-le") == "http://h.example/d/s?q=%E4%B8%AD"
