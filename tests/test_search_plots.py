"""A search's plots: labelled parallel-coordinates axes, importances only from enough trials."""

from __future__ import annotations

from pathlib import Path

from byol_tune.search import plots
from byol_tune.search.report import TrialRecord


def test_axis_ticks_label_each_axis_with_its_range() -> None:
    heights, labels = plots.axis_ticks([1e-4, 1e-3, 1e-2], log_ok=True)  # 100x: a log axis
    assert heights == [0.0, 0.5, 1.0] and labels == [(0.0, "0.0001"), (1.0, "0.01 (log)")]
    heights, labels = plots.axis_ticks([1e-4, 1e-3, 1e-2], log_ok=False)  # the objective stays linear
    assert heights == [0.0, (1e-3 - 1e-4) / (1e-2 - 1e-4), 1.0] and labels == [(0.0, "0.0001"), (1.0, "0.01")]
    heights, labels = plots.axis_ticks([512, 1024, 512], log_ok=True)  # 2x: linear
    assert heights == [0.0, 1.0, 0.0] and labels == [(0.0, "512"), (1.0, "1024")]
    assert plots.axis_ticks([0.99, 0.99], log_ok=True) == ([0.5, 0.5], [(0.5, "0.99")])
    heights, labels = plots.axis_ticks(["sgd", "lars", "adamw", "lars"], log_ok=True)
    assert heights == [1.0, 0.5, 0.0, 0.5] and labels == [(0.0, "adamw"), (0.5, "lars"), (1.0, "sgd")]
    assert plots.axis_ticks([True, True], log_ok=True) == ([0.5, 0.5], [(0.5, "True")])


def records(count: int) -> list[TrialRecord]:
    return [
        TrialRecord(
            f"t{i}", {"learning_rate": 1e-3 * (i + 1), "tau_base": 0.99}, [{"epoch": 1, "knn_top1": 20.0 + i}]
        )
        for i in range(count)
    ]


def test_importances_need_enough_finished_trials(tmp_path: Path) -> None:
    few = records(plots.MIN_IMPORTANCE_TRIALS - 1)
    assert plots.param_importances(few, "knn_top1") == {}
    written = plots.write_plots(few, "knn_top1", 1, tmp_path / "few")
    assert not (tmp_path / "few" / "param_importances.png").exists()
    assert [p.name for p in written] == [
        "objective_per_trial.png",
        "learning_curves.png",
        "parallel_coordinates.png",
    ]
    enough = records(plots.MIN_IMPORTANCE_TRIALS)
    # the learning rate is the only searched value that varies: all the importance is its
    assert plots.param_importances(enough, "knn_top1") == {"learning_rate": 1.0}
    written = plots.write_plots(enough, "knn_top1", 1, tmp_path / "enough")
    assert written[-1].name == "param_importances.png" and written[-1].stat().st_size > 0
