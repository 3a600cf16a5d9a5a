"""stages: importing scalevlm first applies its offline defaults (scalevlm.env) before any ML library loads.

The stages import the `scalevlm` beside them (`../src`), not whichever one the interpreter's editable install points
at: a queued DVC experiment runs in a temporary copy of the repository, and it must run that copy's code, not the
main workspace's (which may have changed since the experiment was queued).
"""

import sys
from pathlib import Path

_SRC = str(Path(__file__).resolve().parents[1] / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

import scalevlm  # noqa: E402, F401
