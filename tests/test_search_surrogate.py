"""The surrogate replay: its ASHA is Ray's, its fit recovers known weights, its replays keep the budget."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import search_surrogate as sur
from ray.tune.schedulers.async_hyperband import _Bracket

BASE = {
    "learning_rate": 1e-3,
    "tau_base": 0.99,
    "weight_decay": 1e-2,
    "projector_hidden_dim": 1024,
    "projector_out_dim": 128,
    "predictor_hidden_dim": 1024,
    "tau_schedule_steps": 500,
    "warmup_epochs": 0,
}


def test_rungs_and_stopping_rule_are_rays() -> None:
    assert sur.asha_rungs(2, 2, 9) == [2, 4, 8]  # the default space: grace 2, rf 2, max_t = 8 + 1
    assert sur.asha_rungs(1, 2, 9) == [1, 2, 4, 8]
    assert sur.asha_rungs(1, 3, 9) == [1, 3, 9]
    for grace, rf in ((2, 2), (1, 2), (1, 3)):
        bracket = _Bracket(grace, 9, rf, 0)
        assert sorted(m for m, _ in bracket._rungs) == sur.asha_rungs(grace, rf, 9)
    bracket, recorded = _Bracket(2, 9, 2, 0), list[float]()
    for i, value in enumerate([20.0, 18.0, 25.0, 19.0, 21.5, 21.5]):
        trial = SimpleNamespace(trial_id=str(i))  # all of a Trial that the bracket reads
        ray_stops = bracket.on_result(trial, 2, value) == "STOP"  # type: ignore[arg-type]
        assert sur.asha_stops(recorded, value, 2) is ray_stops
        recorded.append(value)
    # median of the earlier results: 20 (continues), 18 < 20, 25 >= 19, 19 < 20, 21.5 >= 20, 21.5 >= 20.75
    assert [sur.asha_stops(recorded[:i], v, 2) for i, v in enumerate(recorded)] == [
        False,
        True,
        False,
        True,
        False,
        False,
    ]


KNOWN = {"log10 lr": -4.0, "log2 predictor_hidden_dim": 1.5, "warmup_epochs": -2.0}


def synthetic_trials() -> list[tuple[int, dict, list[float]]]:
    """Noise-free trials of a known surrogate: rung score = seed offset - 4 log10(lr) + 1.5 log2(predictor
    hidden dim) - 2 warm-up epochs, rising by 3 to epoch 8."""
    weights = dict.fromkeys(sur.FEATURES, 0.0) | KNOWN
    offsets = {0: 1.0, 1: 3.0}
    trials = []
    rng = np.random.default_rng(0)
    for i in range(24):
        params = BASE | {
            "learning_rate": float(10 ** rng.uniform(-3.5, -2)),
            "tau_base": float(1 - 10 ** rng.uniform(-3, -1)),
            "weight_decay": float(10 ** rng.uniform(-3, -1)),
            "projector_hidden_dim": int(rng.choice([512, 1024, 2048])),
            "projector_out_dim": int(rng.choice([64, 128, 256])),
            "predictor_hidden_dim": int(rng.choice([512, 1024, 2048])),
            "tau_schedule_steps": int(rng.choice([200, 500, 1000])),
            "warmup_epochs": int(rng.choice([0, 1])),
        }
        seed = i % 2
        at_rung = offsets[seed] + sum(w * sur.FEATURES[k](params) for k, w in weights.items())
        epochs = 8 if i % 3 == 0 else 2  # every third trial runs all epochs
        trials.append((seed, params, [at_rung + 3.0 * (e - 2) / 6 for e in range(1, epochs + 1)]))
    return trials


def test_fit_recovers_a_known_surrogate() -> None:
    fitted = sur.fit_surrogate(synthetic_trials(), rung=2, max_epochs=8)
    for key, weight in fitted.weights.items():
        expected = KNOWN.get(key, 0.0)
        assert math.isclose(weight, expected, abs_tol=1e-8), key
    assert math.isclose(fitted.seed_offsets[0], 1.0, abs_tol=1e-8)
    assert math.isclose(fitted.seed_offsets[1], 3.0, abs_tol=1e-8)
    assert math.isclose(fitted.intercept, 2.0, abs_tol=1e-8)
    assert fitted.config_sd < 1e-8 and fitted.epoch_sd < 1e-8
    assert math.isclose(fitted.gain_mean, 3.0) and fitted.gain_sd < 1e-8
    assert (fitted.trials, fitted.full_trials) == (24, 8)
    params = BASE | {"learning_rate": 1e-2}
    assert math.isclose(fitted.mean(params), 2.0 + 8.0 + 1.5 * 10)  # -4 * -2 and 1.5 * log2(1024)
    curve = fitted.curve(params, np.random.default_rng(0))
    assert np.allclose(curve, [25.0 - 0.5, 25.0, 25.5, 26.0, 26.5, 27.0, 27.5, 28.0])


def test_study_trials_drop_fixed_configs_and_keep_the_longest_copy(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    sample = {"learning_rate": 1e-3}
    startup = {"sample": sample, "params": BASE, "history": [20.0, 21.0]}
    longer = {"sample": sample, "params": BASE, "history": [20.0, 21.0, 22.0, 23.0]}
    other = {"sample": {"learning_rate": 2e-3}, "params": BASE, "history": [19.0, 18.0]}
    runs = {
        "tpe_asha-seed0.json": {"seed": 0, "trials": [startup, other]},
        "tpe_noes-seed0.json": {"seed": 0, "trials": [longer]},  # the same start-up trial, run longer
        "random_asha-seed1.json": {"seed": 1, "trials": [startup]},  # another seed: another trial
        "lightly-seed0.json": {"seed": 0, "trials": [{"params": BASE, "history": [30.0]}]},
    }
    for name, run in runs.items():
        (folder / name).write_text(json.dumps({"method": name.split("-")[0], **run}))
    found = sur.study_trials([folder])
    assert sorted((seed, h) for seed, _, h in found) == [
        (0, [19.0, 18.0]),
        (0, [20.0, 21.0, 22.0, 23.0]),
        (1, [20.0, 21.0]),
    ]


def flat_surrogate() -> sur.Surrogate:
    """Every config scores 20 at the rung and rises by 4; no noise."""
    return sur.Surrogate(
        weights=dict.fromkeys(sur.FEATURES, 0.0),
        intercept=20.0,
        seed_offsets={0: 20.0},
        config_sd=0.0,
        gain_mean=4.0,
        gain_sd=0.0,
        epoch_sd=0.0,
        rung=2,
        max_epochs=8,
        trials=1,
        full_trials=1,
    )


def test_replay_spends_exactly_the_budget_under_asha() -> None:
    # equal scores are never below a rung's median, so ASHA stops nothing: 8 + 8 + 4 epochs in 20
    run = sur.replay(flat_surrogate(), sur.Case("tpe"), 20, 0, None)
    assert run["trials"] == 3 and len(run["curve"]) == 20
    assert run["curve"][:8] == [20.0 - 2 / 3, 20.0, *(20.0 + 4 * e / 6 for e in range(1, 7))]
    assert run["curve"][-1] == 24.0


def test_render_states_where_the_studied_tpe_meets_the_goal(tmp_path: Path) -> None:
    assert sur.render(tmp_path / "none.json") == [
        "Not measured yet: `python benchmarks/search_surrogate.py` (writes none.json)."
    ]
    studied = sur.CASES[0]
    other = next(c for c in sur.CASES if c.name == "... ASHA grace period 1 (both searches)")
    wide = next(c for c in sur.CASES if c.space != "default" and c.sampler == "tpe")
    rows = [
        {
            "case": studied.__dict__,
            "budget": b,
            "sims": 10,
            "share": s,
            "final": 30.0,
            "random_final": 29.0,
            "trials": 12,
        }
        for b, s in ((48, 0.3), (96, 0.5), (192, 0.8))
    ]
    written_before_spaces = {k: v for k, v in other.__dict__.items() if k not in ("space", "ei_candidates")}
    rows.append({**rows[0], "case": written_before_spaces, "share": 0.6})
    rows += [{**rows[0], "case": wide.__dict__, "budget": b, "share": 0.7} for b in (24, 48)]
    path = tmp_path / "search_surrogate.json"
    result: dict[str, Any] = {
        "surrogate": flat_surrogate().__dict__,
        "oracle": {"learning_rate": 1e-3},
        "wide_oracle": {"learning_rate": 2e-3},
        "rows": rows,
    }
    check = {"max_epochs": 8, "histories": {"100": [20.0, 30.0], "101": [25.0, 28.0]}}
    result |= {"quick": False, "study": ["search_quality"], "oracle_expected_best": 30.0, "check": check}
    path.write_text(json.dumps(result))
    measured = [
        {"budget": 48, "seed": 0, "best": 28.0, "retrain": {"seed": 100, "best": 25.0}},
        {"budget": 48, "seed": 1, "best": 30.0, "retrain": {"seed": 101, "best": 27.0}},
    ]
    lines = sur.render(path, measured)
    assert not [line for line in lines if "{" in line]  # every placeholder filled in
    assert (
        "- TPE + ASHA as studied meets the goal in >= 80% of replays from 192 trial-epochs per search "
        "(0.30 at 48; 0.50 at 96; 0.80 at 192)." in lines
    )
    # the wide space's case beats random over another space: not a TPE setting of the default's
    assert f"- Best other case short of the oracle: {other.name}, 0.60 at 48 trial-epochs." in lines
    assert (
        "- TPE + ASHA over the wide space meets the goal in 0.70 at 24; 0.70 at 48 of replays; its oracle "
        "config: learning_rate 0.002." in lines
    )
    assert (
        "- The oracle's config trained for real (8 epochs, seeds 100, 101): best knn_top1 29.0 ± 1.4 "
        "(30.0, 28.0); the surrogate expects 30.0 as one run's best over its 8 epochs (mean seed)." in lines
    )
    assert (
        "- The study's best random + ASHA configs at 48 trial-epochs, retrained on seeds 100, 101: "
        "26.0 ± 1.4 (25.0, 27.0); the oracle's config against them, seed by seed: +5.0, +1.0." in lines
    )
    assert (
        "- Check against the study: random + ASHA's final best at 48 trial-epochs, replayed 29.0, "
        "measured 29.0 (mean of 2 seeds)." in lines
    )
    assert (
        "| ... ASHA grace period 1 (both searches) | 48 | 0.60 (of 10) | 0.36 | 30.0 | 29.0 | 12 |" in lines
    )  # 0.6 ** 2: both of the study's 2 seeds
    assert any("| all of 2 seeds (share^2) |" in line for line in lines)


def test_bad_arguments_are_one_line_each(tmp_path: Path) -> None:
    def args(**given: Any) -> argparse.Namespace:
        defaults = {"sims": 100, "processes": 2, "budgets": [24], "others_at": [48], "check": False}
        return argparse.Namespace(**{**defaults, "out": tmp_path / "s.json", **given})

    assert sur.bad_arguments(args(sims=0)) == "--sims must be >= 1"
    assert sur.bad_arguments(args(processes=0)) == "--processes must be >= 1"
    assert sur.bad_arguments(args(others_at=[1])) == "--budgets and --others-at must be >= 2 trial-epochs"
    missing = tmp_path / "s.json"
    assert sur.bad_arguments(args(check=True)) == f"--check: no {missing} to check; run without --check first"
    missing.write_text("{}")
    assert sur.bad_arguments(args(check=True)) is None


def test_a_trial_under_asha_runs_until_stopped_and_optuna_hears_its_rung_score() -> None:
    recorded: dict[int, list[float]] = {2: [20.0, 22.0], 4: [25.0], 8: []}
    weak = [18.0, 19.0, 21.0, 24.0, 25.0, 26.0, 27.0, 28.0]  # 19 < 21, the median at epoch 2
    assert sur.run_trial(weak, recorded, 2, 2, False, 100) == (weak[:2], 19.0)
    assert recorded == {2: [20.0, 22.0, 19.0], 4: [25.0], 8: []}  # a stopped trial's score still counts
    strong = [22.0, 23.0, 24.0, 26.0, 26.5, 27.0, 27.5, 28.0]  # 23 >= 21, 26 >= 25, then nothing at 8
    assert sur.run_trial(strong, recorded, 2, 2, False, 100) == (strong, 23.0)
    assert sur.run_trial(strong, recorded, 2, 2, True, 100) == (strong, 28.0)  # Ray's OptunaSearch
    assert sur.run_trial(strong, recorded, 2, 2, False, 3) == (strong[:3], 23.0)  # the budget ends it
    assert sur.run_trial(strong, recorded, 2, 2, False, 1) == (strong[:1], 22.0)  # before the rung


def test_univariate_case_is_univariate() -> None:
    # Optuna 5 samples multivariate by default: the univariate case must switch it off
    assert sur.make_sampler(sur.Case("u", sampler="tpe_univariate"), 0)._multivariate is False
    assert sur.make_sampler(sur.CASES[0], 0)._multivariate is True


def test_tpe_setting_cases_reach_optuna() -> None:
    studied = sur.make_sampler(sur.CASES[0], 0)  # the product's: Optuna's defaults
    assert studied._n_ei_candidates == 24 and studied._n_startup_trials == 3
    sampler = sur.make_sampler(sur.Case("v", startup=1, ei_candidates=200), 0)
    assert (
        sampler._multivariate is True and sampler._n_startup_trials == 1 and sampler._n_ei_candidates == 200
    )


def test_a_case_over_the_wide_space_samples_it() -> None:
    _, distributions = sur.searched_space("wide")
    assert distributions["warmup_epochs"].choices == (0, 1)
    assert (distributions["learning_rate"].low, distributions["learning_rate"].high) == (1e-4, 3e-2)
    # the learning rate alone decides the score: the oracle takes the top of the wide space's range
    steep = sur.Surrogate(**{**sur.asdict(flat_surrogate()), "weights": {"log10 lr": 10.0}})
    oracle = sur.oracle_config(steep, "wide", samples=200)
    assert oracle["learning_rate"] > 1e-2 and oracle["learning_rate"] <= 3e-2
    run = sur.replay(steep, sur.Case("tpe", space="wide"), 20, 0, None)
    assert len(run["curve"]) == 20


def test_both_searches_of_a_case_sample_its_space() -> None:
    # one warm-up epoch adds 100: only the wide space samples it (the default fixes warm-up at 0)
    warm = sur.Surrogate(**{**sur.asdict(flat_surrogate()), "weights": {"warmup_epochs": 100.0}})
    wide = sur.run_case((warm, sur.Case("w", space="wide"), 48, 4, None))
    default = sur.run_case((warm, sur.Case("d"), 48, 4, None))
    assert wide["final"] == wide["random_final"] == 124.0  # every search met warm-up 1 in its 6 trials
    assert default["final"] == default["random_final"] == 24.0
    assert sur.searched_space("default")[1]["learning_rate"].high == 3e-3  # the default space is narrower


def test_fit_measures_the_unexplained_spread() -> None:
    rng = np.random.default_rng(1)
    noisy = [(s, p, [h[0], h[1] + rng.normal(0, 1.5), *h[2:]]) for s, p, h in synthetic_trials() * 40]
    fitted = sur.fit_surrogate(noisy, rung=2, max_epochs=8)
    assert abs(fitted.config_sd - 1.5) < 0.1  # 960 trials, 11 fitted values
    assert abs(fitted.mean(BASE) - (2.0 + 12.0 + 15.0)) < 0.3  # offsets' mean, -4 * -3, 1.5 * 10
