"""Compiled parse rules: ``[[parse.rules]]`` turned into callables, once per process.

Field semantics (DESIGN §3):
- xpath: the first match, whitespace stripped; ``many`` gives every match as a list.
  Elements give their text content; strings, attributes and numbers are used as is.
- css: translated once to XPath (parsel's translator, so ``::text`` and ``::attr(name)``
  work), then exactly as xpath.
- jsonld + path: the JSON-LD items of that @type (parsers/structured.py), and the JMESPath
  ``path`` inside each; values keep their JSON type.
- regex: group 1 if the pattern has a group, else the whole match. Alone it runs over
  the decoded HTML; with a source it runs over the source's results, in order.
- no match: null, or [] with many.
Then, only for fields that ask for them, the processors (``join``, ``type``, ``default``,
``required``) run, and the rule reports which fields are ``missing`` (required, no value)
or ``invalid`` (a value the type could not read): see ``FieldProcessor``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import jmespath
from lxml import etree

from crawler.rules import FieldRule, Rule, css_to_xpath, resolve_callable
from parsers.convert import CONVERTERS
from parsers.structured import items_of_type, jsonld_items
from parsers.walk import SimplePath, simple_path


def _as_strings(result: Any) -> list[str]:
    if isinstance(result, list):
        out = []
        for item in result:
            if isinstance(item, str):
                out.append(str(item))
            elif isinstance(item, etree._Element):
                out.append(item.xpath("string()"))
            else:
                out.append(str(item))
        return out
    if isinstance(result, bool):
        return [str(result).lower()]
    if isinstance(result, float):
        return [str(int(result)) if result.is_integer() else str(result)]
    return [str(result)]


class Document:
    """One page as fields see it: the tree, the decoded text, its JSON-LD items (read
    on first use, once per page, whatever the number of jsonld fields), and ``walked``: the
    values of the rule's simple paths from the page's one tree walk (by field index;
    ``CompiledRule.paths``), or None if the tree was not walked for this rule."""

    __slots__ = ("tree", "text", "walked", "_items")

    def __init__(self, tree, text: Callable[[], str], walked: list[list | None] | None = None):
        self.tree, self.text, self.walked, self._items = tree, text, walked, None

    def jsonld(self) -> list[dict]:
        if self._items is None:
            self._items = jsonld_items(self.tree)
        return self._items


class FieldProcessor:
    """join -> type -> default -> required, for one field; appends the field's name to
    ``invalid`` when a value cannot be converted (it becomes null) and to ``missing`` when
    a required field ends up null or empty."""

    def __init__(self, spec: FieldRule):
        self.name, self.join, self.default, self.required = spec.name, spec.join, spec.default, spec.required
        self.convert = CONVERTERS[spec.type] if spec.type else None

    def _converted(self, value: Any) -> tuple[Any, bool]:
        try:
            return self.convert(value), True
        except (ValueError, TypeError, OverflowError):
            return None, False

    def finish(self, value: Any, missing: list[str], invalid: list[str]) -> Any:
        if self.join is not None:
            value = self.join.join(v if isinstance(v, str) else str(v) for v in value) if value else None
        ok = True
        if self.convert is not None and value is not None:
            if isinstance(value, list):
                pairs = [self._converted(v) for v in value]
                value, ok = [v for v, _ in pairs], all(good for _, good in pairs)
            else:
                value, ok = self._converted(value)
            if not ok:
                invalid.append(self.name)
        empty = value is None or (isinstance(value, list) and not value)
        if empty and ok and self.default is not None:
            value, empty = self.default, False
        if empty and self.required:
            missing.append(self.name)
        return value


class CompiledField:
    def __init__(self, spec: FieldRule, index: int):
        self.name = spec.name
        self.many = spec.many
        self.index = index  # its place in the rule, and so in Document.walked
        expr = spec.xpath if spec.xpath is not None else (css_to_xpath(spec.css) if spec.css is not None else None)
        self.xpath = etree.XPath(expr, smart_strings=False) if expr is not None else None
        self.simple: SimplePath | None = simple_path(expr) if expr is not None else None
        self.jsonld = spec.jsonld
        self.path = jmespath.compile(spec.path) if spec.path else None
        self.regex = re.compile(spec.regex) if spec.regex else None
        self.processor = FieldProcessor(spec) if spec.processed else None

    def _matches(self, values: list[str]):
        rx = self.regex
        for value in values:
            for m in rx.finditer(value):
                yield m.group(1) if rx.groups else m.group(0)

    def _jsonld_values(self, doc: Document) -> list[Any]:
        out: list[Any] = []
        path = self.path
        for item in items_of_type(doc.jsonld(), self.jsonld):
            value = path.search(item) if path is not None else item
            for v in value if isinstance(value, list) else (value,):
                if isinstance(v, str):
                    v = v.strip()
                if v is not None and v != "":
                    out.append(v)
            if out and not self.many:
                break
        return out

    def extract(self, doc: Document) -> Any:
        if self.xpath is not None:
            if doc.tree is None:
                values = []
            elif self.simple is not None and doc.walked is not None and doc.walked[self.index] is not None:
                values = _as_strings(doc.walked[self.index])
            else:
                values = _as_strings(self.xpath(doc.tree))
            if self.regex is None:
                stripped = (v.strip() for v in values)
                if self.many:
                    return [v for v in stripped if v]
                return next((v for v in stripped if v), None)
        elif self.jsonld is not None:
            values = self._jsonld_values(doc)
            if self.regex is None:
                return values if self.many else next(iter(values), None)
            values = [v if isinstance(v, str) else str(v) for v in values]
        else:
            values = [doc.text()]
        if self.many:
            return [m.strip() if isinstance(m, str) else m for m in self._matches(values)]
        first = next(self._matches(values), None)
        return first.strip() if isinstance(first, str) else first


@dataclass
class CompiledRule:
    name: str
    match: re.Pattern
    fields: list[CompiledField]
    func: Callable | None

    def __post_init__(self):
        self.processed = [f for f in self.fields if f.processor is not None]
        # What a Walker finds for this rule in the page's one walk: index i is field i's
        # simple path (None: lxml's XPath evaluates that field).
        self.paths = [f.simple for f in self.fields]

    def apply(self, url: str, tree, text: Callable[[], str], walked: list[list | None] | None = None
              ) -> tuple[dict, dict | None]:
        """The page's data, and its problems: ``{"missing": [...], "invalid": [...]}``
        (only the non-empty lists), or None when there are none. ``walked``: what a Walker
        over ``self.paths`` found in ``tree`` (``Walked.values``), if the caller walked it."""
        if self.func is not None:
            out = self.func(url, text(), tree)
            if not isinstance(out, dict):
                raise TypeError(f"rule {self.name!r}: callable returned {type(out).__name__}, not dict")
            return out, None
        doc = Document(tree, text, walked)
        data = {f.name: f.extract(doc) for f in self.fields}
        if not self.processed:
            return data, None
        missing: list[str] = []
        invalid: list[str] = []
        for f in self.processed:
            data[f.name] = f.processor.finish(data[f.name], missing, invalid)
        problems = {key: names for key, names in (("missing", missing), ("invalid", invalid)) if names}
        return data, problems or None


class RuleSet:
    def __init__(self, rules: tuple[Rule, ...]):
        self.rules = [
            CompiledRule(
                name=r.name,
                match=re.compile(r.match),
                fields=[CompiledField(f, i) for i, f in enumerate(r.fields)],
                func=resolve_callable(r.callable, f"rule {r.name!r}: callable") if r.callable else None,
            )
            for r in rules
        ]

    def rule_for(self, url: str) -> CompiledRule | None:
        for rule in self.rules:
            if rule.match.search(url):
                return rule
        return None
