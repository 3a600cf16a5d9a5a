"""The four-arm comparison as Markdown (`reports/compare/{table.md,README.md}`): the tables, the paper's claims and
the paired tests as sentences, and the caveats — every statement generated from this run's numbers and facts.

`RunFacts` is what the caveats need to know about the run (the base model from `reports/prepare_model/metrics.json`,
the test sources, the benchmarks), so a real-model run is not described as the tiny one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scalevlm.claims import Difference, Verdict
from scalevlm.core.comparison import decisive_p
from scalevlm.facts import ARMS, GENERATED_SOURCES, INITS, SFT_SCALE, SFT_VANILLA, TINY_MODEL

Table = Mapping[str, Mapping[str, Any]]  # arm -> row of scalevlm.core.comparison.arm_table
Tests = Sequence[Mapping[str, Any]]  # rows of scalevlm.core.comparison.paired_tests


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown_table(table: Table, tests: Tests, ratio: float | None) -> str:
    lines = [
        "| arm | accuracy [95% CI] | format compliance | answer parse | mean think tokens | train time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for arm, r in table.items():
        lines.append(
            f"| {arm} | {_fmt(r['accuracy'])} [{_fmt(r['accuracy_low'])}, {_fmt(r['accuracy_high'])}] | "
            f"{_fmt(r['format_compliance'])} | {_fmt(r['answer_parse_rate'])} | {_fmt(r['think_tokens_mean'], 1)} | "
            f"{_fmt(r['train_time_s'], 1)} |")
    lines += ["",
              "| comparison | Δ accuracy [95% CI] | p (bootstrap) | p (permutation) | p (McNemar) | a-only / b-only |",
              "|---|---|---|---|---|---|"]
    for t in tests:
        lines.append(
            f"| {t['a']} vs {t['b']} | {_fmt(t['diff'])} [{_fmt(t['diff_low'])}, {_fmt(t['diff_high'])}] | "
            f"{_fmt(t['p_bootstrap'], 4)} | {_fmt(t['p_permutation'], 4)} | {_fmt(t['p_mcnemar'], 4)} | "
            f"{t['a_only']} / {t['b_only']} |")
    lines += ["", f"SCALe-SFT time / (vanilla SFT + GRPO time): {_fmt(ratio)}"]
    return "\n".join(lines) + "\n"


def paper_table(table: Table) -> str:
    """The paper's view per arm: is the think right, does the answer follow, how verbose, how sure of the answer."""
    if all(r.get("think_correct_rate") is None and r.get("reference_answer_ce") is None for r in table.values()):
        return ""
    budget = next((r.get("max_new_tokens") for r in table.values() if r.get("max_new_tokens")), None)
    lines = [
        "| arm | think correct | P(answer correct given think correct) | answer–think consistency | missing "
        f"`<answer>` @{budget} tokens | "
        "generated / reference think tokens | answer-token CE (reference, nats) | think-token CE (reference) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, r in table.items():
        lines.append(
            f"| {arm} | {_fmt(r.get('think_correct_rate'))} | {_fmt(r.get('p_answer_given_think_correct'))} | "
            f"{_fmt(r.get('answer_think_consistency'))} | {_fmt(r.get('missing_answer_rate'))} | "
            f"{_fmt(r.get('think_verbosity'), 2)} | {_fmt(r.get('reference_answer_ce'), 4)} | "
            f"{_fmt(r.get('reference_think_ce'), 4)} |")
    return "\n".join(lines) + "\n"


def format_table(table: Table) -> str:
    """Format compliance per arm with every failure counted by the segment rule's reason, and the missing-`<answer>`
    rate at each generation budget (`evaluate`'s `missing_answer_at`)."""
    reasons = sorted({r for row in table.values() for r in row.get("reasons", {})})
    budgets = sorted({b for row in table.values() for b in row.get("missing_answer_at", {})}, key=int)
    lines = ["| arm | format compliance | " + " | ".join(f"`{r}`" for r in reasons) + "".join(
        f" | missing `<answer>` @{b}" for b in budgets) + " |", "|---|---|" + "---|" * (len(reasons) + len(budgets))]
    for name, row in table.items():
        cells = [_fmt(row.get("reasons", {}).get(r, 0.0)) for r in reasons]
        cells += [_fmt(row.get("missing_answer_at", {}).get(b)) for b in budgets]
        lines.append(f"| {name} | {_fmt(row['format_compliance'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def source_table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    sources = sorted({s for m in metrics.values() for s in m.get("by_source", {})})
    lines = ["| arm | " + " | ".join(f"{s} accuracy" for s in sources) + " |", "|---|" + "---|" * len(sources)]
    for arm in ARMS:
        by = metrics[arm].get("by_source", {})
        lines.append(f"| {arm} | " + " | ".join(_fmt(by.get(s, {}).get("accuracy")) for s in sources) + " |")
    return "\n".join(lines) + "\n"


# Sentences ------------------------------------------------------------------------------------------------------


def _stat(t: Mapping[str, Any]) -> str:
    return (f"Δ = {_fmt(t['diff'])}, 95% CI [{_fmt(t['diff_low'])}, {_fmt(t['diff_high'])}], p = "
            f"{_fmt(decisive_p(t), 4)}")


def verdict(t: Mapping[str, Any], alpha: float) -> str:
    if decisive_p(t) < alpha and t["diff"] != 0:
        word = "more" if t["diff"] > 0 else "*less*"
        return f"**{t['a']}** is {word} accurate than **{t['b']}** ({_stat(t)})."
    return f"**{t['a']}** and **{t['b']}** are not distinguishable on this test set ({_stat(t)})."


def differences(tests: Tests) -> dict[tuple[str, str], Difference]:
    """The paired tests as `claims.Difference`s (bootstrap interval over the test samples), keyed by (a, b)."""
    return {(t["a"], t["b"]): Difference(t["a"], t["b"], t["diff"], t["diff_low"], t["diff_high"], _stat(t))
            for t in tests}


def claim_lines(found: Sequence[Verdict]) -> list[str]:
    """One sentence per claim: `<claim> — <verdict> (<evidence>).`"""
    return [f"{v.claim} — {v.verdict} ({v.evidence})." for v in found]


# Caveats: what this run is, from its own reports ---------------------------------------------------------------


@dataclass(frozen=True)
class RunFacts:
    """The run behind the numbers. `model_*` come from `reports/prepare_model/metrics.json` (None when it is
    missing); `test_sources` are the `source` values of the compared test samples; `benchmarks` those compared."""

    model_source: str | None  # "tiny", a hub id or a local folder (params prepare_model.name_or_path)
    model_class: str | None
    parameters: int | None
    test_sources: tuple[str, ...]
    benchmarks: tuple[str, ...]

    @property
    def tiny(self) -> bool:
        return self.model_source == TINY_MODEL

    @property
    def embedded_task(self) -> bool:
        """Every test sample comes from curate_dataset's offline generators (the multi-seed study's setting)."""
        return bool(self.test_sources) and set(self.test_sources) <= set(GENERATED_SOURCES)


def count(n: int) -> str:
    """1276160 -> '1.3 M', 3754622976 -> '3.8 B'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            v = n / size
            return f"{v:.1f} {unit}" if v < 10 else f"{v:.0f} {unit}"
    return str(n)


def _task(run: RunFacts) -> str:
    if run.embedded_task:
        names = sorted(run.test_sources)
        return "an embedded synthetic task" if len(names) == 1 else f"embedded synthetic tasks ({', '.join(names)})"
    return f"test samples from {', '.join(sorted(run.test_sources)) or 'no named source'}"


def caveats(run: RunFacts, study: str | None = None) -> list[str]:
    """The "How far to trust this" bullets: the seeds behind each arm, then what model and data the numbers are on;
    `study`: the committed study of this testbed (`compare.study`), named when given."""
    if run.tiny and run.embedded_task:  # the multi-seed studies measured the seed spread for these tasks
        seeds = ("One training seed per arm, so the CIs above cover test-sample noise only, not training noise; on the "
                 "embedded tasks the spread between seeds has been as large as the gaps between methods (the first "
                 "task's SCALe-SFT: 0.571 to 0.974 over five seeds, `reports/study/study/`). A claim about SCALe needs "
                 "several seeds: see the multi-seed studies in `reports/study/`"
                 + (f" (this testbed: `reports/study/{study}/`)." if study else "."))
    else:
        seeds = ("One training seed per arm, so the CIs above cover test-sample noise only, not training noise. The "
                 "spread between seeds was measured for the tiny model on the embedded task only (`reports/study/`, "
                 "where it exceeded the gaps between methods); a claim about SCALe on this model and data needs "
                 "several seeds of it: `python -m flows.sweep sweeps/study.yaml` (README, multi-seed study).")
    benchmarks = f"; benchmarks compared: {', '.join(run.benchmarks)}" if run.benchmarks else ""
    if run.model_source is None:
        model = ("The base model is not described: `reports/prepare_model/metrics.json` is missing (run "
                 f"`dvc repro prepare_model`); tested on {_task(run)}{benchmarks}.")
    elif run.tiny:
        paper = "the paper's 3–7 B models" + ("" if run.benchmarks else " and benchmarks")
        size = f"~{count(run.parameters)}" if run.parameters is not None else "unknown"
        model = (f"A tiny model ({size} parameters) on {_task(run)}{benchmarks}, not {paper}; the pipeline is the "
                 "product here, the numbers are a smoke-level reproduction.")
    else:
        size = f"~{count(run.parameters)} parameters" if run.parameters is not None else "parameters unknown"
        model = (f"Base model `{run.model_source}` ({run.model_class}, {size}; the paper used 3–7 B models), "
                 f"tested on {_task(run)}{benchmarks}.")
    return [seeds, model]


# The README -------------------------------------------------------------------------------------------------------


def grpo_line(grpo: Mapping[str, Mapping[str, Any]] | None) -> str:
    """How each GRPO run ended: at the held-out plateau or at the max_steps cap, and which weights it kept."""
    if not grpo:
        return ""
    parts = []
    for init, g in grpo.items():
        if g.get("heldout_first") is None:
            continue
        end = (f"stopped at its held-out plateau after {g['steps']} steps" if g.get("stopped_at_plateau") else
               f"ran to the max_steps cap ({g['steps']} steps) without reaching a held-out plateau")
        kept = (f", kept the weights of step {g['restored_step']}" if g.get("restored_step") is not None else "")
        acc = (f" (held-out accuracy {_fmt(g.get('heldout_first'))} → best {_fmt(g.get('heldout_best'))} on "
               f"{g.get('heldout_records')} val samples)" if g.get("heldout_first") is not None else "")
        parts.append(f"{init}: {end}{kept}{acc}")
    return "- GRPO " + "; ".join(parts) + "." if parts else ""


def readme(table: Table, tests: Tests, claim_text: Sequence[str], metrics: Mapping[str, Mapping[str, Any]],
           times: Mapping[str, float | None], ratio: float | None, alpha: float, chance: float | None,
           run: RunFacts, grpo: Mapping[str, Mapping[str, Any]] | None = None, seed_level: str | None = None,
           study: str | None = None) -> str:
    """The compare README; `seed_level`: the claim verdicts (markdown) of the committed multi-seed study `study`,
    quoted after this run's."""
    best = max(table, key=lambda arm: table[arm]["accuracy"])
    n = next(iter(table.values()))["n"]
    grpo_cost = [f"{m}: {_fmt(times.get(f'grpo-only-{m}'), 1)} s" for m in INITS]  # compare.training_times
    base = (grpo or {}).get("vanilla") or {}  # the GRPO run in the ratio: the one from vanilla SFT
    why_ratio = ("GRPO from vanilla SFT hit its max_steps cap before its held-out plateau, so the ratio understates "
                 "what GRPO to a plateau costs" if base.get("heldout_first") is not None
                 and not base.get("stopped_at_plateau")
                 else "GRPO from vanilla SFT ran until its held-out accuracy plateaued"
                 if base.get("heldout_first") is not None
                 else "GRPO's held-out curve is not in its report")
    lines = [
        "# Comparison of the four arms", "",
        "Generated by `stages/compare.py` from `reports/evaluate/*` and the training reports; do not edit by hand.", "",
        f"Test samples: {n} (the same samples for every arm, paired by id). Highest accuracy: **{best}** "
        f"({_fmt(table[best]['accuracy'])}). Chance (always the most frequent training answer): {_fmt(chance)}. "
        f"Tests at α = {alpha}.", "",
        "## The paper's claims, checked on this run", "",
        "The rules (`scalevlm.claims`, the same as the multi-seed studies'): a claim is supported when the 95% "
        "interval of the difference lies on its side, contradicted on the other side, undecided when it holds 0; claim "
        "2 needs accuracy within the non-inferiority margin and a time ratio at most the declared fraction; a tie is "
        "not best.",
        "", *claim_text, "",
        "One training seed cannot settle a claim about a method: the verdicts over several seeds (supported / "
        "contradicted / undecided at n seeds) come from the multi-seed studies, `reports/study/<name>/table.md` "
        "(`python -m flows.sweep sweeps/study.yaml`; the README summarises them)"
        + (", quoted below." if seed_level else "."), "",
        *([seed_level.strip(), ""] if seed_level else []),
        "## Table", "", markdown_table(table, tests, ratio), *(["The paper's metrics per arm (think correctness and "
        "consistency from the records' `think_fact`; CE teacher-forced on the reference completions of the test "
        "samples):",
        "", paper_table(table)] if paper_table(table) else []),
        "Format failures by the segment rule's reason (shares of the test samples), and outputs that had not opened "
        "`<answer>` within each generation budget:", "", format_table(table), "Accuracy per source:", "",
        source_table(metrics),
        "## Paired tests", "", *[f"- {verdict(t, alpha)}" for t in tests], "",
        "## Training cost", "",
        f"- SFT: vanilla {_fmt(times.get(SFT_VANILLA), 1)} s, SCALe {_fmt(times.get(SFT_SCALE), 1)} s; "
        f"GRPO on top: {', '.join(grpo_cost)}.",
        *([grpo_line(grpo)] if grpo_line(grpo) else []),
        f"- SCALe-SFT time / (vanilla SFT + GRPO time) = {_fmt(ratio, 2)} (the paper reports about 1/7; {why_ratio}).",
        "", "## How far to trust this", "", *[f"- {c}" for c in caveats(run, study)],
        "", "Plots: `plots/accuracy_by_arm.png`, `plots/think_length.png`, `plots/scale_schedule.png`.", "",
    ]
    return "\n".join(lines)
