"""One answer grammar: what an adapter types an answer as, validation accepts, and the reward and the evaluation
metric score the same way (all through `scalevlm.core.answers`)."""

from __future__ import annotations

from pathlib import Path

import evaluate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalevlm.core import answers
from scalevlm.core.rewards import accuracy_reward
from scalevlm.core.segments import format_completion
from scalevlm.records import Record
from scalevlm.sources import adapters
from scalevlm.sources.base import AdapterError
from scalevlm.validation import checks

ROOT = Path(__file__).resolve().parents[1]
METRIC = evaluate.load(str(ROOT / "metrics" / "answer_accuracy"))
REASONING = "counted every cell of every row, twice, to be sure."


def typed(answer: str, question: str = "How many?") -> adapters.Normalised:
    return adapters.normalise(question, REASONING, answer)


def record(sample: adapters.Normalised) -> Record:
    return Record(id="t/1", images=("images/a.png",), question=sample.question, reasoning=sample.reasoning,
                  answer=sample.answer, answer_type=sample.answer_type, choices=sample.choices, source="t",
                  split="train")


def reward(pred: str, sample: adapters.Normalised) -> float | None:
    [value] = accuracy_reward(None, [format_completion(REASONING, pred)], answer=[sample.answer],
                              answer_type=[sample.answer_type], choices=[sample.choices])
    return value


def metric(pred: str, sample: adapters.Normalised) -> float:
    out = METRIC.compute(predictions=[format_completion(REASONING, pred)], references=[sample.answer],
                         answer_types=[sample.answer_type], choices=[sample.choices])
    return out["accuracy"]


def answer_reasons(sample: adapters.Normalised) -> list[str]:
    return [f.reason for f in checks.record_failures(record(sample))
            if f.reason in checks.COLUMN_REASONS["answer_check"]]


TYPED = {
    # id: (answer as written, question, expected type, a correct prediction, a wrong prediction)
    "thousands": ("1,234", "How many?", "integer", "1234", "1243"),
    "percent": ("50%", "What share?", "number", "50", "0.5"),  # "50%" is 50, not 0.5 (core.answers rules)
    "fraction": ("1/2", "What part?", "number", "0.5", "1/3"),
    "negative": ("-3", "Which?", "integer", "\u22123", "3"),
    "decimal_integer": ("7.0", "How many?", "integer", "7", "7.5"),
    "exponent": ("1e-3", "How small?", "number", "0.001", "0.01"),
    "boxed": ("The answer is \\boxed{12}.", "How many?", "integer", "12", "21"),
    "letter": ("B", "Which?\nA. red\nB. blue", "choice", "blue", "A"),
    "option_text": ("blue", "Which?\nA. red\nB. blue", "choice", "(B)", "red"),
    "text": ("a red square", "What is it?", "text", "A red square.", "a blue square"),
    "full_width_digits": ("\uff11\uff12", "How many?", "integer", "12", "13"),
}


@pytest.mark.parametrize(("answer", "question", "kind", "right", "wrong"), TYPED.values(), ids=TYPED.keys())
def test_typed_answers_pass_validation_and_score_alike(answer: str, question: str, kind: str, right: str,
                                                       wrong: str) -> None:
    sample = typed(answer, question)
    assert sample.answer_type == kind
    assert answer_reasons(sample) == []  # validation accepts what the adapter typed (was answer_type_mismatch)
    for pred, expected in ((sample.answer, 1.0), (right, 1.0), (wrong, 0.0)):
        assert reward(pred, sample) == metric(pred, sample) == expected, pred


@pytest.mark.parametrize(("answer", "answer_type", "reason"), [
    ("\u0661\u0662", "integer", "answer_type_mismatch"),  # Arabic-Indic digits: ASCII digits only after NFKC
    ("five", "number", "answer_type_mismatch"),
    ("...", "text", "answer_type_mismatch"),  # nothing left after normalisation: no prediction could match it
    ("B", "choice", "answer_type_mismatch"),  # no options in the question
    ("12", "count", "bad_answer_type"),
])
def test_an_answer_the_grammar_cannot_read_is_refused_by_the_adapter(answer: str, answer_type: str,
                                                                     reason: str) -> None:
    with pytest.raises(AdapterError) as err:
        adapters.normalise("How many?", REASONING, answer, answer_type)
    assert err.value.reason == reason


def test_answer_types_are_defined_once() -> None:
    from scalevlm import records

    assert records.ANSWER_TYPES is answers.ANSWER_TYPES and checks.ANSWER_TYPES is answers.ANSWER_TYPES


NUMBERS = st.one_of(
    st.integers(-10**7, 10**7).map(str),
    st.integers(1000, 10**9).map(lambda n: f"{n:,}"),
    st.integers(0, 100).map(lambda n: f"{n}%"),
    st.tuples(st.integers(-20, 20), st.integers(0, 20)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: f"{x:.3g}"),
    st.integers(0, 99).map(lambda n: f"\\boxed{{{n}}}"),
    st.integers(0, 99).map(lambda n: f"${n}$"),
)
ANSWERS = st.one_of(NUMBERS, st.sampled_from(["A", "B", "c", "(B)", "red", "blue", "Blue.", "a cat", "the cat", "?",
                                              "B. blue", "\\frac{1}{2}", "x^2", "1,23", "12,345.5"]),
                    st.text(max_size=12))
QUESTIONS = st.sampled_from(["How many?", "Which colour?\nA. red\nB. blue\nC. green", "Pick: (A) cat (B) dog"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gold=ANSWERS, question=QUESTIONS, preds=st.lists(ANSWERS, max_size=3))
def test_property_adapter_typed_answers_validate_and_score_alike(gold: str, question: str, preds: list[str]) -> None:
    try:
        sample = adapters.normalise(question, REASONING, gold)
    except AdapterError:
        return  # refused with a named reason: nothing to type
    assert answer_reasons(sample) == []
    if checks.record_failures(record(sample)):
        return  # e.g. a tag or control character in the text: validation quarantines the record anyway
    assert reward(sample.answer, sample) == metric(sample.answer, sample) == 1.0  # the gold matches itself
    for pred in preds:
        assert reward(pred, sample) == metric(pred, sample)
