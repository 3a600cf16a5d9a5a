"""One loader for every model the pipeline uses: the tiny model and hub VLMs go through the same code path.

`AutoModelForImageTextToText` + `AutoProcessor` with safetensors only (no pickle). Importing this package
registers the tiny model's processor class, so a saved tiny model loads like any hub checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from scalevlm.env import GO_ONLINE
from scalevlm.errors import PipelineError

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # owner/name, e.g. Qwen/Qwen2.5-VL-3B-Instruct
log = logging.getLogger(__name__)
DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(PipelineError, RuntimeError):
    """A model or processor could not be loaded; the message says what was asked for and how to fix it."""


def resolve_dtype(dtype: str | torch.dtype) -> str | torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def resolve_device(device: str | None) -> str | None:
    """'auto' → 'cuda' when available else 'cpu'; None keeps the model where from_pretrained put it (CPU).
    A CUDA device this machine does not have is a ModelLoadError naming it, before any weights load."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device is not None and device.startswith("cuda"):
        index = int(device.split(":", 1)[1]) if ":" in device and device.split(":", 1)[1].isdigit() else 0
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r}: this machine has no CUDA device (torch "
                                 f"{torch.__version__}, cuda available: no): use cpu or auto")
        if index >= torch.cuda.device_count():
            raise ModelLoadError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s): "
                                 f"use cuda:0 … cuda:{torch.cuda.device_count() - 1}, or auto")
    return device


def _video_processor_unavailable(error: BaseException) -> bool:
    """The video processor cannot be built: torchvision is missing, or the folder was saved images-only."""
    text = str(error).lower()
    return (isinstance(error, ImportError) and "torchvision" in text) or (
        isinstance(error, OSError) and "video processor" in text)


def images_only(processor_class: type) -> type:
    """`processor_class` without its video processor: Qwen2-VL / Qwen2.5-VL processors build a torchvision video
    processor even for image-only data, so without torchvision they cannot be created at all. The pipeline never
    feeds video. The subclass keeps the family's class name, so what it saves still names the real processor and
    loads as that wherever torchvision is installed."""
    base_init = processor_class.__init__

    def __init__(self: Any, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None,
                 **kwargs: Any) -> None:
        base_init(self, image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs)

    return type(processor_class.__name__, (processor_class,),
                {"__init__": __init__, "__module__": processor_class.__module__})


def _processor_class_name(name: str) -> str | None:
    """The processor class a checkpoint names: processor_config.json (transformers 5) or preprocessor_config.json."""
    from transformers.utils import cached_file

    for fname in ("processor_config.json", "preprocessor_config.json"):
        path = cached_file(name, fname, _raise_exceptions_for_missing_entries=False)
        if path is not None:
            found = json.loads(Path(path).read_text(encoding="utf-8")).get("processor_class")
            if found:
                return str(found)
    return None


def load_processor(name: str, trust_remote_code: bool = False) -> Any:
    """`AutoProcessor.from_pretrained(name)`; when its video processor cannot be built (torchvision missing, or a
    folder saved images-only), the same processor class without it (`images_only`), from the same files."""
    from transformers import AutoProcessor
    from transformers.models.auto.processing_auto import processor_class_from_name

    try:
        return AutoProcessor.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (ImportError, OSError) as e:
        if not _video_processor_unavailable(e):
            raise
        cls = processor_class_from_name(_processor_class_name(name) or "")
        if cls is None or "video_processor" not in cls.get_attributes():
            raise
        log.info("%s: loading %s without its video processor (images only)", type(e).__name__, cls.__name__)
        return images_only(cls).from_pretrained(name, trust_remote_code=trust_remote_code)


def load_model_and_processor(
    path: str | Path,
    trust_remote_code: bool = False,
    dtype: str | torch.dtype = "auto",
    device: str | None = None,
) -> tuple[Any, Any]:
    """Load (model, processor) from a local directory or a hub id.

    Args:
        path: a folder written by `save_pretrained` (e.g. models/prepare_model) or a hub id such as
            "Qwen/Qwen2.5-VL-3B-Instruct" (needs SCALEVLM_ONLINE=1 and network, or a warm HF cache).
        trust_remote_code: allow model code from the hub repository (off by default).
        dtype: "auto" (the checkpoint's dtype), "float32", "bfloat16", "float16" or a torch.dtype.
        device: "cpu", "cuda", "cuda:1", "auto" or None (leave on CPU).
    Returns:
        (model in eval mode, processor); `processor.tokenizer` is the tokenizer.
    """
    from transformers import AutoModelForImageTextToText

    from scalevlm.modeling import tiny  # noqa: F401  (registers the tiny processor class)

    torch_dtype = resolve_dtype(dtype)
    target = resolve_device(device)  # refused before any weights load
    name = str(path)
    local = Path(name).exists()
    if not local and not HUB_ID.fullmatch(name):
        raise ModelLoadError(f"model path {name!r} does not exist and is not a hub id of the form 'owner/name'")
    try:
        processor = load_processor(name, trust_remote_code)
        model = AutoModelForImageTextToText.from_pretrained(
            name, trust_remote_code=trust_remote_code, dtype=torch_dtype, use_safetensors=True
        )
    except Exception as e:  # noqa: BLE001 — any library error (OSError, ImportError of a processor, …) is explained
        hint = ""
        if not local and os.environ.get("HF_HUB_OFFLINE") == "1":
            hint = f" The hub is offline (HF_HUB_OFFLINE=1, the project's default): {GO_ONLINE}."
        raise ModelLoadError(
            f"could not load model/processor from {name!r} ({type(e).__name__}: {e}).{hint} Expected a folder with "
            "config.json, *.safetensors and the processor files, or a hub id of an image-text-to-text model."
        ) from e
    if target is not None:
        model = model.to(target)
    model.eval()
    return model, processor


def save_model_and_processor(model: Any, processor: Any, out_dir: str | Path) -> Path:
    """Write model (safetensors) and processor so `load_model_and_processor(out_dir)` restores both."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
