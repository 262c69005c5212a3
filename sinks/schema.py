"""The record schema (DESIGN §3) as one pure check: ``validate_record(obj) -> list[str]``.

The writer can call it before appending a line, and ``crawler inspect`` calls it on every
line it reads, so "bad line" means the same thing everywhere. An empty list means valid.

What is checked:

- the value is a JSON object holding every key of the record;
- each key has its type (``bool`` is never accepted where a number is expected);
- values are in range: ``status`` 100-599, counters >= 0, ``fetched_at`` ISO 8601 with a
  time zone, ``error.type`` one of the fixed set;
- ``error`` is null exactly when the record is a success, and a success has a ``status``.

Keys the contract does not know are allowed: the record format only ever grows (DESIGN §3),
so an older reader must accept a newer writer's lines.
"""

from __future__ import annotations

from datetime import datetime
from itertools import product
from typing import Any

ERROR_TYPES = frozenset(
    ("timeout", "connection", "http", "too_large", "robots", "redirects", "blocked", "parse")
)

# Key order is the order of the record in the file.
RECORD_KEYS = (
    "url", "final_url", "status", "fetched_at", "depth", "referrer", "content_type", "bytes",
    "elapsed_ms", "attempts", "crawl_id", "rule", "data", "links", "changed", "error",
)
_KEY_SET = frozenset(RECORD_KEYS)

_STR = (str,)
_STR_OR_NULL = (str, type(None))
_INT = (int,)
_NUMBER = (int, float)

# key -> (accepted exact types, name used in messages). Exact types (``type(v) in ...``) and
# not isinstance(): bool is a subclass of int, and ``"depth": true`` is not a depth.
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "url": (_STR, "a string"),
    "final_url": (_STR_OR_NULL, "a string or null"),
    "status": ((int, type(None)), "an integer or null"),
    "fetched_at": (_STR, "a string"),
    "depth": (_INT, "an integer"),
    "referrer": (_STR_OR_NULL, "a string or null"),
    "content_type": (_STR_OR_NULL, "a string or null"),
    "bytes": (_INT, "an integer"),
    "elapsed_ms": (_NUMBER, "a number"),
    "attempts": (_INT, "an integer"),
    "crawl_id": (_STR, "a string"),
    "rule": (_STR_OR_NULL, "a string or null"),
    "data": ((dict,), "an object"),
    "links": (_INT, "an integer"),
    "changed": ((bool, type(None)), "true, false or null"),
    "error": ((dict, type(None)), "an object or null"),
}

_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer",
               float: "a number", bool: "a boolean", type(None): "null"}


class _Missing:
    """The type a missing key shows up as in a signature; never a valid type."""


_MISSING_FOR_EACH = (_Missing(),) * len(RECORD_KEYS)
_INF = float("inf")
_VALID_SIGNATURES = frozenset(product(*(_TYPES[key][0] for key in RECORD_KEYS)))


def json_type_name(value: Any) -> str:
    """How a decoded JSON value is named in messages: "an array", "null", ..."""
    return _JSON_NAMES.get(type(value), type(value).__name__)


def validate_record(obj: Any) -> list[str]:
    """Return the problems that keep ``obj`` from being a record; an empty list if none."""
    # inspect calls this on every line, so valid records take a fast path (about 1 µs rather
    # than 6): one tuple of value types looked up in the set of valid combinations, then the
    # range checks in one expression. Anything it does not accept goes to explain_record(),
    # which is the readable definition and says what is wrong.
    if type(obj) is dict and tuple(map(type, map(obj.get, RECORD_KEYS, _MISSING_FOR_EACH))) in _VALID_SIGNATURES:
        status = obj["status"]
        error = obj["error"]
        if (
            obj["url"]
            and obj["crawl_id"]
            and (100 <= status <= 599 if status is not None else error is not None)
            and obj["depth"] >= 0
            and obj["bytes"] >= 0
            and obj["attempts"] >= 0
            and obj["links"] >= 0
            and 0 <= obj["elapsed_ms"] < _INF
            and (error is None or (error.get("type") in ERROR_TYPES and type(error.get("message")) is str))
            and not _check_fetched_at(obj["fetched_at"])
        ):
            return []
    return explain_record(obj)


def explain_record(obj: Any) -> list[str]:
    """validate_record() without its fast path: every check, one message per problem."""
    if type(obj) is not dict:
        return [f"not a JSON object (got {json_type_name(obj)})"]
    problems: list[str] = []
    if not _KEY_SET <= obj.keys():
        missing = [key for key in RECORD_KEYS if key not in obj]
        problems.append(f"missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    for key, (types, expected) in _TYPES.items():
        if key in obj and type(obj[key]) not in types:
            problems.append(f"{key} must be {expected}, got {json_type_name(obj[key])}")
    if problems:
        return problems  # range checks below assume the types are right
    return _check_values(obj)


def _check_values(rec: dict) -> list[str]:
    problems: list[str] = []
    if not rec["url"]:
        problems.append("url is empty")
    if not rec["crawl_id"]:
        problems.append("crawl_id is empty")
    status = rec["status"]
    if status is not None and not 100 <= status <= 599:
        problems.append(f"status {status} is not an HTTP status (100-599)")
    for key in ("depth", "bytes", "attempts", "links", "elapsed_ms"):
        if rec[key] < 0:
            problems.append(f"{key} is negative ({rec[key]})")
    elapsed = rec["elapsed_ms"]
    if not elapsed < _INF or elapsed != elapsed:
        problems.append("elapsed_ms is not a finite number")
    problems += _check_fetched_at(rec["fetched_at"])
    error = rec["error"]
    if error is None:
        if status is None:
            problems.append("a record without error must have a status")
    else:
        problems += _check_error(error)
    return problems


def _check_fetched_at(value: str) -> list[str]:
    # fromisoformat also accepts a bare date or a naive time; a record's time is always a full
    # timestamp with a zone, so both are refused.
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return [f"fetched_at {value!r} is not an ISO 8601 timestamp"]
    if "T" not in value.upper() or when.tzinfo is None:
        return [f"fetched_at {value!r} lacks a time or a time zone"]
    return []


def _check_error(error: dict) -> list[str]:
    problems = []
    kind = error.get("type")
    if kind not in ERROR_TYPES:
        shown = repr(kind) if isinstance(kind, str) else json_type_name(kind)
        problems.append(f"error.type {shown} is not one of {', '.join(sorted(ERROR_TYPES))}")
    if type(error.get("message")) is not str:
        problems.append(f"error.message must be a string, got {json_type_name(error.get('message'))}")
    return problems
