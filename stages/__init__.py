"""stages: importing scalevlm first applies its offline defaults (scalevlm.env) before any ML library loads."""

import scalevlm  # noqa: F401
