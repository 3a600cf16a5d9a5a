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

from scalevlm.claims import COST_FRACTION, NONINFERIORITY, Difference, Interval, verdicts
from scalevlm.core.seeds import grid_keys, is_experiment_of, paired_over_seeds, summarise
from scalevlm.facts import (
    ARMS,
    CLAIM_PAIRS,
    EVALUATE,
    METHOD_PAIRS,
    METRICS,
    MISSING_PAIR,
    REPORTS,
    SEED_METRICS,
    SFT_SCALE,
    TIME_RATIO,
    TRAIN_GRPO,
    TRAIN_SFT,
    arm_parts,
)
from scalevlm.runtime import write_json

PAIRS = METHOD_PAIRS  # seed-level comparisons of the methods (what GRPO adds is compare's per-run question)


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
        if (shown.get("executor") or {}).get("state", "success") != "success":
            return  # queued, running or failed: its metrics are the workspace's, not the experiment's
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
                arms[parts[2]] = flatten(blob.get("data") or {})  # nested metrics as dotted keys (reasons.repeated_tag)
            elif (len(parts) == 4 and parts[0] == REPORTS.name and parts[1] in (TRAIN_SFT, TRAIN_GRPO)
                  and parts[3] == METRICS):
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
        paired = {f"{a} - {b}": paired_over_seeds(arms[a], arms[b]).to_dict()
                  for a, b in PAIRS if a in arms and b in arms}
        settings.append({"setting": dict(setting),
                         "per_seed": {a: dict(sorted(v.items())) for a, v in sorted(arms.items())},
                         "summary": summary, "paired": paired})
    return {"metric": metric, "arms": list(scope), "experiments": [r["name"] for r in rows], "settings": settings}


def time_ratios(spec: dict[str, Any], rows: list[dict[str, Any]]) -> dict[int, float]:
    """Per seed: SCALe-SFT wall time / (vanilla SFT + GRPO-from-vanilla wall time), where an experiment ran all
    three (an experiment that did not reproduce GRPO carries the workspace's GRPO report: not its time)."""
    seed_key = spec["seed_params"][0]
    out: dict[int, float] = {}
    if not set(TIME_RATIO) <= set(arms_in_scope(spec)):
        return out
    for row in rows:
        t = row.get("train_wall_s", {})
        (_, scale), (_, vanilla) = (arm_parts(a) for a in TIME_RATIO)  # sft-scale, and grpo-vanilla = its SFT + GRPO
        s, v, g = t.get(f"{TRAIN_SFT}/{scale}"), t.get(f"{TRAIN_SFT}/{vanilla}"), t.get(f"{TRAIN_GRPO}/{vanilla}")
        if None not in (s, v, g) and v + g > 0:
            out[int(row["params"][seed_key])] = s / (v + g)
    return dict(sorted(out.items()))


def claim_verdicts(result: dict[str, Any], ratios: dict[int, float]) -> list[dict[str, str]]:
    """The paper's claims at seed level (default-settings block), by `scalevlm.claims`' rules on the 95% t-interval
    of the per-seed paired differences (with 5 seeds the exact sign-flip test cannot go below 2/32 = 0.0625, so it
    is reported, not used to decide). Claim 4 reads the missing-<answer> rate at every budget evaluate measured."""
    block = next((b for b in result["settings"] if not b["setting"]), None)
    if block is None:
        return []
    acc = block["per_seed"]
    pair = lambda a, b, per=acc: _difference(a, b, paired_over_seeds(per[a], per[b]).to_dict())  # noqa: E731
    diffs = {(a, b): pair(a, b) for a, b in CLAIM_PAIRS if a in acc and b in acc}
    ratio = None
    if ratios:
        r = summarise(list(ratios.values()))
        ratio = Interval(r.mean, r.low, r.high) if r.n > 1 else Interval(r.mean, r.mean, r.mean)
    missing, never = {}, True
    measured = result.get("other_metrics", {})
    at_budgets = [m for m in measured if m.startswith("missing_answer_at.")] or ["missing_answer_rate"]  # older runs
    for metric in at_budgets:
        res = measured.get(metric)
        if res is None:
            continue
        mblock = next((b for b in res["settings"] if not b["setting"]), None)
        if mblock and set(MISSING_PAIR) <= set(mblock["per_seed"]):
            a, b = MISSING_PAIR
            per = mblock["per_seed"]
            missing[metric.split(".", 1)[1] if "." in metric else "max_new_tokens"] = pair(a, b, per)
            never = never and not any(per[a].values()) and not any(per[b].values())
    return [v.to_dict() for v in verdicts(diffs, ratio, missing if missing else None, never)]


def _difference(a: str, b: str, p: dict[str, Any]) -> Difference:
    return Difference(a, b, p["mean_diff"], p["low"], p["high"], _diff(p))


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
    budgets = sorted({k for r in rows for m in r["arms"].values() for k in m if k.startswith("missing_answer_at.")},
                     key=lambda k: int(k.split(".", 1)[1]))
    others = {m: aggregate(spec, rows, m) for m in (*SEED_METRICS, *budgets)}
    result["other_metrics"] = {m: r for m, r in others.items() if any(b["per_seed"] for b in r["settings"])}
    ratios = time_ratios(spec, rows)
    result["time_ratio_scale_sft_over_sft_plus_grpo"] = {str(k): v for k, v in ratios.items()}
    result["claims"] = claim_verdicts(result, ratios)
    result["format_reasons"] = format_reasons(spec, rows)
    return json.loads(json.dumps(result))  # the JSON form (seed keys as strings), as study.json holds it


def format_reasons(spec: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per experiment and arm in scope: format compliance and the share of each segment-rule failure reason."""
    scope = arms_in_scope(spec)
    keys = grid_keys(spec["grid"])
    seed_key = spec["seed_params"][0]
    out = []
    for row in rows:
        for name, m in sorted(row["arms"].items()):
            if name in scope and "format_compliance" in m:
                out.append({"setting": {k: row["params"].get(k) for k in keys}, "seed": int(row["params"][seed_key]),
                            "arm": name, "format_compliance": m["format_compliance"],
                            "reasons": {k.split(".", 1)[1]: v for k, v in m.items() if k.startswith("reasons.") and v}})
    return out


def reasons_markdown(result: dict[str, Any]) -> str:
    found = result.get("format_reasons") or []
    if not found:
        return ""
    lines = ["", "## Format failures by reason, per seed", "",
             "Shares of the test samples per failure reason of the segment rule (`core.segments.Reason`).", "",
             "| setting | seed | arm | format compliance | failures by reason |", "|---|---|---|---|---|"]
    for f in found:
        setting = ", ".join(f"{k}={v}" for k, v in f["setting"].items()) or "default"
        reasons = ", ".join(f"{k} {v:.3f}" for k, v in sorted(f["reasons"].items())) or "none"
        lines.append(f"| {setting} | s{f['seed']} | {f['arm']} | {f['format_compliance']:.3f} | {reasons} |")
    return "\n".join(lines) + "\n"


def study_markdown(result: dict[str, Any]) -> str:
    return markdown(result) + "".join(f"\n## {metric}\n\n" + markdown(r)
                                      for metric, r in result["other_metrics"].items()) \
        + claims_markdown(result) + reasons_markdown(result)


def claims_markdown(result: dict[str, Any]) -> str:
    if not result.get("claims"):
        return ""
    lines = ["", "## The paper's claims at seed level", "",
             "Decided by `scalevlm.claims` on the 95% t-interval of the per-seed paired differences (supported / "
             f"contradicted when it excludes 0; claim 2: non-inferiority margin {NONINFERIORITY:.2f} and a time ratio "
             f"at most {COST_FRACTION:.2f}; a tie is not best).", ""]
    lines += [f"- **{c['claim']}** — {c['verdict']} ({c['evidence']})." for c in result["claims"]]
    ratios = result.get("time_ratio_scale_sft_over_sft_plus_grpo") or {}
    if ratios:
        lines += ["", "SCALe-SFT time / (vanilla SFT + GRPO time) per seed: "
                  + ", ".join(f"s{k}: {v:.2f}" for k, v in ratios.items())]
    return "\n".join(lines) + "\n"


def plot_ablation(result: dict[str, Any], x_key: str, group_key: str | None, arm: str, path: Path) -> None:
    """Accuracy of `arm` vs `x_key`, one line per `group_key` value, with 95% seed intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[Any, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    for block in result["settings"]:
        if arm in block["summary"] and x_key in block["setting"]:
            groups[block["setting"].get(group_key) if group_key else arm].append(
                (block["setting"][x_key], block["summary"][arm]))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for group, points in sorted(groups.items(), key=lambda kv: str(kv[0])):
        points.sort(key=lambda p: p[0])
        xs = [p[0] for p in points]
        means = [p[1]["mean"] for p in points]
        err = [[max(0.0, m - p[1]["low"]) for m, p in zip(means, points)],
               [max(0.0, p[1]["high"] - m) for m, p in zip(means, points)]]
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
    grid = spec["grid"] if isinstance(spec["grid"], dict) else {}
    budget = next((k for k in sorted(grid) if k.endswith("max_steps")), None)
    if budget:  # matched compute: every arm in scope against the training budget
        for metric in ("accuracy", "format_compliance"):
            res = result if metric == "accuracy" else result["other_metrics"].get(metric)
            if res:
                for name in arms_in_scope(spec):
                    plot_ablation(res, budget, None, name, out_dir / f"budget_{metric}_{name}.png")
    x_key = next((k for k in sorted(grid) if k.endswith("w_end")), None)
    if x_key:
        group = next((k for k in sorted(spec["grid"]) if k.endswith("schedule")), None)
        plot_ablation(result, x_key, group, SFT_SCALE, out_dir / "ablation.png")
    return out_dir
