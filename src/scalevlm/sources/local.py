"""Local JSONL files in the common public formats, one record per line.

Files are named relative to the project root and must lie under `data/local/` (symlinks resolved), else the whole
source fails with `SourceError`. Formats (`format: auto` detects each record by its keys, in this order):

- `trl`:       TRL prompt/completion: `prompt`, `completion` (strings, or lists of chat messages), `images`/`image`.
- `messages`:  TRL / LLaMA-Factory chat: `messages` of `{role, content}`, content a string (with `<image>`
               placeholders) or a list of `{type: image}` / `{type: text, text}` parts; `images`/`image`.
- `sharegpt`:  LLaMA-Factory ShareGPT: `conversations` of `{from: human|gpt, value}` (or `messages`), `images`.
- `plain`:     `{image|images, question, reasoning, answer, answer_type?, choices?}`.

The assistant text may be tagged (`<think>…</think><answer>…</answer>`), LLaVA-CoT, or `<think>` + free text:
see `adapters.split_completion`. Image paths are resolved against the JSONL file's folder and refused
(`path_escape`) when absolute or resolving outside it (`..`, symlinks); a path holding control characters or too
long for the filesystem is `bad_image_path`. EXIF orientation is applied when an image is opened.

Every line is accounted for, keyed `<path under data/local, '/'→'-', no suffix>-<line number>`: a line that is
empty or only ASCII whitespace is a `Blank` (counted, not a record); any other line is a Candidate or a Dropped with
a reason (`bad_encoding`, `bad_json` — which includes over-deep nesting, huge integers, NaN and duplicate keys —,
`invalid_utf8` for lone-surrogate escapes, `bad_field_type` for a non-string text, `image_count_mismatch`, …).
`limit` caps the non-blank lines read (the config refuses a negative one).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageOps

from scalevlm.config import Checked, NonNegativeInt, Problems, Text, config_dataclass
from scalevlm.facts import LOCAL_DATA
from scalevlm.records import BLANK_BYTES, JSONLineError, image_path_problem, lone_surrogate, parse_json_line
from scalevlm.sources import adapters
from scalevlm.sources.base import AdapterError, Blank, Candidate, Dropped, SourceContext, SourceError

LOCAL_DIR = LOCAL_DATA
FORMAT_KEYS = (("trl", ("prompt", "completion")), ("messages", ("messages",)), ("sharegpt", ("conversations",)),
               ("plain", ("question", "answer")))


@config_dataclass
class LocalFile(Checked):
    path: Text  # relative to the project root; must lie under data/local/ (curate_dataset.Config checks at load)
    format: Literal["auto", "trl", "messages", "sharegpt", "plain"]
    limit: NonNegativeInt | None  # lines read at most; 0 skips the file


@config_dataclass
class LocalConfig(Checked):
    enabled: bool
    files: tuple[LocalFile, ...]

    def check(self) -> Problems:
        if self.enabled and not self.files:
            yield "files", "is empty while enabled is true: list a file (path, format, limit) or set enabled: false"


@dataclass(frozen=True)
class Parsed:
    """A record read in its own format, before images are opened."""

    sample: adapters.Normalised
    image_refs: tuple[Any, ...]
    extra: dict[str, Any]


def local_source(cfg: LocalConfig, ctx: SourceContext) -> Iterator[Candidate | Dropped | Blank]:
    paths = [resolve_local_file(f.path, ctx.root) for f in cfg.files]  # fail fast, before yielding anything
    for spec, path in zip(cfg.files, paths, strict=True):
        yield from read_file(path, spec, ctx.root)


def resolve_local_file(rel: str, root: Path) -> Path:
    allowed = (root / LOCAL_DIR).resolve()
    if Path(rel).is_absolute():
        raise SourceError(f"local file {rel!r}: give a path relative to the project root, under {LOCAL_DIR}/")
    path = (root / rel).resolve()
    if not path.is_relative_to(allowed):
        raise SourceError(f"local file {rel!r} resolves to {path}, outside {LOCAL_DIR}/; move or copy it there")
    if not path.is_file():
        raise SourceError(f"local file {rel!r} not found under {root}; create it or remove it from params.yaml")
    if path.suffix != ".jsonl":
        raise SourceError(f"local file {rel!r}: expected JSON Lines (.jsonl), one record per line")
    return path


def read_file(path: Path, spec: LocalFile, root: Path) -> Iterator[Candidate | Dropped | Blank]:
    rel = path.relative_to((root / LOCAL_DIR).resolve()).with_suffix("").as_posix()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", rel)
    n = 0
    with path.open("rb") as f:  # bytes, so one badly encoded line is one Dropped, not a crash
        for lineno, line in enumerate(f, 1):
            if not line.strip(BLANK_BYTES):  # only ASCII whitespace: U+3000 or \x1c lines are records (bad_json)
                yield Blank(f"{stem}-{lineno}")
                continue
            if spec.limit is not None and n >= spec.limit:
                return
            n += 1
            yield read_line(line, lineno, f"{stem}-{lineno}", spec, path)


def read_line(raw: bytes, lineno: int, key: str, spec: LocalFile, path: Path) -> Candidate | Dropped:
    where = f"{spec.path}:{lineno}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Dropped(key, "bad_encoding", f"{where}: not UTF-8 ({e.reason} at byte {e.start}); re-save as UTF-8",
                       raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    try:
        obj = parse_json_line(line)
    except JSONLineError as e:
        return Dropped(key, "bad_json", f"{where}: {e}; fix or delete the line", line.rstrip("\r\n"))
    if not isinstance(obj, dict):
        return Dropped(key, "not_an_object", f"{where}: expected a JSON object, got {type(obj).__name__}", obj)
    bad_text = lone_surrogate(obj)
    if bad_text is not None:
        return Dropped(key, "invalid_utf8", f"{where}: {bad_text} holds a lone surrogate escape (\\ud800-\\udfff), "
                       "which is not text; fix the escape", obj)
    try:
        fmt = spec.format if spec.format != "auto" else detect_format(obj)
        parsed = PARSERS[fmt](obj)
        images = tuple(image_from_ref(ref, path.parent, f"images[{i}]") for i, ref in enumerate(parsed.image_refs))
    except AdapterError as e:
        return Dropped(key, e.reason, f"{where}: {e.detail}", obj)
    s = parsed.sample
    return Candidate(
        key=key, images=images, question=s.question, reasoning=s.reasoning, answer=s.answer,
        answer_type=s.answer_type, choices=s.choices,
        provenance={"file": spec.path, "line": lineno, "format": fmt, **parsed.extra},
    )


def detect_format(obj: dict[str, Any]) -> str:
    for fmt, keys in FORMAT_KEYS:
        if all(k in obj for k in keys):
            return fmt
    raise AdapterError(
        "unknown_format",
        f"keys {sorted(obj)} match no format: expected prompt+completion (trl), messages, conversations (sharegpt) "
        "or question+answer (plain); or set `format` for the file",
    )


# Formats -------------------------------------------------------------------------------------------------------


def _require(obj: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if obj.get(k) in (None, "", [])]
    if missing:
        raise AdapterError("missing_field", f"missing or empty field(s) {missing}; present: {sorted(obj)}")


def parse_trl(obj: dict[str, Any]) -> Parsed:
    _require(obj, "prompt", "completion")
    prompt, completion = obj["prompt"], obj["completion"]
    question = prompt if isinstance(prompt, str) else _role_text(prompt, adapters.USER_ROLES, "prompt")
    text = completion if isinstance(completion, str) else _role_text(completion, adapters.ASSISTANT_ROLES, "completion")
    reasoning, answer = adapters.split_completion(text)
    messages = [msg for part in (prompt, completion) if isinstance(part, list) for msg in part]
    refs = image_refs(obj, messages)
    adapters.check_image_slots(adapters.image_slots(prompt), len(refs))
    return Parsed(adapters.normalise(question, reasoning, answer), refs, {})


def _role_text(messages: Any, roles: tuple[str, ...], field: str) -> str:
    """Text of the messages in `field` whose role is one of `roles` (a TRL prompt or completion list)."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise AdapterError("bad_message", f"'{field}' must be a string or a list of {{role, content}} messages")
    texts = [adapters.content_text(m.get("content"), field) for m in messages if m.get("role") in roles]
    if not texts:
        raise AdapterError("missing_turn", f"'{field}' has no message with role in {roles}")
    return "\n".join(texts)


def parse_chat(obj: dict[str, Any], field: str) -> Parsed:
    _require(obj, field)
    question, completion, turns = adapters.conversation_pair(obj[field], field)
    reasoning, answer = adapters.split_completion(completion)
    refs = image_refs(obj, obj[field])
    adapters.check_image_slots(adapters.image_slots(obj[field]), len(refs))
    return Parsed(adapters.normalise(question, reasoning, answer), refs, {"turns": turns})


def parse_plain(obj: dict[str, Any]) -> Parsed:
    _require(obj, "question", "reasoning", "answer")
    choices = obj.get("choices")
    if choices is not None and (not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)):
        raise AdapterError("bad_choices", f"'choices' must be a list of strings or absent, got {choices!r}")
    answer_type = obj.get("answer_type")
    if answer_type is not None:
        answer_type = adapters.text_value(answer_type, "answer_type")
    question = adapters.text_value(obj["question"], "question")
    refs = image_refs(obj, [])
    adapters.check_image_slots(adapters.image_slots(question), len(refs))
    sample = adapters.normalise(question, adapters.text_value(obj["reasoning"], "reasoning"),
                                adapters.text_value(obj["answer"], "answer", allow_int=True),
                                answer_type, tuple(choices) if choices is not None else None)
    return Parsed(sample, refs, {})


PARSERS = {
    "trl": parse_trl,
    "messages": lambda obj: parse_chat(obj, "messages"),
    "sharegpt": lambda obj: parse_chat(obj, "conversations" if "conversations" in obj else "messages"),
    "plain": parse_plain,
}


def image_refs(obj: dict[str, Any], messages: Any) -> tuple[Any, ...]:
    """Image references from `images`/`image`, else from `{type: image, image|path}` message parts."""
    value = obj.get("images", obj.get("image"))
    if value in (None, "", []) and isinstance(messages, list):
        value = [p.get("image", p.get("path")) for m in messages if isinstance(m, dict)
                 for p in (m.get("content") if isinstance(m.get("content"), list) else [])
                 if isinstance(p, dict) and p.get("type") == "image"]
    refs = tuple(value) if isinstance(value, list) else (value,)
    if not refs or any(r in (None, "") for r in refs):
        raise AdapterError("missing_image", "no image: give 'images' (list of paths) or 'image' (a path)")
    return refs


# Images (shared with the hub source) ---------------------------------------------------------------------------


def resolve_inside(base: Path, ref: str, field: str) -> Path:
    """`base / ref`, refused when `ref` is absolute or the resolved path (symlinks followed) leaves `base`.

    A path with control characters (NUL included) or lone surrogates, or too long, is refused before the
    filesystem sees it (`bad_image_path`); so is one the filesystem cannot look up (a name over 255 bytes)."""
    if "://" in ref:
        raise AdapterError("remote_image", f"'{field}' = {ref!r} is a URL; download the image next to the data")
    problem = image_path_problem(ref)
    if problem is not None:
        raise AdapterError("bad_image_path", f"'{field}' = {ref[:60]!r}…: {problem}")
    if Path(ref).is_absolute() or ref.startswith("~"):
        raise AdapterError("path_escape", f"'{field}' = {ref!r} is absolute; give a path relative to {base}")
    try:
        path = (base / ref).resolve()
        inside = path.is_relative_to(base.resolve())
        exists = inside and path.is_file()
    except (OSError, ValueError) as e:  # ENAMETOOLONG and the like: the path cannot name a file here
        raise AdapterError("bad_image_path", f"'{field}' = {ref[:60]!r}… cannot be looked up ({e.__class__.__name__}: "
                                             f"{e}); give a plain relative file path") from e
    if not inside:
        raise AdapterError("path_escape",
                           f"'{field}' = {ref!r} resolves to {path}, outside {base}; keep images inside it")
    if not exists:
        raise AdapterError("missing_image", f"'{field}' = {ref!r}: no such file under {base}; add it or fix the path")
    return path


def open_rgb(source: Path | bytes, field: str) -> Image.Image:
    """Decode an image file or bytes fully (`load`), apply its EXIF orientation and convert to RGB;
    AdapterError(image_unreadable) on failure.

    Stored images are PNGs without metadata, so a camera JPEG's rotation must be applied to the pixels here, or
    the model would see it on its side."""
    try:
        with Image.open(source if isinstance(source, Path) else io.BytesIO(source)) as im:
            im.load()
            return upright_rgb(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise AdapterError("image_unreadable", f"'{field}' cannot be decoded ({e}); replace it with a PNG/JPEG") from e


def image_from_ref(ref: Any, base: Path, field: str) -> Image.Image:
    """A local image reference: a path string, or `{path: …}` as some exporters write."""
    if isinstance(ref, dict) and isinstance(ref.get("path"), str):
        ref = ref["path"]
    if not isinstance(ref, str):
        raise AdapterError("bad_image_ref", f"'{field}' must be a path string, got {type(ref).__name__}")
    return open_rgb(resolve_inside(base, ref, field), field)


def upright_rgb(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says (a no-op without one), in RGB."""
    return (ImageOps.exif_transpose(image) or image).convert("RGB")
