"""The tiny offline Qwen2-VL: a byte-level BPE tokenizer trained on the curated text, a Qwen-style chat template,
the PIL image processor, a processor without a video processor, and a randomly initialised model.

Sizes come from `TinySpec` (params.yaml `prepare_model.tiny`). The defaults learn the embedded task (README
"Results on the embedded default": 0.99 test accuracy with vanilla SFT): text 128 × 4 layers (4 heads, 2 KV heads,
MLP 256), vision 128 × 2, patch 8, spatial merge 2 (a 16×16 px cell is one merged visual token), tied embeddings,
~1.3 M parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoProcessor,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor

from scalevlm.core.segments import TAGS

SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>",
)
EOS, PAD = "<|im_end|>", "<|endoftext|>"

# Qwen-style ChatML. The assistant turn sits in a {% generation %} block so `return_assistant_tokens_mask` works;
# content may be a string or a list of {type: image} / {type: text} parts.
CHAT_TEMPLATE = (
    "{%- macro render(c) -%}{%- if c is string -%}{{- c -}}{%- else -%}{%- for p in c -%}"
    "{%- if p['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif p['type'] == 'text' -%}{{- p['text'] -}}{%- endif -%}{%- endfor -%}{%- endif -%}{%- endmacro -%}"
    "{%- for m in messages -%}{{- '<|im_start|>' + m['role'] + '\n' -}}"
    "{%- if m['role'] == 'assistant' -%}{%- generation -%}{{- render(m['content']) + '<|im_end|>' -}}"
    "{%- endgeneration -%}"
    "{%- else -%}{{- render(m['content']) + '<|im_end|>' -}}{%- endif -%}{{- '\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny model (params.yaml `prepare_model.tiny`)."""

    seed: int
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vision_embed_dim: int
    vision_depth: int
    vision_heads: int
    vision_mlp_ratio: int
    patch_size: int
    merge_size: int
    max_pixels: int
    max_position_embeddings: int
    rope_theta: float

    @property
    def min_pixels(self) -> int:
        """One merged visual token, (patch × merge)² pixels: the processor's floor on an image's total pixels.
        Derived from the patch sizes rather than stored beside them, so the two cannot disagree."""
        return (self.patch_size * self.merge_size) ** 2

    def validate(self) -> None:
        """Raise ValueError naming the offending sizes (before transformers fails deep inside)."""
        errors = []
        if self.hidden_size % self.num_heads:
            errors.append(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        elif (self.hidden_size // self.num_heads) % 2:
            errors.append(f"head_dim {self.hidden_size // self.num_heads} must be even for rotary embeddings")
        if self.num_heads % self.num_kv_heads:
            errors.append(f"num_heads {self.num_heads} is not divisible by num_kv_heads {self.num_kv_heads}")
        if self.vision_embed_dim % self.vision_heads:
            errors.append(f"vision_embed_dim {self.vision_embed_dim} is not divisible by vision_heads "
                          f"{self.vision_heads}")
        if self.vocab_size < 256 + len(SPECIAL_TOKENS):
            errors.append(f"vocab_size {self.vocab_size} is below the 256 byte symbols + {len(SPECIAL_TOKENS)} "
                          "specials")
        if self.max_pixels < self.min_pixels:
            errors.append(f"max_pixels {self.max_pixels} is below one merged visual token, (patch_size*merge_size)^2 "
                          f"= {self.min_pixels}")
        if errors:
            raise ValueError("invalid tiny model sizes: " + "; ".join(errors))


def mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (temporal, height, width); the sections sum to head_dim/2."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


class TinyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2-VL processor without a video processor (transformers cannot type-check one without torchvision)."""

    def __init__(self, image_processor: object = None, tokenizer: object = None, chat_template: str | None = None,
                 **kwargs: object) -> None:
        super().__init__(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs)


class _TinyProcessorKey(PretrainedConfig):
    """Registration key only: AutoProcessor resolves a saved `processor_class` name through the registered
    classes, and registering under Qwen2VLConfig itself would hijack real Qwen2-VL checkpoints."""

    model_type = "scalevlm_tiny_qwen2_vl_processor"


AutoProcessor.register(_TinyProcessorKey, TinyQwen2VLProcessor, exist_ok=True)


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `texts`, the chat specials, and the 4 reasoning tags as single NON-special tokens
    (GRPO decodes with skip_special_tokens=True; special tags would vanish from completions)."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, additional_special_tokens=list(SPECIAL_TOKENS[1:])
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(tokenizer: PreTrainedTokenizerFast, spec: TinySpec) -> TinyQwen2VLProcessor:
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=spec.patch_size,
        merge_size=spec.merge_size,
        temporal_patch_size=2,
        min_pixels=spec.min_pixels,
        max_pixels=spec.max_pixels,
    )
    return TinyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def tiny_config(spec: TinySpec, tokenizer: PreTrainedTokenizerFast) -> Qwen2VLConfig:
    ids = tokenizer.convert_tokens_to_ids
    head_dim = spec.hidden_size // spec.num_heads
    return Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": spec.hidden_size,
            "intermediate_size": spec.intermediate_size,
            "num_hidden_layers": spec.num_layers,
            "num_attention_heads": spec.num_heads,
            "num_key_value_heads": spec.num_kv_heads,
            "max_position_embeddings": spec.max_position_embeddings,
            "rope_parameters": {"rope_type": "default", "rope_theta": spec.rope_theta,
                                "mrope_section": mrope_section(head_dim)},
            "bos_token_id": None,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": spec.vision_depth,
            "embed_dim": spec.vision_embed_dim,
            "hidden_size": spec.hidden_size,
            "num_heads": spec.vision_heads,
            "mlp_ratio": spec.vision_mlp_ratio,
            "patch_size": spec.patch_size,
            "spatial_merge_size": spec.merge_size,
            "temporal_patch_size": 2,
            "in_channels": 3,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )


def build_tiny(texts: Iterable[str], spec: TinySpec) -> tuple[Qwen2VLForConditionalGeneration, TinyQwen2VLProcessor]:
    """Train the tokenizer on `texts` and build a seeded, randomly initialised model with its processor.

    The global RNG is forked, so building a model does not change the caller's random state.
    """
    spec.validate()
    tokenizer = train_tokenizer(texts, spec.vocab_size)
    processor = build_processor(tokenizer, spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = Qwen2VLForConditionalGeneration(tiny_config(spec, tokenizer))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model, processor
