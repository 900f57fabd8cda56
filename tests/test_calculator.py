"""The calculator the `calculate` tool runs (chat/calculator.py): exact from the literal's text
to the printed answer, and bounded before it computes."""

import pytest

from chat import calculator


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("123456789012345678901234567890.5", "123456789012345678901234567890.5"),
        ("0.1 + 0.2", "0.3"),
        ("1/3", "1/3 (about 0.333333333333)"),
        ("2**-3", "0.125"),
        ("2**200", str(2**200)),
        ("1/2**100", "0." + str(5**100).rjust(100, "0")),
        ("1 + 1e-30", "1." + "0" * 29 + "1"),
        ("1_000.5 * 2", "2001"),
        ("1.5e3 - 0.25E+1", "1497.5"),
        ("-0.000001 * 3", "-0.000003"),
        ("99999999999999999999.99 + 0.01", "100000000000000000000"),
        ("2**1100 / 3", f"{2**1100}/3"),  # past a float's range: no approximation
    ],
)
def test_every_answer_is_exact_from_the_literals_text_to_the_last_digit(expression, expected):
    assert calculator.answer(expression) == f"{expression} = {expected}"


@pytest.mark.parametrize(
    "expression, reason",
    [
        ("1e100000", "too large"),  # sized from its text, never made
        ("0.5e-100000", "too large"),
        ("1" + "+1" * 300, "too many parts"),
        ("2**13001", "too large"),
        ("0 ** -1", "division by zero"),
        ("1 % 0", "division by zero"),
        ("1j", "only numbers"),
    ],
)
def test_what_cannot_be_calculated_within_the_bounds_says_why(expression, reason):
    assert calculator.answer(expression).startswith(f"Cannot calculate {expression!r}: ")
    assert reason in calculator.answer(expression)
