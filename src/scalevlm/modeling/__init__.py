"""Model builder (tiny offline Qwen2-VL) and the one generic loader for every VLM the pipeline uses."""

from scalevlm.modeling.loader import ModelLoadError, load_model_and_processor, save_model_and_processor
from scalevlm.modeling.tiny import TinyQwen2VLProcessor, TinySpec, build_tiny, train_tokenizer

__all__ = [
    "ModelLoadError",
    "TinyQwen2VLProcessor",
    "TinySpec",
    "build_tiny",
    "load_model_and_processor",
    "save_model_and_processor",
    "train_tokenizer",
]
