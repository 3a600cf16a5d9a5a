"""Tiny random checkpoints of the paper's three model families, written the way the hub ships them.

Each builder writes a folder a new user could point `prepare_model.name_or_path` at: config.json,
model.safetensors, tokenizer files, the image processor's preprocessor_config.json (with `processor_class`
naming the family's real processor), the family's own chat template (chat_template.jinja) and
generation_config.json. Nothing is downloaded. Tokenizers are trained on the given texts and never hold the
reasoning tags as single tokens: `<think>`, `</think>`, `<answer>`, `</answer>` split into several tokens as in
the real vocabularies, and the byte-level one (Qwen2.5-VL) merges `><` across the think/answer boundary.

Per family: model class; tokenizer; image processor.

- qwen2_5_vl: Qwen2_5_VLForConditionalGeneration; byte-level BPE, Qwen2 pre-tokenizer; Qwen2VLImageProcessor
  (patch 14, merge 2)
- llava_next: LlavaNextForConditionalGeneration (Mistral text); SentencePiece-style BPE, BOS added;
  LlavaNextImageProcessor (anyres)
- gemma3: Gemma3ForConditionalGeneration; SentencePiece-style BPE, BOS in the template; Gemma3ImageProcessor
  (pan-and-scan off)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

FAMILIES = ("qwen2_5_vl", "llava_next", "gemma3")

# Qwen2's pre-tokenizer split: punctuation runs (`</`, `><`) are pre-tokens of their own, so BPE learns `><`.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")

QWEN2_5_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in "
    "content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}"
    ": {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}"
    ": {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# llava-hf/llava-v1.6-mistral-7b-hf: no generation prompt; the assistant turn is ' ' + text + '</s> '.
LLAVA_NEXT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'][0]['text'] + "
    "'\n<</SYS>>\n\n' }}{% elif message['role'] == 'user' %}{{ '[INST] ' }}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{{' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' ' + message['content'][0]['text'] + '</s> '}}{% else %}"
    "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

# google/gemma-3-4b-it (the BOS is part of the template).
GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n"
    "{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n"
)

TAG_CORPUS = ["<think>a</think><answer>b</answer>"] * 50  # makes the boundary merges (`><`, `</`) frequent


def _bpe(texts: Iterable[str], specials: list[str], vocab_size: int, sentencepiece: bool) -> Tokenizer:
    """A BPE trained on `texts`: byte-level with Qwen2's split, or SentencePiece-style (▁ for spaces, byte fallback)."""
    corpus = [*texts, *TAG_CORPUS]
    if sentencepiece:
        tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[<>/]"), behavior="isolated")  # tags never merge whole
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
        alphabet = [f"<0x{b:02X}>" for b in range(256)]
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials + alphabet, show_progress=False)
    else:
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return tok


def _write_common(out: Path, model: torch.nn.Module, template: str, image_processor: object,
                  processor_class: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    image_processor.save_pretrained(out)  # type: ignore[attr-defined]
    cfg_path = out / "preprocessor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["processor_class"] = processor_class  # as on the hub: the family's real processor class
    cfg_path.write_text(json.dumps(cfg, indent=2))
    (out / "chat_template.jinja").write_text(template)


def build_qwen2_5_vl(out: Path, texts: Iterable[str], seed: int = 0) -> Path:
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                "<|video_pad|>"]
    tok = PreTrainedTokenizerFast(tokenizer_object=_bpe(texts, specials, 400, sentencepiece=False),
                                  eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=specials[1:])
    tok.save_pretrained(out)
    ids = tok.convert_tokens_to_ids
    cfg = Qwen2_5_VLConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                     "bos_token_id": ids("<|endoftext|>"), "eos_token_id": ids("<|im_end|>"),
                     "pad_token_id": ids("<|endoftext|>"), "tie_word_embeddings": True},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 64, "window_size": 56,
                       "fullatt_block_indexes": [1]},
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = [ids("<|im_end|>"), ids("<|endoftext|>")]
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    image_processor = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2,
                                               min_pixels=56 * 56, max_pixels=28 * 28 * 1280)
    _write_common(out, model, QWEN2_5_VL_TEMPLATE, image_processor, "Qwen2_5_VLProcessor")
    return out


def _sp_tokenizer(texts: Iterable[str], specials: list[str], extra: dict[str, object]) -> object:
    from transformers import PreTrainedTokenizerFast

    tok = _bpe(texts, specials, 420, sentencepiece=True)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **extra)


def build_llava_next(out: Path, texts: Iterable[str], seed: int = 0) -> Path:
    from tokenizers import processors
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
        MistralConfig,
    )
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    specials = ["<unk>", "<s>", "</s>", "<image>"]
    tok = _sp_tokenizer(texts, specials, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                          "additional_special_tokens": ["<image>"]})
    backend = tok.backend_tokenizer  # type: ignore[attr-defined]
    # Llama/Mistral add BOS by default (add_bos_token): the mismatch with TRL's add_special_tokens=False is real
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", tok.convert_tokens_to_ids("<s>"))])
    tok.save_pretrained(out)
    ids = tok.convert_tokens_to_ids
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=28, patch_size=14, projection_dim=32)
    text = MistralConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         sliding_window=None,
                         bos_token_id=ids("<s>"), eos_token_id=ids("</s>"), pad_token_id=None,
                         tie_word_embeddings=False)
    pinpoints = [[28, 56], [56, 28], [56, 56]]
    cfg = LlavaNextConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=ids("<image>"),
                          image_grid_pinpoints=pinpoints, vision_feature_layer=-2,
                          vision_feature_select_strategy="default",
                          projector_hidden_act="gelu", tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaNextForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = ids("</s>")
    model.generation_config.bos_token_id = ids("<s>")
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                                 image_grid_pinpoints=pinpoints)
    _write_common(out, model, LLAVA_NEXT_TEMPLATE, image_processor, "LlavaNextProcessor")
    # the processor's own settings (patch size, feature strategy) live in processor_config.json on the hub
    proc = LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=14,
                              vision_feature_select_strategy="default", chat_template=LLAVA_NEXT_TEMPLATE,
                              num_additional_image_tokens=1)
    proc.save_pretrained(out)
    return out


def build_gemma3(out: Path, texts: Iterable[str], seed: int = 0) -> Path:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                "<end_of_image>", "<image_soft_token>"]
    tok = _sp_tokenizer(texts, specials, {
        "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>",
        "additional_special_tokens": specials[4:],
        "extra_special_tokens": {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                 "image_token": "<image_soft_token>"},
    })
    from tokenizers import processors

    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(  # type: ignore[attr-defined]
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", tok.convert_tokens_to_ids("<bos>"))])
    tok.save_pretrained(out)
    ids = tok.convert_tokens_to_ids
    cfg = Gemma3Config(
        text_config={"vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                     "max_position_embeddings": 4096,
                     "sliding_window": 64, "bos_token_id": ids("<bos>"),
                     "eos_token_id": [ids("<eos>"), ids("<end_of_turn>")],
                     "pad_token_id": ids("<pad>")},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 28, "patch_size": 14, "vision_use_head": False},
        mm_tokens_per_image=4, boi_token_index=ids("<start_of_image>"), eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Gemma3ForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = [ids("<eos>"), ids("<end_of_turn>")]
    model.generation_config.bos_token_id = ids("<bos>")
    model.generation_config.pad_token_id = ids("<pad>")
    image_processor = Gemma3ImageProcessorPil(size={"height": 28, "width": 28}, do_pan_and_scan=False)
    _write_common(out, model, GEMMA3_TEMPLATE, image_processor, "Gemma3Processor")
    proc = Gemma3Processor(image_processor=image_processor, tokenizer=tok, chat_template=GEMMA3_TEMPLATE,
                           image_seq_length=4)
    proc.save_pretrained(out)
    return out


BUILDERS = {"qwen2_5_vl": build_qwen2_5_vl, "llava_next": build_llava_next, "gemma3": build_gemma3}


def build_family(family: str, out: Path, texts: Iterable[str], seed: int = 0) -> Path:
    """Write a tiny random checkpoint of `family` to `out` (hub layout); returns `out`."""
    return BUILDERS[family](out, list(texts), seed)
