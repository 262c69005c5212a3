"""parse_page: decoding, field rules, links and hostile input, without processes."""

import codecs
import orjson
import pytest

from crawler.messages import FetchJob, Page
from crawler.settings import build_rules
from crawler.urls import Scope
from parsers.worker import WorkerConfig, WorkerState, parse_page

BASE = "http://127.0.0.1:8000/dir/page.html"


def state(rules_toml=None, *, max_depth=5, obey_robots=True, domains=("127.0.0.1",)):
    import tomllib

    raw = tomllib.loads(rules_toml)["parse"]["rules"] if rules_toml else [
        {"name": "page", "match": ".*", "fields": {"title": {"xpath": "//title/text()"}}}]
    config = WorkerConfig(crawl_id="test", rules=build_rules(raw, "test"),
                          scope=Scope(domains=frozenset(domains)), obey_robots=obey_robots,
                          max_depth=max_depth, max_links=1000)
    return WorkerState(config)


def page(body: bytes, content_type="text/html", charset=None, url=BASE, depth=0):
    job = FetchJob(id=1, url=url, host="127.0.0.1", depth=depth)
    return Page(job=job, fetched_at="2026-11-22T00:00:00.000Z", final_url=url, status=200,
                content_type=content_type, charset=charset, body=body)


def record(result):
    assert result.line.endswith(b"\n") and result.line.count(b"\n") == 1
    return orjson.loads(result.line)


RULES = """
[[parse.rules]]
name = "product"
match = "/p/"
fields.title = { xpath = "//h1/text()" }
fields.price = { xpath = "//span[@class='price']/text()", regex = '\\$([\\d.]+)' }
fields.sku = { regex = 'SKU-[\\d-]+' }
fields.tags = { xpath = "//a[@rel='tag']/text()", many = true }
fields.missing = { xpath = "//nope/text()" }
fields.none_many = { xpath = "//nope/text()", many = true }
fields.count = { xpath = "count(//li)" }

[[parse.rules]]
name = "other"
match = ".*"
fields.title = { xpath = "//title/text()" }
"""

PRODUCT = b"""<html><head><title>T</title></head><body><h1>  Blue   Widget </h1>
<span class="price">Now $12.50 only</span><p>SKU-0001-42 in stock</p>
<a rel="tag" href="/t/a">alpha</a><a rel="tag" href="/t/b"> beta </a><ul><li>1</li><li>2</li></ul></body></html>"""


def test_first_rule_matching_the_url_applies_with_field_semantics():
    r = record(parse_page(page(PRODUCT, url="http://127.0.0.1:8000/p/1.html"), state(RULES)))
    assert r["rule"] == "product"
    assert r["data"] == {"title": "Blue   Widget", "price": "12.50", "sku": "SKU-0001-42",
                         "tags": ["alpha", "beta"], "missing": None, "none_many": [], "count": "2"}


def test_fallback_rule_when_first_does_not_match():
    r = record(parse_page(page(PRODUCT, url="http://127.0.0.1:8000/c/1.html"), state(RULES)))
    assert r["rule"] == "other" and r["data"] == {"title": "T"}


def test_record_has_every_contract_field_in_order():
    r = record(parse_page(page(PRODUCT), state()))
    assert list(r) == ["url", "final_url", "status", "fetched_at", "depth", "referrer", "content_type",
                       "bytes", "elapsed_ms", "attempts", "crawl_id", "rule", "data", "links",
                       "changed", "error", "canonical"]
    assert r["error"] is None and r["bytes"] == len(PRODUCT)


def test_links_resolve_against_base_href_and_skip_non_http_schemes():
    body = b"""<html><head><base href="http://127.0.0.1:8000/base/"></head><body>
    <a href="x.html">x</a><a href="../y.html#frag">y</a><area href="/z.html">
    <a href="mailto:a@b.c">m</a><a href="javascript:void(0)">j</a><a href="tel:123">t</a>
    <a href="data:text/html,hi">d</a><a href="HTTP://127.0.0.1:8000/base/x.html">dup</a>
    <a href="http://127.0.0.9/out.html">out of scope</a></body></html>"""
    result = parse_page(page(body), state())
    assert [u for u, _ in result.links] == ["http://127.0.0.1:8000/base/x.html", "http://127.0.0.1:8000/y.html",
                            "http://127.0.0.1:8000/z.html"]
    assert record(result)["links"] == 4  # distinct http(s) links found, before scope


def test_nofollow_links_and_meta_robots_are_honoured():
    body = b'<html><body><a href="/a" rel="nofollow">a</a><a href="/b">b</a></body></html>'
    assert [u for u, _ in parse_page(page(body), state()).links] == ["http://127.0.0.1:8000/b"]
    meta = b'<html><head><meta name="ROBOTS" content="noindex, nofollow"><title>x</title></head><body><a href="/b">b</a></body></html>'
    result = parse_page(page(meta), state())
    assert [u for u, _ in result.links] == [] and record(result)["data"] == {}


def test_obey_robots_off_follows_nofollow():
    body = b'<html><body><a href="/a" rel="nofollow">a</a></body></html>'
    assert [u for u, _ in parse_page(page(body), state(obey_robots=False)).links] == ["http://127.0.0.1:8000/a"]


def test_no_links_are_queued_beyond_max_depth():
    body = b'<html><body><a href="/a">a</a></body></html>'
    result = parse_page(page(body, depth=2), state(max_depth=2))
    assert [u for u, _ in result.links] == [] and record(result)["links"] == 1


@pytest.mark.parametrize("encoding,declare", [
    ("gbk", "meta"), ("gbk", "header"), ("shift_jis", "header"), ("shift_jis", "meta"),
    ("latin-1", "header"), ("utf-8", "none"), ("utf-8-sig", "none"), ("utf-8-sig", "header"),
])
def test_encodings_decode_right_however_declared(encoding, declare):
    title = {"gbk": "中文标题", "shift_jis": "日本語のタイトル", "latin-1": "Crème brûlée",
             "utf-8": "Ünïcödé ✓", "utf-8-sig": "BOM ✓ ü"}[encoding]
    meta = f'<meta charset="{encoding}">' if declare == "meta" else ""
    body = f"<html><head>{meta}<title>{title}</title></head><body>{'x' * 50}</body></html>".encode(encoding)
    if encoding == "utf-8-sig":
        assert body.startswith(codecs.BOM_UTF8)
    charset = {"utf-8-sig": "utf-8"}.get(encoding, encoding) if declare == "header" else None
    assert record(parse_page(page(body, charset=charset), state()))["data"]["title"] == title


def test_undeclared_gbk_is_detected():
    title = "中文标题，这是一个比较长的中文句子用于编码检测"
    body = f"<html><head><title>{title}</title></head><body><p>{title * 5}</p></body></html>".encode("gbk")
    assert record(parse_page(page(body), state()))["data"]["title"] == title


def test_nul_bytes_and_invalid_utf8_still_parse():
    body = b"<html><head><title>ok\x00 \xff\xfe title</title></head><body>\x00\x00<a href='/a'>a</a></body></html>"
    result = parse_page(page(body, charset="utf-8"), state())
    r = record(result)
    assert r["error"] is None and r["data"]["title"].startswith("ok")
    assert [u for u, _ in result.links] == ["http://127.0.0.1:8000/a"]


@pytest.mark.parametrize("junk", [b"", b"\x00" * 1000, bytes(range(256)) * 40, b"<" * 5000,
                                  b"<html>" + b"<div>" * 5000, b"\xef\xbb\xbf"])
def test_binary_junk_never_crashes(junk):
    r = record(parse_page(page(junk), state()))
    assert r["url"] == BASE  # one record either way, error or not


@pytest.mark.parametrize("blank", [b" \n\t\r ", "\u3000\u00a0 ".encode()])
def test_a_blank_page_is_parsed_as_no_document(blank):
    result = parse_page(page(blank, charset="utf-8"), state())
    r = record(result)
    assert r["error"] is None and r["data"] == {"title": None} and r["links"] == 0 and result.links == []


def test_non_html_is_recorded_not_parsed():
    result = parse_page(page(b"%PDF-1.7 <a href='/x'>", content_type="application/pdf"), state())
    r = record(result)
    assert r["content_type"] == "application/pdf" and r["data"] == {} and r["rule"] is None
    assert [u for u, _ in result.links] == []


def test_custom_callable_rule(tmp_path, monkeypatch):
    (tmp_path / "myparse.py").write_text(
        "def product(url, text, tree):\n    return {'h1': tree.xpath('string(//h1)').strip(), 'n': len(text) > 0}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rules = '[[parse.rules]]\nname = "custom"\ncallable = "myparse:product"\n'
    r = record(parse_page(page(PRODUCT), state(rules)))
    assert r["rule"] == "custom" and r["data"] == {"h1": "Blue   Widget", "n": True}


def test_failing_callable_is_a_parse_error_record(tmp_path, monkeypatch):
    (tmp_path / "badparse.py").write_text("def f(url, text, tree):\n    raise ValueError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = parse_page(page(PRODUCT), state('[[parse.rules]]\nname = "b"\ncallable = "badparse:f"\n'))
    r = record(result)
    assert r["error"] == {"type": "parse", "message": "ValueError: boom"}
    assert result.error_type == "parse"


@pytest.mark.parametrize("head,canonical", [
    ('<link rel="canonical" href="/dir/page.html?b=2&amp;a=1#x">', "http://127.0.0.1:8000/dir/page.html?a=1&b=2"),
    ('<link rel="Alternate CANONICAL" href="..\\other.html">', "http://127.0.0.1:8000/other.html"),
    ('<base href="http://127.0.0.9/b/"><link rel="canonical" href="c.html">', "http://127.0.0.9/b/c.html"),
    ('<link rel="canonical" href="page.html#top">', None),  # the page itself
    ('<link rel="canonical" href="mailto:a@b.c">', None),
    ('<link rel="canonical" href="http://exa mple.com/">', None),  # a browser fails to parse it
    ('<link rel="stylesheet" href="/s.css">', None),
    ("", None),
])
def test_link_rel_canonical_is_recorded_resolved_like_a_link(head, canonical):
    body = f"<html><head><title>t</title>{head}</head><body><a href='/a'>a</a></body></html>".encode()
    result = parse_page(page(body), state())
    assert record(result)["canonical"] == canonical
    assert record(result)["links"] == 1  # a link, not a link of the page


def test_canonical_is_repeated_for_an_unchanged_page_on_a_recrawl():
    body = b'<html><head><link rel="canonical" href="/c.html"></head><body></body></html>'
    first = parse_page(page(body), state())
    assert record(first)["canonical"] == "http://127.0.0.1:8000/c.html"
    again = page(body)
    again.job.content_hash, again.job.snapshot = first.content_hash, first.snapshot
    r = record(parse_page(again, state()))
    assert r["changed"] is False and r["canonical"] == "http://127.0.0.1:8000/c.html"
    old_snapshot = orjson.dumps(["page", {"title": "t"}, 3])  # written before `canonical` existed
    again.job.snapshot = old_snapshot
    r = record(parse_page(again, state()))
    assert (r["changed"], r["links"], r["canonical"]) == (False, 3, None)


@pytest.mark.parametrize("encoding,declared,query", [
    ("gbk", "gbk", "q=%D6%D0%CE%C4"),                           # a legacy page: its own encoding
    ("cp1252", "iso-8859-1", "q=%E9%80%26%2310003%3B"),         # a missing character: &#10003;
    ("utf-8", "utf-8", "q=%E4%B8%AD%E6%96%87"),
])
def test_a_query_is_encoded_in_the_pages_encoding_and_a_path_in_utf8(encoding, declared, query):
    """The URL Standard's encoding override, as browsers apply it to links."""
    text = {"gbk": "中文", "cp1252": "é€✓", "utf-8": "中文"}[encoding]
    body = (f'<html><head><meta charset="{declared}"></head><body><a href="/s?q={text}#f">s</a>'
            f'<a href="/é/?q={text}">p</a><a href="http:x.html?{text}">x</a></body></html>')
    payload = body.encode(encoding, errors="xmlcharrefreplace")  # the page as served
    links = [u for u, _ in parse_page(page(payload), state()).links]
    assert links == [f"http://127.0.0.1:8000/s?{query}", f"http://127.0.0.1:8000/%C3%A9/?{query}",
                     f"http://127.0.0.1:8000/dir/x.html?{query.partition('=')[2]}="]


@pytest.mark.parametrize("body,charset", [
    (b"<title>plain ascii</title>", "utf-8"),
    (b"<title>plain ascii</title>", "iso-8859-1"),
    (b"<title>plain ascii</title>", None),
    ("<title>Ünïcödé ✓</title>".encode(), "utf-8"),
    (b"<title>caf\xe9</title>", "utf-8"),  # declared UTF-8, is not: U+FFFD
    (b"<title>caf\xe9</title>", "windows-1252"),
    (b"<title>caf\xe9</title>", None),
    (codecs.BOM_UTF8 + b"<title>bom</title>", None),
    (b"<title>nul\x00</title>", "utf-8"),
    ("<title>日本</title>".encode("shift_jis"), "shift_jis"),
    ("<title>x</title>".encode("utf-16"), None),
])
def test_the_parser_gets_the_bytes_of_exactly_the_decoded_text(body, charset):
    """for_parser hands a clean body to lxml as it is; whatever the body, the bytes it gives
    are the UTF-8 of what decode() gives, and the text and encoding are decode()'s."""
    from parsers.decode import decode, for_parser

    text, encoding = decode(body, charset)
    assert for_parser(body, charset) == (text.encode("utf-8"), text, encoding)
