"""Table Storage's string length (UTF-16 code units), counted in C, against its definition."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.entity_props import MAX_PROPERTY_UNITS, utf16_units


def _by_definition(text: str) -> int:
    """One unit per character, two for a character outside the Basic Multilingual Plane."""
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


@given(st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF)))
def test_utf16_units_is_the_definition(text: str) -> None:
    assert utf16_units(text) == _by_definition(text)


def test_utf16_units_examples() -> None:
    assert utf16_units("") == 0
    assert utf16_units("WI-7K3F9Q2MXA") == 13
    assert utf16_units("é日本") == 3
    assert utf16_units("a😀b") == 4  # the emoji is a surrogate pair in UTF-16
    assert utf16_units("\ud800x") == 2  # a lone surrogate (json.loads makes them) is one unit
    assert utf16_units("😀" * MAX_PROPERTY_UNITS) == 2 * MAX_PROPERTY_UNITS
