"""The comparison's plots (`reports/compare/plots/`): accuracy by arm with its CI, n and the most-frequent-answer line;
generated think length per arm against the reference; SCALe's weights and each segment's SFT loss from DVCLive.
Files only (Agg backend); not byte-stable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scalevlm.facts import ARMS

Curves = Mapping[str, Mapping[str, tuple[list[float], list[float]]]]  # method -> series name -> (steps, values)


def plot_all(out: Path, table: Mapping[str, Mapping[str, Any]], preds: Mapping[str, Mapping[str, Mapping[str, Any]]],
             ids: Sequence[str], curves: Curves, chance: float | None) -> list[str]:
    """`chance`: accuracy of always answering the most frequent training answer (the compare stage's baseline)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    n = len(ids)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    accs = [table[a]["accuracy"] for a in ARMS]
    err = [[max(0.0, accs[i] - table[a]["accuracy_low"]) for i, a in enumerate(ARMS)],
           [max(0.0, table[a]["accuracy_high"] - accs[i]) for i, a in enumerate(ARMS)]]
    ax.bar(ARMS, accs, yerr=err, capsize=6, color=["#9bb", "#4a8", "#bb9", "#a84"])
    for i, acc in enumerate(accs):
        ax.text(i, acc / 2, f"{acc:.3f}", ha="center", fontsize=9)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1)
        ax.text(len(ARMS) - 0.5, chance + 0.02, f"chance: always the most frequent training answer, {chance:.3f}",
                ha="right", fontsize=7, color="#444", bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    ax.set(ylabel="test accuracy (95% bootstrap CI)", ylim=(0, 1), title=f"Accuracy by arm (n = {n} test samples)")
    fig.tight_layout()
    fig.savefig(out / "accuracy_by_arm.png", dpi=100)
    plt.close(fig)

    # one panel per arm (arms can generate identical thinks: GRPO that kept its SFT init), each over the reference
    fig, axes = plt.subplots(1, len(ARMS), figsize=(12, 3), sharex=True, sharey=True)
    lengths = {a: [float(preds[a][i]["think_tokens"]) for i in ids] for a in ARMS}
    reference = [float(preds[ARMS[0]][i]["ref_think_tokens"]) for i in ids]
    values = [v for arm in lengths.values() for v in arm] + reference
    bins = np.linspace(min(values), max(values) + 1, 40)
    for ax, arm in zip(axes, ARMS, strict=True):
        ax.hist(reference, bins=bins, histtype="stepfilled", color="#ddd", label="reference think")
        ax.hist(lengths[arm], bins=bins, histtype="step", linewidth=1.5, color="#a45", label="generated")
        ax.set(title=f"{arm} (median {np.median(lengths[arm]):.0f})", xlabel="think tokens")
    axes[0].set(ylabel=f"test samples (n = {n})")
    axes[0].legend(fontsize=7)
    fig.suptitle("Generated think length against the reference thinks", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "think_length.png", dpi=100)
    plt.close(fig)

    # one objective per axis: SCALe's weights; each segment's loss (the same definition for both methods). The
    # trainers' `loss` is not drawn: SCALe's is the weighted sum, vanilla's the token mean, two different objectives.
    fig, (ax_w, ax_t, ax_a) = plt.subplots(1, 3, figsize=(13, 3.5))
    panels = {"w_think": ax_w, "w_ans": ax_w, "loss_think": ax_t, "loss_answer": ax_a}
    for method, series in curves.items():
        seen: set[str] = set()
        for key, (steps, values) in sorted(series.items(), key=lambda kv: (kv[0].count("/"), kv[0])):
            leaf = key.rsplit("/", 1)[-1]
            if leaf in seen or leaf not in panels:  # the same scalar logged under two prefixes, or another one
                continue
            seen.add(leaf)
            panels[leaf].plot(steps, values, label=f"{method} {leaf}" if panels[leaf] is ax_w else method)
    ax_w.set(xlabel="step", ylabel="weight", title="SCALe's segment weights")
    ax_t.set(xlabel="step", ylabel="mean over samples of L_think(i)", title="Think-segment loss", yscale="log")
    ax_a.set(xlabel="step", ylabel="mean over samples of L_ans(i)", title="Answer-segment loss", yscale="log")
    for ax in (ax_w, ax_t, ax_a):
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no DVCLive curves found", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(out / "scale_schedule.png", dpi=100)
    plt.close(fig)
    return ["accuracy_by_arm.png", "think_length.png", "scale_schedule.png"]
