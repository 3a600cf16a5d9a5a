"""What an image becomes inside a model: the pipeline never resizes images, each family's processor does.

- `visual_tokens`: how many image tokens the processor puts in the prompt for an image of a given size (measured
  by running the processor, so it is right for any family).
- `set_pixel_bounds`: the Qwen2-VL / Qwen2.5-VL image processors resize every image to a multiple of
  patch × merge pixels with a total pixel count between `min_pixels` and `max_pixels` (params
  `prepare_model.min_pixels` / `max_pixels`). LLaVA-NeXT (anyres tiles of its vision tower's size) and Gemma-3
  (one fixed square) have no pixel bounds: asking for them is an error naming the processor.
"""

from __future__ import annotations

from typing import Any

from scalevlm.errors import PipelineError


def has_pixel_bounds(image_processor: Any) -> bool:
    """Qwen2-VL-style processors: dynamic resolution bounded by total pixels (size = shortest/longest_edge)."""
    return hasattr(image_processor, "merge_size") and hasattr(image_processor, "temporal_patch_size")


def set_pixel_bounds(processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:
    """Set the processor's pixel bounds in place (None keeps the checkpoint's); saved with the processor."""
    if min_pixels is None and max_pixels is None:
        return
    image_processor = processor.image_processor
    if not has_pixel_bounds(image_processor):
        raise PipelineError(
            f"prepare_model.min_pixels / max_pixels: {type(image_processor).__name__} has no pixel bounds (it resizes "
            f"every image to its own fixed size {dict(image_processor.size)}); set both to null for this model")
    size = dict(image_processor.size)
    low = min_pixels if min_pixels is not None else size["shortest_edge"]
    high = max_pixels if max_pixels is not None else size["longest_edge"]
    unit = (image_processor.patch_size * image_processor.merge_size) ** 2
    if not unit <= low <= high:
        raise PipelineError(f"prepare_model.min_pixels / max_pixels: need {unit} (one merged patch) <= min_pixels <= "
                            f"max_pixels, got {low}, {high}")
    image_processor.size = {"shortest_edge": low, "longest_edge": high}


def visual_tokens(processor: Any, width: int, height: int) -> int:
    """Image tokens in the prompt for one `width`×`height` image (placeholders the model fills with image features)."""
    from PIL import Image

    from scalevlm.prompts import user_turn

    # not inference.prompt_text: prepare_model reports this, and must not re-run when the prompt code changes
    text = processor.apply_chat_template(user_turn("?", 1), tokenize=False, add_generation_prompt=True)
    image = Image.new("RGB", (width, height), (128, 128, 128))
    ids = processor(text=[text], images=[[image]], add_special_tokens=False)["input_ids"][0]
    # Gemma-3 writes `<start_of_image>` in the text and expands it to the tokenizer's image (soft) token
    image_token = getattr(processor.tokenizer, "image_token_id", None) or processor.image_token_id
    return sum(1 for i in ids if int(i) == image_token)
