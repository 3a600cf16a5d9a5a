"""Shared fixtures. The offline/telemetry environment is set before any test imports a library."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `stages` and `flows` are top-level packages of the project

from scalevlm.runtime import set_offline_env  # noqa: E402

set_offline_env()
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT
