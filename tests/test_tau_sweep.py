"""The tau sweep's configs and its verdict against the BYOL paper's tau ranking."""

from __future__ import annotations

import json
from pathlib import Path

import tau_sweep

from byol_tune.config import make_config


def test_only_tau_changes_and_tau_one_is_a_constant_target() -> None:
    values = tau_sweep.sweep_values(0.99, 1, 8, Path("/w"))
    assert values == {
        "dataset": "shapes",
        "eval_every": 1,
        "linear_probe": False,
        "warmup_epochs": 0,
        "tau_base": 0.99,
        "max_epochs": 8,
        "seed": 1,
        "output_dir": "/w",
        "name": "tau0.99-seed1",
    }
    constant = make_config(tau_sweep.sweep_values(1.0, 1, 8, Path("/w")))
    assert (constant.tau_base, constant.tau_schedule) == (1.0, "constant")
    assert make_config(values).tau_schedule == "cosine"


def seeds(*values: float) -> dict[int, float]:
    return dict(enumerate(values))


def test_verdict_pairs_seeds_and_agrees_contradicts_or_cannot_tell() -> None:
    agrees = {
        0.99: seeds(30.0, 31.0, 32.0),
        0.996: seeds(28.0, 29.0, 30.0),
        0.999: seeds(20.0, 21.0, 23.0),  # per seed 10, 10, 9 below 0.99
        1.0: seeds(15.0, 17.0, 16.0),  # 15, 14, 16 below
    }
    assert tau_sweep.verdict(agrees) == [
        "- Against the BYOL paper (tau 0.99-0.996 best, 0.999 and 1 worse): tau 0.99 leads 0.999 by 29.0 "
        "standard errors, 1 (constant) by 26.0 standard errors (paired by seed); the sweep agrees. "
        "Highest mean: tau 0.99."
    ]
    against = {0.99: seeds(20.0, 21.0, 22.0), 0.999: seeds(30.0, 32.0, 32.0), 1.0: seeds(30.0, 31.0, 34.0)}
    assert tau_sweep.verdict(against)[0].endswith(
        "tau 0.99 leads 0.999 by -31.0 standard errors, 1 (constant) by -16.0 standard errors (paired by "
        "seed); the sweep contradicts it. Highest mean: tau 1 (constant)."
    )
    # seed 1 scores high for every tau: unpaired, 0.996 and 0.999 would overlap; paired they do not
    mixed = {0.996: seeds(20.0, 30.0, 21.0), 0.999: seeds(18.0, 29.0, 20.0), 1.0: seeds(21.0, 29.0, 22.0)}
    line = tau_sweep.verdict(mixed)[0]
    assert "tau 0.996 leads 0.999 by 4.0 standard errors, 1 (constant) by -0.5 standard errors" in line
    assert "the sweep cannot confirm it at this budget" in line
    assert (
        tau_sweep.verdict({0.99: seeds(1.0, 2.0), 0.9: seeds(3.0, 4.0)}) == []
    )  # no tau the paper calls worse


def test_render_reads_runs_by_tau(tmp_path: Path) -> None:
    for tau, seed, history in ((1.0, 0, [10.0, 12.0]), (0.99, 1, [20.0, 19.0]), (0.99, 0, [21.0, 25.0])):
        params = {"learning_rate": 1e-3}  # the rest: the package's defaults, read back from the config
        run = {"tau": tau, "seed": seed, "epochs": 2, "history": history, "params": params, "minutes": 0.1}
        (tmp_path / f"tau{tau}-seed{seed}.json").write_text(json.dumps(run))
    lines = tau_sweep.render(tmp_path, tmp_path)
    assert lines[2].startswith(
        "One fixed config, 2 epochs, only tau_base changed (`tau_sweep.py`: learning rate 0.001, "
        "weight decay 0.05, heads 512-128 / 512, tau rising to 1 over all steps"
    )
    assert lines[6:8] == [
        "| 0.99 | 2 | 22.0 ± 4.2 | 25.0, 19.0 | 22.5 ± 3.5 |",
        "| 1 (constant) | 1 | 12.0 | 12.0 | 12.0 |",
    ]
    assert (tmp_path / f"{tmp_path.name}.png").is_file()
