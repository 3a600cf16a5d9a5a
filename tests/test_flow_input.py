"""The flows refuse bad profiles and sweep specs, and every params reader refuses duplicate keys and alias bombs:
one `error:` line naming the file and the key, exit 2, before a Prefect server starts or an experiment is queued."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scalevlm.config import ConfigError, load_params, read_yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdef", "bcdefg", strict=True))


def test_a_duplicate_key_is_refused_with_both_lines(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("train_sft:\n  seed: 0\n  max_steps: 300\n  seed: 1\n")
    with pytest.raises(ConfigError, match=r"p\.yaml:4: duplicate key 'seed' \(first on line 2\): keep one"):
        load_params(tmp_path / "p.yaml")


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(BOMB)
    with pytest.raises(ConfigError, match=r"[\d,]{9,} YAML nodes once its aliases are expanded \(more than 100,000\)"):
        read_yaml(tmp_path / "p.yaml")
    (tmp_path / "ok.yaml").write_text("a: &x {k: 1}\nb: *x\n")  # a plain alias is fine
    assert read_yaml(tmp_path / "ok.yaml") == {"a": {"k": 1}, "b": {"k": 1}}


def test_text_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        read_yaml(tmp_path / "p.yaml")


# --- profiles ----------------------------------------------------------------------------------------------------

PROFILES = {
    "unknown_key": ("train_sft:\n  max_step: 10\n", r"profile unknown_key\.train_sft: key 'max_step' does not exist"),
    "not_yaml": ("train_sft: [1, 2\n", r"not_yaml\.yaml is not valid YAML"),
    "a_list": ("- train_sft\n", r"a_list\.yaml: expected a mapping of params\.yaml sections"),
    "scalar_section": ("train_sft: 3\n", r"profile scalar_section: 'train_sft' is a section of params\.yaml"),
    "bad_value": ("train_sft:\n  max_steps: -1\n", r"profile bad_value: train_sft\.max_steps: must be >= 1"),
    "duplicate": ("evaluate: {}\nevaluate: {}\n", r"duplicate\.yaml:2: duplicate key 'evaluate'"),
}


@pytest.fixture
def profiles_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "profiles").mkdir()
    for name, (text, _) in PROFILES.items():
        (tmp_path / "profiles" / f"{name}.yaml").write_text(text)
    (tmp_path / "profiles" / "fine.yaml").write_text("train_sft:\n  max_steps: 5\n")
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])  # `python -m stages --check-params` from the copy
    return tmp_path


@pytest.mark.slow  # starts python subprocesses (the stage configs, a flow's CLI)
@pytest.mark.parametrize("name", sorted(PROFILES))
def test_a_bad_profile_is_refused_naming_the_key(profiles_project: Path, name: str) -> None:
    from flows.profiles import check_profile

    with pytest.raises(ConfigError, match=PROFILES[name][1]):
        check_profile(profiles_project, name)


@pytest.mark.slow  # starts python subprocesses (the stage configs, a flow's CLI)
def test_a_good_profile_passes_the_stage_configs(profiles_project: Path) -> None:
    from flows.profiles import check_profile

    assert check_profile(profiles_project, "fine") == {"train_sft": {"max_steps": 5}}


@pytest.mark.slow  # starts python subprocesses (the stage configs, a flow's CLI)
def test_the_pipeline_cli_refuses_a_bad_profile_before_prefect_starts(profiles_project: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "flows.pipeline", "--profile", "bad_value"], cwd=profiles_project,
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "temporary server" not in done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: profile bad_value: train_sft.max_steps: ")
    assert (profiles_project / "params.yaml").read_bytes() == (ROOT / "params.yaml").read_bytes()


# --- sweep specs -------------------------------------------------------------------------------------------------

GOOD_SPEC = {"name": "x", "grid": "{train_sft.max_steps: [10]}", "seeds": "[0]", "seed_params": "[train_sft.seed]",
             "targets": "[evaluate@sft-vanilla]", "jobs": "1"}
SPECS = {
    "unknown_param": ({"grid": "{train_sft.max_step: [10]}"}, r"grid\.train_sft\.max_step: 'train_sft\.max_step' is "
                                                               r"not a key of params\.yaml \(did you mean"),
    "unknown_seed_param": ({"seed_params": "[train_sft.sed]"}, r"seed_params: 'train_sft\.sed' is not a key"),
    "seeds_as_text": ({"seeds": "'0, 1'"}, r"\.seeds: expected a list, got str"),
    "unknown_target": ({"targets": "[evaluat]"}, r"targets\[0\]: 'evaluat' is not a stage of dvc\.yaml"),
    "escaping_name": ({"name": "../x"}, r"\.name: String should match pattern"),
    "scalar_grid_value": ({"grid": "{train_sft.max_steps: 10}"}, r"\.grid(\.train_sft\.max_steps)?: "),
    "repeated_seed": ({"seeds": "[1, 1]"}, r"\.seeds: \[1, 1\] repeats a seed"),
    "zero_jobs": ({"jobs": "0"}, r"\.jobs: must be >= 1, got 0"),
}


def _spec(tmp_path: Path, name: str, change: dict[str, str]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in {**GOOD_SPEC, **change}.items()))
    return path


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_bad_sweep_spec_is_refused_naming_the_key(tmp_path: Path, name: str) -> None:
    from flows.sweep import load_spec

    change, message = SPECS[name]
    with pytest.raises(ConfigError, match=message):
        load_spec(_spec(tmp_path, name, change), ROOT)


@pytest.mark.slow  # starts python subprocesses (the stage configs, a flow's CLI)
def test_the_sweep_cli_refuses_a_bad_spec_before_prefect_starts(tmp_path: Path) -> None:
    path = _spec(tmp_path, "bad", SPECS["unknown_target"][0])
    done = subprocess.run([sys.executable, "-m", "flows.sweep", str(path)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "temporary server" not in done.stdout + done.stderr
    assert f"error: {path}: targets[0]: 'evaluat' is not a stage of dvc.yaml" in done.stderr


@pytest.mark.slow  # starts python subprocesses (the stage configs, a flow's CLI)
def test_the_consumer_cli_refuses_an_unknown_version_before_prefect_starts(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text("artifacts:\n  vlm:\n    path: models/m\n    type: model\n")
    for argv, message in ((["--ref", "v9.9.9"], "'vlm' has no registered version"),
                          (["--ref", "../prod"], "is neither a version (vX.Y.Z) nor a registry stage"),
                          (["--max-samples", "0"], "--max-samples must be >= 1, got 0")):
        done = subprocess.run([sys.executable, "-m", "flows.consumer", *argv], cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr[-2000:]
        assert "Traceback" not in done.stderr and "temporary server" not in done.stdout + done.stderr
        assert message in done.stderr, done.stderr
