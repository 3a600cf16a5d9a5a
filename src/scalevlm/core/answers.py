"""Answer normalisation and matching by `answer_type` (pure; used by the GRPO accuracy reward and evaluation).

Rules, per answer type (gold and prediction go through the same normaliser):

- ``integer``: surrounding whitespace, ``$…$``, ``\\boxed{…}`` and one trailing period are dropped; a leading ``+``,
  ``-`` or unicode minus is a sign; thousands separators are accepted only in valid groups (``1,234`` but not
  ``12,34``); leading zeros are ignored (``007`` is 7); ``7.``, ``7.0`` are 7; ``7.5`` is not an integer.
- ``number``: the integer rules plus decimals, exponents (``1e-3``), plain fractions (``1/2``) and a trailing ``%``
  (stripped: ``50%`` is 50, not 0.5). Equal iff ``|a - b| <= max(abs_tol, rel_tol * max(|a|, |b|))``. What this
  parser cannot read (LaTeX such as ``\\frac{1}{2}`` or ``\\sqrt{2}``) goes to math-verify when it is installed.
- ``choice``: a prediction resolves to an option index by, in order: the option text (case/space-insensitive,
  free-text normalised), a bare letter (``B``, ``(B)``, ``B.``, ``B)``, ``b``, ``option B``), or a letter followed by
  its own option text (``B. blue``). Anything else (two letters, two option texts) resolves to nothing and is wrong.
  Without `choices`, letters are compared as letters and other answers as free text.
- ``text``: casefold, punctuation removed, articles (a, an, the) dropped, whitespace collapsed (SQuAD-style);
  if both sides read as numbers they are compared numerically instead; LaTeX on both sides goes to math-verify.

An empty prediction is never correct. Nothing here raises on odd strings: unreadable answers are simply wrong.

This module is the project's only answer grammar: the source adapters type a gold answer with `infer_answer_type`,
curation and validation accept a gold answer iff `gold_answer_problem` finds nothing (it is readable under its type
by the same parsers, so the reward can score it), and the GRPO reward and evaluation score with `is_correct`.
Digits are ASCII after NFKC (full-width digits are read, other scripts' digits are not).
"""

from __future__ import annotations

import math
import re
import string
import threading
import unicodedata
from collections.abc import Sequence

ANSWER_TYPES = ("integer", "number", "choice", "text")
DEFAULT_REL_TOL = 1e-4
DEFAULT_ABS_TOL = 1e-8
_MAX_MATH_VERIFY_CHARS = 200  # math-verify runs sympy; long strings are neither answers nor worth the time

# `re.ASCII`: \d is [0-9] only; Python's int() would otherwise read Arabic-Indic or Devanagari digits.
_INT_RE = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.0*)?", re.ASCII)
_NUM_RE = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d*)?(?:[eE][+-]?\d+)?", re.ASCII)
_FRAC_RE = re.compile(r"([+-]?\d+)\s*/\s*(\d+)", re.ASCII)
_LETTER_RE = re.compile(r"(?:option|choice|answer)?\s*[(\[]?\s*([a-z])\s*[)\].:]?", re.IGNORECASE)
_LETTER_PREFIX_RE = re.compile(r"[(\[]?\s*([a-z])\s*[)\].:]\s*(.+)", re.IGNORECASE | re.DOTALL)
_BOXED_RE = re.compile(r"\\boxed\{(.*)\}")
_ARTICLES_RE = re.compile(r"\b(?:a|an|the)\b")
_LATEX_HINT_RE = re.compile(r"\\[a-zA-Z]+|\^|_\{")


def _clean(text: str) -> str:
    """Unicode NFKC, unicode minus → '-', strip whitespace, `$…$`, `\\boxed{…}` and one trailing period."""
    s = unicodedata.normalize("NFKC", text).replace("\u2212", "-").strip()
    if len(s) >= 2 and s.startswith("$") and s.endswith("$"):
        s = s.strip("$").strip()
    boxed = _BOXED_RE.fullmatch(s)
    if boxed:
        s = boxed.group(1).strip()
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1].rstrip()
    return s


def parse_integer(text: str) -> int | None:
    """The integer an answer states, or None (see the module rules)."""
    s = _clean(text)
    if not _INT_RE.fullmatch(s):
        return None
    try:
        return int(s.split(".")[0].replace(",", ""))
    except ValueError:  # more digits than Python's int-from-string limit (4300): not an answer anyone gives
        return None


def parse_number(text: str) -> float | None:
    """The real number an answer states (decimal, exponent, `a/b`, trailing `%`), or None; no LaTeX here."""
    s = _clean(text)
    if s.endswith("%"):
        s = s[:-1].rstrip()
    frac = _FRAC_RE.fullmatch(s)
    if frac:
        try:
            num, den = int(frac.group(1)), int(frac.group(2))
            value = num / den if den else None
        except (ValueError, OverflowError):  # thousands of digits: unreadable, not a crash
            return None
        return value if value is not None and math.isfinite(value) else None
    if not s or not any("0" <= ch <= "9" for ch in s) or not _NUM_RE.fullmatch(s):
        return None
    try:
        value = float(s.replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def numbers_close(a: float, b: float, rel_tol: float = DEFAULT_REL_TOL, abs_tol: float = DEFAULT_ABS_TOL) -> bool:
    return abs(a - b) <= max(abs_tol, rel_tol * max(abs(a), abs(b)))


def normalize_text(text: str, drop_articles: bool = True) -> str:
    """SQuAD-style free-text key: casefold, punctuation → space, articles dropped, whitespace collapsed.

    Option texts are keyed with `drop_articles=False`: an option may be the single letter "A".
    """
    s = unicodedata.normalize("NFKC", text).casefold()
    s = "".join(" " if ch in string.punctuation else ch for ch in s)
    if drop_articles:
        s = _ARTICLES_RE.sub(" ", s)
    return " ".join(s.split())


def _letter_index(text: str) -> int | None:
    m = _LETTER_RE.fullmatch(text.strip())
    return ord(m.group(1).lower()) - ord("a") if m else None


def resolve_choice(text: str, choices: Sequence[str] | None) -> int | None:
    """Option index an answer names (see the module rules), or None when it names none or is ambiguous."""
    s = _clean(text)
    if not s:
        return None
    if choices:
        keys = [normalize_text(c, drop_articles=False) for c in choices]
        key = normalize_text(s, drop_articles=False)
        hits = [i for i, k in enumerate(keys) if k and k == key]
        if len(hits) == 1:
            return hits[0]
        letter = _letter_index(s)
        if letter is not None:
            return letter if letter < len(choices) else None
        prefixed = _LETTER_PREFIX_RE.fullmatch(s)
        if prefixed:
            i = ord(prefixed.group(1).lower()) - ord("a")
            if i < len(choices) and normalize_text(prefixed.group(2), drop_articles=False) == keys[i]:
                return i
        return None
    return _letter_index(s)


def math_equal(pred: str, gold: str) -> bool | None:
    """math-verify's verdict on LaTeX/fraction answers; None when it is unavailable or cannot read either side."""
    if len(pred) > _MAX_MATH_VERIFY_CHARS or len(gold) > _MAX_MATH_VERIFY_CHARS:
        return None
    try:
        from math_verify import parse, verify
    except ImportError:  # optional dependency: the simple parsers still work
        return None
    # math-verify's timeout uses signal.alarm, which only works in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        wrap = lambda s: s if "$" in s else f"${s}$"  # noqa: E731 - anchors LaTeX extraction
        g = parse(wrap(gold), parsing_timeout=timeout)
        p = parse(wrap(pred), parsing_timeout=timeout)
        if not g or not p:
            return None
        return bool(verify(g, p, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001 - any sympy/parse failure means "cannot judge", never a crash
        return None


def _looks_like_math(text: str) -> bool:
    return bool(_LATEX_HINT_RE.search(text)) or "$" in text


def _text_equal(pred: str, gold: str, rel_tol: float, abs_tol: float) -> bool:
    pn, gn = parse_number(pred), parse_number(gold)
    if pn is not None and gn is not None:
        return numbers_close(pn, gn, rel_tol, abs_tol)
    if _looks_like_math(pred) or _looks_like_math(gold):
        verdict = math_equal(pred, gold)
        if verdict is not None:
            return verdict
    key = normalize_text(pred)
    return bool(key) and key == normalize_text(gold)


def infer_answer_type(answer: str, choices: Sequence[str] | None) -> str:
    """The type a gold answer reads as: `choice` when it names an option (`resolve_choice`), else `integer`,
    `number`, or `text`, by this module's parsers (so "1,234" is an integer, "50%" and "1/2" are numbers)."""
    if choices and resolve_choice(answer, choices) is not None:
        return "choice"
    if parse_integer(answer) is not None:
        return "integer"
    if parse_number(answer) is not None:
        return "number"
    return "text"


def _braces_balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def gold_answer_problem(answer: str, answer_type: str, choices: Sequence[str] | None) -> str | None:
    """Why `answer` cannot be a gold answer of `answer_type` (one sentence), or None when it can.

    A gold answer must be readable under its type by `is_parseable` (otherwise no prediction can ever match
    it), `choice` needs a non-empty `choices`, and a `\\boxed{` must be closed (an unbalanced one is a cut-off
    solution, not an answer).
    """
    if answer_type not in ANSWER_TYPES:
        return f"answer_type {answer_type!r} is not one of {list(ANSWER_TYPES)}"
    if answer_type == "choice" and not choices:
        return "answer_type 'choice' needs a non-empty choices list"
    if "\\boxed" in answer and not _braces_balanced(answer):
        return f"answer {answer[:40]!r} holds an unbalanced \\boxed{{…}}"
    if not is_parseable(answer, answer_type, choices):
        return f"answer {answer[:40]!r} is not a valid {answer_type} (see scalevlm.core.answers for the grammar)"
    return None


def is_parseable(pred: str | None, answer_type: str, choices: Sequence[str] | None = None) -> bool:
    """Whether a predicted answer can be read under its type at all (the evaluation's answer-parse rate)."""
    if pred is None or not pred.strip():
        return False
    if answer_type == "integer":
        return parse_integer(pred) is not None
    if answer_type == "number":
        return parse_number(pred) is not None or (_looks_like_math(pred) and math_equal(pred, pred) is True)
    if answer_type == "choice":
        return resolve_choice(pred, choices) is not None
    return bool(normalize_text(pred))


def is_correct(
    pred: str | None,
    gold: str,
    answer_type: str,
    choices: Sequence[str] | None = None,
    rel_tol: float = DEFAULT_REL_TOL,
    abs_tol: float = DEFAULT_ABS_TOL,
) -> bool:
    """True iff the predicted answer matches the gold answer under the rules of `answer_type`.

    Args:
        pred: the extracted answer text (None or empty: wrong).
        gold: the reference answer text.
        answer_type: one of ANSWER_TYPES; anything else raises ValueError (a data error, not a wrong answer).
        choices: option texts for ``choice`` answers (gold may be a letter or an option text).
        rel_tol / abs_tol: tolerances for ``number`` answers.
    """
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; expected one of {ANSWER_TYPES}")
    if pred is None or not pred.strip():
        return False
    if answer_type == "integer":
        p, g = parse_integer(pred), parse_integer(gold)
        if g is None:  # a gold that is not an integer: judge as text rather than mark everything wrong
            return _text_equal(pred, gold, rel_tol, abs_tol)
        return p is not None and p == g
    if answer_type == "number":
        p_num, g_num = parse_number(pred), parse_number(gold)
        if p_num is not None and g_num is not None:
            return numbers_close(p_num, g_num, rel_tol, abs_tol)
        verdict = math_equal(pred, gold)
        return bool(verdict) if verdict is not None else _text_equal(pred, gold, rel_tol, abs_tol)
    if answer_type == "choice":
        g_idx = resolve_choice(gold, choices)
        if g_idx is None:  # gold names no option: compare as text
            return _text_equal(pred, gold, rel_tol, abs_tol)
        return resolve_choice(pred, choices) == g_idx
    return _text_equal(pred, gold, rel_tol, abs_tol)
