"""One walk of a page's tree for everything that finds elements by tag name.

Each ``//name`` XPath and each ``tree.iter(name)`` walks the whole tree, and lxml's walk
costs about 50-100 ns a node: on a 16 KB shop page (~500 nodes) the four XPath fields of
``bench/run.py``, the link walk and the ``<meta name=robots>`` walk took about 200 us of a
parse's ~500. ``Walker`` finds all of them in one ``tree.iter(*tags)`` (the tag test runs in
C) and hands each consumer its elements in document order:

- the page's hrefs (``<a>``, ``<area>``), with rel="nofollow" and fragment-only hrefs left
  out as ``parsers.links`` documents, its first ``<base href>`` and its robots directives;
- the values of the rule's fields whose expression is a *simple path*, which is what both
  a hand-written ``//span[@class='price']/text()`` and a translated CSS selector
  (``span.price::text``) usually are::

      ( "//" | "descendant-or-self::" ) name  predicate*  [ "/text()" | "/@" name ]
      predicate:  "[" test ( "and" test )* "]"
      test:       @a | @a = 'v' | contains(@a, 'v')
                | contains(concat(' ', normalize-space(@a), ' '), 'v') | "(" test ( "and" test )* ")"

  with lower-case names and no namespace prefix. Any other expression is evaluated by
  lxml's XPath as before. A simple path gives exactly what lxml gives for it (text nodes
  as strings, attribute values, or the elements, in document order): checked against
  lxml on generated documents in tests/parsers/test_walk.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

_NAME = r"[a-z_][a-z0-9_.-]*"
_LITERAL = r"""(?:'(?P<q1>[^']*)'|"(?P<q2>[^"]*)")"""
_HEAD = re.compile(rf"\s*(?://|descendant-or-self::)({_NAME})")
_OPEN = re.compile(r"\s*\[")
_TAIL = re.compile(rf"\s*(?:(?P<text>/text\(\))|/@(?P<attr>{_NAME}))?\s*\Z")
_TERMS = (  # (kind, pattern): each predicate term this module evaluates itself
    ("class", re.compile(rf"\s*contains\(\s*concat\(\s*' '\s*,\s*normalize-space\(\s*@(?P<attr>{_NAME})\s*\)"
                         rf"\s*,\s*' '\s*\)\s*,\s*{_LITERAL}\s*\)")),
    ("contains", re.compile(rf"\s*contains\(\s*@(?P<attr>{_NAME})\s*,\s*{_LITERAL}\s*\)")),
    ("equals", re.compile(rf"\s*@(?P<attr>{_NAME})\s*=\s*{_LITERAL}")),
    ("has", re.compile(rf"\s*@(?P<attr>{_NAME})(?![\w.(-])")),
)
_PUNCT = re.compile(r"\s*(?:(?P<and>and)(?![\w.-])|(?P<open>\()|(?P<close>\))|(?P<end>\]))")
_XML_SPACE = re.compile("[ \t\r\n]+")

Term = tuple[str, str, "str | None"]  # (kind, attribute, literal): one test on an attribute's value


def _holds(kind: str, value: str | None, literal: str | None) -> bool:
    """One predicate term, as XPath 1.0 evaluates it, given the attribute's value (None:
    the element has no such attribute)."""
    if kind == "has":
        return value is not None
    if kind == "equals":  # a missing attribute is an empty node-set: never equal
        return value == literal
    if kind == "contains":  # a missing attribute is the empty string
        return literal in (value or "")
    # CSS's class test: contains(concat(' ', normalize-space(@a), ' '), literal)
    return literal in " " + _XML_SPACE.sub(" ", value or "").strip(" ") + " "


def _selector(terms: tuple[Term, ...]) -> Callable[[object], bool] | None:
    """One test of an element for all of ``terms``, reading each attribute once; None for
    no terms."""
    if not terms:
        return None
    by_attr: dict[str, list[tuple[str, str | None]]] = {}
    for kind, attr, literal in terms:
        by_attr.setdefault(attr, []).append((kind, literal))
    checks = tuple((attr, tuple(tests)) for attr, tests in by_attr.items())

    def select(el) -> bool:
        for attr, tests in checks:
            value = el.get(attr)
            for kind, literal in tests:
                if not _holds(kind, value, literal):
                    return False
        return True

    return select


def _term(expr: str, pos: int) -> tuple[Term, int] | None:
    for kind, pattern in _TERMS:
        m = pattern.match(expr, pos)
        if m is not None:
            literal = None if kind == "has" else (m["q1"] if m["q1"] is not None else m["q2"])
            return (kind, m["attr"], literal), m.end()
    return None


def _predicate(expr: str, pos: int) -> tuple[list[Term], int] | None:
    """The terms of one ``[...]`` starting after its ``[``: a conjunction, with parentheses
    around conjunctions allowed (they change nothing in a pure conjunction)."""
    tests: list[Term] = []
    depth, expect_term = 0, True
    while True:
        if expect_term:
            term = _term(expr, pos)
            if term is not None:
                tests.append(term[0])
                pos, expect_term = term[1], False
                continue
        m = _PUNCT.match(expr, pos)
        if m is None:
            return None
        pos, kind = m.end(), m.lastgroup
        if kind == "open" and expect_term:
            depth += 1
        elif kind == "and" and not expect_term:
            expect_term = True
        elif kind == "close" and not expect_term and depth > 0:
            depth -= 1
        elif kind == "end" and not expect_term and depth == 0:
            return tests, pos
        else:
            return None


@dataclass(frozen=True)
class SimplePath:
    """``//tag[terms]`` and what to take from each element it selects: its text nodes
    (``take == "text"``), an attribute's value (``take == "@"``, ``attr``) or the element."""

    tag: str
    terms: tuple[Term, ...] = ()
    take: str = "element"
    attr: str | None = None


def simple_path(expr: str) -> SimplePath | None:
    """``expr`` as a SimplePath, or None if it is not one (lxml's XPath then evaluates it)."""
    m = _HEAD.match(expr)
    if m is None:
        return None
    tag, pos, tests = m.group(1), m.end(), []
    while (bracket := _OPEN.match(expr, pos)) is not None:
        found = _predicate(expr, bracket.end())
        if found is None:
            return None
        tests.extend(found[0])
        pos = found[1]
    tail = _TAIL.match(expr, pos)
    if tail is None:
        return None
    if tail["attr"] is not None:
        return SimplePath(tag, tuple(tests), "@", tail["attr"])
    return SimplePath(tag, tuple(tests), "text" if tail["text"] else "element")


_C0_SPACE = "".join(map(chr, range(0x21)))


@dataclass
class Walked:
    """What one walk found: each simple path's values (by its index in ``Walker.paths``;
    None where lxml's XPath must evaluate it for this page, see ``Walker``),
    the distinct hrefs to follow in document order, the first ``<base href>`` and the
    ``<meta name=robots>`` directives (lower-cased, "none" expanded)."""

    values: list[list | None]
    hrefs: list[str]
    base: str | None
    robots: set[str]


class Walker:
    """One tree walk for ``paths`` (None entries are skipped), and, as asked, the links
    (``links``: <a>/<area> hrefs and <base>; ``nofollow``: leave out rel="nofollow") and
    the robots meta tags (``robots``).

    A path earns its place in the walk only while it is cheap there: each element of its
    tag costs Python code (~0.9 us: the element's proxy, its tag, an attribute read; ~0.4 us
    if the walk visits that tag anyway; a text match ~3 us), where lxml's XPath walks the
    whole tree in C (~30-60 us on a 15 KB page of ~500 nodes; measured in the same sitting,
    2 cores as in docs/performance.md). A path that costs more than ``BUDGET`` units a page,
    averaged from its ``JUDGE_AFTER``-th page on (``//p/text()`` on pages of paragraphs),
    leaves the walk for the rest of the process and is evaluated by lxml's XPath: values
    None in ``Walked``. Either way a field reads the same (tests/parsers/test_walk.py); only
    the cost moves.
    """

    # Units of ~0.45 us a page, averaged over the pages walked: an element of the path's tag
    # counts 2 (1 if the walk visits that tag anyway, for links or robots) and a text match 6.
    BUDGET = 100
    JUDGE_AFTER = 64  # pages walked before a path can be judged: a crawl's first are listings

    def __init__(self, paths: list[SimplePath | None], *, links: bool, nofollow: bool, robots: bool):
        self.paths = paths
        self.links, self.nofollow, self.robots = links, nofollow, robots
        self.cost = [0] * len(paths)
        self.pages = 0
        self._plan({i for i, path in enumerate(paths) if path is not None})

    def _plan(self, active: set[int]) -> None:
        self.active = active
        self.fresh = [[] if i in active else None for i in range(len(self.paths))]
        # tag -> what each path on that tag needs, flat for the walk's inner loop: (index, its
        # cost a visit, attribute and literal of a lone [@a='v'] test or else a selector, take, attr)
        anyway = ({"a", "area", "base"} if self.links else set()) | ({"meta"} if self.robots else set())
        self.by_tag: dict[str, list[tuple]] = {}
        for i in sorted(active):
            path = self.paths[i]
            eq_attr = eq_value = select = None
            if len(path.terms) == 1 and path.terms[0][0] == "equals":
                eq_attr, eq_value = path.terms[0][1], path.terms[0][2]
            else:
                select = _selector(path.terms)
            weight = 1 if path.tag in anyway else 2
            self.by_tag.setdefault(path.tag, []).append((i, weight, eq_attr, eq_value, select, path.take, path.attr))
        self.tags = tuple(sorted(set(self.by_tag) | anyway))
        self.link_paths = "a" in self.by_tag or "area" in self.by_tag  # else <a> needs no dispatch

    def _account(self) -> None:
        self.pages += 1
        if self.pages < self.JUDGE_AFTER:  # one listing page full of links says little
            return
        limit = self.BUDGET * self.pages
        costly = {i for i in self.active if self.cost[i] > limit}
        if costly:
            self._plan(self.active - costly)

    def walk(self, tree) -> Walked:
        values: list[list | None] = [v if v is None else [] for v in self.fresh]
        last: list = [None] * len(self.paths)  # each text path's latest match
        cost = self.cost
        hrefs: dict[str, None] = {}
        base = None
        directives: set[str] = set()
        if tree is None or not self.tags:
            return Walked(values, [], None, directives)
        by_tag, links, nofollow, robots = self.by_tag, self.links, self.nofollow, self.robots
        link_paths = self.link_paths
        for el in tree.iter(*self.tags):
            tag = el.tag
            if tag == "a" or tag == "area":  # a link-heavy page has thousands: kept inline
                if links:
                    href = el.get("href")
                    if href is not None:
                        if nofollow:
                            rel = el.get("rel")
                            if rel is not None and "nofollow" in rel.lower().split():
                                href = None
                        # Same-document references ("#top", also after leading spaces)
                        # request nothing.
                        if href is not None and href[:1] != "#" and not (
                                href[:1] <= " " and href.lstrip(_C0_SPACE)[:1] == "#"):
                            hrefs[href] = None
                if not link_paths:
                    continue
            elif tag == "base":
                if links and base is None:
                    base = el.get("href")
            elif tag == "meta" and robots:
                name, content = el.get("name"), el.get("content")
                if content is not None and name is not None and name.lower() == "robots":
                    directives.update(d.strip().lower() for d in content.split(","))
            wanted = by_tag.get(tag)
            if wanted is None:
                continue
            for i, weight, eq_attr, eq_value, select, take, attr in wanted:
                cost[i] += weight
                if eq_attr is not None:
                    if el.get(eq_attr) != eq_value:
                        continue
                elif select is not None and not select(el):
                    continue
                out = values[i]
                if take == "text":  # the element's text nodes: its text, then each child's tail
                    if out is None:
                        continue
                    if last[i] is not None and any(a is last[i] for a in el.iterancestors(tag)):
                        # Inside the previous match: XPath interleaves the two elements' text
                        # nodes, so lxml evaluates this path for this page.
                        values[i] = None
                        continue
                    last[i] = el  # earlier matches ended before it began: only it can hold the next
                    cost[i] += 6
                    text = el.text
                    if text is not None:
                        out.append(text)
                    if len(el):
                        out.extend(child.tail for child in el if child.tail is not None)
                elif take == "@":
                    value = el.get(attr)
                    if value is not None:
                        out.append(value)
                else:
                    out.append(el)
        if "none" in directives:
            directives.update(("noindex", "nofollow"))
        if self.by_tag:
            self._account()
        return Walked(values, list(hrefs), base, directives)
