"""Compiled parse rules: ``[[parse.rules]]`` turned into callables, once per process.

Field semantics (DESIGN §3):
- xpath: the first match, whitespace stripped; ``many`` gives every match as a list.
  Elements give their text content; strings, attributes and numbers are used as is.
- regex: group 1 if the pattern has a group, else the whole match. Alone it runs over
  the decoded HTML; with xpath it runs over the XPath results, in order.
- no match: null, or [] with many.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from lxml import etree

from crawler.settings import FieldRule, Rule, resolve_callable


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


class CompiledField:
    def __init__(self, spec: FieldRule):
        self.name = spec.name
        self.many = spec.many
        self.xpath = etree.XPath(spec.xpath, smart_strings=False) if spec.xpath else None
        self.regex = re.compile(spec.regex) if spec.regex else None
        self.needs_text = self.xpath is None

    def _matches(self, values: list[str]):
        rx = self.regex
        for value in values:
            for m in rx.finditer(value):
                yield m.group(1) if rx.groups else m.group(0)

    def extract(self, tree, text: Callable[[], str]) -> Any:
        if self.xpath is not None:
            values = _as_strings(self.xpath(tree)) if tree is not None else []
            if self.regex is None:
                stripped = (v.strip() for v in values)
                if self.many:
                    return [v for v in stripped if v]
                return next((v for v in stripped if v), None)
        else:
            values = [text()]
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

    def apply(self, url: str, tree, text: Callable[[], str]) -> dict:
        if self.func is not None:
            out = self.func(url, text(), tree)
            if not isinstance(out, dict):
                raise TypeError(f"rule {self.name!r}: callable returned {type(out).__name__}, not dict")
            return out
        return {f.name: f.extract(tree, text) for f in self.fields}


class RuleSet:
    def __init__(self, rules: tuple[Rule, ...]):
        self.rules = [
            CompiledRule(
                name=r.name,
                match=re.compile(r.match),
                fields=[CompiledField(f) for f in r.fields],
                func=resolve_callable(r.callable, f"rule {r.name!r}: callable") if r.callable else None,
            )
            for r in rules
        ]

    def rule_for(self, url: str) -> CompiledRule | None:
        for rule in self.rules:
            if rule.match.search(url):
                return rule
        return None
