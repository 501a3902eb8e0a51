"""TPE under ASHA is told each trial's objective at the first rung, not at the epoch the trial ended."""

from __future__ import annotations

import optuna
import pytest
from ray import tune
from ray.tune.search import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from byol_tune.errors import ConfigError
from byol_tune.metrics import KNN_TOP1
from byol_tune.search.ray_train import Resources
from byol_tune.search.searcher import RungOptunaSearch
from byol_tune.search.tuner import SearchSettings, check_feasible, make_searcher


def report(search: OptunaSearch, trial_id: str, values: dict[int, float], error: bool = False) -> None:
    search.suggest(trial_id)
    results = [{"epoch": epoch, KNN_TOP1: v, "training_iteration": epoch} for epoch, v in values.items()]
    for result in results:
        search.on_trial_result(trial_id, result)
    search.on_trial_complete(trial_id, result=None if error else results[-1], error=error)


def told(search: OptunaSearch) -> list[tuple[optuna.trial.TrialState, float | None]]:
    return [(t.state, t.value) for t in search._ot_study.trials]


@pytest.fixture
def space() -> dict:
    return {"learning_rate": tune.loguniform(1e-4, 1e-2)}


def test_trials_are_compared_at_the_first_rung(space: dict) -> None:
    search = RungOptunaSearch(space=space, metric=KNN_TOP1, mode="max", rung_epoch=2, seed=0)
    report(search, "finished", {1: 10.0, 2: 12.0, 4: 20.0, 8: 30.0})
    report(search, "stopped_by_asha", {1: 11.0, 2: 15.0})
    report(search, "budget_stopped_before_the_rung", {1: 9.0})
    report(search, "failed", {1: 8.0}, error=True)
    complete, fail = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL
    assert told(search) == [(complete, 12.0), (complete, 15.0), (complete, 9.0), (fail, None)]


def test_ray_optuna_search_alone_ranks_a_finished_trial_by_its_last_epoch(space: dict) -> None:
    # why RungOptunaSearch exists: the stopped trial was better at epoch 2, yet Optuna hears 30 against 15
    search = OptunaSearch(space=space, metric=KNN_TOP1, mode="max", seed=0)
    report(search, "finished", {1: 10.0, 2: 12.0, 4: 20.0, 8: 30.0})
    report(search, "stopped_by_asha", {1: 11.0, 2: 15.0})
    assert [value for _, value in told(search)] == [30.0, 15.0]


def test_tpe_gets_the_rung_searcher_only_under_asha() -> None:
    asha = make_searcher(SearchSettings(max_epochs=8, grace_period=3), searched=True).searcher
    assert type(asha) is RungOptunaSearch and asha.rung_epoch == 3
    short = make_searcher(SearchSettings(max_epochs=1, grace_period=3), searched=True).searcher
    assert short.rung_epoch == 1  # a search shorter than the grace period: its one epoch
    assert type(make_searcher(SearchSettings(scheduler="none"), searched=True).searcher) is OptunaSearch
    assert type(make_searcher(SearchSettings(searcher="random"), searched=True)) is BasicVariantGenerator
    assert type(make_searcher(SearchSettings(), searched=False)) is BasicVariantGenerator


def test_check_feasible_names_what_one_trial_needs_and_what_fits() -> None:
    cluster = {"CPU": 2.0, "GPU": 1.0}
    with pytest.raises(ConfigError) as info:
        check_feasible(Resources(workers=2, cpus_per_worker=1.0), 1, cluster)
    assert str(info.value) == (
        "resources: one trial needs 2.1 CPU and 0 GPU (2 workers x 1 CPU / 0 GPU + 0.1 CPU for the trial "
        "driver) but the cluster has 2 CPU and 1 GPU; lower --workers-per-trial, --cpus-per-worker or "
        "--gpus-per-worker"
    )
    with pytest.raises(ConfigError) as info:
        check_feasible(Resources(cpus_per_worker=0.5, gpus_per_worker=0.5), 3, cluster, "this machine")
    assert str(info.value) == (
        "--max-concurrent 3: only 2 trial(s) of 0.6 CPU / 0.5 GPU (1 worker x 0.5 CPU / 0.5 GPU + 0.1 CPU "
        "for the trial driver) fit in this machine's 2 CPU / 1 GPU"
    )
    check_feasible(Resources(cpus_per_worker=0.9), 2, cluster)  # 2 x 1.0 CPU: fits exactly


def test_check_feasible_refuses_more_cpu_workers_than_cores_as_train_does() -> None:
    """3 x 0.5 CPU fits 2 CPU by Ray's count, but 3 DDP processes on 2 cores wait on each other's syncs
    (train refuses devices > cores alike); GPU workers are not held to the cores."""
    cluster = {"CPU": 2.0, "GPU": 1.0}
    with pytest.raises(ConfigError) as info:
        check_feasible(Resources(workers=3, cpus_per_worker=0.5), 1, cluster, "this machine")
    assert str(info.value) == (
        "--workers-per-trial 3: one trial's DDP processes would outnumber this machine's 2 CPU, and its "
        "gradient syncs would wait on each other; use at most 2"
    )
    check_feasible(Resources(workers=2, cpus_per_worker=0.9), 1, cluster)
    check_feasible(Resources(workers=3, cpus_per_worker=0.5, gpus_per_worker=0.3), 1, cluster)


def test_share_cpus_splits_what_the_drivers_leave_in_tenths() -> None:
    assert Resources.share_cpus(2.0, 1) == 1.9  # the search's default on 2 cores, and --from-search's
    assert Resources.share_cpus(2.0, 2) == 0.9  # 1.9 / 2 rounded down to tenths
    assert Resources.share_cpus(16.0, 2, concurrent=3) == 2.6  # (16 - 0.3) / 6 = 2.616...
    assert Resources.share_cpus(2.0, 1, concurrent=12) == 0.1  # nothing left: the 0.1 minimum


def test_report_evaluations_resends_nothing_after_a_restore() -> None:
    """A trial restored from its checkpoint gets the kNN history back: what it held was reported
    before the stop, so the first epoch without a new evaluation reports nothing."""
    from types import SimpleNamespace

    from byol_tune.search.ray_train import ReportEvaluations

    sent: list[dict[str, float]] = []
    knn = SimpleNamespace(history=[{"epoch": 2, "knn_top1": 20.0}])
    callback = ReportEvaluations(knn, lambda row, checkpoint: sent.append(row), None)  # type: ignore[arg-type]
    callback.on_train_start(None, None)  # type: ignore[arg-type]
    callback.on_train_epoch_end(None, None)  # type: ignore[arg-type]
    assert sent == []
