"""Run a trained model on images and a question: the registry's `prod`, a version, or a model folder.

    python -m scalevlm.predict --model prod --image grid.png --question "How many red cells are in the grid?"
    python -m scalevlm.predict --model v0.0.3 --input records.jsonl --out preds.jsonl      # batch, progress bar

`--model` is a registry stage (`prod`), a version (`v0.0.3`) — fetched from the DVC remote into
`models/registry/<artifact>@<version>/` on first use (`scalevlm.registry.fetch`) — or a folder written by
`save_pretrained` (e.g. models/train_sft/scale). Prompt and generation are `scalevlm.evaluation.generation`'s, the same
as the `evaluate` stage: greedy by default, so with the same batch `predict` reproduces the evaluation's completions.
Each answer comes with the segment-rule verdict. Python API:

    from scalevlm.predict import load
    model = load("prod")
    model.predict(["grid.png"], "How many red cells are in the grid?").answer

`--input` is JSON Lines, one object per line: `question` and `image` (a path) or `images` (a list of paths),
optional `id`; relative image paths are resolved against `--image-root` (default: the input file's folder).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scalevlm.core.segments import parse_completion
from scalevlm.env import GO_ONLINE, online_requested
from scalevlm.evaluation.generation import GREEDY, Generation, GenerationOptions, generate


class PredictError(RuntimeError):
    """A bad model reference or input; the message says what to fix."""


@dataclass(frozen=True)
class Prediction:
    """One answer: the completion, its think and answer blocks when well-formed, and the segment-rule verdict."""

    completion: str
    think: str | None
    answer: str | None
    format_ok: bool
    reason: str | None  # the segment rule's failure name (e.g. missing_answer), None when well-formed
    completion_tokens: int

    @classmethod
    def of(cls, gen: Generation) -> Prediction:
        seg = parse_completion(gen.text)
        return cls(completion=gen.text, think=seg.think if seg.ok else None, answer=seg.answer if seg.ok else None,
                   format_ok=seg.ok, reason=seg.reason.value if seg.reason else None,
                   completion_tokens=gen.completion_tokens)


@contextlib.contextmanager
def _image(image: Any) -> Iterator[Any]:
    """The PIL image of a path (opened lazily: header only until its pixels are used); a missing, undecodable or
    oversized file is a PredictError naming it."""
    from PIL import Image, UnidentifiedImageError

    path = Path(image)
    if not path.is_file():
        raise PredictError(f"image {path} not found")
    try:
        with Image.open(path) as im:
            yield im
    except Image.DecompressionBombError as e:
        raise PredictError(f"image {path} is too large to decode safely ({e}): resize it below "
                           f"{Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError) as e:
        raise PredictError(f"image {path} cannot be decoded ({e}): give a PNG or JPEG file") from e


def check_images(paths: Sequence[Any]) -> None:
    """Every image exists and its header decodes within PIL's size limit (pixels are not read), so a bad file
    stops the run before the model loads."""
    for path in paths:
        with _image(path):
            pass


def _open_images(images: Sequence[Any]) -> list[Any]:
    from PIL import Image

    opened = []
    for image in images:
        if isinstance(image, Image.Image):
            opened.append(image.convert("RGB"))
            continue
        with _image(image) as im:
            opened.append(im.convert("RGB"))
    return opened


class Model:
    """A loaded model: `predict` one question, `predict_batch` many (batched like evaluation)."""

    def __init__(self, model: Any, processor: Any, source: str) -> None:
        self.model, self.processor, self.source = model, processor, source

    def predict(self, images: Sequence[Any] | Any, question: str, options: GenerationOptions = GREEDY) -> Prediction:
        """`images`: one or a list of paths or PIL images, in prompt order."""
        if isinstance(images, str | Path) or not isinstance(images, Sequence):
            images = [images]
        return self.predict_batch([(images, question)], options)[0]

    def predict_batch(self, items: Sequence[tuple[Sequence[Any], str]], options: GenerationOptions = GREEDY,
                      batch_size: int = 64, progress: bool = False) -> list[Prediction]:
        from tqdm.auto import tqdm

        if batch_size < 1:
            raise PredictError(f"batch_size must be >= 1, got {batch_size}")
        self.check_lengths([q for _, q in items], options.max_new_tokens)
        out: list[Prediction] = []
        with tqdm(total=len(items), desc="predict", unit="sample", disable=not progress) as bar:
            for i in range(0, len(items), batch_size):
                chunk = items[i : i + batch_size]
                gens = generate(self.model, self.processor, [_open_images(imgs) for imgs, _ in chunk],
                                [q for _, q in chunk], options)
                out.extend(Prediction.of(g) for g in gens)
                bar.update(len(chunk))
        return out


    def context_length(self) -> int | None:
        config = getattr(self.model.config, "text_config", None) or self.model.config
        return getattr(config, "max_position_embeddings", None)

    def check_lengths(self, questions: Sequence[str], max_new_tokens: int) -> None:
        """Refuse a question that cannot fit the model's context with the answer budget (before generating)."""
        context = self.context_length()
        if context is None:
            return
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        for i, question in enumerate(questions):
            tokens = len(tokenizer(question)["input_ids"])
            if tokens + max_new_tokens > context:
                where = f"question {i + 1}" if len(questions) > 1 else "the question"
                raise PredictError(f"{where} is {tokens:,} tokens; with --max-new-tokens {max_new_tokens} "
                                   f"it exceeds the model's context of {context:,} tokens: shorten it")


def resolve_model(ref: str, repo: str = ".", artifact: str | None = None) -> Path | str:
    """A folder to load: `ref` itself when it exists, else the fetched folder of a registry stage or version."""
    from scalevlm.registry import STAGE_NAME, VERSION, RegistryError, default_artifact, fetch, resolve

    if Path(ref).exists():
        return Path(ref)
    if not online_requested() and not (VERSION.fullmatch(ref) or STAGE_NAME.fullmatch(ref)):
        raise PredictError(f"--model {ref!r}: no such model folder here (this run is offline, so it is not looked up "
                           f"as a hub id either: {GO_ONLINE})")
    if VERSION.fullmatch(ref) or STAGE_NAME.fullmatch(ref):
        local = Path(repo) if Path(repo).is_dir() else Path(".")
        name = artifact or default_artifact(local)
        try:
            resolve(repo, name, ref)
        except RegistryError as e:  # a mistyped folder name reads like a stage name: say both
            raise RegistryError(f"--model {ref!r} is not a model folder here, nor a registry version or stage: "
                                f"{e}") from None
        return fetch(repo, name, ref)[1]
    return ref  # a hub id (owner/name); the loader says what is wrong with anything else


def load(model_ref: str, *, repo: str = ".", artifact: str | None = None, device: str = "auto", dtype: str = "auto",
         trust_remote_code: bool = False) -> Model:
    """Load `prod`, a version `vX.Y.Z` (fetched on first use), a model folder, or a hub id, onto `device`."""
    from scalevlm.modeling import load_model_and_processor

    path = resolve_model(model_ref, repo, artifact)
    model, processor = load_model_and_processor(path, trust_remote_code, dtype, device)
    return Model(model, processor, str(path))


def read_inputs(path: Path, image_root: Path | None, text_only: bool = False) -> list[tuple[str, list[Path], str]]:
    """(id, image paths, question) of each line of a JSONL input file."""
    from scalevlm.records import read_jsonl

    root = image_root if image_root is not None else path.parent
    rows = []
    for line_no, row in read_jsonl(path):
        if not isinstance(row, dict) or not isinstance(row.get("question"), str):
            raise PredictError(f"{path}:{line_no}: expected an object with a string 'question', got {row!r:.120}")
        images = row.get("images", [row["image"]] if "image" in row else [])
        if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
            raise PredictError(f"{path}:{line_no}: 'images' must be a list of paths (or give one 'image' path)")
        if problem := question_problem(row["question"], len(images), text_only):
            raise PredictError(f"{path}:{line_no}: {problem}")
        rows.append((str(row.get("id", line_no)), [root / p for p in images], row["question"]))
    return rows


def question_problem(question: str, n_images: int, text_only: bool) -> str | None:
    """Why a question cannot be asked as given: empty, or without an image to an image-conditioned model."""
    if not question.strip():
        return "the question is empty"
    if n_images == 0 and not text_only:
        return "no image given: the model answers questions about images (give --image, or --text-only on purpose)"
    return None


def check_output(out: Path) -> None:
    """`--out` can be written: not a folder, no regular file on its path, and its nearest folder writable."""
    if out.is_dir():
        raise PredictError(f"--out {out} is a folder: give a file path, e.g. {out / 'predictions.jsonl'}")
    folder = out.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise PredictError(f"--out {out}: {folder} is a file, so no folder can be made under it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PredictError(f"--out {out}: cannot write in {folder} (permission denied): choose another path")


def _options(args: argparse.Namespace) -> GenerationOptions:
    return GenerationOptions(max_new_tokens=args.max_new_tokens, do_sample=args.sample, temperature=args.temperature,
                             top_p=args.top_p, top_k=args.top_k)


def _parser(prog: str = "python -m scalevlm.predict") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="prod | vX.Y.Z | a model folder (default registry: this clone)")
    p.add_argument("--repo", default=".", help="git repository of the registry: path or URL (default: .)")
    p.add_argument("--artifact", default=None, help="registry artifact (default: the one in ./dvc.yaml)")
    one = p.add_argument_group("one question")
    one.add_argument("--image", action="append", default=[], help="image file (repeat for several images)")
    one.add_argument("--question")
    many = p.add_argument_group("a batch")
    many.add_argument("--input", type=Path, help="JSONL: {id?, question, image | images}")
    many.add_argument("--out", type=Path, help="JSONL predictions (one per input line)")
    many.add_argument("--image-root", type=Path, default=None,
                      help="base of relative image paths (default: the input's folder)")
    many.add_argument("--batch-size", type=int, default=64)
    gen = p.add_argument_group("generation (greedy unless --sample)")
    gen.add_argument("--max-new-tokens", type=int, default=512,
                     help="generation budget (the r1grid thinks run to ~400 tokens; evaluate uses 512)")
    gen.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=None)
    gen.add_argument("--seed", type=int, default=0, help="torch seed (matters only with --sample)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--text-only", action="store_true", help="allow questions without an image (on purpose)")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    if (args.input is None) == (args.question is None):
        raise PredictError("give either --question (with --image) or --input FILE --out FILE")
    if args.input is not None and args.out is None:
        raise PredictError("--input needs --out FILE for the predictions")
    options = _options(args)
    if args.input is not None and not args.input.is_file():
        raise PredictError(f"--input {args.input} not found")
    if args.out is not None:
        check_output(args.out)
    if args.question is not None and (problem := question_problem(args.question, len(args.image), args.text_only)):
        raise PredictError(problem)
    items = read_inputs(args.input, args.image_root, args.text_only) if args.input is not None else None
    check_images([*args.image] if items is None else [p for _, paths, _ in items for p in paths])
    model = load(args.model, repo=args.repo, artifact=args.artifact, device=args.device, dtype=args.dtype,
                 trust_remote_code=args.trust_remote_code)
    torch.manual_seed(args.seed)
    if items is None:
        pred = model.predict(args.image, args.question, options)
        if pred.format_ok:
            print(f"model:  {model.source}\nthink:  {pred.think}\nanswer: {pred.answer}\nsegment rule: ok")
        else:  # a malformed completion has no answer (the evaluation counts it wrong): show what came out
            print(f"model:  {model.source}\ncompletion: {pred.completion}\nanswer: none\nsegment rule: {pred.reason}")
        return 0
    preds = model.predict_batch([(imgs, q) for _, imgs, q in items], options, args.batch_size, progress=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for (id_, _, question), pred in zip(items, preds, strict=True):
            f.write(json.dumps({"id": id_, "question": question, "model": model.source, **asdict(pred)},
                               ensure_ascii=False) + "\n")
    ok = sum(p.format_ok for p in preds)
    print(f"{len(preds)} predictions -> {args.out} ({ok} well-formed) with {model.source}")
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m scalevlm.predict") -> int:
    args = _parser(prog).parse_args(argv)  # before the heavy imports: --help and usage errors answer at once
    from scalevlm.modeling import ModelLoadError
    from scalevlm.records import RecordError
    from scalevlm.registry import RegistryError
    from scalevlm.remote import RemoteError

    try:
        return run(args)
    except (PredictError, RegistryError, RemoteError, ModelLoadError, RecordError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
