"""`scalevlm`: one command for what users do. Each subcommand is a module's own CLI, so `python -m` keeps working.

    scalevlm predict --model prod --image grid.png --question "How many cells are not red?"
    scalevlm registry list | show prod | fetch prod
    scalevlm validate --input my.jsonl --out checked/        # the segment rule and the GX suite on your file
    scalevlm run train_sft@scale -S train_sft.max_steps=50   # a DVC stage (an experiment when -S is given)
    scalevlm demo                                            # three minutes from data to answers

`validate`, `run` and `demo` work in the project's checkout (the folder with dvc.yaml and stages/). Heavy libraries
load only after the arguments are parsed, so `--help` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
from pathlib import Path

COMMANDS = {
    "predict": "answer questions about images with a registered model or a model folder",
    "registry": "the model registry: list versions, show one, fetch a model",
    "validate": "check a curated JSONL file with the segment rule and the Great Expectations suite",
    "run": "run a pipeline stage with DVC (dvc repro; dvc exp run when -S overrides are given)",
    "demo": "the three-minute demo: a small set, a short SCALe-SFT run, predictions on test images",
}


class UsageError(Exception):
    """A mistake in the command line: reported on one line with exit 2."""


def checkout() -> Path:
    root = Path.cwd()
    if not (root / "dvc.yaml").is_file() or not (root / "stages").is_dir():
        raise UsageError("this command works in the project's checkout: run it from the folder with dvc.yaml and "
                         "stages/")
    return root


def forward(root: Path, module: str, args: list[str]) -> int:
    """Run a module of the checkout (`python -m <module> <args>`) in its root, with this interpreter."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=root).returncode


def run_stage(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scalevlm run", description=COMMANDS["run"],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("stage", help="a dvc.yaml stage, e.g. train_sft@scale or evaluate@sft-vanilla (dvc stage list)")
    parser.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="params.yaml override, e.g. train_sft.max_steps=50 (repeatable); makes the run an "
                             "experiment (dvc exp run), so params.yaml and dvc.lock keep the committed values")
    parser.add_argument("--name", help="experiment name (with -S)")
    args = parser.parse_args(argv)
    root = checkout()
    from scalevlm.config import load_params
    from scalevlm.study import flatten

    known = flatten(load_params(root / "params.yaml"))
    for override in args.overrides:
        key, sep, _ = override.partition("=")
        if not sep:
            raise UsageError(f"-S {override!r}: give KEY=VALUE, e.g. train_sft.max_steps=50")
        if key not in known:
            near = difflib.get_close_matches(key, list(known), n=3)
            raise UsageError(f"-S {key}: not a key of params.yaml" + (f" (did you mean {near}?)" if near else ""))
    listed = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=root,
                            capture_output=True, text=True)
    stages = listed.stdout.split()
    if listed.returncode == 0 and args.stage not in stages:
        near = difflib.get_close_matches(args.stage, stages, n=3)
        raise UsageError(f"no stage {args.stage!r} in dvc.yaml" + (f" (did you mean {near}?)" if near else "")
                         + f"; stages: {stages}")
    if args.overrides:
        extra = ["-n", args.name] if args.name else []
        cmd = ["exp", "run", *extra, *(x for o in args.overrides for x in ("-S", o)), args.stage]
    else:
        cmd = ["repro", args.stage]
    return forward(root, "dvc", cmd)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="scalevlm", description=__doc__.splitlines()[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog="commands:\n" + "\n".join(f"  {name:<9} {what}"
                                                                   for name, what in COMMANDS.items())
                                  + "\n\n`scalevlm <command> --help` describes each command's options.")
    top.add_argument("command", choices=list(COMMANDS), metavar="command", help="one of: " + ", ".join(COMMANDS))
    top.add_argument("args", nargs=argparse.REMAINDER, help="the command's own options")
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser().print_help()
        return 2
    if argv[0] in ("-h", "--help"):
        parser().print_help()
        return 0
    args = parser().parse_args(argv[:1])  # an unknown command: argparse's one-line error, exit 2
    rest = argv[1:]
    try:
        if args.command == "predict":
            from scalevlm.predict import main as predict

            return predict(rest, prog="scalevlm predict")
        if args.command == "registry":
            from scalevlm.registry import main as registry

            return registry(rest, prog="scalevlm registry")
        if args.command == "validate":
            return forward(checkout(), "stages.validate_segments", rest)
        if args.command == "run":
            return run_stage(rest)
        return forward(checkout(), "flows.demo", rest)
    except UsageError as e:
        print(f"scalevlm {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
