"""Offline and telemetry defaults, applied when `scalevlm` is imported — before any stage, flow or test imports
transformers, datasets, huggingface_hub or evaluate (they read these variables at import time).

Offline holds whichever entry point starts a stage (`make`, `dvc repro`, `python -m stages.x`, a Prefect flow).
Going online is explicit: `SCALEVLM_ONLINE=1` (or `HF_HUB_OFFLINE=0`) turns all three hub switches off together;
a value the user set for any variable always wins.
"""

from __future__ import annotations

import os

HUB_SWITCHES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
TELEMETRY_ENV = {
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_EVALUATE_OFFLINE": "1",  # metrics are loaded by path from metrics/; never from the hub
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "TOKENIZERS_PARALLELISM": "false",
}
GO_ONLINE = "set SCALEVLM_ONLINE=1 (or HF_HUB_OFFLINE=0), e.g. `SCALEVLM_ONLINE=1 dvc repro`, to allow hub downloads"


def online_requested() -> bool:
    """True iff the user asked for hub access: SCALEVLM_ONLINE=1, or HF_HUB_OFFLINE explicitly false."""
    return os.environ.get("SCALEVLM_ONLINE", "").strip().lower() in ("1", "true", "yes") or os.environ.get(
        "HF_HUB_OFFLINE", ""
    ).strip().lower() in ("0", "false", "no")


def set_offline_env() -> None:
    """Default the telemetry and hub variables (a value already in the environment wins)."""
    hub = "0" if online_requested() else "1"
    for key in HUB_SWITCHES:
        os.environ.setdefault(key, hub)
    for key, value in TELEMETRY_ENV.items():
        os.environ.setdefault(key, value)
