"""Validation of curated records before training: per-sample checks, a Great Expectations suite, Data Docs.

Modules: `checks` (pure per-sample checks and reason names), `images` (image file checks), `dataset` (reading
a curated JSONL file into checks), `suite` (the GX suites over per-sample derived columns and the Data Docs),
`report` (counts, the summary table, the failure message), `layout` (where validated data lives).

Later stages read validated data through `read_split` (sorted, limited, an empty split refused), `load_split`,
`image_paths` and `resolve_image` (re-exported here): validated image paths are relative to the project root (see
`layout`).
"""

from scalevlm.validation.layout import OUT_DIR, image_paths, load_split, read_split, resolve_image

__all__ = ["OUT_DIR", "image_paths", "load_split", "read_split", "resolve_image"]
