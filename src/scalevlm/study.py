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

from scalevlm.core.seeds import paired_over_seeds, summarise
from scalevlm.facts import ARMS, EVALUATE, METHOD_PAIRS, METRICS, REPORTS
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
        if "data" in shown and isinstance(shown["data"], dict) and "name" in shown:
            yield shown
        for key in ("experiments", "revs"):
            if shown.get(key):
                yield from _walk(shown[key])


def experiment_rows(shown: Any, prefix: str) -> list[dict[str, Any]]:
    """One row per experiment named `<prefix>-…`: flat params and each arm's evaluation metrics."""
    rows = []
    for entry in _walk(shown):
        name = entry.get("name") or ""
        if not name.startswith(f"{prefix}-"):
            continue
        data = entry["data"]
        params = flatten((data.get("params") or {}).get("params.yaml", {}).get("data", {}))
        arms = {}
        for path, blob in (data.get("metrics") or {}).items():
            parts = Path(path).parts
            if len(parts) == 4 and parts[:2] == (REPORTS.name, EVALUATE) and parts[3] == METRICS:
                arms[parts[2]] = blob.get("data", {})
        rows.append({"name": name, "params": params, "arms": arms})
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
    grid_keys = sorted(spec["grid"] or {})
    by_setting: dict[tuple, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        setting = tuple((k, row["params"].get(k)) for k in grid_keys)
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
        if (entry.get("name") or "").startswith(f"{prefix}-"):
            data = {k: v for k, v in entry["data"].items() if k not in ("deps", "outs")}
            keep.append({"rev": entry.get("rev"), "name": entry["name"], "data": data})
    return sorted(keep, key=lambda e: e["name"])


def write_report(spec: dict[str, Any], shown: Any, out_dir: Path) -> Path:
    """Write `exp_show.json` (the sweep's raw experiments), `study.json`, `table.md` and the ablation plot."""
    entries = sweep_entries(shown, spec["name"])
    rows = experiment_rows(entries, spec["name"])
    if not rows:
        raise ValueError(f"`dvc exp show` has no experiments named '{spec['name']}-…': run the sweep first")
    result = aggregate(spec, rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "spec.json", spec)
    write_json(out_dir / "exp_show.json", entries)
    write_json(out_dir / "study.json", result)
    (out_dir / "table.md").write_text(markdown(result))
    x_key = next((k for k in sorted(spec["grid"] or {}) if k.endswith("w_end")), None)
    if x_key:
        group = next((k for k in sorted(spec["grid"]) if k.endswith("schedule")), None)
        plot_ablation(result, x_key, group, "sft-scale", out_dir / "ablation.png")
    return out_dir
