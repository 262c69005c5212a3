"""Field types, value by value (the CLI tests in test_fields_cli.py cover them end to end)."""

from __future__ import annotations

import pytest

from parsers.convert import to_bool, to_date, to_integer, to_number


@pytest.mark.parametrize("text, number", [
    ("$1,299.00", 1299.0), ("1.299,00 €", 1299.0), ("1 299,00", 1299.0), ("€ 12,50", 12.5),
    ("-3.5", -3.5), ("1e3", 1000.0), ("Now $12.50 only", 12.5), (7, 7), (2.5, 2.5),
])
def test_numbers_in_the_usual_notations(text, number):
    assert to_number(text) == number


@pytest.mark.parametrize("value", ["call us", "", "nan", "inf", True, None, [1]])
def test_what_is_not_a_number_fails(value):
    with pytest.raises(ValueError):
        to_number(value)


@pytest.mark.parametrize("text, number", [("1,204 reviews", 1204), ("87", 87), ("12.0", 12), (3.0, 3)])
def test_integers(text, number):
    got = to_integer(text)
    assert got == number and type(got) is int


@pytest.mark.parametrize("value", ["4.5", 4.5, "none"])
def test_fractions_are_not_integers(value):
    with pytest.raises(ValueError):
        to_integer(value)


@pytest.mark.parametrize("value, truth", [
    ("yes", True), ("TRUE", True), (" on ", True), ("1", True), (1, True), (True, True),
    ("no", False), ("False", False), ("off", False), ("0", False), (0, False), (False, False),
])
def test_bools(value, truth):
    assert to_bool(value) is truth


@pytest.mark.parametrize("value", ["maybe", "", 2, "In stock"])
def test_what_is_not_a_bool_fails(value):
    with pytest.raises(ValueError):
        to_bool(value)


@pytest.mark.parametrize("text, iso", [
    ("March 5, 2026", "2026-03-05"), ("2026-03-05", "2026-03-05"), ("5 Mar 2026", "2026-03-05"),
    ("03/05/2026", "2026-03-05"),  # month first when ambiguous
    ("2026-03-05T10:30:00+01:00", "2026-03-05T10:30:00+01:00"), ("2026-03-05 10:30", "2026-03-05T10:30:00"),
    ("Thu, 05 Mar 2026 10:30:00 GMT", "2026-03-05T10:30:00+00:00"),
])
def test_dates_become_iso_8601_with_a_time_only_when_given(text, iso):
    assert to_date(text) == iso


@pytest.mark.parametrize("value", ["someday", "March 2026", "10:30", "", 20260305])
def test_what_is_not_a_full_date_fails(value):
    with pytest.raises(ValueError):
        to_date(value)
