"""JSON-LD, the structured data pages embed for search engines: ``<script type="application/ld+json">``.

``jsonld_items(tree)`` returns every item on a page, flat: several blocks per page, a
top-level array, and ``@graph`` are all flattened into one list, in document order.
A block that is not valid JSON is skipped (its fields come out null); it never fails the
page. ``item_types`` reads ``@type``, which may be a string or a list, and may be written
as "Product", "schema:Product" or "https://schema.org/Product".

Only JSON-LD is read: microdata and RDFa are rare on current sites, and the maintained
library that reads them (extruct) pulls in an RDF stack for them (docs/design.md).
"""

from __future__ import annotations

from typing import Any

import orjson
from lxml import etree

_SCRIPTS = etree.XPath("//script[@type]")
LD_JSON = "application/ld+json"


def _blocks(tree) -> list[Any]:
    out = []
    for script in _SCRIPTS(tree):
        if script.get("type", "").strip().lower() != LD_JSON or not script.text:
            continue
        try:
            out.append(orjson.loads(script.text))
        except orjson.JSONDecodeError:
            continue  # broken JSON-LD: nothing from this block
    return out


def _flatten(value: Any, out: list[dict]) -> None:
    if isinstance(value, list):
        for v in value:
            _flatten(v, out)
    elif isinstance(value, dict):
        graph = value.get("@graph")
        if "@type" in value or graph is None:
            out.append(value)
        if graph is not None:
            _flatten(graph, out)


def jsonld_items(tree) -> list[dict]:
    """Every JSON-LD item (a dict) on the page, ``@graph`` and arrays flattened."""
    items: list[dict] = []
    if tree is not None:
        for block in _blocks(tree):
            _flatten(block, items)
    return items


def _short(name: Any) -> str:
    text = str(name)
    return text.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def item_types(item: dict) -> list[str]:
    kind = item.get("@type")
    if isinstance(kind, list):
        return [_short(k) for k in kind]
    return [] if kind is None else [_short(kind)]


def items_of_type(items: list[dict], wanted: str) -> list[dict]:
    if wanted == "*":
        return items
    return [item for item in items if wanted in item_types(item)]
