"""Whether a generated think reached the right conclusion, for records that say what that conclusion is (pure).

A generated source may attach to a record's provenance a `think_fact` (e.g. `sources.reasoning_grid`):

    {"pattern": r"So (\\d+) of the \\d+ cells are red",  # one capture group: the think's conclusion
     "occurrence": "last",                              # which match counts: "first" | "last"
     "value": "5",                                      # the true conclusion
     "answer_map": {"5": "11", ...}}                    # the answer each conclusion implies (optional)

`judge_think` reads a completion's think (everything before `</think>`, or all of it when unclosed) and gives the
paper's conditional view of an answer: was the think right, and does the answer follow from what the think
concluded (answer–think consistency)? Records without a fact are not judged (None).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scalevlm.core.segments import THINK_CLOSE


@dataclass(frozen=True)
class ThinkJudgement:
    value: str | None  # the think's conclusion, None when it states none
    correct: bool  # it states the true conclusion
    consistent: bool | None  # the answer is the one the conclusion implies; None without an answer_map


def think_conclusion(completion: str, fact: Mapping[str, Any]) -> str | None:
    think = completion.split(THINK_CLOSE, 1)[0]
    found = re.findall(fact["pattern"], think)
    if not found:
        return None
    return str(found[0] if fact.get("occurrence", "last") == "first" else found[-1])


def judge_think(completion: str, pred: str | None, fact: Mapping[str, Any] | None) -> ThinkJudgement | None:
    if not fact:
        return None
    value = think_conclusion(completion, fact)
    answer_map = fact.get("answer_map")
    consistent = None if answer_map is None else (value is not None and pred is not None
                                                  and answer_map.get(value) == pred.strip())
    return ThinkJudgement(value=value, correct=value is not None and value == str(fact["value"]), consistent=consistent)
