"""The search command: flags, the Ray cluster, the Tune run and the report at the end."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from byol_tune import metrics
from byol_tune.cli import OneLineParser, add_set_flag
from byol_tune.config import parse_overrides, save_config
from byol_tune.core.data import absolute_data_dir, check_batch_size, load_splits
from byol_tune.errors import ConfigError
from byol_tune.io import atomic_write_text, fresh_dir, is_folder_name
from byol_tune.search import results
from byol_tune.search.interrupt import fit_noting_interrupt, resume_line
from byol_tune.search.ray_train import Resources, init_ray
from byol_tune.search.report import rank, trials_csv, write_reports
from byol_tune.search.resume import SPACE_COPY, add_wall_seconds, read_state, write_state
from byol_tune.search.space import SEARCH_SETS, SearchSpace, load_space, space_names
from byol_tune.search.tuner import (
    TPE_STARTUP_TRIALS,
    SearchSettings,
    build_tuner,
    check_feasible,
    make_trainable,
    sample_config,
    trial_overrides,
)


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m byol_tune.search",
        description="Search BYOL hyperparameters with Ray Tune (Optuna TPE + ASHA). A one-worker trial "
        "trains in its own process; a multi-worker trial is a Ray Train TorchTrainer (DDP). With no "
        "arguments: the embedded shapes data and search_spaces/default.yaml, sized to finish in a few "
        "minutes on 2 CPU cores (README gives measured times).",
    )
    p.add_argument(
        "--space", default="default", help=f"search space file or name ({', '.join(space_names())})"
    )
    p.add_argument(
        "--dataset",
        help="override the space's dataset (shapes, cifar10, cifar100, stl10, imagefolder, vectors)",
    )
    p.add_argument("--data-dir", help="override the space's data_dir")
    add_set_flag(p, "batch_size=128", "fix a config key for every trial")
    p.add_argument("--num-samples", type=int, help="trials to run (default: the space's)")
    p.add_argument("--max-epochs", type=int, help="epochs per trial at most (default: the space's)")
    p.add_argument("--workers-per-trial", type=int, default=1, help="Ray Train workers (DDP ranks) per trial")
    p.add_argument(
        "--cpus-per-worker", type=float, default=None, help="CPUs per worker (default: fits the cluster)"
    )
    p.add_argument(
        "--runner",
        choices=["auto", "trial", "train"],
        default="auto",
        help="trial: train in the Tune trial's process (1 worker, least overhead); train: a Ray Train "
        "TorchTrainer per trial; auto: trial for 1 worker, else train",
    )
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (0: CPU training)")
    p.add_argument("--max-concurrent", type=int, help="trials running at once (default: the space's, or 1)")
    p.add_argument("--searcher", choices=["tpe", "random"], default="tpe")
    p.add_argument(
        "--tpe-startup-trials",
        type=int,
        help=f"random trials before TPE models the results (default {TPE_STARTUP_TRIALS}, Optuna's)",
    )
    p.add_argument("--scheduler", choices=["asha", "none"], default="asha")
    p.add_argument(
        "--objective",
        choices=list(metrics.OBJECTIVES),
        default=metrics.KNN_TOP1,
        help="knn_top1 (labels) or rankme (no labels)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--storage-path", default="runs/search", help="where experiments are written")
    p.add_argument("--name", default="byol_search", help="experiment name (a fresh suffix if it exists)")
    p.add_argument("--resume", metavar="EXPERIMENT_DIR", help="continue an interrupted experiment")
    p.add_argument(
        "--address",
        help="join an existing Ray cluster (e.g. 'auto' or ray://host:10001); "
        "use shared storage for --storage-path",
    )
    p.add_argument(
        "--dashboard-port", type=int, help="dashboard port of a local cluster (default: a free one)"
    )
    return p


def search_main(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    start = time.perf_counter()
    if args.resume:
        _check_resume_alone(sys.argv[1:] if argv is None else argv)
        state = read_state(Path(args.resume))
        args = parser().parse_args(state["argv"] + ["--resume", args.resume])
        started_in = Path(state.get("cwd") or Path.cwd())  # where relative paths pointed
        copy = Path(args.resume) / SPACE_COPY
        if copy.is_file():  # an edited or moved space file changes nothing already searched
            args.space = str(copy)
    else:  # a resumed search runs on as it started, also with flags that are refused since
        _check_flags(args)
        started_in = Path.cwd()
    space = load_space(args.space, resumed=bool(args.resume))
    budget = space.budget
    settings = SearchSettings(
        num_samples=_given(args.num_samples, budget.get("num_samples", 8)),
        max_epochs=_given(args.max_epochs, budget.get("max_epochs", 6)),
        max_concurrent=_given(args.max_concurrent, budget.get("max_concurrent", 1)),
        searcher=args.searcher,
        scheduler=args.scheduler,
        grace_period=budget.get("grace_period", 2),
        reduction_factor=budget.get("reduction_factor", 2),
        objective=args.objective,
        seed=args.seed,
        tpe_startup_trials=_given(args.tpe_startup_trials, TPE_STARTUP_TRIALS),
    )
    base: dict[str, Any] = {}
    if args.dataset:
        base["dataset"] = args.dataset
    if args.data_dir:
        base["data_dir"] = args.data_dir
    fixed_by_flags = parse_overrides(args.overrides)
    base.update(fixed_by_flags if args.resume else _check_overrides(fixed_by_flags, space))
    data_dir = base.get("data_dir", space.fixed.get("data_dir"))
    if isinstance(data_dir, str):  # trials run in Ray's folders: a relative path must be made whole
        base["data_dir"] = absolute_data_dir(data_dir, started_in)
    overrides = trial_overrides(settings, base)
    # the space's own values passed load_space: what fails now came with the command line's flags
    config = sample_config(space, overrides, where="command line")
    splits = load_splits(config)  # bad data fails here, before any Ray process starts
    searched = space.params["batch_size"].endpoints() if "batch_size" in space.params else []
    for batch_size in {config.batch_size, *searched}:
        check_batch_size(splits, batch_size)
    if settings.objective == metrics.KNN_TOP1 and not splits.info.num_classes:
        raise ConfigError(
            f"--objective knn_top1: dataset {config.dataset!r} has no labels; use --objective rankme"
        )
    cpus = _local_cluster_cpus() if args.address is None else None
    if cpus is not None:  # refused before Ray's start-up seconds; torch sees the GPUs the workers would use
        gpus = float(torch.cuda.device_count())
        _checked_resources(args, {"CPU": cpus, "GPU": gpus}, settings, "this machine")
    # a new experiment's folder is made in _run once the request fits the cluster: a refusal leaves none
    experiment = Path(args.resume).resolve() if args.resume else None
    import ray

    context = init_ray(
        args.address, args.dashboard_port, configure_logging=True, logging_level=logging.WARNING
    )
    try:
        return _run(args, argv, space, settings, overrides, experiment, context, start)
    finally:
        ray.shutdown()


def _run(
    args: argparse.Namespace,
    argv: list[str] | None,
    space: SearchSpace,
    settings: SearchSettings,
    overrides: dict[str, Any],
    experiment: Path | None,
    context: Any,
    start: float,
) -> int:
    import ray
    from ray import tune

    _print_dashboard(getattr(context, "dashboard_url", None))
    resources = _checked_resources(args, ray.cluster_resources(), settings, "the cluster")
    if experiment is None:
        experiment = fresh_dir(Path(args.storage_path).resolve(), args.name)
        atomic_write_text(experiment / SPACE_COPY, space.path.read_text())
        write_state(experiment, argv if argv is not None else sys.argv[1:])
    print(f"experiment: {experiment}", flush=True)
    print(
        f"search: {settings.num_samples} trials x <= {settings.max_epochs} epochs, {settings.searcher} + "
        f"{settings.scheduler}, objective {settings.objective}; {resources.workers} worker(s) x "
        f"{resources.cpus_per_worker:g} CPU per trial, "
        f"{'in the trial process' if resources.in_trial else 'Ray Train TorchTrainer'}",
        flush=True,
    )
    if args.resume:
        tuner = tune.Tuner.restore(
            str(experiment),
            trainable=make_trainable(space, overrides, resources, settings.objective, experiment),
            resume_unfinished=True,
            resume_errored=True,
        )
    else:
        tuner = build_tuner(space, settings, resources, overrides, experiment.parent, experiment.name)
    resume = resume_line(experiment)
    grid, interrupted = fit_noting_interrupt(tuner, resume, own_cluster=args.address is None)
    records = results.records_from_grid(grid, settings.objective)
    wall_seconds = add_wall_seconds(experiment, time.perf_counter() - start)  # this run's and earlier runs'
    if interrupted:  # Tune saved its state and returned as if done: report nothing as the search's best
        done = sum(math.isfinite(r.best(settings.objective)) for r in records)
        print(
            f"interrupted: {done} trial(s) reported {settings.objective}, no best_config.yaml written; "
            + resume,
            file=sys.stderr,
        )
        return 130
    ranked = [r for r in rank(records, settings.objective) if math.isfinite(r.best(settings.objective))]
    if not ranked:  # what each trial did goes on record; the first error says why, as one line
        trials = experiment / "trials.csv"
        atomic_write_text(trials, trials_csv(records, settings.objective, settings.max_epochs))
        errors = [r.error for r in records if r.error]
        why = (
            f"; {len(errors)} of {len(records)} trial(s) failed, the first with: {errors[0]}"
            if errors
            else ""
        )
        raise ConfigError(
            f"{experiment}: no trial reported {settings.objective}{why}; see {trials.name} there"
        )
    best_config = space.make_config(ranked[0].params, overrides)
    best_path = experiment / "best_config.yaml"
    save_config(best_config, best_path)
    written = write_reports(
        records, settings.objective, settings.max_epochs, experiment, best_path, wall_seconds
    )
    print(results.table(records, settings.objective, settings.max_epochs))
    best, worst = ranked[0], ranked[-1]
    print(
        f"best trial {best.trial_id}: {settings.objective} = {best.best(settings.objective):.2f}; "
        f"worst: {worst.best(settings.objective):.2f}"
    )
    print(
        "best config:\n"
        + yaml.safe_dump(
            {k: getattr(best_config, k) for k in sorted(space.params)},  # searched keys, as config values
            sort_keys=True,
        ).rstrip()
    )
    print(
        f"written to {experiment}: "
        + ", ".join(p.relative_to(experiment).as_posix() for p in [best_path, *written])
    )
    print(f"train it longer: python -m byol_tune.train --from-search {experiment} --max-epochs 50")
    return 0


def _resources(args: argparse.Namespace, cluster: dict[str, float], concurrent: int) -> Resources:
    workers = args.workers_per_trial
    driver = 0.1
    cpus = args.cpus_per_worker
    if cpus is None:  # share what the cluster has between the concurrent trials' workers
        cpus = Resources.share_cpus(cluster.get("CPU", 1.0), workers, concurrent, driver)
    return Resources(
        workers=workers,
        cpus_per_worker=cpus,
        gpus_per_worker=args.gpus_per_worker,
        driver_cpus=driver,
        in_trial=args.runner == "trial" or (args.runner == "auto" and workers == 1),
    )


def _checked_resources(
    args: argparse.Namespace, cluster: dict[str, float], settings: SearchSettings, holder: str
) -> Resources:
    resources = _resources(args, cluster, settings.max_concurrent)
    check_feasible(resources, settings.max_concurrent, cluster, holder)
    return resources


def _local_cluster_cpus() -> float | None:
    """The CPUs a local Ray cluster will count, by Ray's own function (it reads cgroup quotas), or None
    where that cannot be known before it starts: resources set in RAY_OVERRIDE_RESOURCES, or a Ray
    without that function."""
    if os.environ.get("RAY_OVERRIDE_RESOURCES"):
        return None
    try:
        from ray._private.utils import get_num_cpus
    except ImportError:
        return None
    return float(get_num_cpus())


def _given(flag: int | None, default: int) -> int:
    """A flag's value when given (0 included, which SearchSettings then refuses), else the default."""
    return default if flag is None else flag


def _check_flags(args: argparse.Namespace) -> None:
    """Flags Ray would only trip on after its cluster started, refused before it starts."""
    cpus, gpus = args.cpus_per_worker, args.gpus_per_worker
    if cpus is not None and not (math.isfinite(cpus) and cpus > 0):
        raise ConfigError(f"--cpus-per-worker: must be a number > 0, got {cpus}")
    if not (math.isfinite(gpus) and gpus >= 0):
        raise ConfigError(f"--gpus-per-worker: must be a number >= 0, got {gpus}")
    if args.workers_per_trial < 1:
        raise ConfigError(f"--workers-per-trial: must be >= 1, got {args.workers_per_trial}")
    if args.tpe_startup_trials is not None and args.searcher != "tpe":
        raise ConfigError(f"--tpe-startup-trials: only with --searcher tpe, not {args.searcher}")
    if args.dashboard_port is not None and not 1 <= args.dashboard_port <= 65535:
        raise ConfigError(f"--dashboard-port: must be 1-65535, got {args.dashboard_port}")
    if not is_folder_name(args.name):
        raise ConfigError(f"--name: a folder name inside --storage-path, without '/', got {args.name!r}")
    storage = Path(args.storage_path).expanduser()
    existing = next((p for p in (storage, *storage.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"--storage-path {storage}: {existing} is a file, not a folder")


def _check_overrides(overrides: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """``--set`` keys the search itself sets or samples would be overwritten, or overwrite the search."""
    for key in overrides:
        if key in SEARCH_SETS:
            raise ConfigError(f"--set {key}: set by the search; use {SEARCH_SETS[key]}")
        if key in space.params:
            raise ConfigError(
                f"--set {key}: searched by {space.path.name}; fix it in a copy of that space instead"
            )
    return overrides


def _check_resume_alone(argv: list[str]) -> None:
    """A resumed search keeps the flags it started with; any other flag given would be silently dropped."""
    given = parser()
    for action in given._actions:  # only the flags on the command line, default values included
        action.default = argparse.SUPPRESS
    extra = sorted(k for k in vars(given.parse_args(argv)) if k != "resume")
    if extra:
        flags = ", ".join("--set" if k == "overrides" else "--" + k.replace("_", "-") for k in extra)
        raise ConfigError(f"--resume: continues with the flags the search started with; drop {flags}")


def _print_dashboard(url: str | None) -> None:
    if not url:
        print("Ray dashboard: off", flush=True)
        return
    print(
        f"Ray dashboard: http://{url}\n"
        "  Ray 2.60 protects it with a token: run `ray get-auth-token` and paste the token when the page "
        "asks (or send the header `Authorization: Bearer <token>`)",
        flush=True,
    )
