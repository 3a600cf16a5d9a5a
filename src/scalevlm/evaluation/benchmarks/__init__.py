"""The paper's benchmarks (ScienceQA image subset, IconQA) beside the curated test split: their published layouts
(`sources`), evaluation and lmms-eval-readable sample logs (`evaluation`), and the comparison's per-benchmark rows
(`report`). Prompts and scoring follow lmms-eval (`scalevlm.core.mcq`)."""

INDEX = "index.json"  # reports/evaluate/<arm>/benchmarks/index.json: every benchmark evaluated, headline numbers
