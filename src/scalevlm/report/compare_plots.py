"""The comparison's plots (`reports/compare/plots/`): accuracy by arm with its CI, generated think length, and the
SCALe weight schedule with the SFT loss curves from DVCLive. Files only (Agg backend); not byte-stable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scalevlm.facts import ARMS

Curves = Mapping[str, Mapping[str, tuple[list[float], list[float]]]]  # method -> series name -> (steps, values)


def plot_all(out: Path, table: Mapping[str, Mapping[str, Any]], preds: Mapping[str, Mapping[str, Mapping[str, Any]]],
             ids: Sequence[str], curves: Curves) -> list[str]:
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
