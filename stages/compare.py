"""compare: the paper's table for this run — four arms, bootstrap CIs, paired tests, training time, plots.

deps:  reports/evaluate/<arm>/{metrics.json,predictions.jsonl,benchmarks/} for every arm,
       reports/train_sft/<method>/metrics.json and dvclive/ (curves), reports/train_grpo/<init>/metrics.json,
       params.yaml[compare]
outs:  reports/compare/{metrics.json, table.md, README.md, plots/*.png}
cmd:   python -m stages.compare

Arms are compared on the same test samples (paired by id): the accuracy difference with its paired bootstrap CI,
the paired bootstrap and sign-flip permutation p-values, and the exact McNemar test on the 0/1 outcomes.
Training time per arm is what it cost to produce it: SFT wall time, plus GRPO wall time for the GRPO arms.
Everything random draws from one `np.random.Generator(seed)`; reruns give the same bytes (plots aside).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from scalevlm.benchmarks.report import compare_benchmarks
from scalevlm.benchmarks.report import markdown as benchmark_markdown
from scalevlm.config import Checked, NonNegativeInt, PositiveInt, Range
from scalevlm.core.stats import bootstrap_ci, compare_paired
from scalevlm.facts import (
    ARMS,
    CLAIM_PAIRS,
    COMPARE_REPORT,
    CURVES,
    INITS,
    METHODS,
    METRICS,
    PAIRS,
    PREDICTIONS,
    TRAIN_GRPO,
    TRAIN_SFT,
    eval_report,
    report_dir,
)
from scalevlm.guard import atomic_dir
from scalevlm.records import read_jsonl
from scalevlm.runtime import stage_main, write_json

NAME = "compare"
log = logging.getLogger(NAME)


@dataclass(frozen=True)
class Config(Checked):
    n_resamples: PositiveInt
    seed: NonNegativeInt
    alpha: Annotated[float, Range(gt=0, lt=1)]  # the arms and the pairs compared are facts (scalevlm.facts)


# Inputs -----------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run the stage that writes it first (dvc repro {NAME} runs them)")
    return json.loads(path.read_text(encoding="utf-8"))


def _wall_time(metrics: dict[str, Any]) -> float | None:
    """`wall_time_s` of a train stage's metrics.json (both train stages write it), None when absent."""
    value = metrics.get("wall_time_s")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def load_arms(root: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
    """(metrics by arm, predictions by arm keyed by sample id)."""
    metrics, preds = {}, {}
    for arm in ARMS:
        folder = root / eval_report(arm)
        metrics[arm] = _read_json(folder / METRICS)
        preds[arm] = {row["id"]: row for _, row in read_jsonl(folder / PREDICTIONS)}
    return metrics, preds


def training_times(root: Path) -> dict[str, float | None]:
    """Wall time per arm: SFT for sft-*, SFT + GRPO (from that SFT model) for grpo-*; None if unknown."""
    sft = {m: _wall_time(_read_json(root / report_dir(TRAIN_SFT, m) / METRICS)) for m in METHODS}
    grpo = {m: _wall_time(_read_json(root / report_dir(TRAIN_GRPO, m) / METRICS)) for m in INITS}
    times: dict[str, float | None] = {}
    for method in METHODS:
        times[f"sft-{method}"] = sft[method]
        s, g = sft[method], grpo[method]
        times[f"grpo-{method}"] = s + g if s is not None and g is not None else None
        times[f"grpo-only-{method}"] = g
    return times


def read_curves(report: Path) -> dict[str, tuple[list[float], list[float]]]:
    """Every DVCLive scalar series under the report folder's `dvclive/plots/metrics` as name -> (steps, values)."""
    curves: dict[str, tuple[list[float], list[float]]] = {}
    base = report / CURVES
    for tsv in sorted(base.rglob("*.tsv")) if base.is_dir() else []:
        with tsv.open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        column = tsv.stem
        if rows and column in rows[0]:
            curves[tsv.relative_to(base).with_suffix("").as_posix()] = (
                [float(r["step"]) for r in rows], [float(r[column]) for r in rows])
    return curves


# The table --------------------------------------------------------------------------------------------------


def arm_table(metrics: dict[str, dict[str, Any]], preds: dict[str, dict[str, dict[str, Any]]], ids: list[str],
              times: dict[str, float | None], rng: np.random.Generator, n_resamples: int) -> dict[str, dict[str, Any]]:
    table = {}
    for arm in ARMS:
        correct = [float(preds[arm][i]["correct"]) for i in ids]
        fmt = [float(preds[arm][i]["format_ok"]) for i in ids]
        acc, lo, hi = bootstrap_ci(correct, rng, n_resamples)
        f, flo, fhi = bootstrap_ci(fmt, rng, n_resamples)
        m = metrics[arm]
        table[arm] = {
            "n": len(ids), "accuracy": acc, "accuracy_low": lo, "accuracy_high": hi,
            "format_compliance": f, "format_low": flo, "format_high": fhi,
            "answer_parse_rate": m.get("answer_parse_rate"), "missing_answer_rate": m.get("missing_answer_rate"),
            "think_tokens_mean": m.get("think_tokens_mean"), "answer_tokens_mean": m.get("answer_tokens_mean"),
            "train_time_s": times.get(arm),
        }
    return table


def paired_tests(preds: dict[str, dict[str, dict[str, Any]]], ids: list[str], pairs: tuple[tuple[str, str], ...],
                 rng: np.random.Generator, n_resamples: int) -> list[dict[str, Any]]:
    out = []
    for arm_a, arm_b in pairs:
        a = [float(preds[arm_a][i]["correct"]) for i in ids]
        b = [float(preds[arm_b][i]["correct"]) for i in ids]
        out.append({"a": arm_a, "b": arm_b, **compare_paired(a, b, rng, n_resamples).to_dict()})
    return out


def majority_baseline(root: Path, ids: list[str]) -> float | None:
    """Chance level: accuracy of always answering the most frequent training answer, on the compared samples."""
    from scalevlm.validation import load_split

    try:
        train, test = load_split(root, "train"), load_split(root, "test")
    except FileNotFoundError:
        return None
    if not train:
        return None
    majority = Counter(r.answer for r in train).most_common(1)[0][0]
    wanted = set(ids)
    answers = [r.answer for r in test if r.id in wanted]
    return sum(a == majority for a in answers) / len(answers) if answers else None


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown_table(table: dict[str, dict[str, Any]], tests: list[dict[str, Any]], ratio: float | None) -> str:
    lines = [
        "| arm | accuracy [95% CI] | format compliance | answer parse | mean think tokens | train time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for arm, r in table.items():
        lines.append(
            f"| {arm} | {_fmt(r['accuracy'])} [{_fmt(r['accuracy_low'])}, {_fmt(r['accuracy_high'])}] | "
            f"{_fmt(r['format_compliance'])} | {_fmt(r['answer_parse_rate'])} | {_fmt(r['think_tokens_mean'], 1)} | "
            f"{_fmt(r['train_time_s'], 1)} |")
    lines += ["", "| comparison | Δ accuracy [95% CI] | p (bootstrap) | p (permutation) | p (McNemar) | a-only / b-only |",
              "|---|---|---|---|---|---|"]
    for t in tests:
        lines.append(
            f"| {t['a']} vs {t['b']} | {_fmt(t['diff'])} [{_fmt(t['diff_low'])}, {_fmt(t['diff_high'])}] | "
            f"{_fmt(t['p_bootstrap'], 4)} | {_fmt(t['p_permutation'], 4)} | {_fmt(t['p_mcnemar'], 4)} | "
            f"{t['a_only']} / {t['b_only']} |")
    lines += ["", f"SCALe-SFT time / (vanilla SFT + GRPO time): {_fmt(ratio)}"]
    return "\n".join(lines) + "\n"


# The README: statements generated from the numbers -------------------------------------------------------------


def _p(t: dict[str, Any]) -> float:
    """The test a verdict uses: exact McNemar for 0/1 outcomes, else the permutation test."""
    return t["p_mcnemar"] if t["p_mcnemar"] is not None else t["p_permutation"]


def _stat(t: dict[str, Any]) -> str:
    return f"Δ = {_fmt(t['diff'])}, 95% CI [{_fmt(t['diff_low'])}, {_fmt(t['diff_high'])}], p = {_fmt(_p(t), 4)}"


def _verdict(t: dict[str, Any], alpha: float) -> str:
    if _p(t) < alpha and t["diff"] != 0:
        word = "more" if t["diff"] > 0 else "*less*"
        return f"**{t['a']}** is {word} accurate than **{t['b']}** ({_stat(t)})."
    return f"**{t['a']}** and **{t['b']}** are not distinguishable on this test set ({_stat(t)})."


def claims(table: dict[str, dict[str, Any]], by_pair: dict[tuple[str, str], dict[str, Any]], ratio: float | None,
           alpha: float) -> list[str]:
    """The paper's three claims, each checked against this run's numbers (a sentence per claim)."""
    sig = lambda a, b: _p(by_pair[(a, b)]) < alpha  # noqa: E731
    t1 = by_pair[("sft-scale", "sft-vanilla")]
    c1 = "holds" if sig("sft-scale", "sft-vanilla") and t1["diff"] > 0 else (
        "contradicted: SCALe-SFT is less accurate" if sig("sft-scale", "sft-vanilla") else "not supported: no significant difference")
    t2 = by_pair[("sft-scale", "grpo-vanilla")]
    worse = sig("sft-scale", "grpo-vanilla") and t2["diff"] < 0
    cost = f"time ratio {_fmt(ratio, 2)}; the paper reports about 1/7" if ratio is not None else "training times missing"
    c2 = "does not hold: SCALe-SFT is less accurate" if worse else "holds on accuracy: SCALe-SFT is not worse"
    others = [a for a in ARMS if a != "grpo-scale"]
    best = all(table["grpo-scale"]["accuracy"] >= table[a]["accuracy"] for a in others)
    c3 = ("holds" if best and all(sig("grpo-scale", a) for a in others) else
          "holds only nominally: highest, but not significantly" if best else "does not hold: another arm is more accurate")
    return [
        f"1. SCALe-SFT beats vanilla SFT — {c1} ({_stat(t1)}).",
        f"2. SCALe-SFT matches vanilla SFT + GRPO at a fraction of the cost — {c2} ({_stat(t2)}; {cost}).",
        f"3. SCALe + GRPO is the best arm — {c3} (grpo-scale {_fmt(table['grpo-scale']['accuracy'])}, "
        f"best other {_fmt(max(table[a]['accuracy'] for a in others))}).",
    ]


def source_table(metrics: dict[str, dict[str, Any]]) -> str:
    sources = sorted({s for m in metrics.values() for s in m.get("by_source", {})})
    lines = ["| arm | " + " | ".join(f"{s} accuracy" for s in sources) + " |", "|---|" + "---|" * len(sources)]
    for arm in ARMS:
        by = metrics[arm].get("by_source", {})
        lines.append(f"| {arm} | " + " | ".join(_fmt(by.get(s, {}).get("accuracy")) for s in sources) + " |")
    return "\n".join(lines) + "\n"


def readme(table: dict[str, dict[str, Any]], tests: list[dict[str, Any]], claim_lines: list[str],
           metrics: dict[str, dict[str, Any]], times: dict[str, float | None], ratio: float | None, alpha: float,
           chance: float | None) -> str:
    best = max(table, key=lambda arm: table[arm]["accuracy"])
    n = next(iter(table.values()))["n"]
    grpo_cost = [f"{m}: {_fmt(times.get(f'grpo-only-{m}'), 1)} s" for m in INITS]
    lines = [
        "# Comparison of the four arms", "",
        "Generated by `stages/compare.py` from `reports/evaluate/*` and the training reports; do not edit by hand.", "",
        f"Test samples: {n} (the same samples for every arm, paired by id). Highest accuracy: **{best}** "
        f"({_fmt(table[best]['accuracy'])}). Chance (always the most frequent training answer): {_fmt(chance)}. "
        f"Tests at α = {alpha}.", "",
        "## The paper's claims, checked on this run", "", *claim_lines, "",
        "## Table", "", markdown_table(table, tests, ratio), "Accuracy per source:", "", source_table(metrics),
        "## Paired tests", "", *[f"- {_verdict(t, alpha)}" for t in tests], "",
        "## Training cost", "",
        f"- SFT: vanilla {_fmt(times.get('sft-vanilla'), 1)} s, SCALe {_fmt(times.get('sft-scale'), 1)} s; "
        f"GRPO on top: {', '.join(grpo_cost)}.",
        f"- SCALe-SFT time / (vanilla SFT + GRPO time) = {_fmt(ratio, 2)} (the paper reports about 1/7; here GRPO is "
        "kept short to fit a CPU budget, so the ratio says little about the paper's setting).",
        "", "## How far to trust this", "",
        "- One training seed per arm. On these tasks the spread between seeds was larger than the gaps between "
        "methods (SCALe-SFT: 0.571 to 0.974 over five seeds, `reports/study/study/table.md`), so the CIs above "
        "cover test-sample noise only, not training noise. A claim about SCALe needs several seeds: see the "
        "multi-seed study in `reports/study/`.",
        "- A tiny model (~1 M parameters) on an embedded synthetic task, not the paper's 3–7 B models and "
        "benchmarks; the pipeline is the product here, the numbers are a smoke-level reproduction.",
        "", "Plots: `plots/accuracy_by_arm.png`, `plots/think_length.png`, `plots/scale_schedule.png`.", "",
    ]
    return "\n".join(lines)


# Plots ----------------------------------------------------------------------------------------------------------


def plot_all(out: Path, table: dict[str, dict[str, Any]], preds: dict[str, dict[str, dict[str, Any]]], ids: list[str],
             curves: dict[str, dict[str, tuple[list[float], list[float]]]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    accs = [table[a]["accuracy"] for a in ARMS]
    err = [[max(0.0, accs[i] - table[a]["accuracy_low"]) for i, a in enumerate(ARMS)],
           [max(0.0, table[a]["accuracy_high"] - accs[i]) for i, a in enumerate(ARMS)]]
    ax.bar(ARMS, accs, yerr=err, capsize=6, color=["#9bb", "#4a8", "#bb9", "#a84"])
    ax.set(ylabel="test accuracy (95% bootstrap CI)", ylim=(0, 1), title="Accuracy by arm")
    fig.tight_layout()
    fig.savefig(out / "accuracy_by_arm.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    lengths = {a: [float(preds[a][i]["think_tokens"]) for i in ids] for a in ARMS}
    values = [v for arm in lengths.values() for v in arm]
    bins = np.linspace(min(values), max(values) + 1, 40)
    for arm, arm_lengths in lengths.items():
        ax.hist(arm_lengths, bins=bins, histtype="step", linewidth=1.5, label=arm)
    ax.set(xlabel="think tokens per completion", ylabel="test samples", title="Generated think length")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "think_length.png", dpi=100)
    plt.close(fig)

    fig, (ax_w, ax_l) = plt.subplots(1, 2, figsize=(10, 3.5))
    for method, series in curves.items():
        seen: set[str] = set()
        for key, (steps, values) in sorted(series.items(), key=lambda kv: (kv[0].count("/"), kv[0])):
            leaf = key.rsplit("/", 1)[-1]
            if leaf in seen:  # the same scalar logged under two prefixes (e.g. loss and train/loss)
                continue
            seen.add(leaf)
            if leaf in ("w_think", "w_ans"):
                ax_w.plot(steps, values, label=f"{method} {leaf}")
            elif leaf in ("loss", "loss_think", "loss_answer"):
                ax_l.plot(steps, values, label=f"{method} {leaf}")
    ax_w.set(xlabel="step", ylabel="weight", title="SCALe weight schedule")
    ax_l.set(xlabel="step", ylabel="loss", title="SFT loss curves", yscale="log")
    for ax in (ax_w, ax_l):
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no DVCLive curves found", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(out / "scale_schedule.png", dpi=100)
    plt.close(fig)
    return ["accuracy_by_arm.png", "think_length.png", "scale_schedule.png"]


# Stage ------------------------------------------------------------------------------------------------------


def run(cfg: Config, root: Path) -> dict[str, Any]:
    metrics, preds = load_arms(root)
    ids = sorted(set.intersection(*(set(p) for p in preds.values())))
    dropped = {arm: len(p) - len(ids) for arm, p in preds.items() if len(p) != len(ids)}
    if dropped:
        log.warning("samples not present in every arm are left out of the paired comparison: %s", dropped)
    if not ids:
        raise ValueError("the arms share no test sample ids; evaluate them on the same test split")
    rng = np.random.default_rng(cfg.seed)
    times = training_times(root)
    table = arm_table(metrics, preds, ids, times, rng, cfg.n_resamples)
    tests = paired_tests(preds, ids, PAIRS, rng, cfg.n_resamples)
    by_pair = {(t["a"], t["b"]): t for t in tests}
    missing = tuple(pair for pair in CLAIM_PAIRS if pair not in by_pair)  # claims need them; the table does not
    by_pair.update({(t["a"], t["b"]): t for t in paired_tests(preds, ids, missing, rng, cfg.n_resamples)})
    s, v = times.get("sft-scale"), times.get("grpo-vanilla")
    ratio = s / v if s is not None and v else None
    out = root / COMPARE_REPORT
    curves = {m: read_curves(root / report_dir(TRAIN_SFT, m)) for m in METHODS}
    claim_lines = claims(table, by_pair, ratio, cfg.alpha)
    chance = majority_baseline(root, ids)
    summary = {"n": len(ids), "chance_majority_answer": chance, "arms": table, "tests": tests, "claims": claim_lines, "train_time_s": times,
               "time_ratio_scale_sft_over_sft_plus_grpo": ratio, "left_out_samples": dropped}
    bench = compare_benchmarks(root, cfg.seed, cfg.n_resamples)  # ScienceQA/IconQA rows; {} when none were evaluated
    if bench:
        summary["benchmarks"] = bench
    with atomic_dir(out) as staging:  # the previous report stays whole until this one is
        plots = plot_all(staging / "plots", table, preds, ids, curves)
        write_json(staging / METRICS, summary)
        (staging / "table.md").write_text(markdown_table(table, tests, ratio) + benchmark_markdown(bench), encoding="utf-8")
        (staging / "README.md").write_text(readme(table, tests, claim_lines, metrics, times, ratio, cfg.alpha, chance)
                                           + benchmark_markdown(bench), encoding="utf-8")
    log.info("compared %d arms on %d samples; plots %s", len(ARMS), len(ids), plots)
    return {"n": len(ids), "accuracy": {a: table[a]["accuracy"] for a in ARMS}, "time_ratio": ratio}


def main(argv: list[str] | None = None) -> int:
    return stage_main(NAME, Config, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
