"""promote: choose the candidate arm and decide whether it replaces the registry's champion, under rules in params.

deps:  reports/evaluate/<arm>/{metrics.json,predictions.jsonl} and the model of every arm, params.yaml[promote]; the
       registry (git tags, outside DVC's view, hence `always_changed`)
outs:  models/promote/ (the chosen arm's model, copied: the registry artifact), reports/promote/decision.json (the
       decision, every check and reason, every arm considered), reports/promote/candidate.json (the candidate's
       snapshot: arm, metrics, per-sample correctness — read back from the champion's commit later)

`promote.candidate` is an arm, or the rule `best_passing`: every arm is judged by the same gate rules against the
champion, and the candidate is the most accurate arm that passes (ties: the order of `facts.ARMS`); when none
passes, the most accurate arm is reported with its reasons and nothing is promoted.
cmd:   python -m stages.promote            (decide; never touches the registry)
       python -m stages.promote --gate     (the gate: exit 1 unless promoted; on a pass, push the model and its
                                            inputs to the DVC remote, then register HEAD as the next version and
                                            assign it to the stage, e.g. `prod`; --no-push skips the push)
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from scalevlm.config import Checked, ConfigError, Problems, Range, config_dataclass, load_config
from scalevlm.core.promotion import ArmResult, Rules, decide
from scalevlm.errors import MissingInputError
from scalevlm.facts import (
    ARMS,
    BEST_PASSING,
    METRICS,
    PREDICTIONS,
    PROMOTE_CANDIDATE,
    PROMOTE_DECISION,
    PROMOTED_MODEL,
    Arm,
    arm_model,
    eval_report,
)
from scalevlm.guard import atomic_dir
from scalevlm.records import read_jsonl
from scalevlm.registry import RegistryError, artifact_path, champion, check_committed, register_and_assign
from scalevlm.remote import RemoteError, push_with_deps
from scalevlm.runtime import stage_main, write_json

NAME = "promote"
log = logging.getLogger(NAME)


# DVC's rule for artifact names (GTO's for stages): lowercase letters, digits and inner dashes; both become git tags
REGISTRY_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
TRACKABLE = ("accuracy", "format_compliance", "answer_parse_rate")  # higher-is-better metrics evaluate writes


@config_dataclass
class Config(Checked):
    candidate: Arm | Literal["best_passing"]  # the arm whose model is registered, or the rule that picks it
    artifact: str  # registry artifact name, declared under `artifacts:` in dvc.yaml
    stage: str  # registry stage the champion holds, e.g. prod
    rules: Rules  # pure core type (no config import there): its ranges are checked here

    def check(self) -> Problems:
        for key in ("artifact", "stage"):
            if not REGISTRY_NAME.fullmatch(getattr(self, key)):
                yield key, f"{getattr(self, key)!r} must be lowercase letters, digits and inner dashes (e.g. prod)"
        r = self.rules
        for key, rule in (("min_accuracy", Range(ge=0, le=1)), ("format_floor", Range(ge=0, le=1)),
                          ("max_regression", Range(ge=0, le=1)), ("alpha", Range(gt=0, lt=1)),
                          ("n_bootstrap", Range(ge=1)), ("seed", Range(ge=0))):
            if problem := rule.problem(getattr(r, key)):
                yield f"rules.{key}", problem
        for i, metric in enumerate(r.tracked_metrics):
            if metric not in TRACKABLE:
                yield f"rules.tracked_metrics[{i}]", f"{metric!r} is not one of {list(TRACKABLE)}"


def candidate_snapshot(root: Path, arm: str) -> dict[str, Any]:
    """The arm's evaluation as the decision needs it: scalar metrics and per-sample correctness by test id."""
    folder = root / eval_report(arm)
    metrics_path, predictions_path = folder / METRICS, folder / PREDICTIONS
    for path in (metrics_path, predictions_path):
        if not path.is_file():
            raise MissingInputError(f"{path} not found: run `dvc repro evaluate@{arm}` before promoting arm '{arm}'")
    metrics = json.loads(metrics_path.read_text())
    scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    correct = {row["id"]: float(bool(row["correct"])) for _, row in read_jsonl(predictions_path)}
    return {"arm": arm, "metrics": scalars, "correct": correct}


def _arm(snapshot: dict[str, Any]) -> ArmResult:
    return ArmResult(name=snapshot["arm"], metrics=snapshot["metrics"], correct=snapshot["correct"])


def check_artifact_is_promoted_model(cfg: Config, root: Path) -> None:
    """The registry artifact must be the folder promote copies the chosen model to: the gate judges that arm's
    evaluation and then pushes and tags the artifact's path, so the two must be the same weights."""
    declared = artifact_path(root, cfg.artifact)
    if declared.rstrip("/") != PROMOTED_MODEL.as_posix():
        raise ConfigError(f"artifact {cfg.artifact!r} is declared at {declared} in dvc.yaml, but promote copies the "
                          f"chosen model to {PROMOTED_MODEL.as_posix()}: set `artifacts.{cfg.artifact}.path: "
                          f"{PROMOTED_MODEL.as_posix()}` in dvc.yaml")


def choose(cfg: Config, root: Path, champ: ArmResult | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(the candidate's snapshot, its decision, every considered arm's outcome) under `cfg.candidate`."""
    arms = ARMS if cfg.candidate == BEST_PASSING else (cfg.candidate,)
    snapshots = {a: candidate_snapshot(root, a) for a in arms}
    decisions = {a: decide(_arm(snap), champ, cfg.rules).to_dict() for a, snap in snapshots.items()}
    accuracy = {a: snapshots[a]["metrics"].get("accuracy", 0.0) for a in arms}
    passing = [a for a in arms if decisions[a]["promote"]]
    pool = passing or list(arms)
    chosen = max(pool, key=lambda a: (accuracy[a], -arms.index(a)))
    considered = {a: {"accuracy": accuracy[a], "format_compliance": snapshots[a]["metrics"].get("format_compliance"),
                      "passes": decisions[a]["promote"], "reasons": decisions[a]["reasons"]} for a in arms}
    return snapshots[chosen], decisions[chosen], considered


def run(cfg: Config, root: Path) -> dict[str, Any]:
    check_artifact_is_promoted_model(cfg, root)
    current = champion(root, cfg.artifact, cfg.stage)
    champ = _arm(current.snapshot) if current else None
    snapshot, decision, considered = choose(cfg, root, champ)
    decision.update(rule=cfg.candidate, considered=considered, artifact=cfg.artifact, stage=cfg.stage,
                    champion_version=current.version if current else None)
    model = root / arm_model(snapshot["arm"])
    if not model.is_dir():
        raise MissingInputError(f"{model} not found: run `dvc repro {NAME}` (it trains and evaluates every arm first)")
    with atomic_dir(root / PROMOTED_MODEL) as staging:  # the chosen weights, whether or not they pass
        shutil.copytree(model, staging, dirs_exist_ok=True)
    write_json(root / PROMOTE_CANDIDATE, snapshot)
    write_json(root / PROMOTE_DECISION, decision)
    log.info("promote (%s) %s: %s", cfg.candidate, snapshot["arm"], "YES" if decision["promote"] else "NO")
    return {k: decision[k] for k in ("promote", "rule", "candidate", "champion", "champion_version", "reasons")}


def gate(cfg: Config, root: Path, push: bool = True) -> int:
    """Exit status of the CI gate: 0 and a new `stage` version when the decision says promote, 1 otherwise, 2 when
    it cannot act. Before tagging, the model and everything upstream of it are pushed to the DVC remote
    (`scalevlm.remote`), unless `push` is off."""
    path = root / PROMOTE_DECISION
    if not path.is_file():
        print(f"gate: {path} not found: run `dvc repro promote` first", file=sys.stderr)
        return 2
    decision = json.loads(path.read_text())
    if decision.get("rule") != cfg.candidate or decision.get("artifact") != cfg.artifact:
        print(f"gate: {path} is for {decision.get('rule')}/{decision.get('artifact')}, params say "
              f"{cfg.candidate}/{cfg.artifact}: run `dvc repro promote` again", file=sys.stderr)
        return 2
    if not decision["promote"]:
        print("gate: NOT promoted:\n  " + "\n  ".join(decision["reasons"]))
        return 1
    try:
        check_artifact_is_promoted_model(cfg, root)
        check_committed(root)
        if push:  # before tagging: a registry version whose weights nobody can fetch must not exist
            pushed = push_with_deps(root, artifact_path(root, cfg.artifact))
            print(f"gate: pushed {pushed['stage']} and its inputs to {pushed['remote']} ({pushed['pushed']} new "
                  "objects)")
        else:
            print("gate: --no-push: the model is NOT pushed to a DVC remote; only this machine can use the new version")
        version = register_and_assign(root, cfg.artifact, cfg.stage,
                                      f"promoted {decision['candidate']} ({cfg.candidate}): "
                                      + "; ".join(decision["reasons"]))
    except (RegistryError, RemoteError, ConfigError) as e:
        print(f"gate: {e}", file=sys.stderr)
        return 2
    print(f"gate: promoted {decision['candidate']} as {cfg.artifact}@{version} -> {cfg.stage}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--gate" not in argv:
        return stage_main(NAME, Config, run, argv)
    parser = argparse.ArgumentParser(prog="python -m stages.promote --gate")
    parser.add_argument("--gate", action="store_true")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    parser.add_argument("--no-push", action="store_true", help="tag without pushing the model to the DVC remote")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(Config, args.params, NAME)
    except ConfigError as e:
        print(f"error: {args.params}: {e}", file=sys.stderr)
        return 2
    return gate(cfg, Path(args.root), push=not args.no_push)


if __name__ == "__main__":
    raise SystemExit(main())
