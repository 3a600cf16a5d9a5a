"""The one tiny test model and project builder that the stage tests share (no download, seconds to build).

`TINY_SPEC` is a ~0.1 M-parameter tiny Qwen2-VL (the pipeline's default is ~1.3 M: `params.yaml`), and
`grid_project` writes validated splits of synthetic grid records into a project root — image paths relative to
the root, exactly as `validate_segments` leaves them — optionally with a prepared base model or the same untrained
model saved as trained arms, so each stage can be run on its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from scalevlm.modeling import TinySpec
from scalevlm.modeling.perception import PerceptionConfig
from scalevlm.records import ImageStore, Record, write_records
from scalevlm.sources.synthetic import GridConfig, grid_sample

TINY_SPEC = TinySpec(
    seed=0, vocab_size=300, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
    vision_embed_dim=64, vision_depth=1, vision_heads=4, vision_mlp_ratio=2, patch_size=8, merge_size=2,
    max_pixels=4096, max_position_embeddings=1024, rope_theta=10000.0,
)


# perception pre-training off (the default embedded task; tests/test_perception.py turns it on)
NO_PERCEPTION = PerceptionConfig(enabled=False, seed=0, max_steps=10, batch_size=4, learning_rate=3e-3,
                                 warmup_ratio=0.1,
                                 eval_every=5, eval_images=4, stop_exact=1.0, max_new_tokens=96, torch_threads=1)


def grid(size: int = 2, jitter: bool = True, p_red: float = 0.45, p_blue: float = 0.25) -> GridConfig:
    """A size×size grid of 16 px cells (one merged visual token each)."""
    return GridConfig(enabled=True, n=1, seed=0, rows=size, cols=size, cell_px=16, p_red=p_red, p_blue=p_blue,
                      jitter=jitter, answer_step="copy")


def grid_project(
    root: Path,
    n: int,
    split_of: Callable[[int], str],
    grids: Sequence[GridConfig] = (grid(),),
    rng_seed: Callable[[int], object] = lambda i: i,
    base_model: bool = False,
    arms: Iterable[tuple[str, str]] = (),
    tokenizer_extra: str = "",
) -> dict[str, list[Record]]:
    """Write `n` grid records (record i: split `split_of(i)`, grid `grids[i % len(grids)]`, drawn with
    `random.Random(rng_seed(i))`) as validated splits under `root`; then, if asked, prepare the tiny base model
    (`models/prepare_model`) and/or save one untrained tiny model as each (stage, method) arm in `arms`.
    Returns the records by split."""
    store = ImageStore(root / "data" / "curate_dataset")
    splits: dict[str, list[Record]] = {}
    for i in range(n):
        image, question, think, answer, _ = grid_sample(random.Random(rng_seed(i)), grids[i % len(grids)])
        split = split_of(i)
        splits.setdefault(split, []).append(Record(
            id=f"synthetic/{i:04d}", images=("data/curate_dataset/" + store.put(image),), question=question,
            reasoning=think, answer=answer, answer_type="integer", choices=None, source="synthetic", split=split))
    for split, records in splits.items():  # validated layout: image paths relative to the project root
        write_records(root / "data" / "validate_segments" / f"{split}.jsonl", records)
    if base_model:
        from stages import prepare_model

        prepare_model.run(prepare_model.Config(name_or_path="tiny", trust_remote_code=False, dtype="auto",
                                               tiny=TINY_SPEC, min_pixels=None, max_pixels=None,
                                               perception=NO_PERCEPTION), root)
    arms = list(arms)
    if arms:
        from scalevlm.modeling import build_tiny, save_model_and_processor

        texts = [" ".join(filter(None, (r.question, r.reasoning, r.answer, tokenizer_extra)))
                 for r in splits.get("train", [])]
        model, processor = build_tiny(texts, TINY_SPEC)
        for stage, method in arms:
            save_model_and_processor(model, processor, root / "models" / stage / method)
    return splits
