"""Search flags Ray would only trip on after its cluster started: one line, exit 2, before any Ray process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from byol_tune.cli import run_cli
from byol_tune.errors import ConfigError
from byol_tune.io import atomic_write_text
from byol_tune.search import cli
from byol_tune.search.cli import search_main
from byol_tune.search.resume import STATE_FILE
from byol_tune.search.space import load_space


def error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert run_cli(search_main, argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0].removeprefix("error: ")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num-samples", "0"], "--num-samples: must be >= 1, got 0"),
        (["--max-epochs", "0"], "--max-epochs: must be >= 1, got 0"),
        (["--max-concurrent", "0"], "--max-concurrent: must be >= 1, got 0"),
        (["--cpus-per-worker", "nan"], "--cpus-per-worker: must be a number > 0, got nan"),
        (["--gpus-per-worker", "inf"], "--gpus-per-worker: must be a number >= 0, got inf"),
        (["--workers-per-trial", "0"], "--workers-per-trial: must be >= 1, got 0"),
        (["--searcher", "random", "--tpe-startup-trials", "3"], "--tpe-startup-trials: only with --searcher"),
        (["--dashboard-port", "-5"], "--dashboard-port: must be 1-65535, got -5"),
        (["--name", "../escape"], "--name: a folder name inside --storage-path, without '/'"),
        (["--name", ""], "--name: a folder name inside --storage-path, without '/', got ''"),
        (["--set", "max_epochs=2"], "--set max_epochs: set by the search; use search: max_epochs or"),
        (["--set", "seed=7"], "--set seed: set by the search; use --seed"),
        (["--set", "learning_rate=1e-3"], "--set learning_rate: searched by default.yaml; fix it in a copy"),
        (["--set", "strategy=bogus"], "strategy: unknown strategy; choose from auto, ddp,"),
        (["--set", "backbone=resnet9000"], "command line: backbone: unknown backbone; choose from mlp,"),
    ],
)  # fmt: skip
def test_bad_flag_is_one_line_before_ray(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in error_of([*flags, "--storage-path", str(tmp_path / "runs")], capsys)
    assert not (tmp_path / "runs").exists()


def test_storage_path_under_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("kept")
    message = error_of(["--storage-path", str(afile / "runs")], capsys)
    assert message == f"--storage-path {afile / 'runs'}: {afile} is a file, not a folder"
    assert afile.read_text() == "kept"


def test_resume_keeps_its_flags_and_reads_its_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = tmp_path / "byol_search"
    experiment.mkdir()
    atomic_write_text(experiment / STATE_FILE, yaml.safe_dump({"argv": ["--num-samples", "3"]}))
    message = error_of(["--resume", str(experiment), "--num-samples", "50", "--max-epochs", "2"], capsys)
    refused = "--resume: continues with the flags the search started with; drop"
    assert message == f"{refused} --max-epochs, --num-samples"
    assert error_of(["--resume", str(experiment), "--searcher", "tpe"], capsys) == f"{refused} --searcher"
    (experiment / STATE_FILE).write_text("argv: [--space\n")
    assert error_of(["--resume", str(experiment)], capsys).startswith(
        f"--resume {experiment / STATE_FILE}: not valid YAML: "
    )
    (experiment / STATE_FILE).write_text("argv: [--num-samples, '3']\n")  # interrupted before Tune began
    assert error_of(["--resume", str(experiment)], capsys) == (
        f"--resume {experiment}: Tune saved no state there (tuner.pkl missing: stopped before it began); "
        "start the search again"
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("batch_size: {uniform: [32, 128]}", "batch_size: an integer key; sample it with int"),
        ("max_epochs: 3", "space: max_epochs: set by the search; use search: max_epochs or --max-epochs"),
        ("seed: 1", "space: seed: set by the search; use --seed"),
    ],
)  # fmt: skip
def test_space_refuses_keys_it_cannot_sample(
    entry: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(f"space:\n  {entry}\n")
    assert error_of(["--space", str(space)], capsys).startswith(f"{space}: {message}")


def test_space_bounds_in_exponent_notation(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("space:\n  learning_rate: {loguniform: [1e-4, 1e-2]}\n")  # YAML 1.1: two strings
    assert load_space(space).params["learning_rate"].args == (1e-4, 1e-2)


def test_results_are_readable_by_others(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "best_config.yaml", "a: 1\n")
    finally:
        os.umask(old)
    assert (tmp_path / "best_config.yaml").stat().st_mode & 0o777 == 0o644


def test_resume_runs_on_with_flags_refused_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # started before --set seed was refused: its resume goes on as it started, up to Ray's start
    experiment = tmp_path / "byol_search"
    experiment.mkdir()
    argv = ["--set", "seed=7", "--set", "shapes_train_size=64", "--set", "shapes_val_size=32"]
    atomic_write_text(experiment / STATE_FILE, yaml.safe_dump({"argv": argv}))
    (experiment / "tuner.pkl").touch()

    def ray_would_start(*args: object, **kwargs: object) -> None:
        raise ConfigError("ray would start here")

    monkeypatch.setattr(cli, "init_ray", ray_would_start)
    assert error_of(["--resume", str(experiment)], capsys) == "ray would start here"


def test_resume_runs_on_with_a_space_refused_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a space that fixed seed and max_epochs (the search always overrode them) before they were refused
    space = tmp_path / "old.yaml"
    space.write_text(
        "space:\n  dataset: shapes\n  seed: 3\n  max_epochs: 9\n  learning_rate: {loguniform: [1e-4, 1e-2]}\n"
    )
    assert error_of(["--space", str(space)], capsys) == (
        f"{space}: space: seed: set by the search; use --seed"  # the first of the two
    )
    experiment = tmp_path / "byol_search"
    experiment.mkdir()
    argv = ["--space", str(space), "--set", "shapes_train_size=64", "--set", "shapes_val_size=32"]
    atomic_write_text(experiment / STATE_FILE, yaml.safe_dump({"argv": argv}))
    (experiment / "tuner.pkl").touch()

    def ray_would_start(*args: object, **kwargs: object) -> None:
        raise ConfigError("ray would start here")

    monkeypatch.setattr(cli, "init_ray", ray_would_start)
    assert error_of(["--resume", str(experiment)], capsys) == "ray would start here"
    old = load_space(space, resumed=True)
    assert old.make_config({"learning_rate": 1e-3}, {"seed": 0, "max_epochs": 2}).seed == 0  # overridden


def test_records_come_in_the_order_trials_started() -> None:
    """TPE's trial ids are random hex: the per-trial plot's "in order started" needs start times."""
    from types import SimpleNamespace

    import pandas as pd

    from byol_tune.search.results import records_from_grid

    def result(trial_id: str, timestamp: float, total: float) -> SimpleNamespace:
        frame = pd.DataFrame([{"epoch": 1, "knn_top1": 10.0, "timestamp": timestamp, "time_total_s": total}])
        return SimpleNamespace(
            metrics_dataframe=frame, config={}, metrics={"trial_id": trial_id}, path="p", error=None
        )

    silent = SimpleNamespace(
        metrics_dataframe=None, config={}, metrics={"trial_id": "000"}, path="p", error=None
    )
    grid = [result("ff1", 100.0, 5.0), silent, result("0a2", 130.0, 40.0), result("7b3", 120.0, 2.0)]
    order = [r.trial_id for r in records_from_grid(grid, "knn_top1")]
    assert order == ["0a2", "ff1", "7b3", "000"]  # started at 90, 95, 118; never reported: last


def test_from_search_takes_the_epochs_once(tmp_path: Path) -> None:
    from byol_tune.config import make_config, save_config
    from byol_tune.search.final import train_best

    save_config(make_config({}), tmp_path / "best_config.yaml")
    with pytest.raises(ConfigError, match=r"^--set max_epochs: give the epochs once, with --max-epochs$"):
        train_best(tmp_path, max_epochs=2, overrides={"max_epochs": 3})
    assert [p.name for p in tmp_path.iterdir()] == ["best_config.yaml"]


def test_from_search_refuses_more_cpu_workers_than_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from byol_tune.config import make_config, save_config
    from byol_tune.search import final

    monkeypatch.setattr(final.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(final.torch.cuda, "device_count", lambda: 0)
    save_config(make_config({}), tmp_path / "best_config.yaml")
    with pytest.raises(
        ConfigError, match=r"^--workers 3: more DDP processes than this machine's 2 CPU cores$"
    ):
        final.train_best(tmp_path, workers=3)
    assert [p.name for p in tmp_path.iterdir()] == ["best_config.yaml"]


def test_infeasible_resources_are_refused_before_ray_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def ray_would_start(*args: object, **kwargs: object) -> None:
        raise ConfigError("ray would start here")

    monkeypatch.setattr(cli, "init_ray", ray_would_start)
    flags = ["--workers-per-trial", "1", "--cpus-per-worker", "100000", "--storage-path", str(tmp_path / "r")]
    assert error_of(flags, capsys).startswith(
        "resources: one trial needs 100000 CPU and 0 GPU (1 worker x 100000 CPU / 0 GPU + 0.1 CPU for the "
        "trial driver) but this machine has "
    )
    assert not (tmp_path / "r").exists()
    if not torch.cuda.is_available():
        gpu = ["--gpus-per-worker", "1", "--storage-path", str(tmp_path / "r")]
        assert re.fullmatch(
            r"resources: one trial needs [\d.]+ CPU and 1 GPU .* but this machine has [\d.]+ CPU "
            r"and 0 GPU; lower .*",
            error_of(gpu, capsys),
        )
    # where Ray's count cannot be known before it starts, the check waits for the cluster
    monkeypatch.setenv("RAY_OVERRIDE_RESOURCES", '{"CPU": 400000}')
    assert error_of(flags, capsys) == "ray would start here"


def test_a_bad_flag_value_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert error_of(["--searcher", "nope"], capsys) == (
        "argument --searcher: invalid choice: 'nope' (choose from 'tpe', 'random') "
        "(python -m byol_tune.search --help lists the flags)"
    )


def test_wall_time_adds_up_over_resumes(tmp_path: Path) -> None:
    """summary.md's wall time is the search's, first run and every --resume together."""
    from byol_tune.search.resume import add_wall_seconds, read_state, write_state

    write_state(tmp_path, ["--num-samples", "2"])
    assert add_wall_seconds(tmp_path, 150.0) == 150.0
    assert add_wall_seconds(tmp_path, 6.5) == 156.5
    (tmp_path / "tuner.pkl").write_bytes(b"")
    assert read_state(tmp_path)["argv"] == ["--num-samples", "2"]


def test_summary_lists_best_parameters_only_when_something_was_searched(tmp_path: Path) -> None:
    from byol_tune.search.report import TrialRecord, summary_md

    history = [{"epoch": 1, "knn_top1": 30.0}]
    searched = summary_md(
        [TrialRecord("a", {"learning_rate": 0.001}, history)], "knn_top1", 1, tmp_path, 60.0
    )
    assert "## Best parameters\n\n- `learning_rate`: 0.001\n" in searched
    fixed = summary_md([TrialRecord("a", {}, history)], "knn_top1", 1, tmp_path / "best_config.yaml", 60.0)
    assert "Best parameters" not in fixed and "- best config: `best_config.yaml`\n\n## Trials" in fixed
