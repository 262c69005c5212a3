"""A generated product site whose contents are known in advance.

Tests, the demo and the benchmark crawl it and compare what the crawler wrote with
`Catalog.expected`. Each host looks like::

    /                 index: every category, a few featured products, other hosts, off-site links
    /c/<k>.html       category k: every product in it
    /p/<n>.html       product n: title, price, SKU, category, related products, ~page_bytes
    /robots.txt       allows everything that is linked (robots=True), else 404

so every page is reachable from its host's "/" within `Catalog.max_depth_needed` (2) links.

The links are deliberately messy, the way real sites are: relative (``12.html``,
``../p/12.html``), absolute, scheme-relative, upper-case scheme, with fragments, with dot
segments, ``:80`` spelled out when the port is 80 (hosts are IP addresses, so there is no host
case to vary), to other in-scope hosts, to `out_of_scope_host` (never to be requested) and
``mailto:``/``tel:``/``javascript:``. Every href of an in-scope page resolves, after
canonicalization (`canonical_url`), to a key of `expected` or lies outside the in-scope hosts.

Pages carry no query strings, so the canonical URL is simply ``http://<ip>:<port><path>``.
"""

from __future__ import annotations

import bisect
import html
import math
import random
from dataclasses import dataclass, field
from typing import Sequence
from urllib.parse import urljoin, urlsplit

from crawler.demo.shop.responses import Response, Site

# Bound by the bench's server and linked from every page, never to be requested.
BENCH_OUT_OF_SCOPE_HOST = "127.0.0.254"

# The four fields, as data: the TOML rules, the Scrapy spider and the tests all derive from this.
FIELDS: dict[str, dict[str, str]] = {
    "title": {"xpath": "//title/text()"},
    "price": {"xpath": "//span[@class='price']/text()", "regex": r"([\d.]+)"},
    "sku": {"xpath": "//td[@class='sku']/text()"},
    "category": {"xpath": "//a[@class='cat']/text()"},
}
RULE_NAME = "catalog"
PRODUCTS_PER_CATEGORY = 100
FEATURED = 6  # products linked from the index directly

_CATEGORIES = [
    "Kitchen & Dining", "Garden", "Tools", "Lighting", "Bath", "Office", "Toys", "Outdoor",
    "Crème de la Crème", "Audio", "Bedding", "Storage", "Pets", "Travel", "Fitness", "Art Supplies",
]
_ADJECTIVES = [
    "Brushed", "Compact", "Deluxe", "Folding", "Heavy-Duty", "Matte", "Nordic", "Portable",
    "Rustic", "Smørrebrød", "Titanium", "Vintage", "Wireless", "Zesty", "Über", "Café",
]
_NOUNS = [
    "Kettle", "Lamp", "Hammock", "Drill", "Teapot", "Backpack", "Speaker", "Planter",
    "Notebook", "Blanket", "Skillet", "Ladder", "Clock", "Easel", "Cooler", "Mug",
]
_REVIEWERS = ["Ana", "Bjørn", "Chen", "Dolores", "Emeka", "Fatima", "Gus", "Hiroshi", "Ines", "José"]
_PHRASES = [
    "Arrived quickly and works exactly as described.",
    "Sturdier than I expected for the price; the finish is lovely.",
    "Took a star off because the manual is confusing, but support was helpful.",
    "We bought a second one for the cabin. No complaints after a year of use.",
    "Smaller than the photos suggest. Check the dimensions before ordering.",
    "Great value. The packaging was recyclable, which I appreciate.",
]


@dataclass
class Catalog:
    """A built catalog: what to serve, where to start, and what a crawler must find."""

    site: Site
    hosts: list[str]  # in-scope hosts
    port: int
    seeds: list[str]  # one per host: its "/" page
    expected: dict[str, dict]  # canonical URL -> {"title", "price", "sku", "category"} (None if absent)
    rules_toml: str  # [[parse.rules]] with the four fields
    out_of_scope_host: str | None
    max_depth_needed: int = 2  # every expected URL is at most this many links from a seed
    fields: dict[str, dict[str, str]] = field(default_factory=lambda: dict(FIELDS))


def loopback_hosts(count: int, first: int = 1) -> list[str]:
    """``count`` loopback addresses: 127.0.0.<first>, 127.0.0.<first+1>, ..."""
    return [f"127.0.0.{first + i}" for i in range(count)]


def rules_toml(fields: dict[str, dict[str, str]] = FIELDS, name: str = RULE_NAME) -> str:
    lines = ["[[parse.rules]]", f'name = "{name}"', 'match = "."']
    for key, spec in fields.items():
        parts = [f'xpath = "{spec["xpath"]}"']
        if "regex" in spec:
            parts.append(f"regex = '{spec['regex']}'")  # literal string: backslashes stay
        lines.append(f"fields.{key} = {{ {', '.join(parts)} }}")
    return "\n".join(lines) + "\n"


def canonical_url(base: str, href: str) -> str | None:
    """The canonical form `expected` uses for a link; None if it is not http(s).

    Resolve against the page, lower-case scheme and host, drop a default port, the fragment
    and dot segments. (The crawler has its own canonicalizer; this is the yardstick.)
    """
    url = urljoin(base, href.strip())
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return None
    host = (parts.hostname or "").lower()
    port = parts.port
    default = 80 if parts.scheme == "http" else 443
    netloc = host if port in (None, default) else f"{host}:{port}"
    path = _remove_dot_segments(parts.path or "/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{netloc}{path}{query}"


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, which urljoin does not apply to absolute URLs."""
    output: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    if path.endswith(("/.", "/..")):
        output.append("")
    return "/" + "/".join(output)


def build_catalog(hosts: Sequence[str], port: int, pages_per_host: int, *, page_bytes: int = 16384,
                  out_of_scope_host: str | None = None, robots: bool = True, seed: int = 0,
                  site: Site | None = None, prerender: bool = False) -> Catalog:
    """Generate the site: `pages_per_host` HTML pages on each host (index + categories + products).

    Pass `site` to fill a Site a running server already serves (the port must be known
    before the absolute links can be written). `prerender` renders every response's wire
    bytes now instead of on first request. The same arguments always give the same site;
    `expected` does not depend on `page_bytes`.
    """
    site = site if site is not None else Site()
    hosts = list(hosts)
    expected: dict[str, dict] = {}
    for index, host in enumerate(hosts):
        shop = _Shop(hosts, index, port, pages_per_host, page_bytes, out_of_scope_host, seed)
        for path, body, data in shop.pages():
            response = Response.html(body)
            if prerender:
                response.wire(False)
            site.add(host, path, response)
            expected[f"http://{shop.netloc}{path}"] = data
        if robots:
            site.add(host, "/robots.txt", Response(
                200, b"User-agent: *\nDisallow: /nowhere/\n", (("Content-Type", "text/plain"),)))
    if out_of_scope_host:
        site.add(out_of_scope_host, "*", Response.html(
            "<html><head><title>Out of scope</title></head><body>not for crawling</body></html>"))
    return Catalog(
        site=site, hosts=hosts, port=port, seeds=[f"http://{_netloc(h, port)}/" for h in hosts],
        expected=expected, rules_toml=rules_toml(), out_of_scope_host=out_of_scope_host,
        max_depth_needed=_depth_needed(pages_per_host))


def _netloc(host: str, port: int) -> str:
    return host if port == 80 else f"{host}:{port}"


def _depth_needed(pages: int) -> int:
    """Index (0) -> category (1) -> product (2); smaller sites stop earlier."""
    categories = _category_count(pages)
    return 2 if pages > 1 + categories else 1 if categories else 0


def _category_count(pages: int) -> int:
    if pages <= 1:
        return 0
    return math.ceil((pages - 1) / (PRODUCTS_PER_CATEGORY + 1))


class _Shop:
    """The pages of one host."""

    def __init__(self, hosts: list[str], index: int, port: int, pages: int, page_bytes: int,
                 out_of_scope_host: str | None, seed: int) -> None:
        self.hosts, self.index, self.port = hosts, index, port
        self.host = hosts[index]
        self.netloc = _netloc(self.host, port)
        self.page_bytes = page_bytes
        self.oos = out_of_scope_host
        self.rng = random.Random(f"{seed}/{index}")
        self.n_categories = _category_count(pages)
        self.n_products = max(0, pages - 1 - self.n_categories)
        self.shop_name = f"Shop {index + 1}"
        self.categories = [_CATEGORIES[k % len(_CATEGORIES)] + ("" if k < len(_CATEGORIES) else f" {k}")
                           for k in range(self.n_categories)]
        self.escaped_categories = [html.escape(c) for c in self.categories]
        self.padding = _Padding(self.rng)
        self._link_turn = 0
        self._escaped: list[str] | None = None

    def pages(self):
        """Yield (path, html, expected fields) for every page of this host."""
        yield "/", self._index(), _data(f"{self.shop_name} — Home")
        for k in range(self.n_categories):
            title = f"{self.categories[k]} — {self.shop_name}"
            yield f"/c/{k}.html", self._category(k, title), _data(title)
        for n in range(self.n_products):
            yield self._product(n)

    # -- links --

    def _href(self, base: str, target: str, host: str | None = None) -> str:
        """A link from page `base` to `target`, in the next of the messy forms (see module doc)."""
        self._link_turn += 1
        turn = self._link_turn
        if host is not None and host != self.host:  # another host: absolute forms only
            netloc = _netloc(host, self.port)
            return (f"http://{netloc}{target}", f"//{netloc}{target}",
                    f"HTTP://{netloc}{target}", f"http://{netloc}{target}#top")[turn % 4]
        kind = turn % (11 if self.port == 80 else 10)
        if kind == 0:
            return target
        if kind == 1:
            return _relative(base, target)
        if kind == 2:
            return f"http://{self.netloc}{target}"
        if kind == 3:
            return f"{target}#reviews"
        if kind == 4:
            return "/." + target
        if kind == 5:
            return "/c/.." + target
        if kind == 6:
            return f"HTTP://{self.netloc}{target}"
        if kind == 7:
            return f"//{self.netloc}{target}"
        if kind == 8:
            return "./" + _relative(base, target)
        if kind == 9:
            return ("../" if base.count("/") > 1 else "./") + target[1:]
        return f"http://{self.host}:80{target}"  # port 80 spelled out

    def _misc_links(self, n: int) -> str:
        links = ['<a href="mailto:orders@shop.invalid">Email us</a>', '<a href="tel:+15550100">Call</a>',
                 '<a href="javascript:void(0)">Compare</a>', '<a href="#top">Back to top</a>']
        if self.oos is not None:
            netloc = _netloc(self.oos, self.port)
            links.append(f'<a href="http://{netloc}/p/{n}.html">Partner offer</a>')
            links.append(f'<a href="//{netloc}/">Partner shop</a>')
        return " | ".join(links)

    # -- pages --

    def _index(self) -> str:
        base = "/"
        cats = "\n".join(f'<li><a href="{self._href(base, f"/c/{k}.html")}">{html.escape(name)}</a></li>'
                         for k, name in enumerate(self.categories))
        featured = "\n".join(
            f'<li><a class="prod" href="{self._href(base, f"/p/{n}.html")}">Featured {n}</a></li>'
            for n in range(min(FEATURED, self.n_products)))
        others = "\n".join(f'<li><a href="{self._href(base, "/", h)}">Shop {i + 1}</a></li>'
                           for i, h in enumerate(self.hosts) if h != self.host)
        return _page(f"{self.shop_name} — Home", f"""<h1>{self.shop_name}</h1>
<nav><ul class="categories">{cats}</ul></nav>
<section><h2>Featured</h2><ul>{featured}</ul></section>
<section><h2>Our other shops</h2><ul>{others}</ul></section>
<footer>{self._misc_links(0)}</footer>""")

    def _category(self, k: int, title: str) -> str:
        base = f"/c/{k}.html"
        items = "\n".join(
            f'<li><a class="prod" href="{self._href(base, f"/p/{n}.html")}">{self._escaped_name(n)}</a></li>'
            for n in range(k, self.n_products, self.n_categories))
        return _page(title, f"""<p class="crumbs"><a href="{self._href(base, "/")}">Home</a></p>
<h1>{html.escape(self.categories[k])}</h1>
<ul class="products">{items}</ul>""")

    def _name(self, n: int) -> str:
        return f"{_ADJECTIVES[(n * 7 + self.index) % 16]} {_NOUNS[(n * 5 + n // 16) % 16]} {n}"

    def _escaped_name(self, n: int) -> str:
        if self._escaped is None:
            self._escaped = [html.escape(self._name(i)) for i in range(self.n_products)]
        return self._escaped[n]

    def _product(self, n: int):
        base = f"/p/{n}.html"
        k = n % self.n_categories
        name = self._name(n)
        title = f"{name} — {self.shop_name}"
        price = f"{self.rng.randrange(100, 50000) / 100:.2f}"
        sku = f"SKU-{self.index:04d}-{n:05d}"
        category = self.escaped_categories[k]
        related = [(n + 1) % self.n_products, (n + 7) % self.n_products, (n * 31 + 3) % self.n_products]
        links = [f'<li><a href="{self._href(base, f"/p/{r}.html")}">{self._escaped_name(r)}</a></li>'
                 for r in related]
        other = self.hosts[(self.index + 1) % len(self.hosts)]
        if other != self.host:
            links.append(f'<li><a href="{self._href(base, f"/p/{n}.html", other)}">Also at another shop</a></li>')
        footer = self._misc_links(n) if n % 10 == 0 else '<a href="#top">Back to top</a>'
        top = f"""<p class="crumbs"><a href="{self._href(base, "/")}">Home</a> &rsaquo;
<a class="cat" href="{self._href(base, f"/c/{k}.html")}">{category}</a></p>
<h1>{self._escaped_name(n)}</h1>
<table class="specs"><tr><th>Price</th><td><span class="price">${price}</span></td></tr>
<tr><th>SKU</th><td class="sku">{sku}</td></tr></table>
<h2>Related</h2><ul class="related">{"".join(links)}</ul>
<footer>{footer}</footer>
<div class="description"><h2>Description</h2><p>The {self._escaped_name(n)} is part of our
{category} range.</p></div>
<div id="reviews"><h2>Reviews</h2>
"""
        head, tail = _page(title, top + "\0</div>").encode().split(b"\0")
        pad = self.padding.take(n, self.page_bytes - len(head) - len(tail))
        return base, b"".join([head, *pad, tail]), _data(title, price, sku, self.categories[k])


class _Padding:
    """Review blocks to fill product pages up to page_bytes, cut from one pre-encoded pool.

    Slicing bytes is a memcpy; generating or encoding 16 KB of text per page is what would
    make a 10,000-page catalog slow to build.
    """

    def __init__(self, rng: random.Random, blocks: int = 64) -> None:
        parts = []
        for _ in range(blocks):
            who, stars = rng.choice(_REVIEWERS), rng.randint(1, 5)
            text = " ".join(rng.sample(_PHRASES, 3))
            parts.append(f'<div class="review"><p class="who">{html.escape(who)} '
                         f'<span class="stars">{"★" * stars}{"☆" * (5 - stars)}</span></p>'
                         f"<p>{text}</p><p class=\"helpful\">{rng.randint(0, 99)} people found "
                         f"this helpful</p></div>\n".encode())
        parts += parts  # twice round, so a slice starting at any block can run a whole pool long
        self.bounds = [0]
        for part in parts:
            self.bounds.append(self.bounds[-1] + len(part))
        self.blocks = blocks
        self.pool = b"".join(parts)
        self.pool_bytes = self.bounds[blocks]

    def take(self, n: int, size: int) -> list[bytes]:
        """Whole review blocks, about `size` bytes, starting at block n (mod blocks)."""
        out = []
        while size > self.pool_bytes:  # a page larger than the whole pool: repeat it
            out.append(self.pool[:self.pool_bytes])
            size -= self.pool_bytes
        first = n % self.blocks
        goal = self.bounds[first] + size
        last = bisect.bisect_left(self.bounds, goal, lo=first)
        if last > first and goal - self.bounds[last - 1] < self.bounds[last] - goal:
            last -= 1  # the nearer block boundary
        out.append(self.pool[self.bounds[first]:self.bounds[last]])
        return out


def _relative(base: str, target: str) -> str:
    """`target` relative to the directory of `base` (our pages live in /, /c/ and /p/)."""
    directory = base[:base.rfind("/") + 1]
    if target.startswith(directory):
        return target[len(directory):]
    return "../" * (directory.count("/") - 1) + target[1:]


def _data(title: str, price: str | None = None, sku: str | None = None,
          category: str | None = None) -> dict:
    return {"title": title, "price": price, "sku": sku, "category": category}


def _page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>
  {html.escape(title)}
</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
</head><body id="top">
{body}
</body></html>
"""
