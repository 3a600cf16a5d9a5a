"""The tiny offline Qwen2-VL builder and the generic loader."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny_project import NO_PERCEPTION, TINY_SPEC

from scalevlm.core.segments import TAGS
from scalevlm.modeling import ModelLoadError, build_tiny, load_model_and_processor, save_model_and_processor
from scalevlm.modeling.tiny import TinyQwen2VLProcessor

SPEC = TINY_SPEC  # the shared tiny test model
DEFAULT_SPEC = dataclasses.replace(
    SPEC, vocab_size=384, hidden_size=128, num_layers=4, intermediate_size=256, vision_embed_dim=128, vision_depth=2,
    max_position_embeddings=2048,
)
TEXTS = [f"How many red cells? row {i}: red blue empty = {i % 4}, total {i}. {i}" for i in range(200)]
MESSAGES = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many red cells?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "<think>row 1: red = 1.</think><answer>1</answer>"}]},
]


@pytest.fixture(scope="module")
def tiny() -> tuple:
    return build_tiny(TEXTS, SPEC)


def _image() -> Image.Image:
    return Image.new("RGB", (32, 32), (220, 30, 30))


def test_default_sizes_give_about_1_3m_parameters() -> None:
    model, _ = build_tiny(TEXTS, DEFAULT_SPEC)
    n = sum(p.numel() for p in model.parameters())
    assert 1.1e6 < n < 1.5e6
    assert model.config.tie_word_embeddings
    head_dim = DEFAULT_SPEC.hidden_size // DEFAULT_SPEC.num_heads
    assert sum(model.config.text_config.rope_parameters["mrope_section"]) == head_dim // 2


def test_tags_are_single_non_special_tokens(tiny: tuple) -> None:
    _, processor = tiny
    tok = processor.tokenizer
    for tag in TAGS:
        ids = tok.encode(tag, add_special_tokens=False)
        assert len(ids) == 1, tag
    text = "<think>a</think><answer>1</answer>"
    assert tok.decode(tok.encode(text, add_special_tokens=False), skip_special_tokens=True) == text
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_chat_template_marks_the_assistant_turn(tiny: tuple) -> None:
    _, processor = tiny
    out = processor.tokenizer.apply_chat_template(
        MESSAGES, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    mask = out["assistant_masks"]
    ids = [i for i, m in zip(out["input_ids"], mask, strict=True) if m]
    assert processor.tokenizer.decode(ids) == "<think>row 1: red = 1.</think><answer>1</answer><|im_end|>"
    prompt = processor.apply_chat_template(MESSAGES[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n") and "<|vision_start|><|image_pad|><|vision_end|>" in prompt


def test_forward_and_image_tokens(tiny: tuple) -> None:
    model, processor = tiny
    text = processor.apply_chat_template(MESSAGES, tokenize=False)
    batch = processor(text=[text], images=[[_image()]], return_tensors="pt")
    n_image_tokens = int((batch["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens == (32 // 16) ** 2  # one merged token per 16×16 px
    out = model(**batch, labels=batch["input_ids"])
    chance = math.log(len(processor.tokenizer))  # an untrained model predicts about uniformly
    assert 0.5 * chance < out.loss.item() < 1.5 * chance


def test_save_load_round_trip(tiny: tuple, tmp_path: Path) -> None:
    model, processor = tiny
    save_model_and_processor(model, processor, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    loaded, loaded_proc = load_model_and_processor(tmp_path / "m", dtype="float32", device="cpu")
    assert isinstance(loaded_proc, TinyQwen2VLProcessor)
    assert type(loaded).__name__ == "Qwen2VLForConditionalGeneration"
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert loaded_proc.tokenizer.encode("</think>", add_special_tokens=False) == processor.tokenizer.encode(
        "</think>", add_special_tokens=False
    )
    prompt = loaded_proc.apply_chat_template(MESSAGES[:1], tokenize=False, add_generation_prompt=True)
    inputs = loaded_proc(text=[prompt], images=[[_image()]], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        a = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        b = loaded.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert torch.equal(a, b)


def test_auto_processor_finds_the_tiny_processor(tiny: tuple, tmp_path: Path) -> None:
    from transformers import AutoProcessor

    save_model_and_processor(*tiny, tmp_path)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path), TinyQwen2VLProcessor)


def test_build_is_seeded_and_keeps_global_rng(tiny: tuple) -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    again, _ = build_tiny(TEXTS, SPEC)
    assert torch.rand(1) == before  # building did not consume the caller's random stream
    for a, b in zip(tiny[0].parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_bad_sizes_and_paths_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_heads"):
        build_tiny(TEXTS, dataclasses.replace(SPEC, hidden_size=66))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model_and_processor(tmp_path / "missing")
    with pytest.raises(ValueError, match="dtype"):
        load_model_and_processor(tmp_path, dtype="float8")


def test_the_pixel_floor_is_derived_from_the_patch_sizes(tiny: tuple) -> None:
    """`min_pixels` is one merged token, (patch × merge)², not a param: the processor gets it, a ceiling below it is
    refused, and a params.yaml that still sets `prepare_model.tiny.min_pixels` is refused naming the key."""
    from scalevlm.config import ConfigError, load_config
    from stages.prepare_model import Config

    assert SPEC.min_pixels == (8 * 2) ** 2 == tiny[1].image_processor.size["shortest_edge"]
    with pytest.raises(ValueError, match=r"max_pixels 255 is below one merged visual token, .* = 256"):
        build_tiny(TEXTS, dataclasses.replace(SPEC, max_pixels=255))
    params = {"prepare_model": {"name_or_path": "tiny", "trust_remote_code": False, "dtype": "auto",
                                "tiny": {**dataclasses.asdict(SPEC), "min_pixels": 256}, "min_pixels": None,
                                "max_pixels": None,
                                "perception": dataclasses.asdict(NO_PERCEPTION)}}
    with pytest.raises(ConfigError, match=r"prepare_model\.tiny: unknown keys \['min_pixels'\]"):
        load_config(Config, params, "prepare_model")


def test_hub_ids_go_through_the_same_loader_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id is accepted as a name; offline, the error says how to allow the download."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE=0"):
        load_model_and_processor("Qwen/Qwen2.5-VL-3B-Instruct")
