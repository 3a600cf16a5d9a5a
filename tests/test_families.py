"""The paper's three model families (Qwen2.5-VL, LLaVA-NeXT/Mistral, Gemma-3) through the one code path.

Tiny random checkpoints of each family are written in hub layout (tests/families.py) and go through every stage
the way a user's real model would: only `prepare_model.name_or_path` changes. Prompt identity (evaluation = GRPO
= SFT ids) and the LoRA default targets are checked per family.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from families import FAMILIES, build_family

from scalevlm.records import ImageStore, Record, write_records

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _records(root: Path, n: int) -> dict[str, list[Record]]:
    from scalevlm.sources.synthetic import GridConfig, grid_sample

    grids = [GridConfig(enabled=True, n=n, seed=0, rows=size, cols=size, cell_px=16, p_red=0.5, p_blue=0.2,
                        jitter=False,
                        answer_step="copy") for size in (2, 4)]  # 32 and 64 px: prompts of different lengths
    store = ImageStore(root / "data" / "curate_dataset")
    splits: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for i in range(n):
        image, question, think, answer, _ = grid_sample(random.Random(i), grids[i % 2])
        split = "test" if i % 4 == 0 else "val" if i % 4 == 1 else "train"
        splits[split].append(Record(
            id=f"synthetic/{i:04d}", images=("data/curate_dataset/" + store.put(image),), question=question,
            reasoning=think, answer=answer, answer_type="integer", choices=None, source="synthetic", split=split))
    for split, records in splits.items():
        write_records(root / "data" / "validate_segments" / f"{split}.jsonl", records)
    return splits


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A project root with validated splits, and one hub-layout checkpoint folder per family (outside the root)."""
    root = tmp_path_factory.mktemp("project")
    splits = _records(root, 24)
    texts = [f"{r.question} {r.completion}" for r in splits["train"]]
    hub = tmp_path_factory.mktemp("hub")
    return root, {f: build_family(f, hub / f, texts) for f in FAMILIES}


def _images(root: Path, record: Record) -> list:
    from PIL import Image

    from scalevlm.validation import image_paths

    return [Image.open(p).convert("RGB") for p in image_paths(root, record)]


def sft_prompt_ids(processor: object, root: Path, record: Record) -> list[int]:
    """The prompt ids TRL's SFT collator builds for `record` (its unsupervised, non-padding positions)."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from scalevlm.prompts import completion_messages, prompt_messages

    collator = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    batch = collator([{"images": _images(root, record), "prompt": prompt_messages(record),
                       "completion": completion_messages(record)}])
    keep = (batch["attention_mask"][0] == 1) & (batch["labels"][0] == -100)
    return batch["input_ids"][0][keep].tolist()


def grpo_prompt_ids(trainer: object, root: Path, record: Record) -> list[int]:
    """The prompt ids our GRPO trainer generates from for `record` (TRL's own prompt tokenisation)."""
    from trl.data_utils import prepare_multimodal_messages

    from scalevlm.prompts import prompt_messages

    prompt = prepare_multimodal_messages(prompt_messages(record), images=_images(root, record))
    ids, _, _ = trainer._tokenize_prompts([prompt])  # type: ignore[attr-defined]
    return list(ids[0])


def eval_prompt_ids(processor: object, root: Path, record: Record) -> list[int]:
    from scalevlm.evaluation.generation import PROMPT_TOKENIZE_KWARGS, prompt_text

    text = prompt_text(processor, record.question, len(record.images))
    out = processor(text=[text], images=[_images(root, record)], return_tensors="pt", **PROMPT_TOKENIZE_KWARGS)  # type: ignore[operator]
    return out["input_ids"][0].tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_ids_identical_in_sft_grpo_and_evaluation(project: tuple[Path, dict[str, Path]], family: str) -> None:
    from datasets import Dataset
    from test_grpo_eval_compare import grpo_cfg
    from trl import GRPOTrainer

    from scalevlm.core.rewards import reward_functions
    from scalevlm.modeling import load_model_and_processor
    from scalevlm.training.grpo import grpo_config
    from scalevlm.validation import read_split

    root, hub = project
    model, processor = load_model_and_processor(hub[family])
    record = read_split(root, "train")[0]
    funcs, weights = reward_functions({"format": 1.0, "accuracy": 0.0, "length": 0.0}, 50)
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=grpo_config(grpo_cfg(), root / "grpo_ids", weights),
                          processing_class=processor, train_dataset=Dataset.from_dict({"prompt": [[]]}))
    sft = sft_prompt_ids(processor, root, record)
    assert eval_prompt_ids(processor, root, record) == sft
    assert grpo_prompt_ids(trainer, root, record) == sft
    bos = processor.tokenizer.bos_token_id
    assert sft.count(bos) == (1 if family == "gemma3" else 0)  # Gemma-3's template holds its one BOS


def _params(hub_dir: Path) -> dict:
    """The project's params.yaml with only what a user changes for a real model (the model) plus smoke sizes."""
    from scalevlm.config import load_params

    params = load_params(ROOT / "params.yaml")
    params["prepare_model"]["name_or_path"] = str(hub_dir)
    params["train_sft"].update(max_steps=2, batch_size=4, logging_steps=1, save_steps=0, train_limit=8, resume=False)
    params["train_grpo"].update(max_steps=1, batch_size=4, num_generations=2, max_completion_length=12, train_limit=4,
                                logging_steps=1, save_steps=0, resume=False)
    params["evaluate"].update(batch_size=4, max_new_tokens=12, max_samples=4, device="cpu")
    return params


@pytest.mark.parametrize("family", FAMILIES)
def test_family_runs_every_stage(project: tuple[Path, dict[str, Path]], family: str, tmp_path: Path) -> None:
    import dataclasses
    import shutil

    from scalevlm.config import load_config
    from scalevlm.modeling import load_model_and_processor
    from stages import evaluate, prepare_model, train_grpo, train_sft

    src, hub = project
    root = tmp_path / "root"
    shutil.copytree(src / "data", root / "data")
    params = _params(hub[family])
    summary = prepare_model.run(load_config(prepare_model.Config, params, "prepare_model"), root)
    assert summary["tags_single_tokens"] is False  # the real-vocabulary case: tags split into several tokens
    assert summary["image_tokens_64x64"] == TINY_TOKENS_64[family]
    sft = load_config(train_sft.Config, params, "train_sft")
    for method in ("vanilla", "scale"):
        metrics = train_sft.run(sft, root, method)
        assert (metrics["steps"] == 2 and metrics["final_loss_think"] is not None
                and metrics["final_loss_answer"] is not None)
    lora = dataclasses.replace(sft, lora=dataclasses.replace(sft.lora, enabled=True))
    train_sft.run(lora, root, "scale")  # the LoRA arm replaces the full-fine-tuning one; GRPO starts from it merged
    grpo = train_grpo.run(load_config(train_grpo.Config, params, "train_grpo"), root, "scale")
    assert grpo["steps"] == 1
    for arm in ("sft-vanilla", "grpo-scale"):
        result = evaluate.run(load_config(evaluate.Config, params, "evaluate"), root, arm)
        assert result["n"] == 4
    _, processor = load_model_and_processor(root / "models" / "train_grpo" / "scale")
    assert type(processor).__name__ == {"qwen2_5_vl": "Qwen2_5_VLProcessor", "llava_next": "LlavaNextProcessor",
                                        "gemma3": "Gemma3Processor"}[family]


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_default_targets_only_the_language_model(project: tuple[Path, dict[str, Path]], family: str) -> None:
    import dataclasses

    from peft import get_peft_model

    from scalevlm.config import load_config
    from scalevlm.modeling import load_model_and_processor
    from scalevlm.training.sft import lora_config
    from stages import train_sft

    _, hub = project
    lora = dataclasses.replace(load_config(train_sft.Config, _params(hub[family]), "train_sft").lora, enabled=True)
    model, _ = load_model_and_processor(hub[family])
    names = tuple(lora.target_modules)
    same_named = [n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in names]
    adapted = [n for n, m in get_peft_model(model, lora_config(lora)).named_modules() if hasattr(m, "lora_A")]
    text_layers = model.config.get_text_config().num_hidden_layers
    assert len(adapted) == text_layers * len(names)
    assert all(".language_model." in n for n in adapted)
    if family != "qwen2_5_vl":  # CLIP / SigLIP towers use the same names: plain names would have adapted them too
        assert any("vision_tower" in n for n in same_named)


# Image tokens of one 64×64 image in the tiny fixtures (README: moving to a real model)
TINY_TOKENS_64 = {"qwen2_5_vl": 4, "llava_next": 24, "gemma3": 4}


@pytest.mark.parametrize("family", FAMILIES)
def test_image_tokens_with_the_real_image_processor_settings(project: tuple[Path, dict[str, Path]],
                                                             family: str) -> None:
    """What the README states per family, from each family's published image-processor settings (no weights)."""
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from scalevlm.modeling.images import visual_tokens
    from scalevlm.modeling.loader import load_processor

    processor = load_processor(str(project[1][family]))
    assert visual_tokens(processor, 64, 64) == TINY_TOKENS_64[family]
    if family == "qwen2_5_vl":  # Qwen/Qwen2.5-VL-3B-Instruct: patch 14, merge 2, min_pixels 3136
        processor.image_processor = Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12845056)
        assert [visual_tokens(processor, s, s) for s in (64, 224, 448)] == [4, 64, 256]
    elif family == "llava_next":  # llava-hf/llava-v1.6-mistral-7b-hf: CLIP 336 px, patch 14, anyres up to 672
        processor.image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": 336},
                                                               crop_size={"height": 336, "width": 336})
        assert [visual_tokens(processor, s, s) for s in (64, 448)] == [1176, 2928]
    else:  # Gemma-3: every image is resized to one square; tokens = config.mm_tokens_per_image (256 for 4B)
        assert {visual_tokens(processor, s, s) for s in (32, 64, 224)} == {4}


def test_pixel_bounds_from_params(project: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    import shutil

    from scalevlm.config import load_config
    from scalevlm.errors import PipelineError
    from scalevlm.modeling.images import visual_tokens
    from scalevlm.modeling.loader import load_processor
    from stages import prepare_model

    src, hub = project
    root = tmp_path / "root"
    shutil.copytree(src / "data", root / "data")
    params = _params(hub["qwen2_5_vl"])
    params["prepare_model"].update(min_pixels=784, max_pixels=784)  # one merged 28×28 patch per image
    assert prepare_model.run(load_config(prepare_model.Config, params, "prepare_model"),
                             root)["image_tokens_64x64"] == 1
    saved = load_processor(str(root / "models" / "prepare_model"))  # every later stage loads these bounds
    assert visual_tokens(saved, 448, 448) == 1
    params = _params(hub["llava_next"])
    params["prepare_model"]["max_pixels"] = 784
    with pytest.raises(PipelineError, match="LlavaNextImageProcessor.*no pixel bounds"):
        prepare_model.run(load_config(prepare_model.Config, params, "prepare_model"), root)
