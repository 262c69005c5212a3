"""The one-walk evaluation of simple paths (parsers/walk.py) gives exactly what lxml's XPath
gives, on generated messy documents and on the expressions users write (XPath by hand and
CSS translated), and the fields built on it read the same as before."""

import random

import pytest
from lxml import etree

from crawler.rules import css_to_xpath
from crawler.settings import build_rules
from parsers.extract import RuleSet
from parsers.walk import Walker, simple_path

PARSER = etree.HTMLParser(encoding="utf-8", recover=True, no_network=True)
TAGS = ["div", "span", "p", "a", "td", "title", "meta", "li", "b", "section", "h1"]
TOKENS = ["price", "Price", "old-price", "cat", "sku", "a", "b", "", "pri", "x price"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\x0c", "\xa0"]
TEXTS = ["", "x", " $12.50 ", "&amp; y", "&nbsp;", "a&#32;b", "\n  \n", "é", "1 < 2", "<!-- c -->"]


def messy_document(rng: random.Random) -> bytes:
    """Random, often broken HTML: nested and unclosed elements, class lists with every kind
    of white space, upper-case names, comments, entities, text and tails everywhere."""
    out = ["<html><head><title>", rng.choice(TEXTS), "</title></head><body>"]
    depth = 0
    for _ in range(rng.randint(5, 60)):
        roll = rng.random()
        if roll < 0.45:
            tag = rng.choice(TAGS)
            tag = tag.upper() if rng.random() < 0.1 else tag
            attrs = []
            for name in ("class", "id", "href", "rel", "data-x", "CLASS"):
                if rng.random() < 0.35:
                    value = rng.choice(SPACES).join(rng.choice(TOKENS) for _ in range(rng.randint(0, 3)))
                    if rng.random() < 0.3:
                        value = rng.choice(SPACES) + value + rng.choice(SPACES)
                    quote = rng.choice(['"', "'"])
                    attrs.append(f"{name}={quote}{value}{quote}" if rng.random() < 0.9 else name)
            out.append(f"<{tag}{''.join(' ' + a for a in attrs)}>")
            depth += 1
        elif roll < 0.65 and depth:
            out.append(f"</{rng.choice(TAGS)}>")  # often not the open one
            depth -= 1
        elif roll < 0.7:
            out.append("<br>")
        else:
            out.append(rng.choice(TEXTS))
    out.append("</body></html>")
    return "".join(out).encode()


def expressions() -> list[str]:
    """What users write: hand-written XPath in each simple form, and CSS selectors, which
    the rules translate to XPath (parsel)."""
    xpaths = []
    for tag in ("span", "a", "title", "td", "div", "meta", "h1"):
        xpaths += [f"//{tag}", f"//{tag}/text()", f"//{tag}/@class", f"//{tag}/@href",
                   f"//{tag}[@class='price']/text()", f'//{tag}[@class="price"]', f"//{tag}[@class]/text()",
                   f"//{tag}[@id = 'a']/@data-x", f"//{tag}[contains(@class, 'price')]/text()",
                   f"//{tag}[@class='cat'][@href]/@href", f"//{tag}[@class and @rel]/text()",
                   f"//{tag}[(@class and @rel) and @href]", f"//{tag}[contains(@class, '')]"]
    css = ["span.price::text", "a.cat::text", "a::attr(href)", "td.sku", "div.a.b", "a[href]",
           "span.old-price::text", "title::text", "h1::text", "meta[class=price]::attr(class)",
           "a[rel=a]::attr(href)", "span.Price::text", "li.x::text"]
    return xpaths + [css_to_xpath(c) for c in css]


def as_comparable(values: list) -> list:
    return [v.getroottree().getpath(v) if isinstance(v, etree._Element) else v for v in values]


def test_every_expression_used_here_is_a_simple_path():
    # Otherwise the comparison below would only compare lxml with itself.
    assert all(simple_path(e) is not None for e in expressions())


@pytest.mark.parametrize("seed", range(40))
def test_simple_paths_give_what_lxml_xpath_gives(seed):
    rng = random.Random(seed)
    exprs = expressions()
    walker = Walker([simple_path(e) for e in exprs], links=True, nofollow=True, robots=True)
    compiled = [etree.XPath(e, smart_strings=False) for e in exprs]
    compared = 0
    for _ in range(10):
        tree = etree.fromstring(messy_document(rng), PARSER)
        walked = walker.walk(tree)
        for expr, xpath, got in zip(exprs, compiled, walked.values):
            if got is None:  # nested matches of a text path: left to lxml for this page
                assert expr.endswith("/text()")
                continue
            assert as_comparable(got) == as_comparable(xpath(tree)), expr
            compared += bool(got)
    assert compared > 100  # the documents do hold what the paths look for


def test_what_is_not_a_simple_path_is_left_to_lxml():
    for expr in ["//a[1]", "//a/b", "count(//li)", "//TITLE", "//a[@x or @y]", "//a/@href/x", "string(//a)",
                 "//*[@id='a']", "//a//b", "//a | //b", "//a/text()[1]", "//a[@x='1'", "//a[not(@x)]",
                 "//a[@x != '1']", "//svg:rect", "/html/body", "//a[@x]andy", css_to_xpath("*::text"),
                 css_to_xpath("ul li a::attr(href)"), css_to_xpath("#main"), "//a[@x andy]"]:
        assert simple_path(expr) is None, expr


RULES = """
[[parse.rules]]
name = "all"
match = "."
fields.title = { xpath = "//title/text()" }
fields.price = { css = "span.price::text", regex = '([\\d.]+)', type = "number" }
fields.hrefs = { xpath = "//a/@href", many = true }
fields.cat = { xpath = "//a[@class='cat']" }
fields.count = { xpath = "count(//li)" }
fields.joined = { xpath = "//p/text()", many = true, join = "|" }
"""


@pytest.mark.parametrize("seed", range(10))
def test_fields_read_the_same_with_and_without_the_walk(seed):
    import tomllib

    rule = RuleSet(build_rules(tomllib.loads(RULES)["parse"]["rules"], "test")).rules[0]
    walker = Walker(rule.paths, links=True, nofollow=True, robots=True)
    assert sum(p is not None for p in rule.paths) == 5  # all but count()
    rng = random.Random(1000 + seed)
    walked_values = 0
    for _ in range(20):
        body = messy_document(rng)
        tree = etree.fromstring(body, PARSER)
        text = body.decode()
        values = walker.walk(tree).values
        walked_values += sum(1 for v in values if v)  # read from the walk, not left to lxml
        assert rule.apply("http://x/", tree, lambda: text, values) == rule.apply("http://x/", tree, lambda: text)
    assert walked_values > 20


def test_one_walk_finds_links_base_and_robots_as_the_single_purpose_walks_did():
    body = b"""<html><head><base target="_top"><base href="/sub/"><base href="/other/">
    <meta name="ROBOTS" content="NoIndex, follow"><meta name="googlebot" content="nofollow"></head>
    <body><a href="a.html">a</a><a href="#top">top</a><a href=" \t#x">x</a><a>none</a>
    <a rel="NoFollow external" href="secret.html">s</a><area href="map.html"><a href="a.html">again</a>
    <span class="price">1</span></body></html>"""
    tree = etree.fromstring(body, PARSER)
    walked = Walker([simple_path("//span[@class='price']/text()")], links=True, nofollow=True, robots=True).walk(tree)
    assert walked.hrefs == ["a.html", "map.html"]
    assert walked.base == "/sub/"  # the first <base> with an href
    assert walked.robots == {"noindex", "follow"}
    assert walked.values == [["1"]]
    kept = Walker([], links=True, nofollow=False, robots=False).walk(tree)
    assert kept.hrefs == ["a.html", "secret.html", "map.html"] and kept.robots == set()


def test_a_path_too_costly_for_the_walk_leaves_it_and_reads_the_same_through_xpath():
    paragraphs = "".join(f"<p>para {i}<b>b</b> tail</p>" for i in range(60))
    body = f"<html><head><title>T</title></head><body>{paragraphs}</body></html>".encode()
    tree = etree.fromstring(body, PARSER)
    walker = Walker([simple_path("//title/text()"), simple_path("//p/text()")], links=True, nofollow=True,
                    robots=True)
    first = walker.walk(tree).values
    assert first[1] == etree.XPath("//p/text()", smart_strings=False)(tree)  # walked while being judged
    for _ in range(Walker.JUDGE_AFTER):
        later = walker.walk(tree).values
    assert walker.active == {0}  # 60 paragraphs a page: over the budget; one title: kept
    assert later == [["T"], None]  # None: the field evaluates //p/text() with lxml
    rule = RuleSet(build_rules([{"name": "r", "match": ".", "fields": {
        "title": {"xpath": "//title/text()"}, "paras": {"xpath": "//p/text()", "many": True}}}], "t")).rules[0]
    assert rule.apply("http://x/", tree, lambda: "", later) == rule.apply("http://x/", tree, lambda: "")
    assert rule.apply("http://x/", tree, lambda: "", later)[0]["paras"][:3] == ["para 0", "tail", "para 1"]
