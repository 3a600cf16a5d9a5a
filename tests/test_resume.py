"""Crash-safe resume: a run killed after a checkpoint and rerun ends with the weights of an uninterrupted run.

The slow tests kill the stage with SIGKILL in a subprocess once its first complete checkpoint exists, rerun it, and
compare every tensor of the final model with an uninterrupted run of the same params and seed (after checking that
two uninterrupted runs agree). The fast tests cover the pieces: which checkpoint folder counts as complete, and
that a checkpoint whose tensors do not match the model fails loudly instead of resuming from the base weights.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_train_sft import SETTINGS, _copy_project, _trainer, _write_params, make_project

from scalevlm.training.checkpoints import (
    CHECKPOINTS,
    COMPLETE,
    FINGERPRINT,
    CheckpointError,
    find_resumable,
    load_model_weights,
    mark_complete,
    prepare_outputs,
    verify_adapter,
)
from scalevlm.training.grpo import HeldOutSettings, RewardWeights
from stages import train_grpo, train_sft

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5  # max |diff| allowed between a resumed and an uninterrupted run (CPU)
SFT = dataclasses.replace(SETTINGS, max_steps=12, save_steps=4, torch_threads=1, logging_steps=4)
GRPO = train_grpo.Config(
    seed=0, max_steps=12, learning_rate=1e-3, batch_size=4, num_generations=2, max_completion_length=48, beta=0.0,
    temperature=1.0, loss_type="dapo", reward_weights=RewardWeights(format=0.5, accuracy=1.0, length=0.0),
    max_think_chars=400, train_limit=None, logging_steps=4, gradient_checkpointing=False, dtype="float32",
    use_vllm=False, vllm_mode="colocate", trust_remote_code=False, torch_threads=1,
    save_steps=4, resume=True, keep_checkpoints=False, lr_scheduler="linear", warmup_ratio=0.0, freeze_vision=False,
    heldout=HeldOutSettings(every=1000, samples=4, batch_size=4, patience=0, min_delta=0.0, restore_best=False),
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("resume_project"))


@pytest.fixture(scope="module")
def grpo_project(tmp_path_factory: pytest.TempPathFactory, project: Path) -> Path:
    root = tmp_path_factory.mktemp("resume_grpo_project")
    _copy_project(project, root)
    # GRPO's init: an SFT model that writes the format often enough that rewards differ within a group, so GRPO moves
    # the weights from its first step (less trained models scored 0 everywhere: zero advantages, zero gradient)
    train_sft.run(dataclasses.replace(SFT, max_steps=120, save_steps=0, lr_scheduler="constant"), root,
                  method="vanilla")
    shutil.rmtree(root / "reports")
    return root


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()  # the stages pin torch threads (torch_threads: 1) in this process
    yield
    torch.set_num_threads(threads)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# -- which checkpoint counts ----------------------------------------------------------------------------------------


def _fake_checkpoint(ckpt_dir: Path, step: int, complete: bool) -> Path:
    folder = ckpt_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    save_file({"w": torch.full((64,), float(step))}, folder / "model.safetensors")
    (folder / "trainer_state.json").write_text("{}")
    if complete:
        mark_complete(folder, step)
    return folder


def test_only_complete_checkpoints_of_the_same_run_are_resumed(tmp_path: Path) -> None:
    ckpt = tmp_path / CHECKPOINTS
    prepare_outputs([tmp_path], ckpt, "abc", None)
    assert find_resumable(ckpt, "abc", True) is None  # nothing saved yet
    four = _fake_checkpoint(ckpt, 4, complete=True)
    eight = _fake_checkpoint(ckpt, 8, complete=False)  # killed while saving: no marker
    assert find_resumable(ckpt, "abc", True) == four
    mark_complete(eight, 8)
    assert find_resumable(ckpt, "abc", True) == eight
    with (eight / "model.safetensors").open("r+b") as f:  # weights cut short after the marker was written
        f.truncate(100)
    assert find_resumable(ckpt, "abc", True) == four
    (four / "trainer_state.json").unlink()  # a file the marker lists is gone
    assert find_resumable(ckpt, "abc", True) is None
    four = ckpt / "checkpoint-4"
    shutil.rmtree(four)
    _fake_checkpoint(ckpt, 4, complete=True)
    assert find_resumable(ckpt, "other-settings", True) is None
    assert find_resumable(ckpt, "abc", False) is None
    prepare_outputs([tmp_path], ckpt, "abc", four)  # a resumed run drops every other checkpoint folder
    assert [p.name for p in ckpt.iterdir() if p.is_dir()] == ["checkpoint-4"]
    assert (ckpt / FINGERPRINT).read_text().strip() == "abc"


class _Payload:
    """What a tampered checkpoint would pickle: unpickling it calls a function (here a harmless one)."""

    def __reduce__(self) -> tuple:
        return (print, ("the payload ran",))


def test_a_checkpoint_file_that_is_not_plain_tensors_is_refused_by_name(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    from scalevlm.training.checkpoints import CheckpointError

    ckpt = tmp_path / CHECKPOINTS
    prepare_outputs([tmp_path], ckpt, "abc", None)
    four = _fake_checkpoint(ckpt, 4, complete=False)
    torch.save({"python": torch.zeros(2)}, four / "rng_state.pth")
    mark_complete(four, 4)
    assert find_resumable(ckpt, "abc", True) == four  # plain tensors: fine
    torch.save({"python": _Payload()}, four / "rng_state.pth")
    mark_complete(four, 4)
    with pytest.raises(CheckpointError, match=r"rng_state\.pth: refused to resume from it: it is not plain tensors"):
        find_resumable(ckpt, "abc", True)
    assert "the payload ran" not in capsys.readouterr().out


# -- strict loading -----------------------------------------------------------------------------------------------


def _tiny_model(project: Path) -> torch.nn.Module:
    from scalevlm.modeling import load_model_and_processor

    return load_model_and_processor(project / "models" / "prepare_model", dtype="float32")[0]


def test_checkpoint_weights_load_into_the_model_names(project: Path, tmp_path: Path) -> None:
    """The regression: `save_pretrained` writes legacy names that a plain load_state_dict matches none of."""
    trained = _tiny_model(project)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01)
    trained.save_pretrained(tmp_path / "ckpt")
    saved = load_file(tmp_path / "ckpt" / "model.safetensors")
    fresh = _tiny_model(project)
    assert not set(saved) & set(fresh.state_dict())  # the names really differ (else this test proves nothing)
    load_model_weights(fresh, tmp_path / "ckpt")
    want = trained.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in fresh.state_dict().items())


@pytest.mark.parametrize(("damage", "message"), [
    ("renamed", r"ckpt matches 0 of 46 model tensors"),  # e.g. another naming convention: nothing matches
    ("dropped", r"ckpt matches 45 of 46 model tensors"),
    ("reshaped", r"cannot load the model weights of checkpoint \S*ckpt: .*mismatched"),
])
def test_a_checkpoint_that_does_not_match_the_model_fails_loudly(project: Path, tmp_path: Path, damage: str,
                                                                  message: str) -> None:
    _tiny_model(project).save_pretrained(tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "model.safetensors"
    tensors = load_file(path)
    names = sorted(tensors)
    if damage == "renamed":
        tensors = {f"other.{k}": v for k, v in tensors.items()}
    elif damage == "dropped":
        tensors = {k: v for k, v in tensors.items() if k != names[-1]}  # a vision tensor
    else:
        tensors[names[0]] = torch.zeros(3)
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=message):
        load_model_weights(_tiny_model(project), tmp_path / "ckpt")


def test_a_lora_adapter_that_did_not_load_fails_loudly(project: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    def lora() -> torch.nn.Module:
        return get_peft_model(_tiny_model(project), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))

    trained = lora()
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if "lora_" in name:
                p.add_(0.01)
    trained.save_pretrained(tmp_path / "ckpt")
    model = lora()
    model.load_adapter(tmp_path / "ckpt", "default", is_trainable=True)
    verify_adapter(model, tmp_path / "ckpt")  # restored: passes
    path = tmp_path / "ckpt" / "adapter_model.safetensors"
    save_file({f"other.{k}": v for k, v in load_file(path).items()}, path)  # PEFT only warns about these
    model = lora()
    model.load_adapter(tmp_path / "ckpt", "default", is_trainable=True)
    with pytest.raises(CheckpointError, match=r"ckpt: 0 of \d+ adapter tensors restored"):
        verify_adapter(model, tmp_path / "ckpt")


@pytest.mark.slow
def test_the_trainer_refuses_a_complete_checkpoint_whose_weights_do_not_match(project: Path, tmp_path: Path) -> None:
    """E.g. a checkpoint written under other key names: the stage and `Trainer.train` fail instead of resuming."""
    cfg = dataclasses.replace(SFT, max_steps=4, keep_checkpoints=True)
    root = _copy_project(project, tmp_path / "root")
    train_sft.run(cfg, root, method="vanilla")
    out = root / "models" / "train_sft" / "vanilla"
    ckpt = out / CHECKPOINTS / "checkpoint-4"
    tensors = load_file(ckpt / "model.safetensors")
    save_file({f"other.{k}": v for k, v in tensors.items()}, ckpt / "model.safetensors", metadata={"format": "pt"})
    mark_complete(ckpt, 4)
    (out / "model.safetensors").unlink()  # killed before the final save: the rerun resumes checkpoint-4
    with pytest.raises(CheckpointError, match=r"checkpoint-4 matches 0 of 46 model tensors"):
        train_sft.run(cfg, root, method="vanilla")
    trainer, _ = _trainer(project, "vanilla", tmp_path / "trainer")
    with pytest.raises(CheckpointError, match=r"checkpoint-4 matches 0 of 46 model tensors"):
        trainer.train(resume_from_checkpoint=str(ckpt))


# -- kill and resume (stage subprocesses) ------------------------------------------------------------------------


def _kill_after_first_checkpoint(cmd: list[str], ckpt_dir: Path) -> str:
    """Run `cmd`, SIGKILL it as soon as a complete checkpoint exists; returns the checkpoint's name."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = sorted(ckpt_dir.glob(f"checkpoint-*/{COMPLETE}"))
            if done:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == -signal.SIGKILL, (f"the run was not killed mid-way (rc {proc.returncode}): "
                                                f"{stderr[-2000:]}")
    return done[0].parent.name


def _half_written_next(ckpt_dir: Path, save_steps: int) -> None:
    """What a kill while saving leaves: a later checkpoint folder without a marker, its weights cut short."""
    complete = max((p.parent for p in ckpt_dir.glob(f"checkpoint-*/{COMPLETE}")),
                   key=lambda p: int(p.name.split("-")[1]))
    nxt = ckpt_dir / f"checkpoint-{int(complete.name.split('-')[1]) + save_steps}"
    if not nxt.exists():
        shutil.copytree(complete, nxt)
        (nxt / COMPLETE).unlink()
        with (nxt / "model.safetensors").open("r+b") as f:
            f.truncate(f.seek(0, 2) // 2)


def _check_kill_and_resume(
    project: Path, tmp_path: Path, run: Callable[[Path], dict], cmd: Callable[[Path, Path], list[str]],
    write_params: Callable[[Path], Path], out: str, save_steps: int,
) -> None:
    def fresh(name: str) -> Path:
        root = _copy_project(project, tmp_path / name)
        if out.startswith("models/train_grpo"):  # GRPO starts from models/train_sft/<init>
            shutil.copytree(project / "models" / "train_sft", root / "models" / "train_sft")
        return root

    reference = []
    for name in ("a", "b"):  # determinism first: two uninterrupted runs agree
        root = fresh(name)
        run(root)
        reference.append(_weights(root / out))
    assert _max_diff(*reference) <= TOL, "two uninterrupted runs differ: resume equality cannot be tested"
    init = "models/train_sft/vanilla" if out.startswith("models/train_grpo") else "models/prepare_model"
    assert _max_diff(reference[0], _weights(project / init)) > 1e-4  # training moved the weights

    root = fresh("killed")
    ckpt_dir = root / out / CHECKPOINTS
    first = _kill_after_first_checkpoint(cmd(root, write_params(root)), ckpt_dir)
    assert not (root / out / "model.safetensors").exists()
    _half_written_next(ckpt_dir, save_steps)
    summary = run(root)
    assert summary["steps"] == 12
    assert _max_diff(_weights(root / out), reference[0]) <= TOL, f"killed after {first}, resumed: weights differ"
    assert not ckpt_dir.exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["vanilla", "scale"])
def test_sft_killed_and_rerun_equals_an_uninterrupted_run(project: Path, tmp_path: Path, method: str) -> None:
    _check_kill_and_resume(
        project, tmp_path,
        run=lambda root: train_sft.run(SFT, root, method=method),
        cmd=lambda root, params: [sys.executable, "-m", "stages.train_sft", "--method", method, "--params", str(params),
                                  "--root", str(root)],
        write_params=lambda root: _write_params(root, SFT),
        out=f"models/train_sft/{method}", save_steps=SFT.save_steps,
    )


def _write_grpo_params(root: Path) -> Path:
    import yaml

    from scalevlm.config import to_dict

    path = root / "params.yaml"
    path.write_text(yaml.safe_dump({"train_grpo": to_dict(GRPO)}))
    return path


@pytest.mark.slow
def test_grpo_killed_and_rerun_equals_an_uninterrupted_run(grpo_project: Path, tmp_path: Path) -> None:
    _check_kill_and_resume(
        grpo_project, tmp_path,
        run=lambda root: train_grpo.run(GRPO, root, "vanilla"),
        cmd=lambda root, params: [sys.executable, "-m", "stages.train_grpo", "--init", "vanilla", "--params",
                                  str(params),
                                  "--root", str(root)],
        write_params=_write_grpo_params,
        out="models/train_grpo/vanilla", save_steps=GRPO.save_steps,
    )


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True])
def test_resuming_from_the_final_checkpoint_saves_the_trained_model(project: Path, tmp_path: Path, lora: bool) -> None:
    """Killed after the last checkpoint but before the final model was written: the rerun trains no step and must
    still save the trained weights (LoRA: the adapter is restored, then merged)."""
    cfg = dataclasses.replace(SFT, max_steps=4, keep_checkpoints=True,
                              lora=dataclasses.replace(SFT.lora, enabled=lora))
    root = _copy_project(project, tmp_path)
    train_sft.run(cfg, root, method="vanilla")
    out = root / "models" / "train_sft" / "vanilla"
    trained = _weights(out)
    assert _max_diff(trained, _weights(project / "models" / "prepare_model")) > 1e-4
    for path in out.iterdir():
        if path.is_file():
            path.unlink()
    summary = train_sft.run(cfg, root, method="vanilla")
    assert summary["resumed_from"] == "checkpoint-4" and summary["steps"] == 4
    assert _max_diff(_weights(out), trained) <= TOL
