"""Every params key rejects its invalid values with a ConfigError that names the full dotted key.

The table below has an entry for every leaf key of every stage's Config (walked from the dataclasses, so a new
field without invalid values fails `test_every_config_key_has_invalid_values`). Each invalid value is put into a
copy of params.yaml and loaded; the error must name the key. A value wrapped in `Named` breaks a cross-field rule
that is reported under another key (e.g. grad_accum 3 makes batch_size 16 indivisible).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from scalevlm.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
CONFIGS = {name: importlib.import_module(f"stages.{name}").Config for name in PARAMS}
NAN, INF = float("nan"), float("inf")


@dataclasses.dataclass(frozen=True)
class Named:
    """An invalid value whose error is reported under `key` (a cross-field rule), not under its own key."""

    value: Any
    key: str


# Wrong types, by declared type (YAML gives exactly these Python types).
NOT_BOOL = ["yes", 1, None]
NOT_INT = ["3", 2.5, True, None]
NOT_OPT_INT = ["3", 2.5, True]
NOT_FLOAT = ["0.5", True, None, NAN, INF, -INF]
NOT_TEXT = ["", "  ", 3, None, ["a"]]
NOT_ENUM = ["bogus", 3, None, True]

# Items for keys inside lists of mappings that params.yaml leaves empty (`files[0].path`).
EXAMPLE_ITEMS = {
    "curate_dataset.sources.local.files": {"path": "data/local/set.jsonl", "format": "auto", "limit": None},
    "curate_dataset.sources.hub.datasets": {"name": "owner/set", "split": "train", "revision": None,
                                            "adapter": "vision_r1", "field_map": {}, "limit": None},
    "evaluate.benchmarks": {"name": "scienceqa", "adapter": "scienceqa", "path_or_hub_id": "lmms-lab/ScienceQA",
                            "config": "ScienceQA-IMG", "split": "test", "revision": None, "limit": None},
}

SIZES = ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
         "vision_embed_dim",
         "vision_depth", "vision_heads", "vision_mlp_ratio", "patch_size", "merge_size", "max_pixels",
         "max_position_embeddings")
TINY = "prepare_model.tiny"
SYN, DIG, LOC, HUB = (f"curate_dataset.sources.{s}" for s in ("synthetic", "digits", "local", "hub"))
R1 = "curate_dataset.sources.r1grid"
PER = "prepare_model.perception"
VS, SFT, GRPO, EV, PR = "validate_segments", "train_sft", "train_grpo", "evaluate", "promote"
RANGES_3 = [[10, 20]] * 3

INVALID: dict[str, list[Any]] = {
    # curate_dataset
    "curate_dataset.val_fraction": [-0.1, 1.0, 1.5, *NOT_FLOAT, Named(0.95, "curate_dataset.val_fraction")],
    "curate_dataset.test_fraction": [-0.1, 1.0, *NOT_FLOAT, Named(0.96, "curate_dataset.val_fraction")],
    "curate_dataset.split_salt": [3, None, ["a"]],
    f"{SYN}.enabled": NOT_BOOL,
    f"{SYN}.n": [-10, *NOT_INT],
    f"{SYN}.seed": [-1, *NOT_INT],
    f"{SYN}.rows": [0, -1, *NOT_INT],
    f"{SYN}.cols": [0, *NOT_INT],
    f"{SYN}.cell_px": [6, 0, *NOT_INT],
    f"{SYN}.p_red": [-0.1, 1.5, *NOT_FLOAT, Named(0.9, f"{SYN}.p_red")],
    f"{SYN}.p_blue": [1.01, *NOT_FLOAT, Named(0.6, f"{SYN}.p_red")],
    f"{SYN}.jitter": NOT_BOOL,
    f"{SYN}.answer_step": ["add", *NOT_ENUM],
    # the others are off: nothing would be curated
    f"{R1}.enabled": [*NOT_BOOL, Named(False, "curate_dataset.sources")],
    f"{R1}.n": [-10, *NOT_INT],
    f"{R1}.seed": [-1, *NOT_INT],
    f"{R1}.rows": [0, -1, 9, *NOT_INT],
    f"{R1}.cols": [0, *NOT_INT],
    f"{R1}.cell_px": [6, 0, *NOT_INT],
    f"{R1}.p_red": [-0.1, 1.5, *NOT_FLOAT, Named(0.9, f"{R1}.p_red")],
    f"{R1}.p_blue": [1.01, *NOT_FLOAT, Named(0.6, f"{R1}.p_red")],
    f"{R1}.jitter": NOT_BOOL,
    f"{R1}.min_checks": [-1, *NOT_INT, Named(11, f"{R1}.min_checks")],
    f"{R1}.max_checks": [-1, *NOT_INT, Named(1, f"{R1}.min_checks")],
    f"{DIG}.enabled": NOT_BOOL,
    f"{DIG}.n": [-10, *NOT_INT],
    f"{DIG}.seed": [-1, *NOT_INT],
    f"{DIG}.digit_px": [0, *NOT_INT],
    f"{DIG}.heldout_fraction": [0.0, 1.0, 0.001, *NOT_FLOAT],
    f"{DIG}.answer_step": NOT_ENUM,
    f"{LOC}.enabled": [*NOT_BOOL, Named(True, f"{LOC}.files")],  # no files listed
    f"{LOC}.files[0].path": [*NOT_TEXT, "/abs/set.jsonl", "data/other/set.jsonl", "data/local/../set.jsonl",
                             "data/local/set.json"],
    f"{LOC}.files[0].format": ["csv", *NOT_ENUM],
    f"{LOC}.files[0].limit": [-1, *NOT_OPT_INT],
    f"{HUB}.enabled": [*NOT_BOOL, Named(True, f"{HUB}.datasets")],  # no datasets listed
    f"{HUB}.datasets[0].name": NOT_TEXT,
    f"{HUB}.datasets[0].split": NOT_TEXT,
    f"{HUB}.datasets[0].revision": ["", 3, ["main"]],
    f"{HUB}.datasets[0].adapter": ["llava", *NOT_ENUM],
    f"{HUB}.datasets[0].field_map": [{"question": "q"}, [], "x", {"question": 3}, {3: "q"}],
    f"{HUB}.datasets[0].limit": [-1, *NOT_OPT_INT],
    f"{HUB}.datasets[0].allow_outside_project": NOT_BOOL,
    # validate_segments
    f"{VS}.max_reject_rate": [-0.1, 1.5, *NOT_FLOAT],
    f"{VS}.min_split_size.train": [-1, *NOT_INT],
    f"{VS}.min_split_size.val": [-1, *NOT_INT],
    f"{VS}.min_split_size.test": [-1, *NOT_INT],
    f"{VS}.answer_types": [[], ["integer", "bogus"], "integer", [3], None],
    f"{VS}.tokenizer": ["", 3, True],
    f"{VS}.min_think_tokens": [-1, 4096, *NOT_INT],
    f"{VS}.max_think_tokens": [0, *NOT_INT],
    f"{VS}.max_answer_tokens": [0, *NOT_INT],
    f"{VS}.min_think_chars": [-1, 9000, *NOT_INT],
    f"{VS}.max_think_chars": [0, *NOT_INT],
    f"{VS}.max_answer_chars": [0, *NOT_INT],
    f"{VS}.min_image_px": [0, 5000, *NOT_INT],
    f"{VS}.max_image_px": [0, *NOT_INT],
    f"{VS}.max_image_bytes": [0, *NOT_INT],
    f"{VS}.length_quantiles": [[], [1.5, 0.5, 0.95], [NAN, 0.5, 0.95], "0.5", None,
                               Named([0.5], f"{VS}.think_quantile_ranges")],
    f"{VS}.think_quantile_ranges": [[[1, 2]], [[20, 10]] * 3, [[-1, 10]] * 3, [[1, 2, 3]] * 3, [[1, NAN]] * 3, "x"],
    f"{VS}.answer_quantile_ranges": [[], [[5, 1]] * 3, [["a", "b"]] * 3, None],
    f"{VS}.examples": [-1, *NOT_INT],
    # prepare_model
    "prepare_model.name_or_path": NOT_TEXT,
    "prepare_model.trust_remote_code": NOT_BOOL,
    "prepare_model.dtype": ["fp32", *NOT_ENUM],
    **{f"{TINY}.{k}": [0, -1, *NOT_INT] for k in SIZES},
    f"{TINY}.seed": [-1, *NOT_INT],
    f"{TINY}.rope_theta": [0, -1.0, *NOT_FLOAT],
    "prepare_model.min_pixels": [0, -1, *NOT_OPT_INT],
    "prepare_model.max_pixels": [0, -1, *NOT_OPT_INT],
    f"{PER}.enabled": NOT_BOOL,
    f"{PER}.seed": [-1, *NOT_INT],
    f"{PER}.max_steps": [0, *NOT_INT, Named(50, f"{PER}.eval_every")],
    f"{PER}.batch_size": [0, *NOT_INT],
    f"{PER}.learning_rate": [0, -1.0, *NOT_FLOAT],
    f"{PER}.warmup_ratio": [-0.1, 1.5, *NOT_FLOAT],
    f"{PER}.eval_every": [0, *NOT_INT, Named(5000, f"{PER}.eval_every")],
    f"{PER}.eval_images": [0, *NOT_INT],
    f"{PER}.stop_exact": [-0.1, 1.5, *NOT_FLOAT],
    f"{PER}.max_new_tokens": [0, *NOT_INT],
    f"{PER}.torch_threads": [-1, *NOT_INT],
    # train_sft
    f"{SFT}.seed": [-1, *NOT_INT],
    f"{SFT}.max_steps": [0, -1, *NOT_INT],
    f"{SFT}.batch_size": [0, -16, *NOT_INT],
    f"{SFT}.grad_accum": [0, -1, *NOT_INT, Named(3, f"{SFT}.batch_size")],
    f"{SFT}.learning_rate": [0, -1.0e-3, "1e-3", *NOT_FLOAT],
    f"{SFT}.lr_scheduler": ["cosine_with_min_lr", "reduce_lr_on_plateau", *NOT_ENUM],
    f"{SFT}.warmup_ratio": [-0.1, 1.0, *NOT_FLOAT],
    f"{SFT}.max_grad_norm": [-1.0, *NOT_FLOAT],
    f"{SFT}.weight_decay": [-0.1, *NOT_FLOAT],
    f"{SFT}.adam_beta1": [1.0, -0.1, *NOT_FLOAT],
    f"{SFT}.adam_beta2": [1.5, *NOT_FLOAT],
    f"{SFT}.max_length": [0, -1, *NOT_OPT_INT],
    f"{SFT}.dtype": ["fp16", "bf16", "float16", *NOT_ENUM],
    f"{SFT}.gradient_checkpointing": NOT_BOOL,
    f"{SFT}.logging_steps": [0, *NOT_INT],
    f"{SFT}.save_steps": [-1, *NOT_INT],
    f"{SFT}.resume": NOT_BOOL,
    f"{SFT}.keep_checkpoints": NOT_BOOL,
    f"{SFT}.dataloader_workers": [-1, *NOT_INT],
    f"{SFT}.torch_threads": [-1, *NOT_INT],
    f"{SFT}.train_limit": [0, -5, *NOT_OPT_INT],
    f"{SFT}.freeze_vision": NOT_BOOL,
    f"{GRPO}.freeze_vision": NOT_BOOL,
    f"{SFT}.scale.schedule": ["exp", *NOT_ENUM],
    f"{SFT}.scale.w_start": [1.5, -0.1, *NOT_FLOAT],
    f"{SFT}.scale.w_end": [1.01, *NOT_FLOAT],
    f"{SFT}.scale.normalisation": ["vanilla", *NOT_ENUM],
    f"{SFT}.scale.close_tag": ["both", *NOT_ENUM],
    f"{SFT}.scale.tags": ["answer", *NOT_ENUM],
    f"{SFT}.lora.enabled": NOT_BOOL,
    f"{SFT}.lora.r": [0, -8, *NOT_INT],
    f"{SFT}.lora.alpha": [0, *NOT_INT],
    f"{SFT}.lora.dropout": [1.0, -0.1, *NOT_FLOAT],
    f"{SFT}.lora.target_modules": [[], [""], "q_proj", [3], None],
    # train_grpo
    f"{GRPO}.seed": [-1, *NOT_INT],
    f"{GRPO}.max_steps": [0, -1, *NOT_INT],
    f"{GRPO}.learning_rate": [0, -3.0e-5, "3e-5", *NOT_FLOAT],
    f"{GRPO}.batch_size": [0, 18, *NOT_INT],
    f"{GRPO}.num_generations": [1, 0, *NOT_INT, Named(3, f"{GRPO}.batch_size")],
    f"{GRPO}.max_completion_length": [7, 0, *NOT_INT],
    f"{GRPO}.beta": [-0.1, *NOT_FLOAT],
    f"{GRPO}.temperature": [0, -1.0, *NOT_FLOAT],
    f"{GRPO}.loss_type": ["luspo", "ppo", *NOT_ENUM],
    f"{GRPO}.reward_weights.format": [-0.5, *NOT_FLOAT],
    f"{GRPO}.reward_weights.accuracy": [-1.0, *NOT_FLOAT],
    f"{GRPO}.reward_weights.length": [-1.0, *NOT_FLOAT],
    f"{GRPO}.max_think_chars": [0, *NOT_INT],
    f"{GRPO}.train_limit": [0, -5, *NOT_OPT_INT],
    f"{GRPO}.logging_steps": [0, *NOT_INT],
    f"{GRPO}.gradient_checkpointing": NOT_BOOL,
    f"{GRPO}.dtype": ["float16", "fp32", *NOT_ENUM],
    f"{GRPO}.use_vllm": NOT_BOOL,
    f"{GRPO}.vllm_mode": ["remote", *NOT_ENUM],
    f"{GRPO}.trust_remote_code": NOT_BOOL,
    f"{GRPO}.torch_threads": [-1, *NOT_INT],
    f"{GRPO}.save_steps": [-1, *NOT_INT],
    f"{GRPO}.resume": NOT_BOOL,
    f"{GRPO}.keep_checkpoints": NOT_BOOL,
    f"{GRPO}.lr_scheduler": ["cosine_with_min_lr", *NOT_ENUM],
    f"{GRPO}.warmup_ratio": [-0.1, 1.0, *NOT_FLOAT],
    f"{GRPO}.heldout.every": [0, *NOT_INT],
    f"{GRPO}.heldout.samples": [0, *NOT_INT],
    f"{GRPO}.heldout.batch_size": [0, *NOT_INT],
    f"{GRPO}.heldout.patience": [-1, *NOT_INT],
    f"{GRPO}.heldout.min_delta": [-0.1, *NOT_FLOAT],
    f"{GRPO}.heldout.restore_best": NOT_BOOL,
    # evaluate
    f"{EV}.batch_size": [0, *NOT_INT],
    f"{EV}.max_new_tokens": [0, *NOT_INT],
    f"{EV}.max_samples": [0, -1, *NOT_OPT_INT],
    f"{EV}.dtype": ["fp16", *NOT_ENUM],
    f"{EV}.device": ["gpu", "cuda:x", "", "cuda:", 0, None],
    f"{EV}.trust_remote_code": NOT_BOOL,
    f"{EV}.torch_threads": [-1, *NOT_INT],
    f"{EV}.benchmarks[0].name": [*NOT_TEXT, "ScienceQA", "science qa", "../sqa", "-sqa"],
    f"{EV}.benchmarks[0].adapter": ["mmbench", *NOT_ENUM],
    f"{EV}.benchmarks[0].path_or_hub_id": NOT_TEXT,
    f"{EV}.benchmarks[0].config": ["", 3, ["ScienceQA-IMG"]],
    f"{EV}.benchmarks[0].split": NOT_TEXT,
    f"{EV}.benchmarks[0].revision": ["", 3, ["main"]],
    f"{EV}.benchmarks[0].limit": [0, -1, *NOT_OPT_INT],
    # compare
    "compare.n_resamples": [0, *NOT_INT],
    "compare.seed": [-1, *NOT_INT],
    "compare.alpha": [0, 1, 1.5, *NOT_FLOAT],
    "compare.study": ["", "../elsewhere", "r1grid/study.json"],
    # promote
    f"{PR}.candidate": ["best", *NOT_ENUM],
    f"{PR}.artifact": ["", "Scale VLM", "-vlm", 3, None],
    f"{PR}.stage": ["", "Prod", "prod-", None],
    f"{PR}.rules.min_accuracy": [1.5, -0.1, *NOT_FLOAT],
    f"{PR}.rules.format_floor": [2, *NOT_FLOAT],
    f"{PR}.rules.tracked_metrics": [["acuracy"], ["missing_answer_rate"], "accuracy", [3], None],
    f"{PR}.rules.max_regression": [-0.1, 1.5, *NOT_FLOAT],
    f"{PR}.rules.require_significant": NOT_BOOL,
    f"{PR}.rules.alpha": [0, 1, *NOT_FLOAT],
    f"{PR}.rules.n_bootstrap": [0, *NOT_INT],
    f"{PR}.rules.seed": [-1, *NOT_INT],
}


def leaf_keys(cls: type, prefix: str) -> list[str]:
    """Dotted keys of every non-dataclass field, recursing into dataclasses and into tuples of them (`[0]`)."""
    keys = []
    for name, tp in typing.get_type_hints(cls).items():
        item = get_args(tp)[0] if typing.get_origin(tp) is tuple and get_args(tp) else None
        if dataclasses.is_dataclass(tp):
            keys += leaf_keys(tp, f"{prefix}.{name}")
        elif dataclasses.is_dataclass(item):
            keys += leaf_keys(item, f"{prefix}.{name}[0]")  # type: ignore[arg-type]
        else:
            keys.append(f"{prefix}.{name}")
    return keys


def with_value(key: str, value: Any) -> dict[str, Any]:
    """A copy of params.yaml with `key` set to `value` (an example item is added to an empty list on the way)."""
    params = copy.deepcopy(PARAMS)
    node: Any = params
    path = ""
    *parents, leaf = key.replace("[0]", ".0").split(".")
    for part in parents:
        if part == "0":
            if not node:
                node.append(copy.deepcopy(EXAMPLE_ITEMS[path]))
            node = node[0]
            path += "[0]"
        else:
            node = node[part]
            path = f"{path}.{part}" if path else part
    node[leaf] = value
    return params


CASES = [(key, v.value if isinstance(v, Named) else v, v.key if isinstance(v, Named) else key)
         for key, values in INVALID.items() for v in values]


def test_every_config_key_has_invalid_values() -> None:
    keys = [k for name, cls in CONFIGS.items() for k in leaf_keys(cls, name)]
    assert sorted(set(keys) - set(INVALID)) == [], "new config keys: add their invalid values to INVALID"
    assert sorted(set(INVALID) - set(keys)) == [], "INVALID lists keys no Config has"
    assert all(INVALID[k] for k in keys)


def test_the_committed_params_and_example_items_are_valid() -> None:
    for name, cls in CONFIGS.items():
        load_config(cls, PARAMS, name)
    for key in ("curate_dataset.sources.local.files[0].limit", "curate_dataset.sources.hub.datasets[0].limit"):
        load_config(CONFIGS["curate_dataset"], with_value(key, None), "curate_dataset")


@pytest.mark.parametrize(("key", "value", "named"), CASES, ids=[f"{k}={v!r}" for k, v, _ in CASES])
def test_invalid_value_is_refused_naming_the_key(key: str, value: Any, named: str) -> None:
    section = key.split(".")[0]
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS[section], with_value(key, value), section)
    assert re.search(rf"(^|; ){re.escape(named)}(\[\d+\])*[:. ]", str(info.value)), str(info.value)


def test_enums_match_the_code_that_reads_them() -> None:
    from transformers.trainer_utils import SchedulerType

    from scalevlm.core.scale_loss import NORMALISATIONS, SCHEDULES
    from scalevlm.facts import ARMS, BEST_PASSING
    from scalevlm.records import ANSWER_TYPES
    from scalevlm.training.config import LrScheduler, ScaleSettings
    from stages import compare, promote, validate_segments

    hints = typing.get_type_hints(ScaleSettings)
    assert get_args(hints["schedule"]) == SCHEDULES
    assert set(get_args(hints["normalisation"])) < set(NORMALISATIONS)  # `vanilla` is the other method, not a knob
    assert set(get_args(LrScheduler)) <= {s.value for s in SchedulerType}
    assert get_args(validate_segments.AnswerType) == ANSWER_TYPES
    arms = sorted(ARMS)
    candidates = {a for t in get_args(typing.get_type_hints(promote.Config)["candidate"]) for a in get_args(t)}
    assert sorted(compare.ARMS) == arms == sorted(candidates - {BEST_PASSING})


def test_all_reward_weights_zero_is_refused() -> None:
    params = with_value("train_grpo.reward_weights", {"format": 0, "accuracy": 0.0, "length": 0})
    with pytest.raises(ConfigError, match=r"train_grpo\.reward_weights\.format: every reward weight is 0"):
        load_config(CONFIGS["train_grpo"], params, "train_grpo")


def test_run_time_rule_exits_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A rule that needs the process count is checked at run start, and comes out as a params error too."""
    from scalevlm.runtime import stage_main
    from scalevlm.training.sft import SFTSettings

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    argv = ["--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path)]
    assert stage_main("train_sft", SFTSettings, lambda cfg, root: cfg.validate(world_size=3) or {}, argv) == 2
    err = capsys.readouterr().err
    assert "train_sft.batch_size: 16 must be divisible by grad_accum 1 × processes 3" in err


# End to end: the real entry points, as dvc runs them.
CLI_CASES = [
    (["stages.train_sft", "--method", "scale"], "train_sft.max_steps", -1),
    (["stages.train_grpo", "--init", "vanilla"], "train_grpo.num_generations", 3),
    (["stages.curate_dataset"], "curate_dataset.sources.synthetic.n", -10),
    (["stages.evaluate", "--arm", "sft-scale"], "evaluate.dtype", "fp16"),
    (["stages.promote", "--gate"], "promote.rules.alpha", NAN),
]


@pytest.mark.parametrize(("command", "key", "value"), CLI_CASES, ids=[c[1] for c in CLI_CASES])
def test_stage_with_bad_params_exits_2_naming_the_key(tmp_path: Path, command: list[str], key: str, value: Any) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(with_value(key, value)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    done = subprocess.run([sys.executable, "-m", *command, "--params", str(params), "--root", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    named = "train_grpo.batch_size" if key.endswith("num_generations") else key
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert re.search(rf"^error: .*{re.escape(named)}: ", done.stderr, re.M), done.stderr
    assert list(tmp_path.iterdir()) == [params]  # refused before writing anything
