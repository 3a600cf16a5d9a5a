"""The `scalevlm` command: subcommands, help without heavy imports, misuse as one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scalevlm.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in COMMANDS)
    assert main([]) == 2  # no command: the help, as a usage error


@pytest.mark.parametrize("argv", [["predict", "--help"], ["registry", "--help"], ["run", "--help"]])
def test_help_answers_before_any_heavy_import(argv: list[str]) -> None:
    code = "\n".join([
        "import sys", "from scalevlm.cli import main", "try:", f"    main({argv!r})", "except SystemExit as e:",
        "    code = e.code",
        "heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'great_expectations', 'dvc.repo') "
        "if m in sys.modules)",
        "print('heavy:', heavy, 'exit:', code)"])
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip().endswith("heavy: [] exit: 0"), done.stdout[-500:]
    assert f"usage: scalevlm {argv[0]}" in done.stdout


def test_misuse_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["trian"])
    assert exit_.value.code == 2 and "invalid choice: 'trian'" in capsys.readouterr().err
    monkeypatch.chdir(ROOT)
    assert main(["run", "train_sft@scale", "-S", "train_sft.max_step=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "-S train_sft.max_step: not a key of params.yaml" in err
    assert "train_sft.max_steps" in err  # the close match
    assert main(["run", "train_sft@scal"]) == 2
    assert "no stage 'train_sft@scal' in dvc.yaml (did you mean ['train_sft@scale'" in capsys.readouterr().err
    assert main(["run", "train_sft@scale", "-S", "train_sft.max_steps"]) == 2
    assert "give KEY=VALUE" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # not a checkout
    for argv in (["demo"], ["validate", "--help"], ["run", "compare"]):
        assert main(argv) == 2
        assert "run it from the folder with dvc.yaml and stages/" in capsys.readouterr().err


def test_registry_list_without_versions_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert main(["registry", "list", "--repo", str(tmp_path), "--artifact", "scalevlm-vlm"]) == 0
    assert "'scalevlm-vlm' has no registered version" in capsys.readouterr().out
    assert main(["registry", "show", "prod", "--repo", str(tmp_path), "--artifact", "scalevlm-vlm"]) == 2
    assert "error: 'scalevlm-vlm' has no registered version" in capsys.readouterr().err


def test_the_console_script_is_declared() -> None:
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"scalevlm": "scalevlm.cli:main"}
    done = subprocess.run([str(Path(sys.executable).parent / "scalevlm"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "registry" in done.stdout
