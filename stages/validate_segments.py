"""validate_segments: the segment rule, answer, text and image checks as a Great Expectations suite; quarantine.

deps:  data/curate_dataset (records.jsonl, images/), src/scalevlm/validation, src/scalevlm/core/segments.py,
       src/scalevlm/records.py, params.yaml[validate_segments]
outs:  data/validate_segments/{train,val,test,rejected}.jsonl,
       reports/validate_segments/{metrics.json, gx_results.json, data_docs/}
cmd:   python -m stages.validate_segments

Every curated record is checked (see `scalevlm.validation.checks` for the rules and reason names) and lands in
`{split}.jsonl` (accepted, sorted by id) or `rejected.jsonl` (with all its reasons); accepted + rejected = input.
Image-path convention: accepted records' `images` are rewritten relative to the project root
(`data/curate_dataset/images/…`); images are not copied. Later stages read them with
`scalevlm.validation.load_split(root, split)` and `scalevlm.validation.image_paths(root, record)`.
The stage exits non-zero, naming the failed dataset expectations and the top reasons with example ids, when the
reject rate exceeds `max_reject_rate`, a split is below its minimum size, an accepted answer type is outside
`answer_types` or a length quantile is out of range; the reports are written first, for inspection.

Outside the pipeline: `python -m stages.validate_segments --input FILE.jsonl [--out DIR]` validates any file in
the curated schema (images relative to the file's folder, or to `--images-root`: give the project root to
re-check a validated split), prints a table of reasons with example ids and
writes nothing unless `--out` is given (then DIR gets the split files, rejected.jsonl, metrics, GX results and
Data Docs; image paths relative to `--root`). Exit status: 0 passed, 1 gate failed, 2 bad params.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from scalevlm.config import (
    Checked,
    ConfigError,
    NonEmpty,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    Probability,
    Problems,
    Text,
    config_dataclass,
    load_config,
)
from scalevlm.core.splits import SPLITS
from scalevlm.facts import CURATED_RECORDS, report_dir
from scalevlm.guard import atomic_dir
from scalevlm.runtime import stage_main, write_json
from scalevlm.validation.checks import LengthCounter, LengthLimits, SampleCheck, char_counter, token_counter
from scalevlm.validation.dataset import check_file, rejected_row, write_rejected
from scalevlm.validation.images import ImageLimits
from scalevlm.validation.layout import OUT_DIR, REJECTED_FILE, rebase_images, write_split
from scalevlm.validation.report import failure_message, metrics, summary_table
from scalevlm.validation.suite import (
    GateSpec,
    SuiteResults,
    assert_consistent,
    derived_frame,
    failed_expectations,
    run_suites,
)

NAME = "validate_segments"
IN_RECORDS = CURATED_RECORDS
OUT_DATA = OUT_DIR
OUT_REPORT = report_dir(NAME)
DOCS = "data_docs"
log = logging.getLogger(NAME)


class ValidationFailed(RuntimeError):
    """The dataset-level gate failed; the message names the failed expectations and the top reasons."""


@config_dataclass
class SplitSizes(Checked):
    train: NonNegativeInt
    val: NonNegativeInt
    test: NonNegativeInt


AnswerType = Literal["integer", "number", "choice", "text"]  # = scalevlm.records.ANSWER_TYPES (a test keeps them equal)


@config_dataclass
class Config(Checked):
    max_reject_rate: Probability
    min_split_size: SplitSizes
    answer_types: Annotated[tuple[AnswerType, ...], NonEmpty()]
    tokenizer: Text | None  # local from_pretrained folder: lengths in tokens; null: lengths in characters
    min_think_tokens: NonNegativeInt
    max_think_tokens: PositiveInt
    max_answer_tokens: PositiveInt
    min_think_chars: NonNegativeInt
    max_think_chars: PositiveInt
    max_answer_chars: PositiveInt
    min_image_px: PositiveInt
    max_image_px: PositiveInt
    max_image_bytes: PositiveInt
    length_quantiles: Annotated[tuple[Probability, ...], NonEmpty()]
    think_quantile_ranges: tuple[tuple[NonNegativeFloat, ...], ...]  # one [min, max] per quantile, in the length unit
    answer_quantile_ranges: tuple[tuple[NonNegativeFloat, ...], ...]
    examples: NonNegativeInt  # example ids kept per failing expectation / reason

    def check(self) -> Problems:
        for low, high in (("min_think_tokens", "max_think_tokens"), ("min_think_chars", "max_think_chars"),
                          ("min_image_px", "max_image_px")):
            if getattr(self, low) > getattr(self, high):
                yield low, f"{getattr(self, low)} exceeds {high} {getattr(self, high)}"
        for key in ("think_quantile_ranges", "answer_quantile_ranges"):
            ranges = getattr(self, key)
            if len(ranges) != len(self.length_quantiles) or any(len(r) != 2 or r[0] > r[1] for r in ranges):
                yield key, (f"needs one [min, max] (min <= max) per quantile in length_quantiles "
                            f"{list(self.length_quantiles)}, got {[list(r) for r in ranges]}")


@dataclass
class Validation:
    checks: list[SampleCheck]
    results: SuiteResults
    unit: str
    blank_lines: int = 0  # empty / ASCII-whitespace lines: counted, not records


def length_setup(cfg: Config, root: Path) -> tuple[LengthLimits, LengthCounter]:
    """Token limits and the tokenizer's counter when `tokenizer` is set (relative to root), else char limits."""
    if cfg.tokenizer is None:
        return LengthLimits(cfg.min_think_chars, cfg.max_think_chars, cfg.max_answer_chars, "chars"), char_counter
    path = Path(cfg.tokenizer) if Path(cfg.tokenizer).is_absolute() else root / cfg.tokenizer
    limits = LengthLimits(cfg.min_think_tokens, cfg.max_think_tokens, cfg.max_answer_tokens, "tokens")
    return limits, token_counter(path)


def gate_spec(cfg: Config, lengths: LengthLimits) -> GateSpec:
    """The suites' view of the config."""
    return GateSpec(
        max_reject_rate=cfg.max_reject_rate,
        min_split_size={s: getattr(cfg.min_split_size, s) for s in SPLITS},
        answer_types=cfg.answer_types,
        quantiles=cfg.length_quantiles,
        think_quantile_ranges=cfg.think_quantile_ranges,
        answer_quantile_ranges=cfg.answer_quantile_ranges,
        lengths=lengths,
        examples=cfg.examples,
    )


def validate(path: Path, cfg: Config, root: Path, docs_dir: Path | None, images_root: Path | None = None) -> Validation:
    """Check every line of `path` (images under `images_root`, default the file's folder), run the GX suites
    (Data Docs into `docs_dir` if given) and cross-check GX's counts with the checks'."""
    lengths, count = length_setup(cfg, root)
    limits = ImageLimits(cfg.min_image_px, cfg.max_image_px, cfg.max_image_bytes)
    read = check_file(path, lengths, limits, count, images_root)
    results = run_suites(derived_frame(read.checks), gate_spec(cfg, lengths), docs_dir)
    assert_consistent(results.samples, read.checks)
    return Validation(read.checks, results, lengths.unit, read.blank_lines)


def write_outputs(v: Validation, dataset_dir: Path, data_dir: Path, report_dir: Path, root: Path) -> dict[str, Any]:
    """Split files (image paths rebased onto `root`), the quarantine file, metrics and GX results."""
    accepted = [rebase_images(c.record, dataset_dir, root) for c in v.checks if c.accepted and c.record is not None]
    for split in SPLITS:
        write_split(data_dir / f"{split}.jsonl", [r for r in accepted if r.split == split])
    write_rejected(data_dir / REJECTED_FILE, [rejected_row(c) for c in v.checks if not c.accepted])
    out = metrics(v.checks, v.unit, v.blank_lines)
    out["gate_passed"] = v.results.passed
    out["failed_dataset_expectations"] = len(failed_expectations(v.results.dataset))
    write_json(report_dir / "metrics.json", out)
    write_json(report_dir / "gx_results.json", v.results.to_json_dict(), default=str)
    return out


def _clear(*dirs: Path) -> None:
    """Remove the stage's own output folders before writing."""
    for d in dirs:
        if d.exists():
            shutil.rmtree(d)  # outputs are rewritten completely, never merged with a previous run


def _clear_outputs(out: Path) -> None:
    """Remove only what `--out` writes: the folder may be a user's, never wipe it whole."""
    for name in (*(f"{s}.jsonl" for s in SPLITS), REJECTED_FILE, "metrics.json", "gx_results.json"):
        (out / name).unlink(missing_ok=True)
    _clear(out / DOCS)


def run(cfg: Config, root: Path) -> dict[str, Any]:
    """The DVC stage: validate the curated records, write outputs and reports, raise `ValidationFailed` on the gate."""
    data_dir, report_dir = root / OUT_DATA, root / OUT_REPORT
    # both folders are assembled in staging siblings and replace the previous ones only once complete; a failed
    # gate still publishes them (the quarantine and Data Docs are what the user needs to see), then fails
    with atomic_dir(data_dir) as data_tmp, atomic_dir(report_dir) as report_tmp:
        v = validate(root / IN_RECORDS, cfg, root, report_tmp / DOCS)
        summary = write_outputs(v, (root / IN_RECORDS).parent, data_tmp, report_tmp, root)
    log.info("accepted %d of %d records (%d rejected: %s)", summary["accepted"], summary["input"],
             summary["rejected"], summary["rejected_by_reason"])
    if not v.results.passed:
        where = f"{data_dir / REJECTED_FILE} and {report_dir / DOCS / 'index.html'}"
        raise ValidationFailed(failure_message(v.checks, failed_expectations(v.results.dataset), where))
    return summary


def validate_cli(args: argparse.Namespace) -> int:
    """`--input FILE`: validate one curated file, print the reason table, write only under `--out`."""
    try:
        cfg = load_config(Config, args.params, NAME)
    except ConfigError as e:
        print(f"error: {args.params}: {e}", file=sys.stderr)
        return 2
    path, out = Path(args.input), Path(args.out) if args.out else None
    images_root = Path(args.images_root) if args.images_root else path.parent
    if not path.is_file():  # checked before --out is cleared: a mistyped --input must not wipe earlier outputs
        print(f"error: --input {path} is not a file", file=sys.stderr)
        return 2
    if out is not None:
        _clear_outputs(out)
    v = validate(path, cfg, Path(args.root), out / DOCS if out else None, images_root)
    print(summary_table(v.checks, examples=3, blank_lines=v.blank_lines))
    if out is not None:
        write_outputs(v, images_root, out, out, Path(args.root))
        print(f"wrote {out}/{{train,val,test,rejected}}.jsonl, metrics.json, gx_results.json, {DOCS}/")
    if not v.results.passed:
        where = f"{out / REJECTED_FILE} and {out / DOCS / 'index.html'}" if out else ("--out DIR for the quarantine "
                                                                                      "file and Data Docs")
        print(failure_message(v.checks, failed_expectations(v.results.dataset), where), file=sys.stderr)
        return 1
    print("gate: passed")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stage entry point; with `--input` the stand-alone validator (see the module docstring)."""
    parser = argparse.ArgumentParser(prog=f"python -m stages.{NAME}", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--root", default=".", help="project root (default: .)")
    parser.add_argument("--input", help="validate this curated JSONL file instead of running the DVC stage")
    parser.add_argument("--out", help="with --input: write the outputs into this folder (default: write nothing)")
    parser.add_argument("--images-root", help="with --input: folder image paths are relative to (default: the "
                        "file's folder; give the project root to re-check a validated split)")
    args = parser.parse_args(argv)
    if (args.out or args.images_root) and not args.input:
        parser.error("--out and --images-root need --input (the DVC stage reads and writes its declared paths)")
    try:
        if args.input is None:
            return stage_main(NAME, Config, run, ["--params", args.params, "--root", args.root])
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return validate_cli(args)
    except ValidationFailed as e:  # the gate's verdict on the data
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # an unreadable --input or an unwritable --out is the user's to fix, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
