"""Which records came out without the fields they need: the ``missing`` and ``invalid`` keys.

A record lists in ``missing`` its rule's required fields that have no value, and in
``invalid`` the fields whose value could not be converted to their ``type`` (DESIGN §3).
``Completeness`` counts both per rule and per field, and keeps the URLs of the first few
incomplete records; ``crawler inspect FILE --where 'missing'`` lists all of them.
"""

from __future__ import annotations

from collections import Counter
from operator import attrgetter
from typing import Any

MAX_EXAMPLES = 20
_MISSING = attrgetter("missing")
_INVALID = attrgetter("invalid")


class Completeness:
    def __init__(self) -> None:
        self.incomplete: Counter = Counter()  # rule -> records with a missing required field
        self.missing: Counter = Counter()  # (rule, field) -> records
        self.invalid: Counter = Counter()  # (rule, field) -> records
        self.examples: list[str] = []  # URLs of the first incomplete records

    def add_batch(self, recs: list) -> None:
        """RecordStructs; almost always neither key is set, and that costs two C-level scans."""
        if not (any(map(_MISSING, recs)) or any(map(_INVALID, recs))):
            return
        for rec in recs:
            if rec.missing:
                self.incomplete[rec.rule] += 1
                self.missing.update((rec.rule, name) for name in rec.missing)
                if len(self.examples) < MAX_EXAMPLES:
                    self.examples.append(rec.url)
            if rec.invalid:
                self.invalid.update((rec.rule, name) for name in rec.invalid)

    def merge(self, other: Completeness) -> None:
        self.incomplete.update(other.incomplete)
        self.missing.update(other.missing)
        self.invalid.update(other.invalid)
        self.examples += other.examples[: max(MAX_EXAMPLES - len(self.examples), 0)]

    def for_rule(self, rule: str | None) -> dict[str, Any]:
        """``{"incomplete": n, "missing": {field: n}, "invalid": {field: n}}`` for one rule."""
        return {
            "incomplete": self.incomplete.get(rule, 0),
            "missing": {f: n for (r, f), n in sorted(self.missing.items(), key=_by_field) if r == rule},
            "invalid": {f: n for (r, f), n in sorted(self.invalid.items(), key=_by_field) if r == rule},
        }


def headline(rules: dict[str, dict[str, Any]]) -> str:
    """The line over the incomplete records of a summary's ``rules``, in every rendering."""
    total = sum(info["incomplete"] for info in rules.values())
    return f"{total:,} record(s) without required fields (list them: --where 'missing')"


def _by_field(item: tuple[tuple[str | None, str], int]) -> str:
    return item[0][1]
