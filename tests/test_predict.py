"""`scalevlm.predict` on a real (untrained) tiny model: the same completions as the evaluate stage, the CLI's
one-question and batch modes, sampling flags, and the errors a user can make."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_grpo_eval_compare import eval_cfg, project  # noqa: F401  (the module's tiny-model project fixture)

from scalevlm.core.segments import Reason
from scalevlm.evaluation.generation import Generation, GenerationOptions
from scalevlm.predict import Prediction, load, main
from scalevlm.records import read_jsonl
from scalevlm.validation import read_split

MODEL = "models/train_sft/scale"


@pytest.mark.slow
def test_predict_reproduces_the_evaluate_stage(project: Path) -> None:  # noqa: F811
    from stages.evaluate import run

    cfg = eval_cfg()
    run(cfg, project, "sft-scale")
    evaluated = [row for _, row in read_jsonl(project / "reports/evaluate/sft-scale/predictions.jsonl")]
    records = read_split(project, "test", cfg.max_samples)
    model = load(str(project / MODEL), device="cpu", dtype=cfg.dtype)
    items = [([project / p for p in r.images], r.question) for r in records]
    preds = model.predict_batch(items, GenerationOptions(max_new_tokens=cfg.max_new_tokens), batch_size=cfg.batch_size)
    assert [p.completion for p in preds] == [row["completion"] for row in evaluated]
    assert [int(p.format_ok) for p in preds] == [row["format_ok"] for row in evaluated]
    assert [p.completion_tokens for p in preds] == [row["completion_tokens"] for row in evaluated]


@pytest.mark.slow
def test_cli_one_question_and_a_batch(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # noqa: F811
    records = read_split(project, "test", 3)
    image = project / records[0].images[0]
    assert main(["--model", str(project / MODEL), "--image", str(image), "--question", records[0].question,
                 "--max-new-tokens", "8", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    expected = load(str(project / MODEL), device="cpu").predict(image, records[0].question,
                                                                GenerationOptions(max_new_tokens=8))
    assert f"model:  {project / MODEL}" in out
    assert f"segment rule: {'ok' if expected.format_ok else expected.reason}" in out
    assert (expected.completion if not expected.format_ok else expected.answer) in out

    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"id": r.id, "images": list(r.images), "question": r.question}) + "\n"
                              for r in records))
    preds_path = tmp_path / "out" / "preds.jsonl"
    assert main(["--model", str(project / MODEL), "--input", str(inputs), "--image-root", str(project),
                 "--out", str(preds_path), "--max-new-tokens", "8", "--batch-size", "2", "--device", "cpu"]) == 0
    rows = [row for _, row in read_jsonl(preds_path)]
    assert [r["id"] for r in rows] == [r.id for r in records]
    assert rows[0]["completion"] == expected.completion, "a batch of one question = the one-question mode"
    assert {"think", "answer", "format_ok", "reason", "question", "model"} <= set(rows[0])


@pytest.mark.slow
def test_sampling_is_seeded(project: Path, tmp_path: Path) -> None:  # noqa: F811
    records = read_split(project, "test", 4)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"images": list(r.images), "question": r.question}) + "\n" for r in records))

    def sampled(seed: int, name: str) -> list[str]:
        out = tmp_path / name
        assert main(["--model", str(project / MODEL), "--input", str(inputs), "--image-root", str(project), "--out",
                     str(out),
                     "--max-new-tokens", "12", "--sample", "--temperature", "1.5", "--seed", str(seed), "--device",
                     "cpu"]) == 0
        return [row["completion"] for _, row in read_jsonl(out)]

    assert sampled(1, "a.jsonl") == sampled(1, "b.jsonl")
    assert sampled(1, "a.jsonl") != sampled(2,
                                            "c.jsonl"), "the seed reaches the sampler (untrained model: near-uniform)"


def test_prediction_verdicts() -> None:
    ok = Prediction.of(Generation("<think>row 1: 2 red</think><answer>2</answer>", 9, 7, 2))
    assert (ok.think, ok.answer, ok.format_ok, ok.reason) == ("row 1: 2 red", "2", True, None)
    bad = Prediction.of(Generation("<think>counting", 3, 3, 0))
    assert (bad.think, bad.answer, bad.format_ok) == (None, None, False)
    assert bad.reason == Reason.MISSING_ANSWER.value


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--image", "nope.png", "--question", "q"], "image nope.png not found"),
        (["--question", "q", "--input", "x.jsonl", "--out", "y.jsonl"], "either --question"),
        (["--input", "missing.jsonl", "--out", "y.jsonl"], "--input missing.jsonl not found"),
        (["--question", "q", "--sample", "--temperature", "0"], "temperature > 0"),
    ],
    ids=["missing_image", "both_modes", "missing_input", "bad_sampling"],
)
@pytest.mark.slow
def test_user_errors_exit_2_with_the_fix(project: Path, argv: list[str], message: str,  # noqa: F811
                                         capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    assert main(["--model", MODEL, "--device", "cpu", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_bad_input_line_and_unknown_registry_stage(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture,  # noqa: F811
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "image": "a.png"}\n{"image": "b.png"}\n')
    assert main(["--model", str(project / MODEL), "--input", str(bad), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert f"{bad}:2: expected an object with a string 'question'" in capsys.readouterr().err

    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "dvc.yaml").write_text("artifacts:\n  vlm:\n    path: models/m\n    type: model\n")
    monkeypatch.chdir(repo)
    from PIL import Image

    Image.new("RGB", (16, 16)).save(repo / "a.png")
    assert main(["--model", "prod", "--image", "a.png", "--question", "q"]) == 2
    assert "'vlm' has no registered version" in capsys.readouterr().err


def _an_image(root: Path) -> str:
    return str(next(root.rglob("*.png")))


@pytest.mark.slow
def test_inputs_a_user_gets_wrong_are_refused_before_the_model_loads(project: Path, tmp_path: Path,  # noqa: F811
                                                                     capsys: pytest.CaptureFixture,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.chdir(project)
    image, a_file = _an_image(project), tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "in.jsonl").write_text(json.dumps({"question": "How many?", "image": image}) + "\n")
    cases = [
        (["--image", image, "--question", "  "], "the question is empty"),
        (["--question", "How many red cells?"], "no image given: the model answers questions about images"),
        (["--input", str(tmp_path / "in.jsonl"), "--out", str(a_file / "out.jsonl")], "is a file, so no folder"),
        (["--input", str(tmp_path / "in.jsonl"), "--out", str(tmp_path)], "is a folder: give a file path"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--image", image, "--question", "q", "--device", "cuda"], "this machine has no CUDA device"))
    for argv, message in cases:
        assert main(["--model", MODEL, *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert main(["--model", "owner/no-such-model", "--image", image, "--question", "q"]) == 2
    assert "no such model folder here (this run is offline" in capsys.readouterr().err
    (tmp_path / "line.jsonl").write_text(json.dumps({"question": "", "image": image}) + "\n")
    assert main(["--model", MODEL, "--input", str(tmp_path / "line.jsonl"), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "line.jsonl:1: the question is empty" in capsys.readouterr().err
    assert list(tmp_path.glob("o.jsonl")) == [] and a_file.read_text() == "x"


@pytest.mark.slow
def test_a_question_too_long_for_the_context_and_a_decompression_bomb_are_refused(
        project: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from PIL import Image

    monkeypatch.chdir(project)
    image = _an_image(project)
    assert main(["--model", MODEL, "--image", image, "--question", "How many? " * 100_000]) == 2
    assert re.search(r"the question is [\d,]+ tokens; with --max-new-tokens 512 it exceeds the model's context of "
                     r"[\d,]+ tokens: shorten it", capsys.readouterr().err)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL refuses images over twice this many pixels
    assert main(["--model", MODEL, "--image", image, "--question", "q"]) == 2
    err = capsys.readouterr().err
    assert f"image {image} is too large to decode safely" in err and "Traceback" not in err
