"""Field types: ``type = "number" | "integer" | "bool" | "date"`` (DESIGN §3).

Each converter takes one extracted value (a string, or a JSON value from JSON-LD) and
returns the typed value, or raises ``ValueError`` when it cannot; the caller records the
field as null and lists it in the record's ``invalid`` key.

- number: a plain number ("-3.5", "1e3") as is; otherwise a price or amount in any of the
  common notations ("$1,299.00", "1.299,00 €", "1 299,00"), read by price-parser, which
  decides which mark is the decimal separator.
- integer: a number with no fractional part ("1,299" -> 1299; "4.5" fails).
- bool: true/false, yes/no, y/n, on/off, 1/0 (any case), and JSON booleans.
- date: read by python-dateutil; written as ISO 8601: "2026-03-05" when the text has no time
  of day, "2026-03-05T10:00:00+01:00" when it has one. Ambiguous day/month orders read
  month first ("03/05/2026" is 5 March).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Callable

_TRUE = frozenset(("true", "yes", "y", "on", "1"))
_FALSE = frozenset(("false", "no", "n", "off", "0"))
# Two different defaults: a component the text does not give differs between the two.
_DEFAULT_A = datetime(2000, 1, 1, 0, 0, 0)
_DEFAULT_B = datetime(2001, 2, 2, 1, 1, 1)


def to_number(value: Any) -> float | int:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, (int, float)):
        number = value
    elif isinstance(value, str):
        number = _parse_number(value)
    else:
        raise ValueError(f"cannot read a number from {type(value).__name__}")
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _parse_number(text: str) -> float:
    from price_parser import Price

    try:
        return float(text)
    except ValueError:
        pass
    amount = Price.fromstring(text).amount_float
    if amount is None:
        raise ValueError(f"no number in {text!r}")
    return amount


def to_integer(value: Any) -> int:
    number = to_number(value)
    if number != int(number):
        raise ValueError(f"{number} is not a whole number")
    return int(number)


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def to_date(value: Any) -> str:
    from dateutil import parser

    if not isinstance(value, str):
        raise ValueError(f"cannot read a date from {type(value).__name__}")
    try:
        a = parser.parse(value, default=_DEFAULT_A)
        b = parser.parse(value, default=_DEFAULT_B)
    except (ValueError, OverflowError) as exc:  # ParserError is a ValueError
        raise ValueError(str(exc)) from None
    if a.date() != b.date():
        raise ValueError(f"no full date in {value!r}")
    if (a.hour, a.minute) != (b.hour, b.minute):  # no time of day in the text
        return a.date().isoformat()
    return a.isoformat()


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "number": to_number,
    "integer": to_integer,
    "bool": to_bool,
    "date": to_date,
}
