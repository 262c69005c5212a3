"""``--where`` and ``--fields``: JMESPath over one record, with a friendlier surface.

An expression is JMESPath (https://jmespath.org) evaluated against one record; the record
matches when the result is true-like (not false, null, "", [] or {}). Four small additions make
it pleasant on a command line; plain JMESPath keeps working:

- bare numbers are values: ``status >= 400`` (JMESPath alone needs ``status >= `400```),
  decimals too: ``elapsed_ms > 250.5``;
- ``and``, ``or``, ``not`` may be written for ``&&``, ``||``, ``!``;
- ``true``, ``false`` and ``null`` are values: ``changed == true``, ``error != null``;
- ``re_search(pattern, value)`` is true when the regex (Python ``re`` syntax) matches anywhere
  in a string value, and ``host(url)`` is a URL's host name.

Strings are in single quotes: ``error.type == 'timeout'``. (In JMESPath ``"timeout"`` is a
*field* named timeout; writing that at the top of an expression is refused with a hint.) As in
JMESPath, ``not`` binds tighter than a comparison: ``not depth > 2`` means ``(not depth) > 2``;
write ``not (depth > 2)``. Nothing is ever passed to ``eval``.

Examples::

    status >= 400
    error.type == 'timeout'
    to_number(data.price) < 20
    re_search('/products/\\d+$', url)
    status == 200 and not re_search('^https://shop\\.', url)
    (error.type == 'timeout' or error.type == 'connection') and depth <= 2
    changed == true && data.title != null

``--fields url,status,data.title`` takes a comma-separated list of paths in the same syntax.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from jmespath import exceptions as jexc
from jmespath import functions as jfunctions
from jmespath import lexer as jlexer
from jmespath import parser as jparser
from jmespath import visitor as jvisitor

from crawler.errors import UsageError
from crawler.inspection.summary import host_name
from sinks.schema import OPTIONAL_KEYS, RECORD_KEYS

_KEYWORDS = {"and": ("and", "&&"), "or": ("or", "||"), "not": ("not", "!")}
_CONSTANTS = {"true": True, "false": False, "null": None}


class _Functions(jfunctions.Functions):
    @jfunctions.signature({"types": ["string"]}, {"types": []})
    def _func_re_search(self, pattern: str, value: Any) -> bool:
        return isinstance(value, str) and _regex(pattern).search(value) is not None

    @jfunctions.signature({"types": ["string", "null"]})
    def _func_host(self, url: str | None) -> str | None:
        return None if url is None else host_name(url)


class BadPattern(jexc.JMESPathError):
    pass


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise BadPattern(f"re_search: bad regular expression {pattern!r}: {exc}") from exc


class _Parser(jparser.Parser):
    """JMESPath's parser, fed a token stream with the additions described above."""

    _CACHE: dict = {}  # the base class's cache would hand back plain JMESPath parses

    def _parse(self, expression: str):
        self.tokenizer = jlexer.Lexer().tokenize(expression)
        self._tokens = _rewrite(list(self.tokenizer), expression)
        self._index = 0
        parsed = self._expression(binding_power=0)
        if not self._current_token() == "eof":
            t = self._lookahead_token(0)
            raise jexc.ParseError(t["start"], t["value"], t["type"], "Unexpected token: %s" % t["value"])
        return jparser.ParsedResult(expression, parsed)

    def _token_nud_number(self, token: dict):
        return jparser.ast.literal(token["value"])


def _rewrite(tokens: list[dict], expression: str) -> list[dict]:
    out: list[dict] = []
    for token in tokens:
        kind, value = token["type"], token["value"]
        after_dot = bool(out) and out[-1]["type"] == "dot"
        if kind == "number" and len(out) >= 2 and after_dot and out[-2]["type"] == "number" \
                and out[-2]["end"] == out[-1]["start"] and out[-1]["end"] == token["start"]:
            # "1" "." "5" written without spaces is the number 1.5: JMESPath has no other
            # use for a number right after a dot.
            start = out[-2]["start"]
            del out[-2:]
            token = {**token, "value": float(expression[start:token["end"]]), "start": start}
        elif kind == "unquoted_identifier" and not after_dot:
            if value in _KEYWORDS:
                kind, text = _KEYWORDS[value]
                token = {**token, "type": kind, "value": text}
            elif value in _CONSTANTS:
                token = {**token, "type": "literal", "value": _CONSTANTS[value]}
        elif kind == "quoted_identifier" and not after_dot and value not in RECORD_KEYS + OPTIONAL_KEYS:
            raise UsageError(
                f'"{value}" at column {token["start"]} is a field name in JMESPath and records '
                f"have no such field; for the string write '{value}' (single quotes)"
            )
        out.append(token)
    return out


_OPTIONS = jvisitor.Options(custom_functions=_Functions())


def compile_expression(text: str, flag: str = "--where") -> Callable[[dict], Any]:
    """Parse ``text``; return a function of a record. UsageError says what is wrong, and where."""
    if not text.strip():
        raise UsageError(f"{flag}: the expression is empty")
    try:
        tree = _Parser().parse(text).parsed
    except UsageError as exc:
        raise UsageError(f"{flag}: {exc}") from None
    except jexc.IncompleteExpressionError:
        raise UsageError(f"{flag}: the expression ends too early: {text}") from None
    except jexc.LexerError as exc:
        raise UsageError(
            f"{flag}: unexpected character {exc.lexer_value!r} at column {exc.lexer_position}: {text}"
        ) from None
    except jexc.ParseError as exc:
        near = "the end" if exc.token_type == "EOF" else repr(exc.token_value)
        raise UsageError(f"{flag}: syntax error at column {exc.lex_position} near {near}: {text}") from None
    _check_functions(tree, flag)
    interpreter = jvisitor.TreeInterpreter(_OPTIONS)
    visit = interpreter.visit
    return lambda rec: visit(tree, rec)


def _check_functions(node: dict, flag: str) -> None:
    """Unknown functions, wrong argument counts and bad regexes are found before any record."""
    if node.get("type") == "function_expression":
        name, args = node["value"], node["children"]
        spec = _Functions.FUNCTION_TABLE.get(name)
        if spec is None:
            known = ", ".join(sorted(_Functions.FUNCTION_TABLE))
            raise UsageError(f"{flag}: unknown function {name}(); known functions: {known}")
        signature = spec["signature"]
        variadic = bool(signature) and signature[-1].get("variadic")
        if (len(args) < len(signature)) if variadic else (len(args) != len(signature)):
            raise UsageError(f"{flag}: {name}() takes {len(signature)} argument(s), got {len(args)}")
        if name == "re_search" and args[0].get("type") == "literal" and isinstance(args[0]["value"], str):
            try:
                _regex(args[0]["value"])
            except BadPattern as exc:
                raise UsageError(f"{flag}: {exc}") from None
    for child in node.get("children", ()):
        if isinstance(child, dict):
            _check_functions(child, flag)


def is_true(value: Any) -> bool:
    """JMESPath truth: false, null, "", [] and {} are false; everything else (0 too) is true."""
    return not (value is None or value is False or value == "" or value == [] or value == {})


class Where:
    """A compiled ``--where``: call it with a record. Evaluation errors count as no match."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._evaluate = compile_expression(text)
        self.errors = 0
        self.first_error: str | None = None

    def __call__(self, rec: dict) -> bool:
        try:
            return is_true(self._evaluate(rec))
        except jexc.JMESPathError as exc:
            self.errors += 1
            if self.first_error is None:
                self.first_error = str(exc)
            return False

    def warning(self) -> str | None:
        if not self.errors:
            return None
        return (f"--where: {self.errors} record(s) could not be evaluated and did not match "
                f"(first: {self.first_error})")


def compile_where(text: str) -> Where:
    return Where(text)


class Fields:
    """A compiled ``--fields``: ``project(rec)`` gives the values, in order."""

    def __init__(self, text: str) -> None:
        self.names = [name.strip() for name in text.split(",")]
        if not all(self.names):
            raise UsageError(f"--fields: empty field name in {text!r}; separate paths with single commas")
        self._getters = [compile_expression(name, "--fields") for name in self.names]

    def values(self, rec: dict) -> list[Any]:
        out = []
        for get in self._getters:
            try:
                out.append(get(rec))
            except jexc.JMESPathError:
                out.append(None)
        return out

    def project(self, rec: dict) -> dict[str, Any]:
        return dict(zip(self.names, self.values(rec)))
