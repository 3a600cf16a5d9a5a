"""Answer accuracy of reasoning completions, as a Hugging Face `evaluate` metric loadable offline by path.

    metric = evaluate.load("metrics/answer_accuracy")
    metric.compute(predictions=[completion, ...], references=[gold, ...], answer_types=[...], choices=[...])

The answer is extracted with the project's segment rule (a malformed completion has no answer and is wrong)
and compared with `scalevlm.core.answers.is_correct` by answer type. Keep one import per line: `evaluate`
scans this file's imports to find its requirements.
"""

# ruff: noqa: I001 - evaluate reads this module's imports line by line: one name per import line
import datasets
import evaluate
from scalevlm.core.answers import is_correct
from scalevlm.core.answers import is_parseable
from scalevlm.core.rewards import extract_answer

_DESCRIPTION = "Exact-match answer accuracy under per-type normalisation, on the single <answer> block."
_KWARGS = """
Args:
    predictions: completion texts (`<think>…</think><answer>…</answer>`).
    references: gold answer texts.
    answer_types: optional list of "integer" | "number" | "choice" | "text" (default "text").
    choices: optional list of option lists (or None) for "choice" answers.
Returns:
    accuracy: share of samples whose extracted answer matches the gold answer.
    answer_parse_rate: share whose answer exists and is readable under its type.
    n: number of samples.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class AnswerAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(
        self, predictions: list, references: list, answer_types: list | None = None, choices: list | None = None
    ) -> dict:
        n = len(predictions)
        types = list(answer_types) if answer_types is not None else ["text"] * n
        options = list(choices) if choices is not None else [None] * n
        if len(types) != n or len(options) != n:
            raise ValueError(f"answer_types ({len(types)}) and choices ({len(options)}) must match predictions ({n})")
        correct = 0
        parsed = 0
        for completion, gold, answer_type, opts in zip(predictions, references, types, options, strict=True):
            pred = extract_answer(completion)
            correct += int(pred is not None and is_correct(pred, gold, answer_type, opts))
            parsed += int(is_parseable(pred, answer_type, opts))
        return {
            "accuracy": correct / n if n else 0.0,
            "answer_parse_rate": parsed / n if n else 0.0,
            "n": n,
        }
