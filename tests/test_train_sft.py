"""SFT glue: segment labels from label ids, the trainer's loss paths, config translation, and stage smoke runs."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_project import grid, grid_project
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from scalevlm.core.scale_loss import ANSWER, TAG, THINK, scale_loss, shifted_token_ce
from scalevlm.labels import PieceDecoder, batch_segment_labels, sequence_segment_labels
from scalevlm.modeling import train_tokenizer
from scalevlm.training.config import ScaleSettings
from scalevlm.training.data import sft_dataset
from scalevlm.training.sft import LoraSettings, SFTSettings, sft_config
from scalevlm.validation import read_split
from stages import train_sft

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = SFTSettings(
    seed=0, max_steps=4, batch_size=4, grad_accum=1, learning_rate=3e-3, lr_scheduler="cosine", warmup_ratio=0.0,
    max_grad_norm=1.0, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.98, max_length=None, dtype="auto",
    gradient_checkpointing=False, logging_steps=1, save_steps=2, resume=True, keep_checkpoints=False,
    dataloader_workers=0, torch_threads=0, train_limit=None, freeze_vision=False,
    scale=ScaleSettings(schedule="cosine", w_start=0.8, w_end=0.2, normalisation="per_sample", close_tag="think",
                        tags="segment"),
    lora=LoraSettings(enabled=False, r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj")),
)
COMPLETION = "<think>row 1: red blue = 1, total 1.</think><answer>1</answer>"


# -- fixtures ---------------------------------------------------------------------------------------------------


def make_project(root: Path, n_train: int = 12, n_val: int = 4) -> Path:
    """A project root with validated train/val splits (image paths relative to the root) and a prepared tiny model."""
    grid_project(root, n_train + n_val, lambda i: "train" if i < n_train else "val", (grid(2),),
                 rng_seed=lambda i: f"train:{i}" if i < n_train else f"val:{i - n_train}", base_model=True)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("sft_project"))


def _copy_project(src: Path, dst: Path) -> Path:
    shutil.copytree(src / "data", dst / "data")
    shutil.copytree(src / "models" / "prepare_model", dst / "models" / "prepare_model")
    return dst


# -- segment labels ---------------------------------------------------------------------------------------------


def _labels_for(tok: PreTrainedTokenizerFast, text: str, prompt_len: int = 3) -> torch.Tensor:
    ids = tok.encode(text, add_special_tokens=False) + [tok.convert_tokens_to_ids("<|im_end|>")]
    return torch.tensor([[-100] * prompt_len + ids])


def _expected(tok: PreTrainedTokenizerFast, labels: torch.Tensor) -> list[int]:
    """Think through the last token whose decoded prefix ends at or before `</think>`'s end."""
    ids = [i for i in labels[0].tolist() if i != -100]
    end = COMPLETION.index("</think>") + len("</think>")
    out, pos = [], 0
    for i in ids:
        out.append(THINK if pos < end else ANSWER)
        pos += len(tok.decode([i]))
    return [0] * (labels.shape[1] - len(ids)) + out


def test_segment_labels_with_single_token_tags() -> None:
    tok = train_tokenizer([COMPLETION] * 20, 300)
    assert len(tok.encode("</think>", add_special_tokens=False)) == 1
    labels = _labels_for(tok, COMPLETION)
    seg = batch_segment_labels(labels, PieceDecoder(tok))
    assert seg[0].tolist() == _expected(tok, labels)
    close = tok.convert_tokens_to_ids("</think>")
    k = labels[0].tolist().index(close)
    assert seg[0, k] == THINK and seg[0, k + 1] == ANSWER and seg[0, -1] == ANSWER  # </think> think, <|im_end|> answer


def test_segment_labels_when_tags_split_into_several_tokens() -> None:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["row red blue total"] * 10, trainers.BpeTrainer(
        vocab_size=270, special_tokens=["<|im_end|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>")
    assert len(fast.encode("</think>", add_special_tokens=False)) > 2
    labels = _labels_for(fast, COMPLETION)
    seg = batch_segment_labels(labels, PieceDecoder(fast))
    assert seg[0].tolist() == _expected(fast, labels)
    think_text = "".join(fast.decode([i]) for i, s in zip(labels[0].tolist(), seg[0].tolist(), strict=True)
                         if s == THINK)
    assert think_text == COMPLETION[: COMPLETION.index("</think>") + len("</think>")]


def test_close_tag_answer_moves_the_closing_tag_to_the_answer_segment() -> None:
    """The ablation rule: `</think>` (however it is split) is the first answer token instead of the last think one."""
    tok = train_tokenizer([COMPLETION] * 20, 300)
    labels = _labels_for(tok, COMPLETION)
    ids = [i for i in labels[0].tolist() if i != -100]
    decode = PieceDecoder(tok)
    default = sequence_segment_labels(ids, decode)
    moved = sequence_segment_labels(ids, decode, close_tag="answer")
    pieces = [decode(i) for i in ids]
    close = [k for k, _ in enumerate(pieces) if "".join(pieces[: k + 1]).endswith("</think>")][0]
    assert default[close] == THINK and moved[close] == ANSWER
    assert moved[:close] == default[:close] and moved[close + 1 :] == default[close + 1 :]


def test_token_mean_tags_label_every_tag_and_the_end_of_turn() -> None:
    """`tags="token_mean"`: tokens overlapping a tag, and everything after `</answer>`, are TAG; the rest keep
    their segment, so the answer segment holds only the answer's content."""
    tok = train_tokenizer([COMPLETION] * 20, 300)
    ids = tok.encode(COMPLETION, add_special_tokens=False) + [tok.convert_tokens_to_ids("<|im_end|>")]
    decode = PieceDecoder(tok)
    default = sequence_segment_labels(ids, decode)
    tagged = sequence_segment_labels(ids, decode, tags="token_mean")
    pieces = [decode(i) for i in ids]
    assert "".join(p for p, lab in zip(pieces, tagged, strict=True) if lab == ANSWER) == "1"
    assert tagged[-1] == TAG and default[-1] == ANSWER
    text = "".join(p for p, lab in zip(pieces, tagged, strict=True) if lab == TAG)
    assert text == "<think></think><answer></answer><|im_end|>"
    assert all(d == t for d, t in zip(default, tagged, strict=True) if t != TAG)


def test_segment_labels_without_closing_tag_are_all_think() -> None:
    tok = train_tokenizer([COMPLETION] * 20, 300)
    labels = torch.tensor([[-100] + tok.encode("<think>row 1: red", add_special_tokens=False)])
    seg = batch_segment_labels(labels, PieceDecoder(tok))
    assert seg[0, 0] == 0 and bool((seg[0, 1:] == THINK).all())


# -- trainer loss paths -----------------------------------------------------------------------------------------


def _trainer(project: Path, method: str, tmp_path: Path, tags: str = "segment") -> tuple:
    from trl import SFTTrainer

    from scalevlm.modeling import load_model_and_processor
    from scalevlm.training.trainer import SCALeSFTTrainer

    model, proc = load_model_and_processor(project / "models" / "prepare_model", dtype="float32")
    ds = sft_dataset(project, read_split(project, "train"))
    args = sft_config(SETTINGS, tmp_path / method, 1)
    if method == "trl":
        return SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=proc), ds
    scale = dataclasses.replace(SETTINGS.scale, tags=tags)
    return SCALeSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=proc, method=method,
                           scale=scale), ds


def test_trainer_losses_match_trl_and_the_pure_loss(project: Path, tmp_path: Path) -> None:
    trl_trainer, ds = _trainer(project, "trl", tmp_path)
    batch = trl_trainer.data_collator([ds[i] for i in range(4)])
    expected_vanilla = trl_trainer.compute_loss(trl_trainer.model, dict(batch))
    vanilla, _ = _trainer(project, "vanilla", tmp_path)
    assert vanilla.compute_loss(vanilla.model, dict(batch)).item() == pytest.approx(expected_vanilla.item(), rel=1e-5)

    scale, _ = _trainer(project, "scale", tmp_path)
    got = scale.compute_loss(scale.model, dict(batch))
    with torch.no_grad():
        logits = scale.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    seg = batch_segment_labels(batch["labels"], PieceDecoder(scale.processing_class.tokenizer))
    assert bool((seg[:, 1:] == ANSWER).any()) and bool((seg[:, 1:] == THINK).any())
    want, _ = scale_loss(shifted_token_ce(logits, batch["labels"]), seg[:, 1:], *scale.current_weights())
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    assert scale.current_weights() == pytest.approx((0.8, 0.2))  # p = 0


def test_token_mean_tags_trainer_loss_is_the_pure_loss_with_structural_tokens(project: Path, tmp_path: Path) -> None:
    """With `tags: token_mean` the trainer's loss is the pure loss on TAG-labelled segments, which differs from the
    default rule's; vanilla ignores the option (its loss is the token mean either way)."""
    scale, ds = _trainer(project, "scale", tmp_path, tags="token_mean")
    batch = scale.data_collator([ds[i] for i in range(4)])
    got = scale.compute_loss(scale.model, dict(batch))
    with torch.no_grad():
        logits = scale.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    ce = shifted_token_ce(logits, batch["labels"])
    seg = batch_segment_labels(batch["labels"], PieceDecoder(scale.processing_class.tokenizer), tags="token_mean")
    assert bool((seg[:, 1:] == TAG).any())
    want, stats = scale_loss(ce, seg[:, 1:], *scale.current_weights())
    assert got.item() == pytest.approx(want.item(), rel=1e-5) and stats.tag_tokens > 0
    plain = batch_segment_labels(batch["labels"], PieceDecoder(scale.processing_class.tokenizer))
    assert abs(scale_loss(ce, plain[:, 1:], *scale.current_weights())[0].item() - got.item()) > 1e-4
    vanilla, _ = _trainer(project, "vanilla", tmp_path, tags="token_mean")
    assert vanilla.weighting.tags == "segment"


def test_evaluation_logs_segment_losses_of_the_pure_loss(project: Path, tmp_path: Path) -> None:
    """`evaluate` reports the per-segment losses the pure loss computes (mean over samples of L_think(i) and
    L_ans(i)) beside TRL's token metrics, through `log`; the window starts empty again afterwards."""
    scale, ds = _trainer(project, "scale", tmp_path)
    held_out = ds.select(range(4))
    metrics = scale.evaluate(eval_dataset=held_out)
    batch = scale.data_collator([held_out[i] for i in range(4)])
    with torch.no_grad():
        logits = scale.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    seg = batch_segment_labels(batch["labels"], PieceDecoder(scale.processing_class.tokenizer))
    _, stats = scale_loss(shifted_token_ce(logits, batch["labels"]), seg[:, 1:], *scale.current_weights())
    assert metrics["eval_loss_think"] == pytest.approx(stats.loss_think, rel=1e-5)
    assert metrics["eval_loss_answer"] == pytest.approx(stats.loss_answer, rel=1e-5)
    assert 0.0 <= metrics["eval_mean_token_accuracy"] <= 1.0 and metrics["eval_entropy"] > 0
    assert "eval_w_think" not in metrics  # the schedule is logged per training step only
    assert not scale.window["eval"] and scale.window_stats["eval"] is None


def test_sft_config_translation(tmp_path: Path) -> None:
    cfg = dataclasses.replace(SETTINGS, batch_size=16, grad_accum=2, max_steps=600, warmup_ratio=0.05)
    args = sft_config(cfg, tmp_path, world_size=2)
    assert args.per_device_train_batch_size == 4 and args.gradient_accumulation_steps == 2
    assert args.warmup_steps == 30 and args.adam_beta2 == 0.98 and args.seed == 0
    assert args.gradient_checkpointing is False and args.save_strategy == "steps"
    if not torch.cuda.is_available():
        assert args.use_cpu and not args.bf16
    with pytest.raises(ValueError, match="divisible"):
        sft_config(dataclasses.replace(cfg, batch_size=12), tmp_path, world_size=5)
    assert cfg.fingerprint("scale") != cfg.fingerprint("vanilla")
    assert cfg.fingerprint("scale") == dataclasses.replace(cfg, resume=False).fingerprint("scale")


# -- stage runs -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_max_length_that_would_cut_the_image_tokens_is_refused_before_training(project: Path,
                                                                                   tmp_path: Path) -> None:
    from scalevlm.config import ConfigError

    root = _copy_project(project, tmp_path)
    with pytest.raises(ConfigError, match=r"train_sft\.max_length: 8 would cut the prompt of .* \((\d+) tokens, its "
                                          r"image tokens included\)"):
        train_sft.run(dataclasses.replace(SETTINGS, max_length=8), root, method="scale")
    assert not (root / "models" / "train_sft").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["vanilla", "scale"])
def test_stage_smoke_run(project: Path, tmp_path: Path, method: str, caplog: pytest.LogCaptureFixture,
                         capsys: pytest.CaptureFixture[str]) -> None:
    from scalevlm.modeling import load_model_and_processor

    root = _copy_project(project, tmp_path)
    with caplog.at_level(logging.INFO, logger="scalevlm"):
        summary = train_sft.run(SETTINGS, root, method=method)
    assert summary["steps"] == SETTINGS.max_steps and summary["method"] == method
    progress = [r.getMessage() for r in caplog.records if "elapsed | ETA" in r.getMessage()]
    assert [line.split(": step ")[1].split(" ")[0] for line in progress] == ["1/4", "2/4", "3/4", "4/4"]
    assert all(line.startswith(f"train_sft[{method}]: step ") and " | loss_think " in line for line in progress)
    assert (" | w_think " in progress[-1]) == (method == "scale") and "ETA 0:00" in progress[-1]
    assert "{'loss'" not in capsys.readouterr().out  # transformers' raw log dicts are not printed
    report = root / "reports" / "train_sft" / method
    metrics = json.loads((report / "metrics.json").read_text())
    for key in ("wall_time_s", "tokens_per_s", "final_loss", "final_loss_think", "final_loss_answer"):
        assert metrics[key] is not None, key
    plots = report / "dvclive" / "plots" / "metrics"
    assert (plots / "loss.tsv").is_file() and (plots / "loss_think.tsv").is_file()
    assert (plots / "w_think.tsv").is_file() == (method == "scale")
    out = root / "models" / "train_sft" / method
    assert not (out / "checkpoints").exists()
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["config"]["scale"]["w_start"] == 0.8 and "torch" in provenance["versions"]
    model, proc = load_model_and_processor(out)
    assert type(proc).__name__ == "TinyQwen2VLProcessor"


@pytest.mark.slow
def test_freeze_vision_keeps_the_vision_tower_and_trains_the_rest(project: Path, tmp_path: Path) -> None:
    from scalevlm.modeling import load_model_and_processor
    from scalevlm.training.config import VISION_MODULES

    root = _copy_project(project, tmp_path)
    train_sft.run(dataclasses.replace(SETTINGS, max_steps=2, save_steps=0, freeze_vision=True), root, method="scale")
    model, _ = load_model_and_processor(root / "models" / "train_sft" / "scale")
    base, _ = load_model_and_processor(root / "models" / "prepare_model")
    trained, fixed = dict(model.named_parameters()), dict(base.named_parameters())
    vision = [n for n in trained if any(p in VISION_MODULES for p in n.split("."))]
    assert vision and all(torch.equal(trained[n], fixed[n]) for n in vision)
    assert any(not torch.equal(trained[n], fixed[n]) for n in trained if n not in vision)


@pytest.mark.slow
def test_lora_run_saves_a_merged_model(project: Path, tmp_path: Path) -> None:
    from scalevlm.modeling import load_model_and_processor

    root = _copy_project(project, tmp_path)
    lora = dataclasses.replace(SETTINGS.lora, enabled=True)
    train_sft.run(dataclasses.replace(SETTINGS, max_steps=2, save_steps=0, lora=lora), root, method="scale")
    out = root / "models" / "train_sft" / "scale"
    assert not (out / "adapter_config.json").exists()  # merged: downstream stages load a plain model
    model, _ = load_model_and_processor(out)
    base, _ = load_model_and_processor(root / "models" / "prepare_model")
    name = next(n for n, _ in model.named_parameters() if n.endswith("q_proj.weight"))
    assert not torch.equal(dict(model.named_parameters())[name], dict(base.named_parameters())[name])


@pytest.mark.slow
def test_stage_resumes_an_interrupted_run(project: Path, tmp_path: Path) -> None:
    root = _copy_project(project, tmp_path)
    cfg = dataclasses.replace(SETTINGS, max_steps=2, keep_checkpoints=True)
    train_sft.run(cfg, root, method="scale")
    assert (root / "models" / "train_sft" / "scale" / "checkpoints" / "checkpoint-2").is_dir()
    again = train_sft.run(cfg, root, method="scale")  # same settings: picks up the newest checkpoint
    assert again["resumed_from"] == "checkpoint-2"
    changed = train_sft.run(dataclasses.replace(cfg, learning_rate=1e-3), root, method="scale")
    assert changed["resumed_from"] is None  # other settings never resume a foreign checkpoint


def _write_params(root: Path, cfg: SFTSettings) -> Path:
    import yaml

    from scalevlm.config import to_dict

    path = root / "params.yaml"
    path.write_text(yaml.safe_dump({"train_sft": to_dict(cfg)}))
    return path


def _step_losses(root: Path) -> list[float]:
    """Per step: loss, L_think, L_ans and the gradient norm (step 2's loss also checks step 1's update)."""
    history = json.loads((root / "reports" / "train_sft" / "scale" / "log_history.json").read_text())
    return [h[k] for h in history if "loss" in h for k in ("loss", "loss_think", "loss_answer", "grad_norm")]


@pytest.mark.slow
def test_ddp_two_processes_equal_single_process(project: Path, tmp_path: Path) -> None:
    """Two CPU processes over gloo give the same per-step losses as one process on the same global batch of 8, and
    as one process with 2 × 4 gradient accumulation (8 records: every step sees all of them).

    Launched with the repo's DDP config (torchrun launcher): in accelerate 1.15 `--cpu --num_processes 2` starts a
    single process unless MPI is installed; under torchrun the stage's CPU state selects MULTI_CPU + gloo.
    """
    cfg = dataclasses.replace(SETTINGS, batch_size=8, max_steps=2, save_steps=0, train_limit=8)
    runs = {}
    for name, overrides in (("single", {}), ("accum", {"grad_accum": 2}), ("ddp", {})):
        root = _copy_project(project, tmp_path / name)
        params = _write_params(root, dataclasses.replace(cfg, **overrides))
        if name == "ddp":
            cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                   str(ROOT / "configs/accelerate/ddp.yaml"),
                   "--num_processes", "2", "-m", "stages.train_sft", "--method", "scale", "--params", str(params),
                   "--root", str(root)]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
            assert json.loads((root / "reports/train_sft/scale/metrics.json").read_text())["world_size"] == 2
        else:
            train_sft.run(dataclasses.replace(cfg, **overrides), root, method="scale")
        runs[name] = _step_losses(root)
    assert len(runs["single"]) == 2 * 4
    for name in ("accum", "ddp"):
        assert runs[name] == pytest.approx(runs["single"], rel=1e-4), name


def test_every_method_is_registered_once_and_the_trainer_names_none() -> None:
    import ast

    from scalevlm.facts import METHODS
    from scalevlm.training.methods import REGISTRY, segment_weighting

    assert tuple(REGISTRY) == METHODS
    assert segment_weighting(METHODS[0], None).schedule is None
    with pytest.raises(ValueError, match="unknown method 'dpo'"):
        segment_weighting("dpo", None)
    trainer = Path(__file__).resolve().parents[1] / "src/scalevlm/training/trainer.py"
    literals = {n.value for n in ast.walk(ast.parse(trainer.read_text())) if isinstance(n, ast.Constant)}
    assert not literals & set(METHODS), "the trainer asks training.methods, it does not test a method's name"
