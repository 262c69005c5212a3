"""``[[parse.rules]]``: the rule and field types, and their validation.

A field has at most one *source* (``xpath``, ``css`` or ``jsonld`` + ``path``), an optional
``regex`` (alone it runs over the decoded HTML), and optional processors applied in this
order: ``many`` (every match) → ``join`` (one string) → ``type`` (number, integer, bool,
date) → ``default`` (when nothing matched) → ``required`` (listed in the record's
``missing`` key when still null).

Everything here is checked before anything is fetched: an invalid CSS selector, XPath,
regex or JMESPath path, an unknown type, or a field with two sources raises ``UsageError``
with one line naming the file, the rule and the field. Parser processes compile the same
expressions again for themselves (compiled objects never cross a process boundary).
"""

from __future__ import annotations

import datetime
import importlib
import re
import typing
from dataclasses import dataclass
from typing import Any

from crawler.errors import UsageError

RULE_KEYS = {"name", "match", "fields", "callable"}
SOURCES = ("xpath", "css", "jsonld")
FIELD_KEYS = {*SOURCES, "path", "regex", "many", "type", "join", "default", "required"}
TYPES = ("number", "integer", "bool", "date")


@dataclass(frozen=True)
class FieldRule:
    name: str
    xpath: str | None = None
    regex: str | None = None
    many: bool = False
    css: str | None = None
    jsonld: str | None = None  # a schema.org @type such as "Product", or "*" for any item
    path: str | None = None  # JMESPath inside the JSON-LD item, e.g. "offers.price"
    type: str | None = None  # one of TYPES
    join: str | None = None  # with many: the values joined into one string
    default: Any = None  # the value when nothing matched
    required: bool = False

    @property
    def processed(self) -> bool:
        """True if anything beyond plain extraction applies (the XPath-only fast path is False)."""
        return (self.type is not None or self.join is not None or self.default is not None
                or self.required)


@dataclass(frozen=True)
class Rule:
    name: str
    match: str
    fields: tuple[FieldRule, ...] = ()
    callable: str | None = None


def closest(key: str, known: set[str]) -> str:
    import difflib

    match = difflib.get_close_matches(key, sorted(known), n=1)
    return f' (did you mean "{match[0]}"?)' if match else ""


def compile_regex(pattern: str, where: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"{where}: invalid regex {pattern!r}: {exc}") from None


def check_xpath(expr: str, where: str) -> None:
    from lxml import etree

    try:
        etree.XPath(expr)
    except etree.XPathSyntaxError as exc:
        raise UsageError(f"{where}: invalid XPath {expr!r}: {exc}") from None


def css_to_xpath(selector: str) -> str:
    """A CSS selector (with Scrapy's ``::text`` and ``::attr(name)``) as XPath 1.0."""
    from parsel import css2xpath

    return css2xpath(selector)


def check_css(selector: str, where: str) -> None:
    from cssselect import SelectorError

    try:
        check_xpath(css_to_xpath(selector), where)
    except SelectorError as exc:
        raise UsageError(f"{where}: invalid CSS selector {selector!r}: {exc}") from None


def check_path(path: str, where: str) -> None:
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        jmespath.compile(path)
    except JMESPathError as exc:
        message = str(exc).splitlines()[0]
        raise UsageError(f"{where}: invalid path {path!r} (JMESPath): {message}") from None


def resolve_callable(spec: str, where: str = "callable") -> typing.Callable:
    """Import ``"package.module:function"``; used by validation and by each parser process."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f'{where}: expected "module:function", got {spec!r}')
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure is the user's module, name it
        raise UsageError(f"{where}: cannot import {module_name!r}: {exc}") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise UsageError(f"{where}: {module_name!r} has no function {attr!r}")
    return func


def build_rules(raw: Any, source: str) -> tuple[Rule, ...]:
    if not isinstance(raw, list):
        raise UsageError(f"{source}: [[parse.rules]] must be an array of tables")
    rules = []
    for i, table in enumerate(raw, 1):
        label = f"{source}: [[parse.rules]] #{i}"
        if not isinstance(table, dict):
            raise UsageError(f"{label}: must be a table")
        if isinstance(table.get("name"), str) and table["name"]:
            label += f' "{table["name"]}"'
        else:
            raise UsageError(f"{label}: name: expected a non-empty string")
        unknown = set(table) - RULE_KEYS
        if unknown:
            key = sorted(unknown)[0]
            raise UsageError(f"{label}: {key}: unknown key{closest(key, RULE_KEYS)}")
        match = table.get("match", ".*")
        if not isinstance(match, str):
            raise UsageError(f"{label}: match: expected a string, got {match!r}")
        compile_regex(match, f"{label}: match")
        func = table.get("callable")
        if func is not None:
            if not isinstance(func, str):
                raise UsageError(f"{label}: callable: expected a string, got {func!r}")
            resolve_callable(func, f"{label}: callable")
        fields_raw = table.get("fields", {})
        if not isinstance(fields_raw, dict):
            raise UsageError(f"{label}: fields: must be a table")
        fields = tuple(build_field(name, spec, f"{label}: fields.{name}") for name, spec in fields_raw.items())
        rules.append(Rule(name=table["name"], match=match, fields=fields, callable=func))
    return tuple(rules)


def _string(spec: dict, key: str, where: str) -> str | None:
    value = spec.get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def _flag(spec: dict, key: str, where: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise UsageError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def build_field(name: str, spec: Any, where: str) -> FieldRule:
    if not isinstance(spec, dict):
        raise UsageError(f"{where}: must be a table like {{ xpath = \"...\" }}")
    unknown = set(spec) - FIELD_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise UsageError(f"{where}.{key}: unknown key{closest(key, FIELD_KEYS)}")
    xpath, css, jsonld, path, regex, join, kind = (
        _string(spec, key, where) for key in ("xpath", "css", "jsonld", "path", "regex", "join", "type"))
    many, required = _flag(spec, "many", where), _flag(spec, "required", where)
    sources = [key for key in SOURCES if spec.get(key) is not None]
    if len(sources) > 1:
        raise UsageError(f"{where}: {' and '.join(sources)} are two sources; a field takes one")
    if not sources and regex is None:
        raise UsageError(f"{where}: needs a source (xpath, css or jsonld), a regex, or both")
    if xpath is not None:
        check_xpath(xpath, f"{where}.xpath")
    if css is not None:
        check_css(css, f"{where}.css")
    if path is not None:
        if jsonld is None:
            raise UsageError(f"{where}.path: only used with jsonld (the path inside the JSON-LD item)")
        check_path(path, f"{where}.path")
    if jsonld is not None and not jsonld.strip():
        raise UsageError(f'{where}.jsonld: expected a @type such as "Product", or "*" for any item')
    if regex is not None:
        compile_regex(regex, f"{where}.regex")
    if kind is not None and kind not in TYPES:
        raise UsageError(f"{where}.type: unknown type {kind!r} (one of {', '.join(TYPES)})")
    if join is not None and not many:
        raise UsageError(f"{where}.join: only used with many = true")
    default = spec.get("default")
    if isinstance(default, (datetime.date, datetime.time)):
        raise UsageError(f"{where}.default: a TOML date or time cannot be a JSON value; quote it")
    return FieldRule(name=name, xpath=xpath, regex=regex, many=many, css=css, jsonld=jsonld, path=path,
                     type=kind, join=join, default=default, required=required)
