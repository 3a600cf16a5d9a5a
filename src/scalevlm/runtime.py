"""Process setup shared by every stage entry point: offline/telemetry environment, logging, the CLI shell."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from scalevlm.config import ConfigError, load_config

T = TypeVar("T")

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_offline_env(allow_hub: bool = False) -> None:
    """Default the telemetry/offline variables (an explicit value in the environment wins).

    `allow_hub=True` leaves the hub variables alone so a real run may download a model or dataset.
    """
    for key, value in OFFLINE_ENV.items():
        if allow_hub and key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            continue
        os.environ.setdefault(key, value)


def set_torch_threads(n: int) -> None:
    """Pin torch's intra-op CPU threads (0 leaves torch's default).

    The tiny model runs many small ops: extra OpenMP threads barely help, and on 2 cores shared with other
    processes they stalled training and generation badly (steps 0.25 s → 4–5 s, generation up to 50× slower).
    """
    if n > 0:
        import torch

        torch.set_num_threads(n)


def write_json(path: Path, obj: Any) -> None:
    """Canonical JSON (sorted keys, 2-space indent, trailing newline) so equal results are equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def stage_main(name: str, config_cls: type[T], run: Callable[[T, Path], dict[str, Any]], argv: list[str] | None = None) -> int:
    """The `main()` of every stage: read `params.yaml[name]`, run in the project root, print the summary."""
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name}")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--root", default=".", help="project root the stage reads and writes under")
    args = parser.parse_args(argv)
    set_offline_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(config_cls, args.params, name)
    except ConfigError as e:
        print(f"error: {args.params}: {e}", file=sys.stderr)
        return 2
    summary = run(cfg, Path(args.root))
    print(json.dumps(summary, sort_keys=True, indent=2))
    return 0
