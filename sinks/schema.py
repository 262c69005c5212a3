"""The record schema (DESIGN §3): ``validate_record(obj) -> list[str]``, and a fast typed path.

``validate_record`` is the definition: a small pure function over a decoded JSON value that
returns the problems found (an empty list means valid). The writer can call it before it
appends a line, and ``crawler inspect`` applies it to every line it reads, so "bad line" means
the same thing everywhere.

What it checks:

- the value is a JSON object holding every key of the record (``ADDED_KEYS`` may be absent);
- each key has its type (``bool`` is never accepted where a number is expected);
- values are in range: ``status`` 100-599; depth, bytes, attempts and links whole numbers in
  ``[0, 2**63)``; ``elapsed_ms`` finite and >= 0; ``url``, ``crawl_id`` and ``canonical``
  (a later addition, so it may be absent) not empty;
  ``fetched_at`` ISO 8601 with a date, a time and a zone; ``error.type`` one of the fixed set
  and ``error.message`` a string;
- a record without ``error`` has a ``status``;
- the optional keys ``missing`` and ``invalid`` (present only on records that have something
  to say, DESIGN §3), when present, are arrays of field names, each a key of ``data``.

Keys the contract does not know are allowed, at the top and inside ``error``: the format only
ever grows (DESIGN §3), so an older reader must accept a newer writer's lines.

The fast path, for readers of millions of lines: ``decode_batch(lines)`` decodes a list of
JSON lines straight into ``RecordStruct`` objects with msgspec, whose C decoder applies the type
and range rules above while parsing; the two rules it cannot express (fetched_at's format, and
status-when-ok) are checked once over the whole batch. It accepts only what
``validate_record`` accepts (tests/test_inspect_schema.py holds the two side by side) and may
refuse more: a valid time written in another ISO form is left to the exact path.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from itertools import repeat
from operator import and_, attrgetter, getitem, is_
from typing import Annotated, Any, Literal

import msgspec

ERROR_TYPES = frozenset(
    ("timeout", "connection", "http", "too_large", "robots", "redirects", "blocked", "parse")
)

# Key order is the order of the record in the file.
RECORD_KEYS = (
    "url", "final_url", "status", "fetched_at", "depth", "referrer", "content_type", "bytes",
    "elapsed_ms", "attempts", "crawl_id", "rule", "data", "links", "changed", "error",
    "canonical",
)
# Keys added to the format later: checked when present, never required, so the files of an
# older writer stay valid.
ADDED_KEYS = ("canonical",)
_KEY_SET = frozenset(RECORD_KEYS) - frozenset(ADDED_KEYS)
# Keys only some records carry: required fields without a value, and fields whose value
# could not be converted to their type.
OPTIONAL_KEYS = ("missing", "invalid")
COUNTER_LIMIT = 2**63  # JSON readers disagree past 64 bits; no real count gets near
_COUNTERS = ("depth", "bytes", "attempts", "links")

_STR = (str,)
_STR_OR_NULL = (str, type(None))
_INT = (int,)

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
    "elapsed_ms": ((int, float), "a number"),
    "attempts": (_INT, "an integer"),
    "crawl_id": (_STR, "a string"),
    "rule": (_STR_OR_NULL, "a string or null"),
    "data": ((dict,), "an object"),
    "links": (_INT, "an integer"),
    "changed": ((bool, type(None)), "true, false or null"),
    "error": ((dict, type(None)), "an object or null"),
    "canonical": (_STR_OR_NULL, "a string or null"),
}

_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer",
               float: "a number", bool: "a boolean", type(None): "null"}
_MAX_FLOAT = sys.float_info.max


def json_type_name(value: Any) -> str:
    """How a decoded JSON value is named in messages: "an array", "null", ..."""
    return _JSON_NAMES.get(type(value), type(value).__name__)


def validate_record(obj: Any) -> list[str]:
    """Return the problems that keep ``obj`` from being a record; an empty list if none."""
    if type(obj) is not dict:
        return [f"not a JSON object (got {json_type_name(obj)})"]
    problems: list[str] = []
    if not _KEY_SET <= obj.keys():
        missing = [key for key in RECORD_KEYS if key not in obj and key in _KEY_SET]
        problems.append(f"missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    for key, (types, expected) in _TYPES.items():
        if key in obj and type(obj[key]) not in types:
            problems.append(f"{key} must be {expected}, got {json_type_name(obj[key])}")
    if problems:
        return problems  # the range checks below assume the types are right
    return _check_values(obj) + _check_field_lists(obj)


def _check_field_lists(rec: dict) -> list[str]:
    problems = []
    for key in OPTIONAL_KEYS:
        if key not in rec:
            continue
        names = rec[key]
        if type(names) is not list or not all(type(n) is str for n in names):
            problems.append(f"{key} must be an array of field names, got {json_type_name(names)}")
        elif unknown := [n for n in names if n not in rec["data"]]:
            problems.append(f"{key} names {unknown[0]!r}, which is not a field of data")
    return problems


def _check_values(rec: dict) -> list[str]:
    problems: list[str] = []
    if not rec["url"]:
        problems.append("url is empty")
    if not rec["crawl_id"]:
        problems.append("crawl_id is empty")
    if rec.get("canonical") == "":
        problems.append("canonical is empty")
    status = rec["status"]
    if status is not None and not 100 <= status <= 599:
        problems.append(f"status {status} is not an HTTP status (100-599)")
    for key in _COUNTERS:
        if not 0 <= rec[key] < COUNTER_LIMIT:
            problems.append(f"{key} {rec[key]} is out of range (0 to 2**63 - 1)")
    elapsed = rec["elapsed_ms"]
    if not 0 <= elapsed <= _MAX_FLOAT:  # also false for NaN
        problems.append(f"elapsed_ms {elapsed} is not a finite number >= 0")
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


# -- the fast, typed path ------------------------------------------------------------------

_Count = Annotated[int, msgspec.Meta(ge=0, le=COUNTER_LIMIT - 1)]
_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class ErrorStruct(msgspec.Struct, gc=False):
    type: Literal["timeout", "connection", "http", "too_large", "robots", "redirects", "blocked", "parse"]
    message: str


class RecordStruct(msgspec.Struct, gc=False):
    """A record as a typed object; the fields are the record's keys (DESIGN §3).

    gc=False: records hold no cycles, and untracked objects keep the collector from walking
    every batch.
    """

    url: _NonEmpty
    final_url: str | None
    status: Annotated[int, msgspec.Meta(ge=100, le=599)] | None
    fetched_at: str
    depth: _Count
    referrer: str | None
    content_type: str | None
    bytes: _Count
    elapsed_ms: Annotated[float, msgspec.Meta(ge=0, le=_MAX_FLOAT)]
    attempts: _Count
    crawl_id: _NonEmpty
    rule: str | None
    data: dict
    links: _Count
    changed: bool | None
    error: ErrorStruct | None
    canonical: _NonEmpty | None = None  # added later: absent in older files
    # Optional keys, absent on most records (UNSET, which is false-like); null is refused.
    missing: list[str] | msgspec.UnsetType = msgspec.UNSET
    invalid: list[str] | msgspec.UnsetType = msgspec.UNSET


_DECODER = msgspec.json.Decoder(RecordStruct)
_decode = _DECODER.decode
_STATUS = attrgetter("status")
_ERROR = attrgetter("error")
_FETCHED_AT = attrgetter("fetched_at")
_MISSING = attrgetter("missing")
_INVALID = attrgetter("invalid")

# The writer's form of fetched_at: "2026-11-22T01:00:00.123Z".
_SECOND_OK: dict[str, bool] = {}  # "2026-11-22T01:00:00" -> valid?
_SECOND_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")
_TO_SECOND = repeat(slice(0, 19))


def _second_ok(prefix: str) -> bool:
    ok = _SECOND_OK.get(prefix)
    if ok is None:
        ok = _SECOND_SHAPE.fullmatch(prefix) is not None and _valid_second(prefix)
        if len(_SECOND_OK) > 100_000:
            _SECOND_OK.clear()
        _SECOND_OK[prefix] = ok
    return ok


def _valid_second(prefix: str) -> bool:
    try:
        datetime.fromisoformat(prefix + "+00:00")  # the calendar: month 13, 29 February, ...
    except ValueError:
        return False
    return True


def canonical_times(times: list[str]) -> bool:
    """True if every time is in the writer's form and valid (then they sort as strings).

    All the times are joined into one string and its columns read with strided slices, which
    costs a few nanoseconds per time; the date and time of day are checked once per distinct
    second.
    """
    n = len(times)
    if set(map(len, times)) != {24}:
        return False
    joined = "".join(times)
    if (joined[19::24] != "." * n or joined[23::24] != "Z" * n
            or not all(joined[i::24].isdigit() and joined[i::24].isascii() for i in (20, 21, 22))):
        return False
    return all(map(_second_ok, set(map(getitem, times, _TO_SECOND))))


def decode_batch(lines: list[bytes]) -> list[RecordStruct] | None:
    """Every line as a RecordStruct, or None if any line is not one the fast path accepts.

    None does not mean a line is bad: callers then check the lines one by one with
    ``validate_record``, which decides.
    """
    try:
        recs = list(map(_decode, lines))
    except (msgspec.DecodeError, TypeError):  # ValidationError is a DecodeError; None is no line
        return None
    return recs if _rules_msgspec_cannot_express(recs) else None


def _rules_msgspec_cannot_express(recs: list[RecordStruct]) -> bool:
    """fetched_at in the writer's form, and a status on every ok record (error null)."""
    if not canonical_times(list(map(_FETCHED_AT, recs))):
        return False
    if any(map(_MISSING, recs)) or any(map(_INVALID, recs)):  # rare: names must be data keys
        for rec in recs:
            for names in (rec.missing, rec.invalid):
                if names and not rec.data.keys() >= set(names):
                    return False
    return not any(map(and_, map(is_, map(_STATUS, recs), repeat(None)), map(is_, map(_ERROR, recs), repeat(None))))


def record_struct(obj: dict) -> RecordStruct:
    """The RecordStruct of a dict that ``validate_record`` accepts."""
    return msgspec.convert(obj, RecordStruct)
