"""Format compliance of reasoning completions under the project's segment rule, as an `evaluate` metric.

    metric = evaluate.load("metrics/format_compliance")
    metric.compute(predictions=[completion, ...])

A completion complies iff `scalevlm.core.segments.parse_completion` says it is exactly one think block followed
by one answer block. Failures are counted by their named reason. Keep one import per line: `evaluate` scans this
file's imports to find its requirements.
"""

# ruff: noqa: I001 - evaluate reads this module's imports line by line: one name per import line
import datasets
import evaluate
from scalevlm.core.segments import ANSWER_OPEN
from scalevlm.core.segments import parse_completion

_DESCRIPTION = "Share of completions that are exactly <think>…</think><answer>…</answer>, with failure reasons."
_KWARGS = """
Args:
    predictions: completion texts.
Returns:
    format_compliance: share of well-formed completions.
    missing_answer_rate: share of completions without any <answer> tag (typically cut off inside the think).
    reasons: share of completions per failure reason (only reasons that occur).
    n: number of samples.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class FormatCompliance(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions: list) -> dict:
        n = len(predictions)
        ok = 0
        missing = 0
        reasons = {}
        for completion in predictions:
            seg = parse_completion(completion)
            ok += int(seg.ok)
            missing += int(ANSWER_OPEN not in completion)
            if not seg.ok:
                reasons[seg.reason.value] = reasons.get(seg.reason.value, 0) + 1
        return {
            "format_compliance": ok / n if n else 0.0,
            "missing_answer_rate": missing / n if n else 0.0,
            "reasons": {k: v / n for k, v in sorted(reasons.items())},
            "n": n,
        }
