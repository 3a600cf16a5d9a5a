"""Crash-safe checkpoints for the TRL trainers: which checkpoint a rerun may resume, and loading it strictly.

Three rules, each for a failure seen in practice:
- A checkpoint counts only once `checkpoint_complete.json` is written in it, last, after every other file of the
  checkpoint (all processes) is on disk; it lists every file with its size, so a folder left by a kill while
  saving (no marker) or a file cut short later (size differs) is never resumed. Older checkpoints are deleted only
  after the newer one is complete, so a kill at any moment leaves at least the previous complete checkpoint.
- A checkpoint is resumed only by a run with the same fingerprint: the settings that shape the trajectory, the
  starting model's files and the training records (a changed base model or dataset starts over).
- The model's weights are loaded through the model class's own `from_pretrained` (transformers 5.23), which maps
  the names `save_pretrained` writes back to the model's names, and every model tensor must be matched. Why:
  `save_pretrained` writes the checkpoint-format names (its conversion mapping reversed; Qwen2-VL:
  `model.embed_tokens.*`, `visual.*`), while `Trainer._load_from_checkpoint` reads them with a non-strict
  `load_state_dict` on the model's own names (`model.language_model.*`, `model.visual.*`): no tensor matched,
  nothing failed, and a resumed run went on from the base weights with the restored optimizer, step and schedule.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from scalevlm.errors import PipelineError
from scalevlm.guard import replace_dir

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"  # sub-folder of a stage's model output that holds the Trainer's checkpoint-<step>/
FINGERPRINT = "fingerprint.txt"
COMPLETE = "checkpoint_complete.json"
PREFIX = "checkpoint-"  # transformers' PREFIX_CHECKPOINT_DIR + "-"


class CheckpointError(PipelineError, RuntimeError):
    """A checkpoint cannot be resumed; the message names it, says why and how to start over."""


# -- fingerprint --------------------------------------------------------------------------------------------------


def fingerprint(settings: Any, model_dir: Path, records: Iterable[Any]) -> str:
    """Hash of what a resumed run must share with the interrupted one.

    `settings`: JSON-able settings that shape the trajectory (the caller leaves out logging, threads, resume…);
    `model_dir`: the starting model (its top-level files but `provenance.json`, which holds timings);
    `records`: the training records (`Record.to_json()`; image paths are content hashes).
    """
    import hashlib

    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in sorted(p for p in Path(model_dir).iterdir() if p.is_file() and p.name != "provenance.json"):
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    h.update(json.dumps([r.to_json() for r in records], sort_keys=True).encode())
    return h.hexdigest()[:16]


# -- completion marker --------------------------------------------------------------------------------------------


def checkpoint_step(path: Path) -> int | None:
    """N for a folder named checkpoint-N, else None."""
    name = Path(path).name
    tail = name[len(PREFIX):] if name.startswith(PREFIX) else ""
    return int(tail) if tail.isdigit() else None


def checkpoint_folders(ckpt_dir: Path) -> list[Path]:
    """checkpoint-N folders under `ckpt_dir`, oldest first (by N)."""
    if not Path(ckpt_dir).is_dir():
        return []
    found = [p for p in Path(ckpt_dir).iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def _manifest(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != COMPLETE}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_complete(folder: Path, step: int) -> None:
    """Write the completion marker last: files flushed first, the marker renamed into place atomically."""
    files = _manifest(folder)
    for rel in files:
        _fsync(folder / rel)
    tmp = folder / (COMPLETE + ".tmp")
    tmp.write_text(json.dumps({"step": step, "files": files}, indent=1, sort_keys=True) + "\n")
    _fsync(tmp)
    os.replace(tmp, folder / COMPLETE)
    _fsync(folder)


def commit(folder: Path, step: int) -> None:
    """Mark `folder` complete, then delete the older checkpoint folders (never before: a kill in between must
    leave a complete checkpoint). Main process, after every process's files of the checkpoint are written."""
    mark_complete(folder, step)
    for older in checkpoint_folders(folder.parent):
        if older != folder:
            shutil.rmtree(older, ignore_errors=True)


def incomplete_reason(folder: Path) -> str | None:
    """Why `folder` is not a complete checkpoint, or None if it is."""
    marker = folder / COMPLETE
    if not marker.is_file():
        return "no completion marker (the run stopped while saving it)"
    try:
        files = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable completion marker ({e})"
    for rel, size in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != size:
            return f"{rel} has {path.stat().st_size} bytes, {size} when it was saved"
    return None


def find_resumable(ckpt_dir: Path, run_fingerprint: str, allowed: bool) -> Path | None:
    """Newest complete checkpoint of an interrupted run with the same fingerprint, else None."""
    marker = Path(ckpt_dir) / FINGERPRINT
    if not allowed or not marker.is_file() or marker.read_text().strip() != run_fingerprint:
        return None
    for folder in reversed(checkpoint_folders(ckpt_dir)):
        reason = incomplete_reason(folder)
        if reason is None:
            check_safe_to_load(folder)
            return folder
        log.warning("not resuming %s: %s", folder, reason)
    return None


SAFE_LOAD_CHECK_BYTES = 64 * 2**20  # the RNG, scheduler and small optimizer states; larger ones the Trainer loads


def check_safe_to_load(folder: Path) -> None:
    """Every torch pickle of a checkpoint (`*.pt`, `*.pth`, up to `SAFE_LOAD_CHECK_BYTES`) holds plain tensors and
    containers only (`torch.load(weights_only=True)` with the numpy types transformers' Trainer allows for its RNG
    state, as the Trainer loads them): a file that does not is refused by name before training starts, instead of
    an UnpicklingError deep inside the Trainer."""
    import pickle

    import torch
    from transformers.trainer_pt_utils import safe_globals

    for path in sorted([*folder.rglob("*.pt"), *folder.rglob("*.pth")]):
        if path.stat().st_size > SAFE_LOAD_CHECK_BYTES:
            continue
        try:
            with safe_globals():
                torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{path}: refused to resume from it: it is not plain tensors ({first}); a checkpoint "
                                  f"file may run code when unpickled. Delete {folder} to resume from an older one, "
                                  "or set resume: false to start over") from None


def prepare_outputs(clear: Sequence[Path], ckpt_dir: Path, run_fingerprint: str, resume: Path | None) -> None:
    """Main process only. A fresh run empties `clear` (e.g. its curves) and the checkpoints — the previous final
    model stays in place until `publish_model` replaces it whole; a resumed one deletes every checkpoint folder
    but `resume` (incomplete ones would otherwise be written into, stale files and all). Then records the
    fingerprint that later runs compare with."""
    if resume is None:
        for path in (*clear, ckpt_dir):
            if path.exists():
                shutil.rmtree(path)
    else:
        for folder in checkpoint_folders(ckpt_dir):
            if folder != resume:
                shutil.rmtree(folder)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_dir / (FINGERPRINT + ".tmp")
    tmp.write_text(run_fingerprint + "\n")
    os.replace(tmp, ckpt_dir / FINGERPRINT)


# -- strict loading -----------------------------------------------------------------------------------------------


def load_model_weights(model: Any, folder: Path) -> None:
    """Load a `save_pretrained` folder into `model` in place; every model tensor must come from the checkpoint."""
    import torch
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        raise CheckpointError(f"cannot resume {type(model).__name__} from {folder}: not a transformers model")
    dtype = next(model.parameters()).dtype  # the checkpoint was saved from this model: no cast on the way in
    try:
        loaded, info = type(model).from_pretrained(folder, dtype=dtype, output_loading_info=True, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot load the model weights of checkpoint {folder}: {type(e).__name__}: {e}. "
                              f"Delete {folder} (or set resume: false) to start over.") from e
    own = model.state_dict()
    mismatched = {k if isinstance(k, str) else k[0] for k in info["mismatched_keys"]}  # (name, shape, expected)
    missing = sorted(set(info["missing_keys"]) | mismatched)
    unexpected = sorted(info["unexpected_keys"])
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {folder} matches {len(own) - len(missing)} of {len(own)} model tensors (missing or wrong "
            f"shape: {missing[:3]}{'…' if len(missing) > 3 else ''}; unexpected: {unexpected[:3]}"
            f"{'…' if len(unexpected) > 3 else ''}); it is not a checkpoint of this model. Delete it (or set "
            "resume: false) to start over.")
    with torch.no_grad():
        model.load_state_dict(loaded.state_dict(), strict=True)
    log.info("resumed model weights from %s: %d of %d tensors", folder, len(own), len(own))


def verify_adapter(model: Any, folder: Path) -> None:
    """After PEFT loaded `folder`'s adapter: every adapter tensor of the model equals the checkpoint's."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    path = folder / "adapter_model.safetensors"
    saved = load_file(path) if path.is_file() else {}
    own = get_peft_model_state_dict(model)
    matched = sum(1 for k, v in own.items() if k in saved
                  and torch.equal(v.detach().cpu().to(saved[k].dtype), saved[k]))
    if matched != len(own) or len(saved) != len(own):
        raise CheckpointError(f"checkpoint {folder}: {matched} of {len(own)} adapter tensors restored ({len(saved)} "
                              "in the file); delete it (or set resume: false) to start over.")


# -- the final model ------------------------------------------------------------------------------------------------


def staging_folder(out: Path) -> Path:
    """Where the final model is assembled before it replaces `out`: a hidden sibling, the same path on every rank
    (all ranks take part in saving a sharded model). Main process: call `clear_staging` first."""
    return out.with_name(f".{out.name}.new-final")


def clear_staging(out: Path) -> Path:
    """Main process: remove a staging folder left by a run killed while saving; returns the (empty) path."""
    staging = staging_folder(out)
    if staging.exists():
        shutil.rmtree(staging)
    return staging


def publish_model(out: Path, keep_checkpoints: bool) -> None:
    """Main process: the model assembled in `staging_folder(out)` replaces `out` in one rename; the previous
    folder's checkpoints go with it unless `keep_checkpoints` (they only matter until the final model exists)."""
    replace_dir(staging_folder(out), out, keep=(CHECKPOINTS,) if keep_checkpoints else ())


def begin_run(state: Any, model_out: Path, clear: Sequence[Path], run_fingerprint: str,
              allowed: bool) -> tuple[Path, Path | None]:
    """Every rank, before training: (the checkpoint folder, the checkpoint to resume or None for a fresh run).
    The main process prepares the outputs (`prepare_outputs`: `clear` is emptied on a fresh run) and removes a
    staging folder left by a save that was killed; then every rank waits for it (`state` is accelerate's)."""
    ckpt_dir = model_out / CHECKPOINTS
    resume = find_resumable(ckpt_dir, run_fingerprint, allowed)
    if state.is_main_process:
        prepare_outputs(clear, ckpt_dir, run_fingerprint, resume)
        clear_staging(model_out)
    state.wait_for_everyone()
    return ckpt_dir, resume
