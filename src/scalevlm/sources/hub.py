"""Hugging Face datasets, by hub id or as a local folder / data file in the dataset's published layout.

`name` is a local path when it exists (relative paths are resolved against the project root), else a hub id
(`owner/name`, loaded with `revision`; offline runs need the dataset in the hub cache). A local path that resolves
outside the project root (absolute, `..`, `~`, or a symlink out) is refused unless the dataset sets
`allow_outside_project: true` (DVC only tracks data inside the project). A local data file is loaded with its
builder (`json` for .json/.jsonl, `parquet`, `csv`, `arrow`); a local folder with the data files found by the hub's
split-naming rules, only data files counted (image folders beside them are not a dataset), or by the folder's own
README `configs:` when it has them. Dataset scripts are never run.

Adapters (see `adapters` for the published schemas): `vision_r1` and `r1_onevision` read `conversations`
(or `messages`) + `image`/`images` with `<think>` + free-text answers, `llava_cot` the same columns with
`<SUMMARY>…<CONCLUSION>` answers, `mapped` the columns named in `field_map` (keys: image or images, question,
answer, and optionally reasoning, answer_type, choices; without `reasoning` the answer column is read as a whole
completion). Images may be decoded images, `{bytes, path}` dicts, base64 strings, or paths relative to the local
dataset folder (refused when absolute or escaping it). Rows are read as raw Arrow values, so a corrupt image
is a Dropped `image_unreadable`, never a crash. Keys are `<name>-<split>-<row index>`, sanitised.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image

from scalevlm.config import Checked, NonNegativeInt, Problems, Text, config_dataclass
from scalevlm.sources import adapters
from scalevlm.sources.base import AdapterError, Candidate, Dropped, SourceContext, SourceError
from scalevlm.sources.local import open_rgb, resolve_inside, upright_rgb

if TYPE_CHECKING:  # `datasets` is imported when a dataset is loaded: curation without hub sources skips its import cost
    import datasets

BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
FIELD_KEYS = ("image", "images", "question", "reasoning", "answer", "answer_type", "choices")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]{64,}")
_BATCH = 256


@config_dataclass
class HubDataset(Checked):
    name: Text  # hub id, or a local folder / data file in the dataset's published format
    split: Text
    revision: Text | None
    adapter: Literal["mapped", "vision_r1", "llava_cot", "r1_onevision"]
    field_map: dict[str, str]
    limit: NonNegativeInt | None  # rows read at most; field_map is checked by check_field_map (also at load)
    allow_outside_project: bool = False  # a local `name` resolving outside the project root is refused unless true


@config_dataclass
class HubConfig(Checked):
    enabled: bool
    datasets: tuple[HubDataset, ...]

    def check(self) -> Problems:
        if self.enabled and not self.datasets:
            yield "datasets", "is empty while enabled is true: list a dataset or set enabled: false"


Adapted = tuple[adapters.Normalised, str, tuple[Any, ...], dict[str, Any]]  # sample, image column, values, extras


def hub_source(cfg: HubConfig, ctx: SourceContext) -> Iterator[Candidate | Dropped]:
    for i, spec in enumerate(cfg.datasets):  # every dataset's settings first: fail before yielding anything
        check_field_map(spec)
        check_location(spec, i, ctx.root)
    for spec in cfg.datasets:
        yield from read_dataset(spec, ctx.root)


def read_dataset(spec: HubDataset, root: Path) -> Iterator[Candidate | Dropped]:
    ds, base = load(spec, root)
    check_columns(spec, ds.column_names)
    prefix = f"{_slug(spec.name)}-{_slug(spec.split)}"
    n = len(ds) if spec.limit is None else min(spec.limit, len(ds))
    arrow = ds.with_format("arrow")  # raw values: images stay undecoded until read_row catches their errors
    for start in range(0, n, _BATCH):
        for offset, row in enumerate(arrow[start : min(start + _BATCH, n)].to_pylist()):
            yield read_row(row, start + offset, spec, base, f"{prefix}-{start + offset}")


def read_row(row: dict[str, Any], index: int, spec: HubDataset, base: Path | None, key: str) -> Candidate | Dropped:
    where = f"{spec.name} [{spec.split}] row {index}"
    image_cols = _image_columns(spec)
    try:
        sample, column, values, extra = ADAPTERS[spec.adapter](row, spec.field_map)
        images = tuple(image_from_value(v, base, f"{column}[{i}]") for i, v in enumerate(values))
    except AdapterError as e:
        return Dropped(key, e.reason, f"{where}: {e.detail}", _jsonable(row, image_cols))
    provenance = {"dataset": spec.name, "revision": spec.revision, "split": spec.split, "row": index,
                  "adapter": spec.adapter, **extra}
    if isinstance(row.get("id"), str | int):
        provenance["id"] = row["id"]
    return Candidate(key=key, images=images, question=sample.question, reasoning=sample.reasoning,
                     answer=sample.answer, answer_type=sample.answer_type, choices=sample.choices,
                     provenance=provenance)


# Configuration checks ------------------------------------------------------------------------------------------


def check_field_map(spec: HubDataset) -> None:
    fm = spec.field_map
    if spec.adapter != "mapped":
        if fm:
            raise SourceError(f"hub dataset {spec.name!r}: field_map is read only by adapter 'mapped'; "
                              f"leave it {{}} for adapter {spec.adapter!r}")
        return
    unknown = sorted(set(fm) - set(FIELD_KEYS))
    missing = [k for k in ("question", "answer") if k not in fm]
    images = [k for k in ("image", "images") if k in fm]
    if unknown or missing or len(images) != 1:
        raise SourceError(
            f"hub dataset {spec.name!r}: field_map {fm} is invalid (unknown keys {unknown}, missing keys {missing}, "
            f"image keys {images}); keys map curated fields to columns: {list(FIELD_KEYS)}, with 'question', "
            "'answer' and exactly one of 'image'/'images' required"
        )


def check_location(spec: HubDataset, index: int, root: Path) -> None:
    """A local `name` must resolve inside the project root unless `allow_outside_project` is set."""
    local = local_path(spec.name, root)
    project = root.resolve()
    if local is not None and not local.is_relative_to(project) and not spec.allow_outside_project:
        raise SourceError(
            f"curate_dataset.sources.hub.datasets[{index}].name = {spec.name!r} resolves to {local}, outside the "
            f"project {project}: copy the dataset under data/local/ (so DVC tracks it), or set "
            f"curate_dataset.sources.hub.datasets[{index}].allow_outside_project: true to read it where it is"
        )


def check_columns(spec: HubDataset, columns: list[str]) -> None:
    if spec.adapter == "mapped":
        absent = sorted({c for c in spec.field_map.values() if c not in columns})
        if absent:
            raise SourceError(f"hub dataset {spec.name!r}: field_map names columns {absent} that it does not have; "
                              f"its columns are {columns}")
        return
    if not {"conversations", "messages"} & set(columns) or not {"image", "images"} & set(columns):
        raise SourceError(
            f"hub dataset {spec.name!r}: adapter {spec.adapter!r} reads 'conversations' (or 'messages') and "
            f"'image' (or 'images'), but the columns are {columns}; use adapter 'mapped' with a field_map"
        )


def _image_columns(spec: HubDataset) -> list[str]:
    if spec.adapter == "mapped":
        return [spec.field_map[k] for k in ("image", "images") if k in spec.field_map]
    return ["image", "images"]


# Loading -------------------------------------------------------------------------------------------------------


def load(spec: HubDataset, root: Path) -> tuple[datasets.Dataset, Path | None]:
    """The dataset and the folder its relative image paths are resolved against (None for a hub id)."""
    local = local_path(spec.name, root)
    if local is None:
        return _load(spec, spec.name, revision=spec.revision), None
    if spec.revision is not None:
        raise SourceError(f"hub dataset {spec.name!r} is a local path; `revision` applies to hub ids only: set null")
    if local.is_file():
        files = {_split_name(spec.split): [str(local)]}
        return _load(spec, _builder(spec, [local]), data_files=files), local.parent
    if _has_readme_configs(local):
        return _load(spec, str(local)), local
    files = data_files(spec, local)
    return _load(spec, _builder(spec, [Path(f) for fs in files.values() for f in fs]), data_files=files), local


def local_path(name: str, root: Path) -> Path | None:
    """`name` as an existing local path, None for a hub id; SourceError for a path-like name that is missing."""
    path = Path(name).expanduser()
    path = path if path.is_absolute() else root / path
    if path.exists():
        return path.resolve()
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).suffix in BUILDERS:
        raise SourceError(f"hub dataset {name!r}: local path {path} not found (a hub id is 'owner/name')")
    return None


def data_files(spec: HubDataset, folder: Path) -> dict[str, list[str]]:
    """Data files per split by the hub's own naming rules, looking only at data files.

    `get_data_patterns` would also see image folders (a `sqa/train/` image folder reads as the train split), so the
    same rule is run with a resolver restricted to data-file extensions.
    """
    # private: datasets 5.2 _get_data_files_patterns is the hub's split-naming rule with a pluggable resolver;
    # the public get_data_patterns cannot be restricted to data files (see the docstring)
    from datasets.data_files import DataFilesDict, _get_data_files_patterns, resolve_pattern

    suffixes = sorted(BUILDERS)
    resolver = partial(resolve_pattern, base_path=str(folder), allowed_extensions=suffixes)
    try:
        patterns = _get_data_files_patterns(resolver)
    except FileNotFoundError as e:
        raise SourceError(f"hub dataset {spec.name!r}: no data files ({suffixes}) in {folder}") from e
    found = DataFilesDict.from_patterns(patterns, base_path=str(folder), allowed_extensions=suffixes)
    files = {str(split): sorted(fs) for split, fs in found.items() if fs}
    if _split_name(spec.split) not in files:
        raise SourceError(f"hub dataset {spec.name!r}: no data files for split {spec.split!r} in {folder} "
                          f"(splits found: {sorted(files)})")
    return files


def _builder(spec: HubDataset, files: list[Path]) -> str:
    kinds = {BUILDERS.get(f.suffix, f.suffix) for f in files}
    if len(kinds) != 1 or not kinds <= set(BUILDERS.values()):
        raise SourceError(f"hub dataset {spec.name!r}: data files {[f.name for f in files]} need one builder of "
                          f"{sorted(set(BUILDERS.values()))}; point `name` at a single data file")
    return next(iter(kinds))


def _load(spec: HubDataset, path: str, **kwargs: Any) -> datasets.Dataset:
    import datasets

    try:
        ds = datasets.load_dataset(path, split=spec.split, **kwargs)
    except Exception as e:  # the library raises many types; the user needs one clear message
        raise SourceError(
            f"hub dataset {spec.name!r} (split {spec.split!r}, revision {spec.revision!r}) could not be loaded: "
            f"{type(e).__name__}: {e}. Offline, point `name` at a local copy (folder or data file)."
        ) from e
    if not isinstance(ds, datasets.Dataset):
        raise SourceError(f"hub dataset {spec.name!r}: split {spec.split!r} did not give one table "
                          f"({type(ds).__name__})")
    return ds


def _split_name(split: str) -> str:
    return re.split(r"[\[+]", split, maxsplit=1)[0].strip()


def _has_readme_configs(folder: Path) -> bool:
    readme = folder / "README.md"
    return readme.is_file() and re.search(r"^configs:", readme.read_text(encoding="utf-8"), re.MULTILINE) is not None


# Adapters ------------------------------------------------------------------------------------------------------


def _values(value: Any, column: str) -> tuple[Any, ...]:
    if value is None or value == "" or value == []:
        raise AdapterError("missing_image", f"column '{column}' is empty; every row needs an image")
    return tuple(value) if isinstance(value, list) else (value,)


def adapt_conversation(row: dict[str, Any], style: adapters.Style) -> Adapted:
    field = "conversations" if row.get("conversations") is not None else "messages"
    question, completion, turns = adapters.conversation_pair(row.get(field), field)
    reasoning, answer = adapters.split_completion(completion, style)
    column = "images" if row.get("images") not in (None, []) else "image"
    values = _values(row.get(column), column)
    adapters.check_image_slots(adapters.image_slots(row.get(field)), len(values))
    return adapters.normalise(question, reasoning, answer), column, values, {"turns": turns}


def adapt_mapped(row: dict[str, Any], field_map: dict[str, str]) -> Adapted:
    def get(key: str) -> Any:
        value = row.get(field_map[key])
        if value is None or value == "":
            raise AdapterError("missing_field", f"column '{field_map[key]}' ({key}) is empty")
        return value

    def text(key: str, allow_int: bool = False) -> str:  # never str(): True, NaN or a dict are not texts
        return adapters.text_value(get(key), f"column '{field_map[key]}' ({key})", allow_int)

    if "reasoning" in field_map:
        reasoning, answer = text("reasoning"), text("answer", allow_int=True)
    else:
        reasoning, answer = adapters.split_completion(text("answer"))
    choices = row.get(field_map["choices"]) if "choices" in field_map else None
    if choices is not None and (not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)):
        raise AdapterError("bad_choices",
                           f"column '{field_map['choices']}' must hold a list of strings, got {choices!r}")
    answer_type = row.get(field_map["answer_type"]) if "answer_type" in field_map else None
    if answer_type is not None:
        answer_type = adapters.text_value(answer_type, f"column '{field_map['answer_type']}' (answer_type)")
    question = text("question")
    column = field_map["image" if "image" in field_map else "images"]
    values = _values(row.get(column), column)
    adapters.check_image_slots(adapters.image_slots(question), len(values))
    sample = adapters.normalise(question, reasoning, answer, answer_type or None,
                                tuple(choices) if choices is not None else None)
    return sample, column, values, {}


ADAPTERS: dict[str, Callable[[dict[str, Any], dict[str, str]], Adapted]] = {
    "mapped": adapt_mapped,
    "vision_r1": lambda row, _: adapt_conversation(row, "think_text"),
    "r1_onevision": lambda row, _: adapt_conversation(row, "think_text"),
    "llava_cot": lambda row, _: adapt_conversation(row, "llava_cot"),
}


# Images --------------------------------------------------------------------------------------------------------


def image_from_value(value: Any, base: Path | None, field: str) -> Image.Image:
    """A PIL image, `{bytes, path}` dict, raw bytes, base64 string or relative path → an RGB image."""
    if isinstance(value, Image.Image):
        try:
            value.load()
            return upright_rgb(value)
        except (OSError, ValueError) as e:
            raise AdapterError("image_unreadable", f"'{field}' cannot be decoded ({e})") from e
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, bytes):
        return open_rgb(value, field)
    if not isinstance(value, str):
        raise AdapterError("bad_image_ref", f"'{field}' holds {type(value).__name__}; expected an image, bytes or path")
    data = _base64_bytes(value)
    if data is not None:
        return open_rgb(data, field)
    if base is None:
        raise AdapterError("missing_image", f"'{field}' = {value!r} is a path, but the dataset was loaded by hub id: "
                                            "download it with its images and point `name` at that folder")
    return open_rgb(resolve_inside(base, value, field), field)


def _base64_bytes(text: str) -> bytes | None:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    elif not _BASE64.fullmatch(text):
        return None
    try:
        return base64.b64decode(text)
    except (binascii.Error, ValueError):
        return None


def _jsonable(value: Any, image_cols: list[str], key: str = "") -> Any:
    """The row as JSON for the drop file: images summarised (bytes and base64 are not worth keeping there)."""
    if isinstance(value, dict):
        return {k: _jsonable(v, image_cols, key or k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, image_cols, key) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, Image.Image):
        return f"<image {value.width}x{value.height}>"
    if isinstance(value, str) and key in image_cols and len(value) > 500:
        return f"<base64 image, {len(value)} chars>"
    return value if isinstance(value, str | int | float | bool) or value is None else repr(value)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
