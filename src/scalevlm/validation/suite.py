"""The Great Expectations suites over per-sample derived columns, and their Data Docs.

One row per input line (`derived_frame`): `id`, `id_key` (the id as compared for duplicates), `split`, `answer_type`,
string status columns (`segment_check`, `answer_check`, `image_check`, `text_check`, `schema_check`: "ok" or the failing
reasons joined by "+", so Data Docs tabulate reasons), integer lengths `think_len`/`answer_len`, `accepted` (bool) and
`rejected` (0/1).

Two suites run on that frame with an ephemeral context, a pandas data source and one validation definition each:

- `validate_segments.samples` — per-sample rules (one expectation per derived column). Failing rows are
  quarantined, not fatal; each expectation's `meta.reasons` lists the reasons it stands for, and
  `assert_consistent` checks GX's unexpected counts equal the Python checks' counts.
- `validate_segments.dataset` — the gate: reject rate <= `max_reject_rate`, each split's accepted size >= its
  minimum, accepted answer types in the declared set, think/answer length quantiles (accepted rows) in ranges.
  The stage fails iff this suite fails.

Data Docs are built into `docs_dir` through an explicitly configured filesystem site (the ephemeral context's
default site lives in a temp folder). GX does not HTML-escape descriptions, so they avoid `<` and `>`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.expectations.row_conditions import Column

from scalevlm.core.splits import SPLITS
from scalevlm.records import id_key
from scalevlm.validation.checks import COLUMN_REASONS, OK, STATUS_COLUMNS, LengthLimits, SampleCheck, status

SITE = "validate_segments"
NAME = "validate_segments"


@dataclass(frozen=True)
class GateSpec:
    """Everything the suites need; lengths are in `lengths.unit` (tokens or characters)."""

    max_reject_rate: float
    min_split_size: dict[str, int]
    answer_types: tuple[str, ...]
    quantiles: tuple[float, ...]
    think_quantile_ranges: tuple[tuple[float, ...], ...]
    answer_quantile_ranges: tuple[tuple[float, ...], ...]
    lengths: LengthLimits
    examples: int  # ids kept per failing expectation (GX partial_unexpected_count)


class ExpectLengthQuantilesToBeBetween(gxe.ExpectColumnQuantileValuesToBeBetween):
    """`ExpectColumnQuantileValuesToBeBetween` returning a plain bool `success`.

    GX 1.24 returns `np.all(...)` (a numpy bool), which the validation-results store cannot serialise
    ("Object of type bool is not JSON serializable"); rendering is inherited unchanged.
    """

    # private: GX 1.24 Expectation._validate computes `success`; the one place to make it a plain bool
    def _validate(
        self, metrics: dict, runtime_configuration: dict | None = None, execution_engine: Any = None
    ) -> dict[str, Any]:
        # private: GX 1.24 the parent's _validate, whose numpy bools are converted below
        out = super()._validate(metrics, runtime_configuration, execution_engine)
        out["success"] = bool(out["success"])
        details = out["result"].get("details", {})
        details["success_details"] = [bool(x) for x in details.get("success_details", [])]
        return out


def _printable(text: str | None) -> str | None:
    """Ids with undecodable bytes are escaped so GX results and HTML can be written as UTF-8."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def derived_frame(checks: Sequence[SampleCheck]) -> pd.DataFrame:
    """One row per checked line; columns not checked for a bad-schema line are null (GX skips nulls)."""
    rows = []
    for c in checks:
        rec = c.record
        # ascii(): an injective, writable form of the key (two ids collide in GX exactly when they do in Python)
        row: dict[str, Any] = {"id": _printable(c.id), "id_key": ascii(id_key(c.id)) if c.id is not None else None,
                               "line": c.line}
        row["split"] = rec.split if rec else None
        row["answer_type"] = rec.answer_type if rec else None
        row.update({col: status(c, col) for col in STATUS_COLUMNS})
        row["think_len"], row["answer_len"] = c.think_len, c.answer_len
        row["accepted"], row["rejected"] = c.accepted, int(not c.accepted)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["id", "id_key", "line", "split", "answer_type", *STATUS_COLUMNS, "think_len",
                                        "answer_len", "accepted", "rejected"])
    return frame.astype({"think_len": "float64", "answer_len": "float64", "accepted": bool, "rejected": "int64"})


def _meta(column: str) -> dict[str, Any]:
    """Per-sample expectation metadata: the reasons it stands for (checked by `assert_consistent`)."""
    return {"level": "sample", "reasons": list(COLUMN_REASONS[column])}


def sample_expectations(spec: GateSpec) -> list[gxe.Expectation]:
    """Per-sample rules; a row failing any of them is quarantined with the matching reasons."""
    lim = spec.lengths
    exps: list[gxe.Expectation] = [
        gxe.ExpectColumnValuesToBeInSet(
            column=col, value_set=[OK], meta=_meta(col),
            description=f"every record passes `{col}` (otherwise quarantined; unexpected values name the reasons)",
        )
        for col in STATUS_COLUMNS
    ]
    exps += [
        gxe.ExpectColumnValuesToBeBetween(
            column="think_len", min_value=lim.think_min, max_value=lim.think_max, meta=_meta("think_len"),
            description=f"think length in [{lim.think_min}, {lim.think_max}] {lim.unit}",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="answer_len", max_value=lim.answer_max, meta=_meta("answer_len"),
            description=f"answer length at most {lim.answer_max} {lim.unit}",
        ),
        gxe.ExpectColumnValuesToBeUnique(column="id_key", meta=_meta("id_key"),
                                         description="ids are unique, ignoring case and surrounding whitespace"),
        gxe.ExpectColumnValuesToBeInSet(
            column="split", value_set=list(SPLITS), meta=_meta("split"), description=f"split in {list(SPLITS)}"
        ),
    ]
    return exps


def dataset_expectations(spec: GateSpec) -> list[gxe.Expectation]:
    """The gate: the stage fails when any of these fails."""
    accepted = Column("accepted") == True  # noqa: E712 (a GX condition object, not a Python comparison)
    meta = {"level": "dataset"}
    exps: list[gxe.Expectation] = [
        gxe.ExpectColumnMeanToBeBetween(
            column="rejected", min_value=0, max_value=spec.max_reject_rate, meta=meta,
            description=f"reject rate at most max_reject_rate {spec.max_reject_rate}",
        )
    ]
    exps += [
        gxe.ExpectTableRowCountToBeBetween(
            min_value=spec.min_split_size[split], row_condition=accepted & (Column("split") == split), meta=meta,
            description=f"split '{split}' has at least {spec.min_split_size[split]} accepted records",
        )
        for split in SPLITS
    ]
    exps.append(gxe.ExpectColumnValuesToBeInSet(
        column="answer_type", value_set=list(spec.answer_types), row_condition=accepted, meta=meta,
        description=f"accepted answer types in the declared set {list(spec.answer_types)}",
    ))
    for column, ranges in (("think_len", spec.think_quantile_ranges), ("answer_len", spec.answer_quantile_ranges)):
        exps.append(ExpectLengthQuantilesToBeBetween(
            column=column, row_condition=accepted, meta=meta,
            quantile_ranges={"quantiles": list(spec.quantiles), "value_ranges": [list(r) for r in ranges]},
            description=f"{column} quantiles {list(spec.quantiles)} of accepted records ({spec.lengths.unit}) in range",
        ))
    return exps


@dataclass
class SuiteResults:
    samples: ExpectationSuiteValidationResult
    dataset: ExpectationSuiteValidationResult

    @property
    def passed(self) -> bool:
        return bool(self.dataset.success)

    def to_json_dict(self) -> dict[str, Any]:
        return {"samples": self.samples.to_json_dict(), "dataset": self.dataset.to_json_dict()}


def _context(docs_dir: Path | None) -> Any:
    """An ephemeral GX context, quiet, with a filesystem Data Docs site at `docs_dir` when given."""
    for name in ("great_expectations", "great_expectations.data_context.types.base"):  # the latter pins INFO
        logging.getLogger(name).setLevel(logging.WARNING)  # GX's INFO lines are setup chatter
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    if docs_dir is not None:
        context.add_data_docs_site(site_name=SITE, site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    return context


def run_suites(frame: pd.DataFrame, spec: GateSpec, docs_dir: Path | None = None) -> SuiteResults:
    """Validate `frame` with both suites; when `docs_dir` is given, rebuild the Data Docs there from scratch."""
    context = _context(docs_dir)
    batch = (context.data_sources.add_pandas(NAME).add_dataframe_asset("samples")
             .add_batch_definition_whole_dataframe("all"))
    result_format = {"result_format": "SUMMARY", "unexpected_index_column_names": ["id"],
                     "partial_unexpected_count": spec.examples}
    run_id = RunIdentifier(run_name=NAME)
    results = {}
    for level, expectations in (("samples", sample_expectations(spec)), ("dataset", dataset_expectations(spec))):
        suite = context.suites.add(gx.ExpectationSuite(name=f"{NAME}.{level}", expectations=expectations))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{NAME}.{level}", data=batch, suite=suite))
        results[level] = definition.run(batch_parameters={"dataframe": frame}, result_format=result_format,
                                        run_id=run_id)
    if docs_dir is not None:
        if docs_dir.exists():
            shutil.rmtree(docs_dir)  # rewritten completely: no pages from earlier runs
        context.build_data_docs(site_names=[SITE])
    return SuiteResults(samples=results["samples"], dataset=results["dataset"])


def failed_expectations(result: ExpectationSuiteValidationResult) -> list[dict[str, Any]]:
    """Failing expectations of one suite: type, column, description, observed value or count, example ids."""
    failed = []
    for r in result.results:
        if r.success:
            continue
        cfg, res = r.expectation_config, r.result or {}
        entry = {"expectation": cfg.type, "column": cfg.kwargs.get("column"), "description": cfg.description,
                 "observed_value": res.get("observed_value"), "unexpected_count": res.get("unexpected_count"),
                 "examples": [row.get("id") for row in res.get("partial_unexpected_index_list") or []]}
        if r.exception_info and r.exception_info.get("raised_exception"):
            entry["exception"] = r.exception_info.get("exception_message")
        failed.append(entry)
    return failed


def assert_consistent(result: ExpectationSuiteValidationResult, checks: Sequence[SampleCheck]) -> None:
    """GX's unexpected count of each per-sample expectation must equal the records failing its reasons."""
    for r in result.results:
        reasons = set((r.expectation_config.meta or {}).get("reasons", ()))
        expected = sum(1 for c in checks if reasons & set(c.reasons))
        got = (r.result or {}).get("unexpected_count")
        if got != expected:
            raise RuntimeError(
                f"GX expectation {r.expectation_config.type}({r.expectation_config.kwargs.get('column')}) counts "
                f"{got} unexpected rows but the checks reject {expected} for {sorted(reasons)}: a bug in "
                f"scalevlm.validation (exception: {r.exception_info})"
            )
