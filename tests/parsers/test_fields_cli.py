"""CSS, JSON-LD, types and required fields, through `crawler crawl`, on pages whose contents
are known: every line of the output is checked."""

from __future__ import annotations

import json

import pytest

from crawler.demo.shop.server import Response, Site

FAST = "[crawl]\nmax_depth = 1\n[fetch]\nper_host_delay = 0\nper_host_concurrency = 2\nconcurrency = 4\n"
HOST = "127.0.0.1"


def crawl_pages(serve, cli, pages: dict[str, str], rules: str):
    """Serve `pages` (path -> HTML) under an index linking them all; crawl; records by path."""
    site = Site()
    server = serve(site, [HOST])
    links = "".join(f'<a href="{path}">{path}</a>' for path in pages)
    site.add(HOST, "/", Response.html(f"<html><title>index</title>{links}</html>"))
    for path, html in pages.items():
        site.add(HOST, path, Response.html(html))
    run = cli("crawl", server.url(HOST, "/"), "-o", "out.jsonl", "-q", settings=FAST + rules)
    assert run.code == 0, run.stderr
    base = server.url(HOST, "/").rstrip("/")
    by_path = {r["url"].removeprefix(base): r for r in run.records}
    assert sorted(by_path) == sorted(["/", *pages])  # one line per page, none twice
    assert len(run.records) == len(by_path)
    return by_path


CSS_PAGES = {
    "/p/1": """<html><body><h1 class="name big"> Blue Widget </h1><img class="main" src="/img/1.jpg">
        <img class="thumb" src="/img/1s.jpg"><a class="tag">alpha</a><a class="tag"> beta </a>
        <p class="sku">SKU: W-001</p></body></html>""",
    "/p/2": """<html><body><h1 class="name">Red Widget</h1><div class="gallery"><img src="/g.png"></div>
        </body></html>""",
}
CSS_RULES = """
[[parse.rules]]
name = "product"
match = "/p/"
fields.name = { css = "h1.name::text" }
fields.image = { css = "img.main::attr(src)" }
fields.tags = { css = "a.tag::text", many = true }
fields.sku = { css = "p.sku", regex = 'SKU: (\\S+)' }
fields.images = { css = "img::attr(src)", many = true }
"""


def test_css_fields_give_text_attributes_and_lists(serve, cli):
    recs = crawl_pages(serve, cli, CSS_PAGES, CSS_RULES)
    assert recs["/"]["rule"] is None and recs["/"]["data"] == {}
    assert recs["/p/1"]["rule"] == "product"
    assert recs["/p/1"]["data"] == {"name": "Blue Widget", "image": "/img/1.jpg", "tags": ["alpha", "beta"],
                                    "sku": "W-001", "images": ["/img/1.jpg", "/img/1s.jpg"]}
    assert recs["/p/2"]["data"] == {"name": "Red Widget", "image": None, "tags": [], "sku": None,
                                    "images": ["/g.png"]}
    assert all("missing" not in r and "invalid" not in r for r in recs.values())


def ld(*blocks) -> str:
    return "".join(f'<script type="application/ld+json">{b if isinstance(b, str) else json.dumps(b)}</script>'
                   for b in blocks)


PRODUCT = {"@context": "https://schema.org", "@type": "Product", "name": "Blue Widget", "sku": "W-001",
           "offers": {"@type": "Offer", "price": "1299.00", "priceCurrency": "USD"}}
JSONLD_PAGES = {
    "/single": f"<html><head>{ld(PRODUCT)}</head><body></body></html>",
    "/graph": "<html><head>" + ld({"@context": "https://schema.org", "@graph": [
        {"@type": "Organization", "name": "Shop Inc"},
        {"@type": ["Product", "Thing"], "name": "Green Widget", "offers": {"price": 5}}]}) + "</head></html>",
    "/several": "<html><head>" + ld({"@type": "BreadcrumbList", "name": "crumbs"},
                                    {"@type": "schema:Product", "name": "Red Widget", "offers": {"price": "7.5"}},
                                    {"@type": "Product", "name": "Spare Part", "offers": {"price": 1}}) + "</head></html>",
    "/broken": "<html><head>" + ld('{"@type": "Product", "name": "Broken",}') + "</head><h1>Still here</h1></html>",
}
JSONLD_RULES = """
[[parse.rules]]
name = "product"
match = "/(single|graph|several|broken)"
fields.name = { jsonld = "Product", path = "name" }
fields.price = { jsonld = "Product", path = "offers.price" }
fields.all_names = { jsonld = "Product", path = "name", many = true }
fields.org = { jsonld = "Organization", path = "name" }
fields.heading = { css = "h1::text" }
"""


def test_jsonld_single_object_graph_several_blocks_and_broken_json(serve, cli):
    recs = crawl_pages(serve, cli, JSONLD_PAGES, JSONLD_RULES)
    assert recs["/single"]["data"] == {"name": "Blue Widget", "price": "1299.00", "all_names": ["Blue Widget"],
                                       "org": None, "heading": None}
    assert recs["/graph"]["data"] == {"name": "Green Widget", "price": 5, "all_names": ["Green Widget"],
                                      "org": "Shop Inc", "heading": None}
    assert recs["/several"]["data"] == {"name": "Red Widget", "price": "7.5",
                                        "all_names": ["Red Widget", "Spare Part"], "org": None, "heading": None}
    # broken JSON-LD: those fields are null, the record and its other fields are kept
    assert recs["/broken"]["error"] is None and recs["/broken"]["status"] == 200
    assert recs["/broken"]["data"] == {"name": None, "price": None, "all_names": [], "org": None,
                                       "heading": "Still here"}


TYPED = """<html><body><span class="price">{price}</span><span class="reviews">{reviews}</span>
<time>{date}</time><span class="stock">{stock}</span><li>{a}</li><li>{b}</li></body></html>"""
TYPED_PAGES = {
    "/t/us": TYPED.format(price="$1,299.00", reviews="1,204 reviews", date="March 5, 2026", stock="yes", a="1", b="2"),
    "/t/eu": TYPED.format(price="1.299,00 €", reviews="87", date="2026-03-05T10:30:00+01:00", stock="False",
                          a="3", b="4"),
    "/t/bad": TYPED.format(price="call us", reviews="4.5", date="someday", stock="maybe", a="5", b="x"),
}
TYPED_RULES = """
[[parse.rules]]
name = "typed"
match = "/t/"
fields.price = { css = "span.price::text", type = "number" }
fields.reviews = { css = "span.reviews::text", regex = '([\\d,.]+)', type = "integer" }
fields.date = { xpath = "//time/text()", type = "date" }
fields.in_stock = { css = "span.stock::text", type = "bool" }
fields.items = { css = "li::text", many = true, type = "integer" }
fields.joined = { css = "li::text", many = true, join = "+" }
fields.note = { css = "p.note::text", default = "none" }
"""


def test_types_convert_prices_integers_dates_and_bools_and_list_failures(serve, cli):
    recs = crawl_pages(serve, cli, TYPED_PAGES, TYPED_RULES)
    us, eu, bad = recs["/t/us"], recs["/t/eu"], recs["/t/bad"]
    assert us["data"] == {"price": 1299.0, "reviews": 1204, "date": "2026-03-05", "in_stock": True,
                          "items": [1, 2], "joined": "1+2", "note": "none"}
    assert "invalid" not in us and "missing" not in us
    assert eu["data"] == {"price": 1299.0, "reviews": 87, "date": "2026-03-05T10:30:00+01:00", "in_stock": False,
                          "items": [3, 4], "joined": "3+4", "note": "none"}
    assert "invalid" not in eu
    assert bad["data"] == {"price": None, "reviews": None, "date": None, "in_stock": None, "items": [5, None],
                           "joined": "5+x", "note": "none"}
    assert bad["invalid"] == ["price", "reviews", "date", "in_stock", "items"]
    assert "missing" not in bad  # nothing was required


REQUIRED_RULES = """
[[parse.rules]]
name = "product"
match = "/r/"
fields.name = { css = "h1::text", required = true }
fields.price = { css = ".price::text", type = "number", required = true }
fields.color = { css = ".color::text", default = "unknown", required = true }
fields.blurb = { css = ".blurb::text" }
"""
REQUIRED_PAGES = {
    "/r/full": '<html><h1>Widget</h1><b class="price">$5</b><i class="color">red</i></html>',
    "/r/no-price": '<html><h1>Gadget</h1><p class="blurb">soon</p></html>',
    "/r/bad-price": '<html><b class="price">TBA</b></html>',
}


def test_required_fields_missing_or_unreadable_are_listed_and_data_kept(serve, cli):
    recs = crawl_pages(serve, cli, REQUIRED_PAGES, REQUIRED_RULES)
    full, no_price, bad_price = recs["/r/full"], recs["/r/no-price"], recs["/r/bad-price"]
    assert full["data"] == {"name": "Widget", "price": 5.0, "color": "red", "blurb": None}
    assert "missing" not in full and "invalid" not in full
    assert no_price["data"] == {"name": "Gadget", "price": None, "color": "unknown", "blurb": "soon"}
    assert no_price["missing"] == ["price"] and "invalid" not in no_price
    assert bad_price["data"] == {"name": None, "price": None, "color": "unknown", "blurb": None}
    assert bad_price["missing"] == ["name", "price"] and bad_price["invalid"] == ["price"]
    # the new keys come after the record's own keys, and only where there is something to say
    assert list(no_price)[-1] == "missing" and list(bad_price)[-2:] == ["missing", "invalid"]
    assert "missing" not in recs["/"]


@pytest.mark.parametrize("field, message", [
    ('fields.name = { css = "h1..name::text" }', "fields.name.css: invalid CSS selector"),
    ('fields.name = { css = "h1:nosuch" }', "fields.name.css: invalid CSS selector"),
    ('fields.price = { css = "b", type = "money" }', "fields.price.type: unknown type 'money'"),
    ('fields.price = { css = "b", xpath = "//b" }', "fields.price: xpath and css are two sources"),
    ('fields.price = { jsonld = "Product", css = "b", path = "x" }', "fields.price: css and jsonld are two sources"),
    ('fields.price = { jsonld = "Product", path = "offers.[" }', "fields.price.path: invalid path"),
    ('fields.price = { css = "b", path = "offers" }', "fields.price.path: only used with jsonld"),
    ('fields.tags = { css = "b", join = "," }', "fields.tags.join: only used with many = true"),
    ('fields.tags = { css = "b", required = "yes" }', "fields.tags.required: expected true or false"),
])
def test_bad_field_exits_2_with_one_line_naming_rule_and_field(serve, cli, field, message):
    site = Site()
    server = serve(site, [HOST])
    site.add(HOST, "/", Response.html("<html></html>"))
    run = cli("crawl", server.url(HOST, "/"), "-o", "out.jsonl",
              settings=f'[[parse.rules]]\nname = "shop"\nmatch = ".*"\n{field}\n')
    assert run.code == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and '[[parse.rules]] #1 "shop": ' + message in lines[0], run.stderr
    assert server.hits(HOST, "/") == 0 and run.records == []


def test_inspect_counts_incomplete_records_selects_them_and_validates_the_new_keys(serve, cli, tmp_path):
    recs = crawl_pages(serve, cli, REQUIRED_PAGES, REQUIRED_RULES)
    base = recs["/"]["url"].rstrip("/")
    summary = json.loads(cli("inspect", "out.jsonl", "--format", "json").stdout)
    assert summary["rules"]["product"] == {
        "records": 3, "incomplete": 2, "missing": {"name": 1, "price": 2}, "invalid": {"price": 1},
        "coverage": {"blurb": 1 / 3, "color": 1.0, "name": 2 / 3, "price": 1 / 3}}
    assert sorted(summary["incomplete_examples"]) == [base + "/r/bad-price", base + "/r/no-price"]
    text = cli("inspect", "out.jsonl").stdout
    assert "2 record(s) without required fields" in text and "price 2" in text
    listed = cli("inspect", "out.jsonl", "--where", "missing", "--format", "json").stdout.splitlines()
    assert sorted(json.loads(line)["url"] for line in listed) == [base + "/r/bad-price", base + "/r/no-price"]
    quoted = cli("inspect", "out.jsonl", "--where", '"missing" != null', "--format", "json").stdout.splitlines()
    assert sorted(quoted) == sorted(listed)  # the optional keys are record keys for --where, quoted or not
    only_price = cli("inspect", "out.jsonl", "--where", "contains(missing, 'name')", "--format", "json")
    assert [json.loads(line)["url"] for line in only_price.stdout.splitlines()] == [base + "/r/bad-price"]
    assert cli("inspect", "out.jsonl", "--validate").code == 0
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    broken = [line.replace('"missing":["price"]', '"missing":["cost"]') for line in lines]
    (tmp_path / "bad.jsonl").write_text("\n".join(broken) + "\n")
    check = cli("inspect", "bad.jsonl", "--validate")
    assert check.code == 1 and "missing names 'cost', which is not a field of data" in check.stdout
