"""The search-quality study's bookkeeping (budget stop, best-so-far curves, goal lines) on hand-made runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import search_quality
import search_quality_report as report


def run(method: str, seed: int, knns: list[float], trials: list[str] | None = None) -> dict:
    trials = trials or ["t0"] * len(knns)
    events = [
        {"trial": t, "epoch": i + 1, "knn_top1": k} for i, (t, k) in enumerate(zip(trials, knns, strict=True))
    ]
    histories: dict[str, list[float]] = {}
    for t, k in zip(trials, knns, strict=True):
        histories.setdefault(t, []).append(k)
    params = {"tau_base": 0.99, "learning_rate": 1e-3}
    return {
        "method": method,
        "seed": seed,
        "budget": len(knns),
        "threads": 1,
        "minutes": 1.0,
        "best": max(knns),
        "events": events,
        "trials": [{"trial": t, "params": params, "history": h} for t, h in histories.items()],
    }


def test_budget_stopper_counts_epochs_not_results() -> None:
    stop = search_quality.TrialEpochBudget(5)
    flags = []
    # trial a reports epochs 1, 2 and then its end (epoch 2 again); trial b reports epochs 1, 2, 3
    for trial, epoch in (("a", 1), ("a", 2), ("a", 2), ("b", 1), ("b", 2), ("b", 3)):
        assert stop(trial, {"epoch": epoch}) is False  # never one trial alone: the whole search ends
        flags.append(stop.stop_all())
    assert flags == [False, False, False, False, False, True]


def test_best_so_far_and_epochs_to_reach() -> None:
    r = run("tpe_asha", 0, [10.0, 30.0, 20.0, 40.0])
    assert report.best_so_far(r) == [10.0, 30.0, 30.0, 40.0]
    assert report.epochs_to_reach(r, 30.0) == 2
    assert report.epochs_to_reach(r, 40.0) == 4
    assert report.epochs_to_reach(r, 40.5) is None


def test_goal_lines_from_runs() -> None:
    runs = {
        "lightly": {0: run("lightly", 0, [20.0, 21.0, 22.0, 22.0])},
        "random_asha": {0: {**run("random_asha", 0, [15.0, 25.0, 26.0, 27.0]), "retrain": {"best": 26.5}}},
        "tpe_asha": {0: run("tpe_asha", 0, [28.0, 29.0, 30.0, 31.0])},
    }
    lines = report.goals(runs)
    # the searched best is the default search's: random sampling + ASHA (27.0 - 22.0)
    assert lines[0].startswith("- Searched best (random search + ASHA: what the default search does")
    assert "at equal trial-epochs: **+5.0** points" in lines[0] and "**MET**" in lines[0]
    # TPE+ASHA passes random's 27.0 at its first epoch: 1 <= 4 / 2
    assert "**MET**" in lines[1] and "TPE+ASHA after 1" in lines[1]
    # the same on the mean curves (one seed here: the curves themselves)
    assert lines[2] == (
        "- The same goal read on the seeds' mean curves (the plot's lines): random's final mean 27.0 after 4 "
        "trial-epochs; TPE + ASHA's mean reaches it after 1, and is 29.0 after 2 (random's: 25.0): **MET**."
    )
    assert lines[3].startswith("- The best random search + ASHA config retrained")
    assert lines[3].endswith("26.5, i.e. +4.5 over lightly's mean: lead kept (>= +5) in 0 of 1.")
    runs["tpe_asha"][0] = run("tpe_asha", 0, [10.0, 20.0, 26.0, 27.0])  # reaches 27.0 only at epoch 4
    missed = report.goals(runs)
    assert "**MISSED**" in missed[1] and missed[2].endswith(
        "reaches it after 4, and is 20.0 after 2 (random's: 25.0): **MISSED**."
    )


def test_render_writes_table_and_plots(tmp_path: Path) -> None:
    folder = tmp_path / "results" / "search_quality"
    folder.mkdir(parents=True)
    for r in (run("lightly", 0, [20.0, 22.0]), run("tpe_noes", 0, [18.0, 24.0], ["a", "b"])):
        (folder / f"{r['method']}-seed0.json").write_text(json.dumps(r))
    lines = report.render(folder, tmp_path / "results")
    table = [line for line in lines if line.startswith("| ")]
    assert table[1] == "| lightly example settings (fixed) | 1 | 22.0 | 22.0 | 1 | 2 | 1.0 |"
    assert table[2] == "| TPE after 2 random trials, no early stopping | 1 | 24.0 | 24.0 | 2 | 2 | 1.0 |"
    # epoch-2 sensitivity needs a trial with two epochs: none of the search trials here has one
    assert not any(line.startswith("- Sensitivity") for line in lines)
    assert (tmp_path / "results" / "search_quality_curves.png").stat().st_size > 0


def test_longer_searches_section(tmp_path: Path) -> None:
    folder = tmp_path / "results" / "long"
    folder.mkdir(parents=True)
    random = {**run("random_asha", 0, [20.0, 24.0, 30.0, 28.0]), "retrain": {"best": 27.0}}
    tpe = run("tpe_asha", 0, [22.0, 30.0, 25.0, 26.0])
    for r in (random, tpe):
        r["settings"] = {"num_samples": 24}
        (folder / f"{r['method']}-seed0.json").write_text(json.dumps(r))
    lightly = {0: run("lightly", 0, [20.0, 21.0])}
    section = report.longer_searches(folder, lightly, 2, tmp_path / "results")
    assert section[0] == "### Longer searches (long/)"
    assert "4 trial-epochs per seed (against 2 above)" in section[2] and "may start 24 trials" in section[2]
    # TPE reaches random's 30.0 at its second trial-epoch: 2 <= 4 / 2
    assert any("**MET**" in line and "TPE+ASHA after 2" in line for line in section)
    assert any(
        line.endswith("27.0, i.e. +6.0 over lightly's mean: lead kept (>= +5) in 1 of 1.") for line in section
    )
    assert (tmp_path / "results" / "long_curves.png").stat().st_size > 0
    assert report.longer_searches(tmp_path / "missing", lightly, 2, tmp_path / "results") == []


def test_wide_space_section(tmp_path: Path) -> None:
    folder = tmp_path / "results" / "wide"
    folder.mkdir(parents=True)
    random = {
        **run("random_asha", 0, [20.0, 24.0, 26.0, 25.0], ["a", "a", "b", "b"]),
        "retrain": {"best": 28.0},
    }
    tpe = run("tpe_asha", 0, [20.0, 27.0, 22.0, 21.0], ["a", "a", "c", "c"])
    random["trials"][0]["sample"] = tpe["trials"][0]["sample"] = {"learning_rate": 2e-2, "warmup_epochs": 1}
    random["trials"][1]["sample"] = {"learning_rate": 5e-4, "warmup_epochs": 0}
    tpe["trials"][1]["sample"] = {"learning_rate": 6e-4, "warmup_epochs": 0}
    for r in (random, tpe):
        r["space"] = "benchmarks/spaces/wide.yaml"
        (folder / f"{r['method']}-seed0.json").write_text(json.dumps(r))
    lightly = {0: run("lightly", 0, [20.0, 21.0])}
    section = report.wide_space(folder, lightly, 2, tmp_path / "results")
    assert section[0] == "### A wide space (wide/)"
    assert section[2] == (
        "The searches over `benchmarks/spaces/wide.yaml` (tau_base 0.9 to 0.9999, "
        "learning_rate 0.0001 to 0.03, tau_schedule_steps 200, 500 or 1000, "
        "projector_hidden_dim 256, 512, 1024 or 2048, projector_out_dim 64, 128 or 256, "
        "predictor_hidden_dim 256, 512, 1024 or 2048, weight_decay 0.0001 to 0.1, warmup_epochs 0 or 1), "
        "4 trial-epochs per seed:"
    )
    assert (
        "- Best over lightly's mean (21.0, one run of 2 epochs above): random search + ASHA +5.0; "
        "TPE after 3 random trials + ASHA +6.0." in section
    )
    # TPE reaches random's 26.0 at its second trial-epoch: 2 <= 4 / 2
    assert any("**MET**" in line and "TPE+ASHA after 2" in line for line in section)
    assert any(
        line.endswith("28.0, i.e. +7.0 over lightly's mean: lead kept (>= +5) in 1 of 1.") for line in section
    )
    # trial a is one config in both runs: counted once
    assert (
        "- knn_top1 at epoch 2 by sampled `learning_rate`: 0.0003-0.001: 23.0 ± 2.8 (2 trials); "
        ">= 0.01: 24.0 (1 trials)." in section
    )
    assert (
        "- knn_top1 at epoch 2 by sampled `warmup_epochs`: 0: 23.0 ± 2.8 (2 trials); 1: 24.0 (1 trials)."
        in section
    )
    assert (tmp_path / "results" / "wide_curves.png").stat().st_size > 0
    assert report.wide_space(tmp_path / "missing", lightly, 2, tmp_path / "results") == []
    (folder / "random_asha-seed0.json").unlink()
    (folder / "tpe_asha-seed0.json").unlink()
    (folder / "lightly-seed0.json").write_text(json.dumps(lightly[0]))  # a fixed config names no space
    assert report.wide_space(folder, lightly, 2, tmp_path / "results") == []


@pytest.mark.parametrize("method", search_quality.FIXED)
def test_fixed_configs_are_valid_configs(method: str) -> None:
    config = search_quality.make_config({**search_quality.fixed_config(method, 24), **search_quality.STUDY})
    assert config.max_epochs == 24 and config.dataset == "shapes" and config.backbone == "small_cnn"
    if method == "lightly":
        assert (config.optimizer, config.learning_rate, config.batch_size) == ("sgd", 0.06, 256)
    else:
        assert (config.optimizer, config.tau_base, config.warmup_epochs) == ("lars", 0.996, 0.24)


def test_space_evidence_groups_distinct_trials_by_sampled_value_or_bin(tmp_path: Path) -> None:
    a, b = (
        run("random_asha", 0, [10.0, 20.0, 15.0, 30.0], ["a", "a", "b", "b"]),
        run("lightly", 0, [5.0, 6.0]),
    )
    a["trials"][0]["sample"] = {"warmup_epochs": 0, "learning_rate": 5e-4, "projector_hidden_dim": 2048}
    a["trials"][1]["sample"] = {"warmup_epochs": 1, "learning_rate": 4e-3, "projector_hidden_dim": 512}
    b["trials"][0]["sample"] = {"warmup_epochs": 1}  # fixed configs are not search trials: left out
    tpe = json.loads(json.dumps({**a, "method": "tpe_asha"}))  # its start-up trials are random_asha's
    tpe["trials"][0]["history"] = [10.0, 22.0, 23.0]  # a config that ran on longer: counted once, as run
    trials = report.trials_reaching({"random_asha": {0: a}, "tpe_asha": {0: tpe}, "lightly": {0: b}}, 2)
    keys = ("warmup_epochs", "learning_rate", "projector_hidden_dim", "weight_decay")
    lines = report.space_evidence(trials, 2, keys)
    assert lines == [
        "- knn_top1 at epoch 2 by sampled `warmup_epochs`: 0: 22.0 (1 trials); 1: 30.0 (1 trials).",
        "- knn_top1 at epoch 2 by sampled `learning_rate`: 0.0003-0.001: 22.0 (1 trials); "
        "0.003-0.01: 30.0 (1 trials).",
        "- knn_top1 at epoch 2 by sampled `projector_hidden_dim`: 512: 30.0 (1 trials); "
        "2048: 22.0 (1 trials).",  # by value, not as text
    ]
    past = report.Round("round2", "heads 256-1024", ("warmup_epochs",), longer="long2")
    (tmp_path / "round2").mkdir()
    (tmp_path / "round2" / "random_asha-seed0.json").write_text(json.dumps(a))
    section = report.previous_round(tmp_path, past, at_epoch=2)
    assert section[0] == "### Before a space change (round2/)"
    assert section[2].startswith("The same study over an earlier default space (heads 256-1024), run on")
    assert not any("long2" in line for line in section)  # no longer searches
    (tmp_path / "long2").mkdir()
    longer = run("random_asha", 1, [40.0, 50.0], ["c", "c"])
    longer["trials"][0]["sample"] = {"warmup_epochs": 0}
    (tmp_path / "long2" / "random_asha-seed1.json").write_text(json.dumps(longer))
    section = report.previous_round(tmp_path, past, at_epoch=2)
    assert "Its longer searches (long2/):" in section
    assert (
        "- knn_top1 at epoch 2 by sampled `warmup_epochs`: 0: 35.0 ± 21.2 (2 trials); 1: 30.0 (1 trials)."
        in section
    )
    assert report.previous_round(tmp_path, report.Round("missing", "", ()), at_epoch=2) == []


def test_evidence_groups_at_and_beyond_the_bin_edges() -> None:
    group = report.evidence_group
    assert group("learning_rate", 3e-4) == ((0, 3e-4), "0.0003-0.001")
    assert group("learning_rate", 1e-4) == ((0, -math.inf), "< 0.0003")
    assert group("learning_rate", 2e-4) == group("learning_rate", 1e-4)  # one group, not one per value
    assert group("learning_rate", 1e-2) == ((0, 1e-2), ">= 0.01")
    assert group("optimizer", "lars") == ((1, "lars"), "lars")  # a non-numeric choice sorts after numbers


def test_previous_round_shows_its_retrains_and_its_surrogate_check(tmp_path: Path) -> None:
    (tmp_path / "r3").mkdir()
    searched = {**run("random_asha", 0, [10.0, 30.0]), "retrain": {"seed": 100, "best": 26.0}}
    searched["trials"][0]["sample"] = {"projector_out_dim": 64}
    for name, content in {
        "random_asha-seed0.json": searched,
        "lightly-seed0.json": run("lightly", 0, [20.0, 20.0]),
        "surrogate.json": {
            "oracle": {"projector_out_dim": 64},
            "check": {"max_epochs": 2, "histories": {"100": [25.0, 28.0]}},
        },
    }.items():
        (tmp_path / "r3" / name).write_text(json.dumps(content))
    section = report.previous_round(tmp_path, report.Round("r3", "wide", (), surrogate="surrogate.json"), 2)
    assert (
        "- The best random search + ASHA config retrained from scratch with another seed "
        "(space's max_epochs): 26.0, i.e. +6.0 over lightly's mean: lead kept (>= +5) in 1 of 1." in section
    )
    assert section[-2] == (
        "- Against the round's best random + ASHA configs at 2 trial-epochs, retrained on the same seeds: "
        "seed 100: +2.0."
    )


def test_study_folders_are_shipped() -> None:
    results = Path(search_quality.__file__).resolve().parent / "results"
    for name in report.WIDE:
        assert (results / name).is_dir(), name
    for past in report.ROUNDS:
        assert (results / past.folder).is_dir(), past.folder
        assert past.longer is None or (results / past.longer).is_dir(), past.longer
        assert past.surrogate is None or (results / past.folder / past.surrogate).is_file(), past.surrogate


def test_sensitivity_says_how_it_compares_with_the_paper() -> None:
    def points(means: tuple[float, float, float]) -> list[tuple[float, float, float]]:
        taus = (0.98, 0.995, 0.999)  # one per bin: below, inside and above the paper's 0.99-0.996
        return [(tau, 1e-3, m + d) for tau, m in zip(taus, means, strict=True) for d in (-1.0, 1.0)]

    close = report.sensitivity(points((20.0, 20.5, 20.0)), at_epoch=2)
    assert close[0].startswith(
        "- Sensitivity (knn_top1 at epoch 2, every search trial): tau < 0.99: 20.0 ± 1.4"
    )
    # two trials per bin, 1 from the bin's mean: a difference of two means has a standard error of sqrt(2)
    assert (
        "cannot tell the bins apart: 0.99 <= tau < 0.9961 scores best, but by 0.4 standard errors" in close[1]
    )
    assert (
        "agrees: 0.99 <= tau < 0.9961 scores best, by more than 2 standard errors"
        in report.sensitivity(points((20.0, 25.0, 21.0)), at_epoch=2)[1]
    )
    assert (
        "does not reproduce it: tau >= 0.9961 beats 0.99 <= tau < 0.9961 by more than 2 standard errors"
        in report.sensitivity(points((20.0, 22.0, 26.0)), at_epoch=2)[1]
    )
    assert (
        len(report.sensitivity(points((20.0, 22.0, 26.0))[:4], at_epoch=2)) == 1
    )  # an empty bin: no verdict


def test_study_pins_the_tpe_start_up_it_measured() -> None:
    # the product's default (Optuna's 10) would make the studied 6-trial TPE searches random ones
    assert search_quality.TPE_STARTUP == {"random_asha": 10, "tpe_asha": 3, "tpe_noes": 2}
    assert search_quality.RETRAINED == report.DEFAULT_SEARCH == "random_asha"


def test_surrogate_check_pairs_the_oracle_with_retrained_bests_by_seed(tmp_path: Path) -> None:
    path = tmp_path / "r3" / "s.json"
    path.parent.mkdir()
    result = {"oracle": {"learning_rate": 1e-3, "projector_out_dim": 64}}
    path.write_text(json.dumps(result))
    retrained = [
        {"budget": 24, "retrain": {"seed": 100, "best": 22.0}},
        {"budget": 48, "retrain": {"seed": 101, "best": 31.0}},
        {"budget": 48, "retrain": {"seed": 105, "best": 1.0}},  # the oracle was not trained on 105
    ]
    assert report.surrogate_check(path, retrained) == []  # not checked yet
    result["check"] = {"max_epochs": 2, "histories": {"100": [20.0, 25.0], "101": [30.0, 28.0]}}
    path.write_text(json.dumps(result))
    assert report.surrogate_check(path, retrained) == [
        "- The surrogate fitted to this round (r3/s.json) put its best config at learning_rate 0.001, "
        "projector_out_dim 64; trained for real (2 epochs, seeds 100, 101): best knn_top1 27.5 ± 3.5 "
        "(25.0, 30.0).",
        "- Against the round's best random + ASHA configs at 24 trial-epochs, retrained on the same seeds: "
        "seed 100: +3.0.",
        "- Against the round's best random + ASHA configs at 48 trial-epochs, retrained on the same seeds: "
        "seed 101: -1.0.",
    ]
    assert report.surrogate_check(tmp_path / "none.json", retrained) == []


def test_config_text_keeps_a_tau_apart_from_1() -> None:
    config = {"tau_schedule_steps": 1000, "learning_rate": 0.000951234, "tau_base": 0.99987699, "x": 0.995}
    assert (
        report.config_text(config)
        == "tau_schedule_steps 1000, learning_rate 0.000951, tau_base 0.999877, x 0.995"
    )
