"""The one base class of errors a user can cause and fix (bad params, a busy stage, a missing model …).

Their messages say what was received, what was expected and how to fix it; `scalevlm.runtime.stage_main`
prints them as `error: …` and exits with status 2, without a traceback. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """An error whose message tells the user what to fix."""


class MissingInputError(PipelineError, FileNotFoundError):
    """A stage's input (a model, a split, an image) is not there; the message names the stage that makes it."""
