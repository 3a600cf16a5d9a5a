"""The three-minute demo: a small r1grid set, a short perception pre-training and SCALe-SFT run, then `predict` on
a few test images — the whole path from data to answers on a laptop-sized budget.

    make demo                      # or: scalevlm demo, python -m flows.demo [--dir demo] [--images 3]

It runs each stage's own CLI (`python -m stages.<name> --params demo/params.yaml --root demo`) on params.yaml with
`profiles/demo.yaml` applied, writing everything under the demo folder (git-ignored): the project's params.yaml,
dvc.lock and outputs are not touched, and DVC does not track the demo. The model is a demo model, not the promoted
one (`scalevlm registry fetch prod` gets that).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from flows.profiles import check_profile, merge_profile
from scalevlm.config import ConfigError, read_yaml
from scalevlm.facts import CURATE, PREPARE, SCALE, TRAIN_SFT, VALIDATE, VALIDATED, model_dir

PROFILE = "demo"
STEPS = ([CURATE], [VALIDATE], [PREPARE], [TRAIN_SFT, "--method", SCALE])  # each stage's CLI arguments


def demo_params(root: Path, folder: Path) -> Path:
    """params.yaml with the demo profile applied (checked by every stage's Config first), in the demo folder."""
    overlay = check_profile(root, PROFILE)
    params = read_yaml(root / "params.yaml", "params file") or {}
    merge_profile(params, overlay, PROFILE)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run_stage(root: Path, args: list[str], params: Path, folder: Path) -> None:
    start = time.perf_counter()
    print(f"== {args[0]}", flush=True)
    done = subprocess.run([sys.executable, "-m", f"stages.{args[0]}", *args[1:], "--params", str(params),
                           "--root", str(folder)], cwd=root)
    if done.returncode != 0:
        raise SystemExit(f"error: demo: stage {args[0]} failed (exit {done.returncode}); its output is above")
    print(f"   {args[0]} done in {time.perf_counter() - start:.0f} s", flush=True)


def predict_some(root: Path, folder: Path, n: int) -> None:
    """`predict` (one model load, one batch) on the first `n` test records; each answer beside its reference."""
    records = [json.loads(line) for line in (folder / VALIDATED / "test.jsonl").read_text().splitlines()
               if line.strip()][:n]
    inputs, out = folder / "predict_inputs.jsonl", folder / "predictions.jsonl"
    inputs.write_text("".join(json.dumps({"id": r["id"], "images": r["images"], "question": r["question"]}) + "\n"
                              for r in records))
    model = folder / model_dir(TRAIN_SFT, SCALE)
    subprocess.run([sys.executable, "-m", "scalevlm.predict", "--model", str(model), "--input", str(inputs),
                    "--image-root", str(folder), "--out", str(out)], cwd=root, check=True)
    print(f"\nA DEMO MODEL ({model}: a short SCALe-SFT run on a small set), not the promoted one: expect wrong "
          "answers and broken formats. `scalevlm registry fetch prod` gets the promoted model.")
    for record, line in zip(records, out.read_text().splitlines(), strict=True):
        pred = json.loads(line)
        print(f"\n-- {record['id']} ({record['images'][0]}): {record['question']}")
        print(f"   think:  {shorten(pred['think'] or pred['completion'], 240)}")
        print(f"   answer: {pred['answer']}   (reference: {record['answer']}; segment rule: {pred['reason'] or 'ok'})")


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.demo", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("demo"), help="folder for the demo's data, model, reports")
    parser.add_argument("--images", type=int, default=3, help="test images to predict at the end")
    args = parser.parse_args(argv)
    root = Path.cwd()
    if not (root / "dvc.yaml").is_file() or not (root / "stages").is_dir():
        print("error: run the demo from the project's root (the folder with dvc.yaml and stages/)", file=sys.stderr)
        return 2
    if args.images < 1:
        print("error: --images must be at least 1", file=sys.stderr)
        return 2
    folder = args.dir.resolve()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    start = time.perf_counter()
    try:
        params = demo_params(root, folder)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for step in STEPS:
        run_stage(root, step, params, folder)
    predict_some(root, folder, args.images)
    print(f"\ndemo done in {time.perf_counter() - start:.0f} s; everything is under {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
