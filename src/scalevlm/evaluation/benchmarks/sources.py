"""The paper's benchmarks, read in their published layouts: ScienceQA (image subset) and IconQA.

`path_or_hub_id` is a hub id (loaded with `config`, `split`, `revision`; offline runs need it in the hub cache) or
a local copy: a dataset folder as downloaded (its README's `configs:` pick the files, `config` names one), or
one data file (.parquet, .json/.jsonl, .csv, .arrow). A local copy must resolve inside the project (keep it under
data/local/ so DVC sees when it changes). Dataset scripts are never run.

Published layouts read (row level):

- `scienceqa`: lmms-lab/ScienceQA, config `ScienceQA-IMG` (what lmms-eval's `scienceqa_img` task reads; also
  lmms-lab/ScienceQA-IMG and derek-thomas/ScienceQA, same columns): `image` (an Image feature; None for the
  text-only questions of derek-thomas/ScienceQA, which are skipped as `no_image`: the image subset), `question`,
  `choices` (list of strings), `answer` (int index into choices), `hint` (context, may be empty), and `subject`,
  `grade`, `task`, … kept as metadata. Ids are `<name>/<split>-<row>` (the set has no id column).
- `iconqa`: lmms-lab/ICON-QA (lmms-eval's `iconqa_val`/`iconqa_test`; splits `val`, `test`): `question_id`,
  `question`, `choices` (one comma-joined string), `answer` (a string: the chosen option's text, which for image
  choices is its file name `choice_k.png`), `query_image`, `choice_image_0`, `choice_image_1` (Image features, None
  when absent), `ques_type` (`choose_txt` | `choose_img` | `fill_in_blank`), `grade`, `label`, `skills`.
  `choose_txt`: the options are the choices; `choose_img`: the query image then each present choice image, the
  options "The first image.", …; an answer naming a choice image the row does not hold is skipped as
  `answer_image_missing` (lmms-lab's copy keeps two choice images). `fill_in_blank`: free text, scored by exact
  match. The answer of `choose_txt` is assumed to be the option text, as it is for `choose_img` (confirmed there
  from public loaders); a row whose answer is not one of its choices is skipped as `answer_not_in_choices`.

Rows that cannot be scored are skipped with a named reason (counted in the benchmark's metrics), never silently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from scalevlm.config import Checked, PositiveInt, Problems, Text, config_dataclass
from scalevlm.core import mcq
from scalevlm.env import GO_ONLINE
from scalevlm.errors import PipelineError
from scalevlm.sources.base import AdapterError
from scalevlm.sources.hub import BUILDERS, image_from_value, local_path

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_BATCH = 64


class BenchmarkError(PipelineError, ValueError):
    """A benchmark that cannot be read as configured (path, split, layout)."""


@config_dataclass
class Benchmark(Checked):
    name: Text  # report folder and row label: lower-case letters, digits, '-', '_'
    adapter: Text  # a key of KINDS: how a row of the published layout becomes an Item
    path_or_hub_id: Text  # hub id, or a local folder / data file in the dataset's published layout
    config: Text | None  # hub config (lmms-lab/ScienceQA: ScienceQA-IMG); null = the dataset's only/default one
    split: Text
    revision: Text | None  # hub ids only
    limit: PositiveInt | None  # first N rows read; None = all

    def check(self) -> Problems:
        if not _NAME.fullmatch(self.name):
            yield "name", f"{self.name!r} must be lower-case letters, digits, '-' or '_' (it names a report folder)"
        if self.adapter not in KINDS:
            yield "adapter", f"{self.adapter!r} is not one of {sorted(KINDS)}"


@dataclass(frozen=True)
class Item:
    """One scorable benchmark question: images in prompt order, the lmms-eval prompt, the target."""

    id: str
    images: tuple[Image.Image, ...]
    prompt: str
    target: str  # the option letter, or the free-text answer
    choices: tuple[str, ...] | None  # option texts (None: free text)
    group: str  # ScienceQA subject, IconQA question type
    doc: dict[str, Any] = field(default_factory=dict)  # the row's text fields (lmms-eval's `doc`, images left out)


@dataclass(frozen=True)
class Skipped:
    id: str
    reason: str
    detail: str


def lmms_task(bench: Benchmark) -> str:
    """lmms-eval's name of the task this benchmark corresponds to (names the samples file)."""
    return KINDS[bench.adapter].lmms_task.format(split=bench.split)


# Loading ---------------------------------------------------------------------------------------------------------


def load(bench: Benchmark, root: Path) -> tuple[Any, Path | None]:
    """The split as a `datasets.Dataset`, and the local folder image paths resolve against (None for a hub id)."""
    import datasets

    where = f"evaluate.benchmarks[{bench.name}]"
    try:
        local = local_path(bench.path_or_hub_id, root)
    except PipelineError as e:
        raise BenchmarkError(f"{where}: {e}") from None
    if local is not None and not local.is_relative_to(root.resolve()):
        raise BenchmarkError(f"{where}: path_or_hub_id {bench.path_or_hub_id!r} resolves to {local}, outside the "
                             f"project: copy the dataset under data/local/ (so DVC tracks it)")
    if local is not None and bench.revision is not None:
        raise BenchmarkError(f"{where}: revision applies to hub ids only; set it to null for the local copy {local}")
    if local is None:
        args, kwargs, base = (bench.path_or_hub_id,), {"name": bench.config, "revision": bench.revision}, None
    elif local.is_file():
        if local.suffix not in BUILDERS or bench.config is not None:
            raise BenchmarkError(f"{where}: {local.name} must be one data file ({sorted(BUILDERS)}) with config null")
        args, kwargs, base = (BUILDERS[local.suffix],), {"data_files": {bench.split: [str(local)]}}, local.parent
    else:
        args, kwargs, base = (str(local),), {"name": bench.config}, local
    try:
        ds = datasets.load_dataset(*args, split=bench.split, **kwargs)
    except Exception as e:  # the library raises many types; the user needs one clear message
        offline = local is None and os.environ.get("HF_DATASETS_OFFLINE") == "1"
        hint = f" The hub is offline (the project's default): {GO_ONLINE}, or point path_or_hub_id at a local copy." \
            if offline else ""
        raise BenchmarkError(f"{where}: {bench.path_or_hub_id!r} (config {bench.config!r}, split {bench.split!r}) "
                             f"could not be loaded: {type(e).__name__}: {e}.{hint}") from e
    return ds, base


def open_checked(bench: Benchmark, root: Path) -> tuple[Any, Path | None]:
    """`load`, then BenchmarkError unless the split has the columns its adapter reads."""
    ds, base = load(bench, root)
    absent = [c for c in KINDS[bench.adapter].columns if c not in ds.column_names]
    if absent:
        raise BenchmarkError(f"evaluate.benchmarks[{bench.name}]: adapter {bench.adapter!r} reads columns "
                             f"{list(KINDS[bench.adapter].columns)}; {bench.path_or_hub_id!r} lacks {absent} "
                             f"(its columns: {ds.column_names})")
    return ds, base


def read(bench: Benchmark, root: Path) -> Iterator[Item | Skipped]:
    """Every row of the configured split (up to `limit`), as an Item or a Skipped with its reason."""
    ds, base = open_checked(bench, root)
    n = len(ds) if bench.limit is None else min(bench.limit, len(ds))
    arrow = ds.with_format("arrow")  # raw values: an undecodable image is a Skipped, not a crash
    adapt = KINDS[bench.adapter].item
    for start in range(0, n, _BATCH):
        for offset, row in enumerate(arrow[start : min(start + _BATCH, n)].to_pylist()):
            index = start + offset
            key = f"{bench.name}/{row['question_id']}" if bench.adapter == "iconqa" and row.get("question_id") \
                else f"{bench.name}/{bench.split}-{index}"
            try:
                yield adapt(row, key, base)
            except AdapterError as e:
                yield Skipped(key, e.reason, e.detail)


# Adapters (one row of the published layout -> Item; AdapterError(reason) when it cannot be scored) -------------


def _text(row: dict[str, Any], column: str, required: bool = True) -> str:
    value = row.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise AdapterError(f"no_{column}", f"column '{column}' is empty")
        return ""
    if not isinstance(value, str):
        raise AdapterError("bad_field_type", f"column '{column}' holds {type(value).__name__}, expected text")
    return value.strip()


def _image(row: dict[str, Any], column: str, base: Path | None) -> Image.Image | None:
    value = row.get(column)
    if value is None or (isinstance(value, dict) and not value.get("bytes") and not value.get("path")):
        return None
    return image_from_value(value, base, column)


def _doc(row: dict[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    return {c: row[c] for c in columns if c in row and isinstance(row[c], str | int | float | list | type(None))}


def scienceqa_item(row: dict[str, Any], key: str, base: Path | None) -> Item:
    image = _image(row, "image", base)
    if image is None:
        raise AdapterError("no_image", "a text-only question (the image subset keeps only questions with an image)")
    choices = row.get("choices")
    if (not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices)
            or len(choices) > 26):
        raise AdapterError("bad_choices", f"column 'choices' must hold 1-26 strings, got {choices!r}")
    answer = row.get("answer")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        raise AdapterError("bad_answer",
                           f"column 'answer' must be an index into the {len(choices)} choices, got {answer!r}")
    question, hint = _text(row, "question"), _text(row, "hint", required=False)
    doc = _doc(row, ("question", "hint", "choices", "answer", "subject", "grade", "topic", "category", "skill", "task"))
    return Item(id=key, images=(image,), prompt=mcq.scienceqa_prompt(question, choices, hint or None),
                target=mcq.option_letter(answer), choices=tuple(choices), group=str(row.get("subject") or "all"),
                doc=doc)


def iconqa_item(row: dict[str, Any], key: str, base: Path | None) -> Item:
    kind, question = _text(row, "ques_type"), _text(row, "question")
    answer = _text(row, "answer")
    query = _image(row, "query_image", base)
    if query is None:
        raise AdapterError("no_image", "column 'query_image' is empty")
    doc = _doc(row, ("question_id", "question", "choices", "answer", "ques_type", "grade", "label", "skills"))
    if kind == "fill_in_blank":
        return Item(id=key, images=(query,), prompt=mcq.iconqa_prompt(question, None), target=answer, choices=None,
                    group=kind, doc=doc)
    if kind not in ("choose_txt", "choose_img"):
        raise AdapterError("bad_ques_type", f"ques_type {kind!r} is not choose_txt, choose_img or fill_in_blank")
    listed = [c.strip() for c in _text(row, "choices").split(",")]
    if answer not in listed:
        raise AdapterError("answer_not_in_choices", f"answer {answer!r} is not one of the choices {listed}")
    index = listed.index(answer)
    images: list[Image.Image] = [query]
    options: tuple[str, ...] = tuple(listed)
    if kind == "choose_img":
        present = [im for k in range(len(mcq.ORDINALS)) if (im := _image(row, f"choice_image_{k}", base)) is not None]
        if not present:
            raise AdapterError("answer_image_missing", "a choose_img row without choice images")
        if index >= len(present):
            raise AdapterError("answer_image_missing", f"answer {answer!r} names choice image {index}, the row holds "
                                                       f"{len(present)}")
        images += present
        options = mcq.image_options(len(present))
    if len(options) > 26:
        raise AdapterError("bad_choices", f"{len(options)} choices; at most 26 have option letters")
    return Item(id=key, images=tuple(images), prompt=mcq.iconqa_prompt(question, options),
                target=mcq.option_letter(index),
                choices=options, group=kind, doc=doc)


@dataclass(frozen=True)
class Kind:
    """Everything one published benchmark layout needs: its required columns, the lmms-eval task it matches
    (`{split}` filled in), and how one row becomes an Item. A new benchmark is one entry of KINDS."""

    columns: tuple[str, ...]
    lmms_task: str
    item: Callable[[dict[str, Any], str, Path | None], Item]


KINDS: dict[str, Kind] = {
    "scienceqa": Kind(("image", "question", "choices", "answer"), "scienceqa_img", scienceqa_item),
    "iconqa": Kind(("question", "choices", "answer", "query_image", "ques_type"), "iconqa_{split}", iconqa_item),
}
