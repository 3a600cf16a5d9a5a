"""Multi-seed study and ablation reports from `dvc exp show --json`.

The experiments DVC ran are the only input, so every number in `reports/study/<name>/` can be traced to an
experiment (`dvc exp show`). Per grid setting and arm: accuracy over seeds (mean, SD, 95% t-interval); between
arms trained with the same seeds: paired per-seed differences with a paired t-test and an exact sign-flip test.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scalevlm.core.seeds import grid_keys, is_experiment_of, paired_over_seeds, summarise
from scalevlm.facts import ARMS, EVALUATE, METHOD_PAIRS, METRICS, REPORTS, TRAIN_GRPO, TRAIN_SFT
from scalevlm.runtime import write_json

PAIRS = METHOD_PAIRS  # seed-level comparisons of the methods (what GRPO adds is compare's per-run question)
# evaluate's metrics aggregated beside accuracy (when the experiments have them): the paper's view of each arm
PAPER_METRICS = ("missing_answer_rate", "think_correct_rate", "p_answer_given_think_correct",
                 "answer_think_consistency", "think_verbosity", "reference_answer_ce")
CLAIM_ARM = "grpo-scale"
NONINFERIORITY = 0.03  # claim 2 ("matches"): SCALe-SFT at most 3 points below vanilla SFT + GRPO (the paper's scale)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping → one level with dotted keys (`{"a": {"b": 1}}` → `{"a.b": 1}`)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _walk(shown: Any) -> Iterator[dict[str, Any]]:
    """Every revision entry (baseline, experiments) in the nested `dvc exp show --json` structure."""
    if isinstance(shown, list):
        for item in shown:
            yield from _walk(item)
    elif isinstance(shown, dict):
        if "data" in shown and isinstance(shown["data"], dict) and "name" in shown:
            yield shown
        for key in ("experiments", "revs"):
            if shown.get(key):
                yield from _walk(shown[key])


def experiment_rows(shown: Any, prefix: str) -> list[dict[str, Any]]:
    """One row per experiment of the sweep `prefix` (`<prefix>-<index>-s<seed>`): flat params and each arm's
    evaluation metrics."""
    rows = []
    for entry in _walk(shown):
        name = entry.get("name") or ""
        if not is_experiment_of(name, prefix):
            continue
        data = entry["data"]
        params = flatten((data.get("params") or {}).get("params.yaml", {}).get("data", {}))
        arms, train = {}, {}
        for path, blob in (data.get("metrics") or {}).items():
            parts = Path(path).parts
            if len(parts) == 4 and parts[:2] == (REPORTS.name, EVALUATE) and parts[3] == METRICS:
                arms[parts[2]] = blob.get("data", {})
            elif len(parts) == 4 and parts[0] == REPORTS.name and parts[1] in (TRAIN_SFT, TRAIN_GRPO) and parts[3] == METRICS:
                train[f"{parts[1]}/{parts[2]}"] = (blob.get("data") or {}).get("wall_time_s")
        rows.append({"name": name, "params": params, "arms": arms, "train_wall_s": train})
    return sorted(rows, key=lambda r: r["name"])


def arms_in_scope(spec: dict[str, Any]) -> tuple[str, ...]:
    """Arms an experiment of this sweep actually re-evaluated: all four without targets, else the evaluated ones.

    An experiment that reproduces only some stages still carries the workspace's metrics files of the others;
    those numbers belong to the baseline, not to the experiment, and must not be aggregated as if they did.
    """
    targets = list(spec.get("targets") or [])
    if not targets:
        return ARMS
    return tuple(a for a in ARMS if f"evaluate@{a}" in targets)


def aggregate(spec: dict[str, Any], rows: list[dict[str, Any]], metric: str = "accuracy") -> dict[str, Any]:
    """Per setting: per-arm seed summaries, per-seed values, and the paired comparisons (arms in scope only)."""
    scope = arms_in_scope(spec)
    seed_key = spec["seed_params"][0]
    keys = grid_keys(spec["grid"])
    by_setting: dict[tuple, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        setting = tuple((k, row["params"].get(k)) for k in keys)
        seed = int(row["params"][seed_key])
        for arm, metrics in row["arms"].items():
            if arm in scope and metric in metrics:
                by_setting[setting][arm][seed] = float(metrics[metric])
    settings = []
    for setting, arms in sorted(by_setting.items(), key=lambda kv: json.dumps(kv[0])):
        summary = {arm: summarise(list(v.values())).to_dict() for arm, v in sorted(arms.items())}
        paired = {f"{a} - {b}": paired_over_seeds(arms[a], arms[b]).to_dict() for a, b in PAIRS if a in arms and b in arms}
        settings.append({"setting": dict(setting), "per_seed": {a: dict(sorted(v.items())) for a, v in sorted(arms.items())},
                         "summary": summary, "paired": paired})
    return {"metric": metric, "arms": list(scope), "experiments": [r["name"] for r in rows], "settings": settings}


def time_ratios(spec: dict[str, Any], rows: list[dict[str, Any]]) -> dict[int, float]:
    """Per seed: SCALe-SFT wall time / (vanilla SFT + GRPO-from-vanilla wall time), where an experiment has all three."""
    seed_key = spec["seed_params"][0]
    out = {}
    for row in rows:
        t = row.get("train_wall_s", {})
        s, v, g = t.get(f"{TRAIN_SFT}/scale"), t.get(f"{TRAIN_SFT}/vanilla"), t.get(f"{TRAIN_GRPO}/vanilla")
        if None not in (s, v, g) and v + g > 0:
            out[int(row["params"][seed_key])] = s / (v + g)
    return dict(sorted(out.items()))


def _direction(p: dict[str, Any], higher_is_better: bool = True) -> int:
    """+1 when the 95% t-interval of the paired differences lies above 0 (in the better direction), -1 below, 0 else."""
    low, high = (p["low"], p["high"]) if higher_is_better else (-p["high"], -p["low"])
    return 1 if low > 0 else (-1 if high < 0 else 0)


def claim_verdicts(result: dict[str, Any], ratios: dict[int, float]) -> list[dict[str, str]]:
    """The paper's four claims at seed level (default-settings block), each supported / contradicted / undecided.

    The decision is the 95% t-interval of the per-seed paired differences (with 5 seeds the exact sign-flip test
    cannot go below 2/32 = 0.0625, so it is reported, not used to decide)."""
    block = next((b for b in result["settings"] if not b["setting"]), None)
    if block is None or not {"sft-vanilla", "sft-scale"} <= set(block["per_seed"]):
        return []
    acc = block["per_seed"]
    n = len(acc["sft-scale"])
    pair = lambda a, b, per=acc: paired_over_seeds(per[a], per[b]).to_dict()  # noqa: E731
    verdicts = []
    p1 = pair("sft-scale", "sft-vanilla")
    d1 = _direction(p1)
    verdicts.append({"claim": "1. SCALe-SFT beats vanilla SFT",
                     "verdict": {1: "supported", -1: "contradicted"}.get(d1, f"undecided at {n} seeds"), "evidence": _diff(p1)})
    if "grpo-vanilla" in acc:
        p2 = pair("sft-scale", "grpo-vanilla")
        ratio = summarise(list(ratios.values())).to_dict() if ratios else None
        if p2["low"] >= -NONINFERIORITY:
            v2 = f"supported on accuracy (not more than {NONINFERIORITY:.2f} worse)"
        elif p2["high"] < -NONINFERIORITY:
            v2 = f"contradicted: SCALe-SFT is more than {NONINFERIORITY:.2f} less accurate than vanilla SFT + GRPO"
        else:
            v2 = f"undecided at {n} seeds"
        cost = f"; time ratio {ratio['mean']:.2f} [{ratio['low']:.2f}, {ratio['high']:.2f}] over {ratio['n']} seeds (paper: ~1/7)" if ratio else ""
        verdicts.append({"claim": "2. SCALe-SFT matches vanilla SFT + GRPO at a fraction of the training time",
                         "verdict": v2, "evidence": _diff(p2) + cost})
    if CLAIM_ARM in acc:
        others = [a for a in acc if a != CLAIM_ARM]
        ps = {a: pair(CLAIM_ARM, a) for a in others}
        ds = {a: _direction(p) for a, p in ps.items()}
        v3 = ("supported" if all(d == 1 for d in ds.values()) else
              "contradicted: " + ", ".join(a for a, d in ds.items() if d == -1) + " more accurate" if any(d == -1 for d in ds.values())
              else f"undecided at {n} seeds")
        verdicts.append({"claim": "3. SCALe + GRPO is the best arm", "verdict": v3,
                         "evidence": "; ".join(f"vs {a}: {_diff(p)}" for a, p in ps.items())})
    missing = result.get("other_metrics", {}).get("missing_answer_rate")
    mblock = next((b for b in (missing or {}).get("settings", []) if not b["setting"]), None)
    if mblock and {"sft-scale", "sft-vanilla"} <= set(mblock["per_seed"]):
        p4 = paired_over_seeds(mblock["per_seed"]["sft-scale"], mblock["per_seed"]["sft-vanilla"]).to_dict()
        d4 = _direction(p4, higher_is_better=False)
        never = not any(mblock["per_seed"]["sft-scale"].values()) and not any(mblock["per_seed"]["sft-vanilla"].values())
        verdicts.append({"claim": "4. SCALe-SFT leaves fewer outputs without <answer> than vanilla SFT",
                         "verdict": "not testable here: neither arm misses it on any seed" if never else
                         {1: "supported", -1: "contradicted"}.get(d4, f"undecided at {n} seeds"),
                         "evidence": "missing-rate " + _diff(p4)})
    return verdicts


def _diff(p: dict[str, Any]) -> str:
    return (f"Δ {p['mean_diff']:+.3f} [95% CI {p['low']:+.3f}, {p['high']:+.3f}], {p['wins']}/{p['losses']} seeds, "
            f"p(t) {p['p_ttest']:.3f}, p(sign-flip) {p['p_permutation']:.3f}")


def _fmt(s: dict[str, Any]) -> str:
    return f"{s['mean']:.3f} ± {s['sd']:.3f} [{s['low']:.3f}, {s['high']:.3f}] (n={s['n']})"


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Metric: {result['metric']} on the test split; mean ± SD over training seeds, [95% t-interval].", ""]
    for block in result["settings"]:
        title = ", ".join(f"{k}={v}" for k, v in block["setting"].items()) or "default settings"
        lines += [f"### {title}", "", "| arm | over seeds | per seed |", "|---|---|---|"]
        for arm, s in block["summary"].items():
            per_seed = ", ".join(f"s{k}: {v:.3f}" for k, v in block["per_seed"][arm].items())
            lines.append(f"| {arm} | {_fmt(s)} | {per_seed} |")
        if block["paired"]:
            lines += ["", "| paired (same seeds) | mean diff [95% CI] | wins/losses | p (t) | p (sign-flip, exact) |",
                      "|---|---|---|---|---|"]
            for pair, p in block["paired"].items():
                lines.append(f"| {pair} | {p['mean_diff']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}] | "
                             f"{p['wins']}/{p['losses']} | {p['p_ttest']:.3f} | {p['p_permutation']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def study_result(spec: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy per setting and arm over seeds, the paper's other metrics the same way, time ratios, claim verdicts."""
    result = aggregate(spec, rows)
    others = {m: aggregate(spec, rows, m) for m in PAPER_METRICS}
    result["other_metrics"] = {m: r for m, r in others.items() if any(b["per_seed"] for b in r["settings"])}
    ratios = time_ratios(spec, rows)
    result["time_ratio_scale_sft_over_sft_plus_grpo"] = {str(k): v for k, v in ratios.items()}
    result["claims"] = claim_verdicts(result, ratios)
    return json.loads(json.dumps(result))  # the JSON form (seed keys as strings), as study.json holds it


def study_markdown(result: dict[str, Any]) -> str:
    return markdown(result) + "".join(f"\n## {metric}\n\n" + markdown(r) for metric, r in result["other_metrics"].items()) \
        + claims_markdown(result)


def claims_markdown(result: dict[str, Any]) -> str:
    if not result.get("claims"):
        return ""
    lines = ["", "## The paper's claims at seed level", "",
             "Decided by the 95% t-interval of the per-seed paired differences (supported / contradicted when it excludes 0;"
             f" claim 2: non-inferiority margin {NONINFERIORITY:.2f}).", ""]
    lines += [f"- **{c['claim']}** — {c['verdict']} ({c['evidence']})." for c in result["claims"]]
    ratios = result.get("time_ratio_scale_sft_over_sft_plus_grpo") or {}
    if ratios:
        lines += ["", "SCALe-SFT time / (vanilla SFT + GRPO time) per seed: " + ", ".join(f"s{k}: {v:.2f}" for k, v in ratios.items())]
    return "\n".join(lines) + "\n"


def plot_ablation(result: dict[str, Any], x_key: str, group_key: str | None, arm: str, path: Path) -> None:
    """Accuracy of `arm` vs `x_key`, one line per `group_key` value, with 95% seed intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[Any, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    for block in result["settings"]:
        if arm in block["summary"] and x_key in block["setting"]:
            groups[block["setting"].get(group_key) if group_key else arm].append((block["setting"][x_key], block["summary"][arm]))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for group, points in sorted(groups.items(), key=lambda kv: str(kv[0])):
        points.sort(key=lambda p: p[0])
        xs = [p[0] for p in points]
        means = [p[1]["mean"] for p in points]
        err = [[max(0.0, m - p[1]["low"]) for m, p in zip(means, points)], [max(0.0, p[1]["high"] - m) for m, p in zip(means, points)]]
        ax.errorbar(xs, means, yerr=err, marker="o", capsize=3, label=str(group))
    ax.set_xlabel(x_key)
    ax.set_ylabel(f"{arm} {result['metric']}")
    ax.set_ylim(0, 1.05)
    ax.legend(title=group_key or "arm", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sweep_entries(shown: Any, prefix: str) -> list[dict[str, Any]]:
    """The sweep's experiments exactly as `dvc exp show --json` gave them, minus dep/out hashes (kept with the
    report: experiment refs are local to the repository that ran them, this file travels with the commit)."""
    keep = []
    for entry in _walk(shown):
        if is_experiment_of(entry.get("name") or "", prefix):
            data = {k: v for k, v in entry["data"].items() if k not in ("deps", "outs")}
            keep.append({"rev": entry.get("rev"), "name": entry["name"], "data": data})
    return sorted(keep, key=lambda e: e["name"])


def write_report(spec: dict[str, Any], shown: Any, out_dir: Path) -> Path:
    """Write `exp_show.json` (the sweep's raw experiments), `study.json`, `table.md` and the ablation plot."""
    entries = sweep_entries(shown, spec["name"])
    rows = experiment_rows(entries, spec["name"])
    if not rows:
        raise ValueError(f"`dvc exp show` has no experiments named '{spec['name']}-…': run the sweep first")
    result = study_result(spec, rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "spec.json", spec)
    write_json(out_dir / "exp_show.json", entries)
    write_json(out_dir / "study.json", result)
    (out_dir / "table.md").write_text(study_markdown(result))
    x_key = next((k for k in sorted(spec["grid"] or {}) if k.endswith("w_end")), None) if isinstance(spec["grid"], dict) else None
    if x_key:
        group = next((k for k in sorted(spec["grid"]) if k.endswith("schedule")), None)
        plot_ablation(result, x_key, group, "sft-scale", out_dir / "ablation.png")
    return out_dir
