"""Answer normalisation rules, one table row per rule (pure, milliseconds)."""

from __future__ import annotations

import pytest

from scalevlm.core.answers import (
    is_correct,
    is_parseable,
    normalize_text,
    parse_integer,
    parse_number,
    resolve_choice,
)

CHOICES = ("red", "blue", "green", "no colour")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7", 7),
        (" 7 ", 7),
        ("7.", 7),
        ("7.0", 7),
        ("+7", 7),
        ("-7", -7),
        ("\u22127", -7),  # unicode minus
        ("007", 7),
        ("1,234", 1234),
        ("12,34", None),  # not a thousands grouping
        ("1,234,567", 1234567),
        ("$12$", 12),
        ("\\boxed{12}", 12),
        ("7.5", None),
        ("seven", None),
        ("7 8", None),
        ("", None),
        ("-", None),
    ],
)
def test_parse_integer(text: str, expected: int | None) -> None:
    assert parse_integer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3.5", 3.5),
        ("-0.25", -0.25),
        (".5", 0.5),
        ("1e-3", 0.001),
        ("1/4", 0.25),
        ("-3/4", -0.75),
        ("1/0", None),
        ("50%", 50.0),
        ("1,234.5", 1234.5),
        ("e5", None),
        ("abc", None),
        ("inf", None),
        ("", None),
    ],
)
def test_parse_number(text: str, expected: float | None) -> None:
    got = parse_number(text)
    assert got == pytest.approx(expected) if expected is not None else got is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat!", "cat"),
        ("  a   big  dog. ", "big dog"),
        ("An apple", "apple"),
        ("theme", "theme"),  # articles only as whole words
        ("New-York", "new york"),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    ("text", "choices", "expected"),
    [
        ("B", CHOICES, 1),
        ("b", CHOICES, 1),
        ("(B)", CHOICES, 1),
        ("B.", CHOICES, 1),
        ("B)", CHOICES, 1),
        ("option B", CHOICES, 1),
        ("Blue", CHOICES, 1),
        ("  BLUE  ", CHOICES, 1),
        ("B. blue", CHOICES, 1),
        ("(B) blue", CHOICES, 1),
        ("B. red", CHOICES, None),  # letter and text disagree
        ("no  Colour", CHOICES, 3),
        ("E", CHOICES, None),  # out of range
        ("A B", CHOICES, None),  # two letters: ambiguous
        ("red blue", CHOICES, None),
        ("", CHOICES, None),
        ("C", None, 2),  # no choices: letters stay letters
        ("A", ("B", "A"), 1),  # an exact option text wins over the letter reading
    ],
)
def test_resolve_choice(text: str, choices: tuple[str, ...] | None, expected: int | None) -> None:
    assert resolve_choice(text, choices) == expected


@pytest.mark.parametrize(
    ("pred", "gold", "answer_type", "choices", "expected"),
    [
        ("7", "7", "integer", None, True),
        ("07", "7", "integer", None, True),
        ("7.", "7", "integer", None, True),
        ("1,000", "1000", "integer", None, True),
        ("-3", "3", "integer", None, False),
        ("7.5", "7", "integer", None, False),
        ("8", "7", "integer", None, False),
        ("", "7", "integer", None, False),
        (None, "7", "integer", None, False),
        ("7 or 8", "7", "integer", None, False),
        ("0.5", "1/2", "number", None, True),
        ("0.50001", "0.5", "number", None, True),  # within rel_tol 1e-4
        ("0.51", "0.5", "number", None, False),
        ("\\frac{1}{2}", "0.5", "number", None, True),  # math-verify
        ("$\\frac{3}{4}$", "0.75", "number", None, True),
        ("\\frac{1}{3}", "0.5", "number", None, False),
        ("B", "blue", "choice", CHOICES, True),
        ("(b)", "B", "choice", CHOICES, True),
        ("Blue", "B", "choice", CHOICES, True),
        ("blue", "green", "choice", CHOICES, False),
        ("A B C D", "A", "choice", CHOICES, False),
        ("B", "B", "choice", None, True),
        ("The Eiffel Tower.", "eiffel tower", "text", None, True),
        ("Eiffel  tower", "the eiffel tower", "text", None, True),
        ("Eiffel", "eiffel tower", "text", None, False),
        ("3.0", "3", "text", None, True),  # both numeric: compared as numbers
        ("...", "", "text", None, False),
        ("12", "twelve", "integer", None, False),  # a non-integer gold falls back to text
    ],
)
def test_is_correct(pred: str | None, gold: str, answer_type: str, choices: tuple[str, ...] | None,
                    expected: bool) -> None:
    assert is_correct(pred, gold, answer_type, choices) is expected


def test_number_tolerances_are_parameters() -> None:
    assert not is_correct("1.1", "1.0", "number")
    assert is_correct("1.1", "1.0", "number", rel_tol=0.1)
    assert is_correct("0.001", "0", "number", abs_tol=0.01)


def test_unknown_answer_type_raises_with_expected_types() -> None:
    with pytest.raises(ValueError, match="unknown answer_type 'date'"):
        is_correct("1", "1", "date")


@pytest.mark.parametrize(
    ("pred", "answer_type", "choices", "expected"),
    [
        ("7", "integer", None, True),
        ("seven", "integer", None, False),
        ("1/2", "number", None, True),
        ("\\frac{1}{2}", "number", None, True),
        ("B", "choice", CHOICES, True),
        ("purple", "choice", CHOICES, False),
        ("anything", "text", None, True),
        (None, "text", None, False),
        ("  ", "text", None, False),
    ],
)
def test_is_parseable(pred: str | None, answer_type: str, choices: tuple[str, ...] | None, expected: bool) -> None:
    assert is_parseable(pred, answer_type, choices) is expected
