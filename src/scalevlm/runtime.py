"""Process setup shared by every stage entry point: torch threads, logging, the CLI shell, and the one JSON writer.

The offline/telemetry environment is `scalevlm.env`, applied when `scalevlm` is imported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from scalevlm.config import ConfigError, load_config
from scalevlm.errors import PipelineError
from scalevlm.guard import StageLock, atomic_write_text, lock_name, watch_parent

T = TypeVar("T")


def set_torch_threads(n: int) -> None:
    """Pin torch's intra-op CPU threads (0 leaves torch's default), at most `OMP_NUM_THREADS` when that is set.

    The tiny model runs many small ops: extra OpenMP threads barely help, and on 2 cores shared with other
    processes they stalled training and generation badly (steps 0.25 s → 4–5 s, generation up to 50× slower).
    `OMP_NUM_THREADS` is the machine-level cap (the test suite's parallel workers set it to their share of the
    cores), so a stage's `torch_threads` never oversubscribes a CPU that other jobs share.
    """
    cap = os.environ.get("OMP_NUM_THREADS", "")
    if n > 0 and cap.isdigit() and int(cap) > 0:
        n = min(n, int(cap))
    if n > 0:
        import torch

        torch.set_num_threads(n)


def write_json(path: Path, obj: Any, default: Callable[[Any], Any] | None = None) -> None:
    """Canonical JSON (sorted keys, 2-space indent, UTF-8, trailing newline) so equal results are equal bytes;
    written atomically (a reader or a killed run never sees half a file). Every JSON report goes through here.

    Text that cannot be written as UTF-8 (lone surrogates from undecodable input) makes the file ASCII-escaped
    instead of failing. `default` as in `json.dumps`, e.g. `str` for a library's result objects.
    """
    text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, default=default)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=True, default=default)
    atomic_write_text(path, text + "\n")


def stage_main(
    name: str,
    config_cls: type[T],
    run: Callable[[T, Path], dict[str, Any]],
    argv: list[str] | None = None,
    item: str | None = None,
    parents: Sequence[argparse.ArgumentParser] = (),
) -> int:
    """The `main()` of every stage: read `params.yaml[name]`, own the stage's outputs, run, print the summary.

    `item` names a matrix arm (`train_sft@scale`): arms run side by side, the same arm never twice at once.
    Errors a user can fix (`PipelineError`: bad params, a busy stage, a missing model) print `error: …` and
    return 2 without a traceback. The stage exits if the process that started it dies (no orphans).
    """
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name}", parents=list(parents))
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--root", default=".", help="project root the stage reads and writes under")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stage = lock_name(name, item)
    try:
        cfg = load_config(config_cls, args.params, name)
        watch_parent()
        # under `accelerate launch` every rank runs this: the main rank owns the outputs, the others follow it
        with StageLock(Path(args.root), stage) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext():
            summary = run(cfg, Path(args.root))
    except ConfigError as e:
        print(f"error: {args.params}: {e}", file=sys.stderr)
        return 2
    except PipelineError as e:
        print(f"error: {stage}: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, sort_keys=True, indent=2))
    return 0


def matrix_main(
    name: str,
    config_cls: type[T],
    run: Callable[[T, Path, str], dict[str, Any]],
    argv: list[str] | None,
    flag: str,
    choices: Sequence[str],
    help: str,
) -> int:
    """The `main()` of a dvc.yaml matrix stage: read its item (`--arm`, `--init`, `--method`), then `stage_main`."""
    matrix = argparse.ArgumentParser(prog=f"python -m stages.{name}", add_help=False)
    matrix.add_argument(flag, required=True, choices=choices, help=help)
    args = list(sys.argv[1:] if argv is None else argv)
    wants_help = bool({"-h", "--help"} & set(args))  # then stage_main prints the usage, the matrix flag included
    item = None if wants_help else getattr(matrix.parse_known_args(args)[0], flag.lstrip("-").replace("-", "_"))
    return stage_main(name, config_cls, lambda cfg, root: run(cfg, root, item), args, item=item, parents=[matrix])
