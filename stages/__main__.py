"""Check a params file against every stage's Config without running anything:

    python -m stages --check-params params.yaml

Exit 0 when every section loads, 2 with `error: <file>: <key>: <why>` otherwise. The flows run it (a subprocess:
flows never import stages) on params.yaml with a profile applied, before a Prefect server starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from scalevlm.config import ConfigError, load_config, load_params
from scalevlm.facts import STAGES


def check(path: str) -> list[str]:
    """Every stage's section of `path` loaded with its Config; the sections checked."""
    params = load_params(path)
    for name in STAGES:
        load_config(importlib.import_module(f"stages.{name}").Config, params, name)
    return list(STAGES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages", description=__doc__.splitlines()[0])
    parser.add_argument("--check-params", metavar="FILE", required=True, help="a params.yaml to check")
    args = parser.parse_args(argv)
    try:
        sections = check(args.check_params)
    except ConfigError as e:
        print(f"error: {args.check_params}: {e}", file=sys.stderr)
        return 2
    print(f"{args.check_params}: {len(sections)} sections valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
