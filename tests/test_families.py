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


def _records(root: Path, n: int) -> dict[str, list[Record]]:
    from scalevlm.sources.synthetic import GridConfig, grid_sample

    grids = [GridConfig(enabled=True, n=n, seed=0, rows=size, cols=size, cell_px=16, p_red=0.5, p_blue=0.2, jitter=False,
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

    from scalevlm.training.data import completion_messages, prompt_messages

    collator = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    batch = collator([{"images": _images(root, record), "prompt": prompt_messages(record),
                       "completion": completion_messages(record)}])
    keep = (batch["attention_mask"][0] == 1) & (batch["labels"][0] == -100)
    return batch["input_ids"][0][keep].tolist()


def grpo_prompt_ids(trainer: object, root: Path, record: Record) -> list[int]:
    """The prompt ids our GRPO trainer generates from for `record` (TRL's own prompt tokenisation)."""
    from trl.data_utils import prepare_multimodal_messages

    from scalevlm.training.data import prompt_messages

    prompt = prepare_multimodal_messages(prompt_messages(record), images=_images(root, record))
    ids, _, _ = trainer._tokenize_prompts([prompt])  # type: ignore[attr-defined]
    return list(ids[0])


def eval_prompt_ids(processor: object, root: Path, record: Record) -> list[int]:
    from scalevlm.inference import PROMPT_TOKENIZE_KWARGS, prompt_text

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
    from scalevlm.training.data import read_split
    from stages.train_grpo import grpo_config

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
