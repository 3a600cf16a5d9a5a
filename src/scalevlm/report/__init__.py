"""Human-readable reports written from computed numbers: Markdown tables, generated prose, plots. No statistics
here (those are in `scalevlm.core`) and no reading of the pipeline's files (the stages do that)."""
