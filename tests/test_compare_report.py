"""compare's caveats come from the run (the base model in reports/prepare_model/metrics.json, the test sources, the
benchmarks), not from fixed text: a real-model run is not described as the tiny one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scalevlm.facts import ARMS, GENERATED_SOURCES, TINY_MODEL
from scalevlm.report.compare_md import RunFacts, caveats, count
from scalevlm.runtime import write_json

STUDY = "reports/study/study/"  # the seed spread measured on the tiny model and the first embedded task


def facts(source: str | None = TINY_MODEL, parameters: int | None = 1_276_160,
          sources: tuple[str, ...] = ("synthetic",),
          benchmarks: tuple[str, ...] = ()) -> RunFacts:
    return RunFacts(model_source=source, model_class=None if source is None else "Qwen2VLForConditionalGeneration",
                    parameters=parameters, test_sources=sources, benchmarks=benchmarks)


def test_the_tiny_model_on_the_embedded_task_cites_the_seed_study() -> None:
    seeds, model = caveats(facts())
    assert seeds.startswith("One training seed per arm, so the CIs above cover test-sample noise only, not training "
                            "noise; on the embedded tasks the spread between seeds") and STUDY in seeds
    assert model.startswith("A tiny model (~1.3 M parameters) on an embedded synthetic task, not the paper's 3–7 B "
                            "models and benchmarks;")


def test_a_hub_model_is_named_with_its_size_and_no_tiny_or_study_claims() -> None:
    seeds, model = caveats(facts("Qwen/Qwen2.5-VL-3B-Instruct", 3_754_622_976, ("hub",), ("scienceqa",)))
    assert seeds.startswith("One training seed per arm, so the CIs above cover test-sample noise only")
    assert STUDY not in seeds and "measured for the tiny model on the embedded task only" in seeds
    assert model == ("Base model `Qwen/Qwen2.5-VL-3B-Instruct` (Qwen2VLForConditionalGeneration, ~3.8 B parameters; "
                     "the paper used 3–7 B models), tested on test samples from hub; benchmarks compared: scienceqa.")
    assert "tiny" not in model and "smoke-level" not in model


def test_the_tiny_model_on_other_data_does_not_borrow_the_study() -> None:
    seeds, model = caveats(facts(sources=("local", "synthetic"), benchmarks=("iconqa",)))
    assert STUDY not in seeds
    assert "on test samples from local, synthetic; benchmarks compared: iconqa, not the paper's 3–7 B models;" in model


def test_a_missing_model_report_is_said_not_guessed() -> None:
    _, model = caveats(facts(source=None, parameters=None))
    assert "The base model is not described: `reports/prepare_model/metrics.json` is missing" in model


@pytest.mark.parametrize(("n", "text"), [(999, "999"), (1_276_160, "1.3 M"), (12_400_000, "12 M"),
                                         (3_754_622_976, "3.8 B"), (7_566_747_648, "7.6 B")])
def test_parameter_counts_read_as_people_write_them(n: int, text: str) -> None:
    assert count(n) == text


def test_generated_sources_are_curate_datasets_offline_generators() -> None:
    """The caveats call a test set 'embedded' by these names: they must be exactly the generator sources."""
    from stages.curate_dataset import SOURCES

    generators = {name for name, fn in SOURCES.items()
                  if fn.__module__ in ("scalevlm.sources.synthetic", "scalevlm.sources.reasoning_grid")}
    assert set(GENERATED_SOURCES) == generators


@pytest.mark.slow
def test_compare_names_a_hub_model_from_prepare_models_report(tmp_path: Path) -> None:
    """Through the stage: the README's caveats name the model prepare_model reported, and the numbers do not move."""
    from stages.compare import Config, run

    for k, arm in enumerate(ARMS):
        folder = tmp_path / "reports/evaluate" / arm
        folder.mkdir(parents=True)
        rows = [{"id": f"local/{i}", "correct": int(i < 10 + k), "format_ok": 1, "think_tokens": 5,
                 "ref_think_tokens": 6,
                 "completion": "<think>x</think><answer>1</answer>"} for i in range(20)]
        (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        write_json(folder / "metrics.json", {"by_source": {"local": {"accuracy": (10 + k) / 20}}})
    for stage in ("train_sft", "train_grpo"):
        for method in ("vanilla", "scale"):
            write_json(tmp_path / "reports" / stage / method / "metrics.json", {"wall_time_s": 10.0})
    cfg = Config(n_resamples=50, seed=0, alpha=0.05)
    first = run(cfg, tmp_path)
    readme = (tmp_path / "reports/compare/README.md").read_text()
    assert "The base model is not described" in readme
    write_json(tmp_path / "reports/prepare_model/metrics.json",
               {"source": "org/vlm-7b", "model_class": "LlavaNextForConditionalGeneration",
                "parameters": 7_566_747_648})
    assert run(cfg, tmp_path) == first
    readme = (tmp_path / "reports/compare/README.md").read_text()
    assert "- Base model `org/vlm-7b` (LlavaNextForConditionalGeneration, ~7.6 B parameters" in readme
    assert "A tiny model" not in readme and STUDY not in readme and "CPU budget" not in readme
