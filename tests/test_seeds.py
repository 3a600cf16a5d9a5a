"""Aggregation over training seeds and sweep expansion, on inputs with known answers."""

from __future__ import annotations

import json
import math

import pytest

from scalevlm.core.seeds import expand, paired_over_seeds, summarise


def test_summary_matches_hand_computed_t_interval() -> None:
    s = summarise([0.8, 0.9, 1.0])
    assert s.mean == pytest.approx(0.9) and s.sd == pytest.approx(0.1)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t(0.975, df=2)
    assert (s.low, s.high) == pytest.approx((0.9 - half, 0.9 + half))


def test_summary_edge_cases() -> None:
    assert summarise([0.5]).low == -math.inf and summarise([0.5]).high == math.inf
    assert math.isnan(summarise([]).mean)
    constant = summarise([0.7] * 4)
    assert (constant.sd, constant.low, constant.high) == (0.0, pytest.approx(0.7), pytest.approx(0.7))


def test_paired_differences_over_common_seeds() -> None:
    a = {0: 0.9, 1: 0.8, 2: 0.95, 3: 0.7, 4: 0.85, 9: 1.0}
    b = {0: 0.8, 1: 0.75, 2: 0.9, 3: 0.6, 4: 0.8}
    p = paired_over_seeds(a, b)
    assert p.n == 5 and p.wins == 5 and p.losses == 0
    assert p.mean_diff == pytest.approx(0.07)
    assert p.p_permutation == pytest.approx(2 / 32)  # all 5 differences positive: the most extreme of 32 patterns
    assert 0 < p.p_ttest < 0.01 and p.low > 0


def test_paired_no_difference_and_no_common_seed() -> None:
    same = paired_over_seeds({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6})
    assert (same.mean_diff, same.p_ttest, same.p_permutation) == (0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="no common seeds"):
        paired_over_seeds({0: 1.0}, {1: 1.0})


def test_expand_grid_times_seeds() -> None:
    exps = expand({"train_sft.w_end": [0.0, 0.3], "train_sft.schedule": ["cosine", "linear"]}, [0, 1, 2],
                  ["train_sft.seed", "train_grpo.seed"], prefix="abl")
    assert len(exps) == 12 and len({e.name for e in exps}) == 12
    first = exps[0]
    assert first.name == "abl-0-s0"
    assert first.set_args() == ["-S", "train_sft.schedule=cosine", "-S", "train_sft.w_end=0.0",
                                "-S", "train_sft.seed=0", "-S", "train_grpo.seed=0"]
    assert {e.setting for e in exps} == {(("train_sft.schedule", s), ("train_sft.w_end", w))
                                         for s in ("cosine", "linear") for w in (0.0, 0.3)}


@pytest.mark.parametrize(
    ("grid", "seeds", "message"),
    [({"w_end": [0.0]}, [0], "dotted params keys"), ({"train_sft.w_end": []}, [0], "no values"),
     ({"train_sft.w_end": [0.0]}, [], "at least one seed"), ({"train_sft.w_end": [0.0]}, [1, 1], "duplicate seeds")],
    ids=["undotted_key", "empty_values", "no_seeds", "duplicate_seeds"],
)
def test_expand_rejects_bad_specs(grid: dict, seeds: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expand(grid, seeds, ["train_sft.seed"])


def _exp(name: str, seed: int, w_end: float, acc: dict[str, float]) -> dict:
    metrics = {f"reports/evaluate/{arm}/metrics.json": {"data": {"accuracy": a}} for arm, a in acc.items()}
    params = {"params.yaml": {"data": {"train_sft": {"seed": seed, "w_end": w_end}}}}
    return {"rev": f"r{name}", "name": name, "data": {"params": params, "metrics": metrics}}


def test_study_report_from_exp_show_json(tmp_path) -> None:
    from scalevlm.study import write_report

    exps = [_exp(f"abl-{i}-s{s}", s, w, {"sft-scale": 0.8 + 0.1 * w + 0.01 * s, "sft-vanilla": 0.8 + 0.01 * s})
            for i, w in enumerate([0.0, 0.5]) for s in range(3)]
    shown = [{"rev": "abc", "name": "main", "data": {"params": {}, "metrics": {}},
              "experiments": [{"revs": [e]} for e in exps]
              + [{"revs": [_exp("other-0-s0", 0, 0.0, {"sft-scale": 0.1})]}]}]
    spec = {"name": "abl", "grid": {"train_sft.w_end": [0.0, 0.5]}, "seeds": [0, 1, 2],
            "seed_params": ["train_sft.seed"],
            "targets": []}
    out = write_report(spec, shown, tmp_path / "abl")
    result = json.loads((out / "study.json").read_text())
    assert len(result["experiments"]) == 6
    high = next(b for b in result["settings"] if b["setting"]["train_sft.w_end"] == 0.5)
    assert high["summary"]["sft-scale"]["mean"] == pytest.approx(0.86)
    assert high["paired"]["sft-scale - sft-vanilla"]["mean_diff"] == pytest.approx(0.05)
    assert high["per_seed"]["sft-vanilla"] == pytest.approx({"0": 0.8, "1": 0.81, "2": 0.82})
    assert "sft-scale - sft-vanilla" in (out / "table.md").read_text()
    assert (out / "ablation.png").stat().st_size > 1000

    targeted = {**spec, "targets": ["evaluate@sft-scale"]}  # the other arms' files are the baseline's, not the run's
    only = write_report(targeted, shown, tmp_path / "targeted")
    blocks = json.loads((only / "study.json").read_text())["settings"]
    assert all(set(b["summary"]) == {"sft-scale"} and not b["paired"] for b in blocks)


def test_a_list_grid_is_one_setting_per_item() -> None:
    from scalevlm.core.seeds import expand

    grid = [{"train_sft.scale.w_end": 0.0}, {"train_sft.scale.schedule": "constant", "train_sft.scale.w_start": 0.5}]
    exps = expand(grid, [0, 1], ["train_sft.seed"], prefix="abl")
    assert [e.name for e in exps] == ["abl-0-s0", "abl-0-s1", "abl-1-s0", "abl-1-s1"]
    assert exps[2].overrides == (("train_sft.scale.schedule", "constant"), ("train_sft.scale.w_start", 0.5),
                                 ("train_sft.seed", 0))
    with pytest.raises(ValueError, match="duplicate settings"):
        expand([{"a.b": 1}, {"a.b": 1}], [0], [])
    with pytest.raises(ValueError, match="non-empty mapping"):
        expand([{}], [0], [])


def test_claim_verdicts_and_time_ratios_from_constructed_experiments(tmp_path) -> None:
    """Five seeds where SCALe-SFT is 5 points above vanilla SFT on every seed (supported), vanilla + GRPO is 1 point
    above SCALe-SFT (within the 0.03 margin, time ratio <= 0.5: claim 2 supported), grpo-scale ties some arms
    (undecided), and SCALe misses <answer> on 0.10 more outputs (contradicted)."""
    from scalevlm.study import write_report

    def exp(seed: int) -> dict:
        acc = {"sft-vanilla": 0.70 + 0.01 * seed, "sft-scale": 0.75 + 0.01 * seed, "grpo-vanilla": 0.76 + 0.01 * seed,
               "grpo-scale": 0.76 + 0.012 * seed - (0.02 if seed % 2 else 0.0)}
        metrics = {f"reports/evaluate/{a}/metrics.json": {"data": {"accuracy": v, "missing_answer_rate":
                   (0.2 + 0.01 * seed if a == "sft-scale" else 0.1)}} for a, v in acc.items()}
        for stage, method, wall in (("train_sft", "vanilla", 100.0), ("train_sft", "scale", 110.0),
                                    ("train_grpo", "vanilla", 120.0 + seed)):
            metrics[f"reports/{stage}/{method}/metrics.json"] = {"data": {"wall_time_s": wall}}
        params = {"params.yaml": {"data": {"train_sft": {"seed": seed}, "train_grpo": {"seed": seed}}}}
        return {"rev": f"r{seed}", "name": f"st-0-s{seed}", "data": {"params": params, "metrics": metrics}}

    spec = {"name": "st", "grid": {}, "seeds": list(range(5)), "seed_params": ["train_sft.seed", "train_grpo.seed"],
            "targets": []}
    out = write_report(spec, [{"rev": "x", "name": "main", "data": {},
                               "experiments": [{"revs": [exp(s)]} for s in range(5)]}],
                       tmp_path / "st")
    result = json.loads((out / "study.json").read_text())
    verdicts = {c["claim"][:2]: c["verdict"] for c in result["claims"]}
    assert verdicts["1."] == "supported"
    assert verdicts["2."] == "supported"  # within the margin, time ratio just under 0.5 on every seed
    assert verdicts["3."].startswith("undecided: not better than") and "a tie is not best" in verdicts["3."]
    assert verdicts["4."] == "contradicted"
    assert result["time_ratio_scale_sft_over_sft_plus_grpo"]["0"] == pytest.approx(110 / 220)
    table = (out / "table.md").read_text()
    assert "## missing_answer_rate" in table and "## The paper's claims at seed level" in table


def test_sweeps_whose_names_share_a_beginning_are_kept_apart() -> None:
    from scalevlm.core.seeds import expand, is_experiment_of
    from scalevlm.study import experiment_rows

    study = expand({}, [0, 1], ["train_sft.seed"], prefix="grid")
    ablation = expand([{"train_sft.scale.w_end": 0.0}], [0], ["train_sft.seed"], prefix="grid-ablation")
    shown = [{"rev": "base", "data": {}, "experiments": [{"revs": [{"rev": f"r{i}", "name": e.name, "data": {}}]}
                                                            for i, e in enumerate(study + ablation)]}]
    assert [r["name"] for r in experiment_rows(shown, "grid")] == ["grid-0-s0", "grid-0-s1"]
    assert [r["name"] for r in experiment_rows(shown, "grid-ablation")] == ["grid-ablation-0-s0"]
    assert not is_experiment_of("grid-0-s0-retry", "grid") and is_experiment_of("grid-12-s3", "grid")


def test_committed_studies_match_their_dvc_experiments(project_root) -> None:
    """Every committed study report is exactly what its saved `dvc exp show` entries aggregate to."""
    from scalevlm.study import experiment_rows, study_markdown, study_result

    reports = sorted((project_root / "reports" / "study").glob("*/study.json"))
    for path in reports:
        spec = json.loads((path.parent / "spec.json").read_text())
        rows = experiment_rows(json.loads((path.parent / "exp_show.json").read_text()), spec["name"])
        expected = study_result(spec, rows)
        # compared as canonical text: NaN (an undefined SD over one seed) never equals itself as a float
        assert json.dumps(json.loads(path.read_text()), sort_keys=True) == json.dumps(expected, sort_keys=True), path
        assert (path.parent / "table.md").read_text() == study_markdown(expected), path


def test_committed_sweep_specs_expand(project_root) -> None:
    from flows.sweep import experiments, load_spec

    sizes = {}
    for path in sorted((project_root / "sweeps").glob("*.yaml")):
        spec = load_spec(path, project_root)  # its params keys and targets exist in this project
        exps = experiments(spec)
        assert len({e.name for e in exps}) == len(exps)
        assert all(e.name.startswith(f"{spec['name']}-") for e in exps)
        sizes[path.stem] = len(exps)
    assert sizes == {"ablation": 6, "budget": 9, "leakage": 5, "study": 5, "count_ablation": 9, "count_study": 5,
                     "count_sum": 5}


def test_sweep_spec_with_unknown_keys_is_rejected(tmp_path) -> None:
    from flows.sweep import load_spec

    (tmp_path / "s.yaml").write_text("name: x\ngrid: {}\nseeds: [0]\nseed_params: [train_sft.seed]\ntargets: []\n"
                                     "job: 1\n")
    with pytest.raises(ValueError, match=r"unknown keys \['job'\] and missing keys \['jobs'\]; expected keys"):
        load_spec(tmp_path / "s.yaml")


def test_experiments_still_queued_running_or_failed_are_not_results() -> None:
    """`dvc exp show` lists an unfinished experiment with the workspace's metrics: the report must not count them."""
    from scalevlm.study import experiment_rows

    def exp(name: str, state: str | None) -> dict:
        revs = {"revs": [{"rev": name, "name": name, "data": {"params": {}, "metrics": {}}}]}
        return {**revs, "executor": {"state": state}} if state else revs

    shown = [{"rev": "base", "data": {}, "experiments": [exp("g-0-s0", None), exp("g-0-s1", "success"),
                                                         exp("g-0-s2", "running"), exp("g-0-s3", "queued"),
                                                         exp("g-0-s4", "failed")]}]
    assert [r["name"] for r in experiment_rows(shown, "g")] == ["g-0-s0", "g-0-s1"]


def test_time_ratios_need_the_grpo_arm_in_the_sweep() -> None:
    """An SFT-only sweep carries the workspace's GRPO report: no time ratio from it."""
    from scalevlm.study import time_ratios

    walls = {"train_sft/scale": 100.0, "train_sft/vanilla": 100.0, "train_grpo/vanilla": 100.0}
    rows = [{"params": {"train_sft.seed": 0}, "train_wall_s": walls}]
    spec = {"seed_params": ["train_sft.seed"], "targets": []}
    assert time_ratios(spec, rows) == {0: 0.5}
    assert time_ratios({**spec, "targets": ["evaluate@sft-vanilla", "evaluate@sft-scale"]}, rows) == {}
