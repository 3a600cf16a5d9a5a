"""The consumer side of the registry: evaluate the model a registry stage points at, on a schedule.

    python -m flows.consumer                          # prod on the test split (temporary local Prefect server)
    python -m flows.consumer --ref v0.0.3 --split val
    python -m flows.consumer --benchmark data/local/bench.jsonl   # a named benchmark: curated records whose
                                                                  # image paths are relative to the project root

Deployment `prod-evaluation` (prefect.yaml, flows/serve.py) runs it daily. A run fetches the version from the
DVC remote (`scalevlm.registry.fetch`; reused when already fetched), pulls the split's data when the checkout
lacks it, evaluates with the `evaluate` stage's settings and code (params.yaml[evaluate]: greedy, same batching,
same metric modules), and publishes the Markdown artifact `prod-evaluation` beside the accuracy the gate saw for
that version, so a drift between what was promoted and what is served shows in the UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from scalevlm.facts import CURATED, VALIDATED
from scalevlm.registry import RegistryError

SPLIT_DATA = [VALIDATED.as_posix(), CURATED.as_posix()]  # DVC outputs: the splits and their images


@task(task_run_name="fetch {ref}")
def fetch_version(root: str, ref: str, artifact: str | None) -> dict[str, Any]:
    """Resolve `ref` in the registry and fetch its model (from the DVC remote, unless already fetched)."""
    from scalevlm.registry import default_artifact, fetch

    name = artifact or default_artifact(Path(root))
    resolved, folder, where = fetch(root, name, ref)
    get_run_logger().info("%s = %s (commit %s) in %s [%s]", ref, resolved.ref, resolved.commit[:8], folder, where)
    return {"artifact": name, "version": resolved.version, "ref": resolved.ref, "commit": resolved.commit,
            "folder": str(folder)}


@task(task_run_name="records", cache_policy=NO_CACHE)
def load_records(root: str, split: str, benchmark: str | None, max_samples: int | None) -> list[Any]:
    """The records to evaluate: a validated split (pulled from the remote when missing) or a benchmark file."""
    from scalevlm.records import read_records
    from scalevlm.remote import pull
    from scalevlm.validation import read_split
    from scalevlm.validation.layout import split_path

    project = Path(root)
    if benchmark is not None:
        records = sorted(read_records(project / benchmark), key=lambda r: r.id)
        return records[:max_samples] if max_samples is not None else records
    if not split_path(project, split).is_file():
        get_run_logger().info("pulling %s from the DVC remote: %s", SPLIT_DATA, pull(project, SPLIT_DATA))
    return read_split(project, split, max_samples)


@task(task_run_name="evaluate", cache_policy=NO_CACHE)  # records are not worth hashing
def evaluate_version(root: str, version: dict[str, Any], records: list[Any]) -> dict[str, Any]:
    """Score the fetched model with the evaluate stage's config, generation and metric modules."""
    from scalevlm.config import load_config
    from scalevlm.evaluation.runner import EvaluateSettings, evaluate_model
    from scalevlm.facts import EVALUATE

    cfg = load_config(EvaluateSettings, str(Path(root) / "params.yaml"), EVALUATE)
    _, metrics = evaluate_model(cfg, Path(root), Path(version["folder"]), records, version["ref"])
    return metrics


def promoted_metrics(root: str, commit: str) -> dict[str, float]:
    """The metrics the gate judged this version on (its committed snapshot), empty when unavailable."""
    from scalevlm.registry import RegistryError, snapshot_at

    try:
        return snapshot_at(Path(root), commit).get("metrics", {})
    except RegistryError:  # registered by hand, without the gate's snapshot
        return {}


def markdown(version: dict[str, Any], source: str, metrics: dict[str, Any], promoted: dict[str, float]) -> str:
    lines = [f"## {version['ref']} on {source} ({metrics['n']} samples)", "",
             "| metric | now | at promotion |", "|---|---|---|"]
    for key in ("accuracy", "format_compliance", "answer_parse_rate", "missing_answer_rate", "think_tokens_mean"):
        then = promoted.get(key)
        lines.append(f"| {key} | {metrics[key]:.4f} | {'' if then is None else f'{then:.4f}'} |")
    lines += ["", f"commit `{version['commit'][:12]}`, weights in `{version['folder']}`"]
    return "\n".join(lines) + "\n"


def check_request(root: Path, ref: str, artifact: str | None, benchmark: str | None, max_samples: int | None) -> None:
    """The request names a registered version or stage, an existing benchmark file and a positive sample count."""
    from scalevlm.registry import default_artifact, resolve

    if max_samples is not None and max_samples < 1:
        raise ValueError(f"--max-samples must be >= 1, got {max_samples}")
    if benchmark is not None and not (root / benchmark).is_file():
        raise ValueError(f"--benchmark {benchmark}: no such file under {root.resolve()}")
    resolve(str(root), artifact or default_artifact(root), ref)


@flow(name="scalevlm-evaluate-registry", log_prints=True)
def evaluate_registry(ref: str = "prod", split: str = "test", benchmark: str | None = None,
                      max_samples: int | None = None, artifact: str | None = None, root: str = ".") -> dict[str, Any]:
    """Evaluate the registry's `ref` (a stage or vX.Y.Z) on a split or a benchmark; publish `prod-evaluation`."""
    project = str(Path(root).resolve())
    version = fetch_version(project, ref, artifact)
    records = load_records(project, split, benchmark, max_samples)
    metrics = evaluate_version(project, version, records)
    promoted = promoted_metrics(project, version["commit"])
    source = benchmark or f"the {split} split"
    create_markdown_artifact(key="prod-evaluation", markdown=markdown(version, source, metrics, promoted),
                             description=f"{version['ref']} on {source}")
    return {"ref": version["ref"], "source": source, "metrics": metrics, "promoted": promoted}


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.consumer`: what a user can get wrong is refused before a Prefect server starts, as one line
    and exit 2; `--check` stops there (exit 0)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m flows.consumer", description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="prod", help="a registry stage (prod) or a version (v0.0.3)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--benchmark", default=None, help="a curated-records JSONL under the project")
    parser.add_argument("--max-samples", type=int, default=None, help="first N records (N >= 1)")
    parser.add_argument("--artifact", default=None, help="registry artifact (default: the one in ./dvc.yaml)")
    parser.add_argument("--check", action="store_true", help="check the request, run nothing")
    args = parser.parse_args(argv)
    try:
        check_request(Path("."), args.ref, args.artifact, args.benchmark, args.max_samples)
    except (RegistryError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.check:
        evaluate_registry(ref=args.ref, split=args.split, benchmark=args.benchmark, max_samples=args.max_samples,
                          artifact=args.artifact)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
