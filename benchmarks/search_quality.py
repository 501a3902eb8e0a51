"""Search quality: does the search beat hand-set BYOL configs at an equal budget of trial-epochs?

On the embedded shapes data, per seed, each method spends the same ``--budget`` of trial-epochs:

- ``lightly``: lightly's BYOL example settings (``search_spaces/lightly_example.yaml``), one run of
  ``--budget`` epochs. Data keys (dataset, backbone, input standardisation, loader workers) stay ours,
  so every method trains the same small CNN on the same images.
- ``paper``: the BYOL paper's settings scaled to this data: tau 0.996, LARS, base LR 0.2 x batch/256,
  weight decay 1.5e-6, heads 4096-256 / 4096, warm-up 1% of training, the paper's augmentations.
- ``random_asha``, ``tpe_asha``, ``tpe_noes``: the product's search (``build_tuner``: Optuna TPE or random,
  ASHA or none) over ``search_spaces/default.yaml`` (``--space``: another), stopped when the trial-epochs
  reach the budget.
  Trials run as the product's one-worker trials do (``--runner trial``: in the Tune trial's process).

Every evaluation (one per epoch) is an event; the curve is best-so-far ``knn_top1`` against cumulative
trial-epochs. The best config of ``random_asha`` (what the default search does: its trials are all
TPE's random start-up trials) is retrained with another seed; ``tpe_asha`` and ``tpe_noes`` model the
results after 3 and 2 random trials (``TPE_STARTUP``); under ASHA, TPE is told each trial's score at the
first rung (``RungOptunaSearch``). The ``tpe_asha_last-seed*.json`` files of the round-3 folders are
``tpe_asha`` runs from before that (Optuna told each trial's last epoch), kept for comparison, with their
method renamed. One JSON per (method, seed) goes
to ``--out`` as soon as it is done, so a run can be split over processes and resumed (done files are kept).
``make_results.py`` turns the folder into a table and plots in RESULTS.md.

Run: ``python benchmarks/search_quality.py`` (5 seeds; about 25 minutes on 2 CPU cores here on 2026-11-24,
in two shells with ``--threads 1``, the second with ``--reverse``, to use both cores). Longer searches, TPE
against random only: ``--budget 48 --num-samples 24 --methods random_asha tpe_asha --out
benchmarks/results/search_quality_long``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from benchutil import machine
from ray.tune import Stopper

from byol_tune import metrics
from byol_tune.config import make_config
from byol_tune.core.fit import FitResult, fit
from byol_tune.search.ray_train import Resources, init_ray
from byol_tune.search.space import load_space
from byol_tune.search.tuner import SearchSettings, build_tuner, trial_overrides

FIXED = ("lightly", "paper")
SEARCHES = {"random_asha": ("random", "asha"), "tpe_asha": ("tpe", "asha"), "tpe_noes": ("tpe", "none")}
METHODS = (*FIXED, *SEARCHES)
DATA_KEYS = {"dataset", "data_dir", "image_size", "backbone", "small_image_stem", "input_norm", "num_workers"}
RETRAIN_SEED_OFFSET = 100
RETRAINED = "random_asha"  # what the default search does: its 10 trials are all TPE's random start-up trials
# TPE's random start-up trials per studied method (random_asha's 10 are the product's default)
TPE_STARTUP = {"random_asha": 10, "tpe_asha": 3, "tpe_noes": 2}
STUDY = {"eval_every": 1, "linear_probe": False}


def fixed_config(method: str, budget: int) -> dict[str, Any]:
    if method == "lightly":
        values = {k: v for k, v in load_space("lightly_example").fixed.items() if k not in DATA_KEYS}
        return {**values, "max_epochs": budget}
    paper = load_space("imagenet_resnet50").fixed
    keep: tuple[str, ...] = (
        "optimizer",
        "lr_scaling",
        "crop_min_scale",
        "saturation",
        "hue",
        "grayscale_p",
        "blur",
    )
    keep += ("solarize_p", "channel_permute_p", "invert_p", "projector_hidden_dim", "projector_out_dim")
    return {
        **{k: paper[k] for k in (*keep, "predictor_hidden_dim")},
        "tau_base": 0.996,
        "learning_rate": 0.2,
        "weight_decay": 1.5e-6,
        "warmup_epochs": 0.01 * budget,  # the paper: 10 of 1000 epochs
        "max_epochs": budget,
    }


class TrialEpochBudget(Stopper):
    """Tune stopper: ends the whole search once the trials together have reported ``budget`` epochs."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.epochs: dict[str, int] = {}  # per trial: the last epoch reported (a trial's end repeats it)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.epochs[trial_id] = max(self.epochs.get(trial_id, 0), int(result.get("epoch", 0)))
        return False

    def stop_all(self) -> bool:
        return sum(self.epochs.values()) >= self.budget


def knn_history(result: FitResult) -> list[float]:
    return [float(row[metrics.KNN_TOP1]) for row in result.history]


def run_fixed(method: str, seed: int, budget: int, workdir: Path) -> dict[str, Any]:
    values = {
        **fixed_config(method, budget),
        **STUDY,
        "seed": seed,
        "output_dir": str(workdir),
        "name": method,
    }
    history = knn_history(fit(make_config(values), progress_bar=False))
    events = [{"trial": method, "epoch": i + 1, metrics.KNN_TOP1: v} for i, v in enumerate(history)]
    trials = [{"trial": method, "params": values, "history": history}]
    return {"events": events, "trials": trials}


def run_search(
    method: str,
    seed: int,
    budget: int,
    workdir: Path,
    threads: int,
    num_samples: int | None = None,
    space_name: str = "default",
) -> dict[str, Any]:
    """One search over ``space_name`` (the default space unless told) until ``budget`` trial-epochs; with
    ASHA it may start ``num_samples`` trials (None: the space's, the product's default search)."""
    searcher, scheduler = SEARCHES[method]
    space = load_space(space_name)
    max_epochs, grace = space.budget["max_epochs"], space.budget["grace_period"]
    settings = SearchSettings(
        # without ASHA, as many full trials as the budget holds
        num_samples=(num_samples or space.budget["num_samples"])
        if scheduler == "asha"
        else max(1, budget // max_epochs),
        max_epochs=max_epochs,
        searcher=searcher,
        scheduler=scheduler,
        grace_period=grace,
        reduction_factor=space.budget["reduction_factor"],
        seed=seed,
        tpe_startup_trials=TPE_STARTUP[method],
    )
    overrides = trial_overrides(settings, STUDY)
    resources = Resources(workers=1, cpus_per_worker=threads, driver_cpus=0, in_trial=True)
    tuner = build_tuner(space, settings, resources, overrides, workdir, method, stop=TrialEpochBudget(budget))
    started, trials = [], []
    for result in tuner.fit():
        frame = result.metrics_dataframe
        if frame is None or metrics.KNN_TOP1 not in frame:
            continue
        name = str((result.metrics or {}).get("trial_id") or Path(result.path).name)
        frame = frame.sort_values("epoch")
        history = [float(v) for v in frame[metrics.KNN_TOP1]]
        params = space.make_config(dict(result.config), overrides).model_dump()
        started.append(float(frame["timestamp"].min()))
        trials.append({"trial": name, "params": params, "sample": dict(result.config), "history": history})
    trials = [t for _, t in sorted(zip(started, trials, strict=True), key=lambda pair: pair[0])]
    # one trial at a time (max_concurrent 1): the events are each trial's epochs, trial after trial
    events = [
        {"trial": t["trial"], "epoch": e + 1, metrics.KNN_TOP1: v}
        for t in trials
        for e, v in enumerate(t["history"])
    ][:budget]
    return {"events": events, "trials": trials, "settings": settings.__dict__, "space": space_name}


def retrain_best(run: dict[str, Any], seed: int, workdir: Path) -> dict[str, Any]:
    """The best trial's config, trained again from scratch with another seed for the space's max epochs."""
    best = max(run["events"], key=lambda e: e[metrics.KNN_TOP1])
    params = next(t["params"] for t in run["trials"] if t["trial"] == best["trial"])
    values = {**params, "seed": seed + RETRAIN_SEED_OFFSET, "output_dir": str(workdir), "name": "retrain"}
    history = knn_history(fit(make_config(values), progress_bar=False))
    return {"seed": values["seed"], "trial": best["trial"], "history": history, "best": max(history)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--budget", type=int, default=24, help="trial-epochs per method and seed")
    parser.add_argument(
        "--num-samples", type=int, default=None, help="trials an ASHA search may start (default: the space's)"
    )
    parser.add_argument(
        "--space",
        default="default",
        help="the searched space: a shipped name or a YAML path (default: default)",
    )
    parser.add_argument("--reverse", action="store_true", help="take the jobs last first (a second shell)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "search_quality"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="run folders (default: a temporary folder)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="search_quality_"))
    if any(m in SEARCHES for m in args.methods):
        init_ray(None, num_cpus=args.threads)
    jobs = [(seed, method) for seed in args.seeds for method in args.methods]
    for seed, method in reversed(jobs) if args.reverse else jobs:
        path = args.out / f"{method}-seed{seed}.json"
        claim = path.with_suffix(".running")
        try:
            claim.touch(exist_ok=False)  # another process works on it, or a killed one did: delete to redo
        except FileExistsError:
            print(f"{claim}: taken, skipped", flush=True)
            continue
        try:
            if path.exists():
                print(f"{path}: done already, kept", flush=True)
                continue
            start = time.perf_counter()
            where = workdir / f"{method}-seed{seed}"
            if method in FIXED:
                run = run_fixed(method, seed, args.budget, where)
            else:
                run = run_search(method, seed, args.budget, where, args.threads, args.num_samples, args.space)
            if method == RETRAINED:
                run["retrain"] = retrain_best(run, seed, where)
            best = max(e[metrics.KNN_TOP1] for e in run["events"])
            run.update(
                method=method,
                seed=seed,
                budget=args.budget,
                best=best,
                machine=machine(torch.device("cpu")),
                minutes=(time.perf_counter() - start) / 60,
                threads=args.threads,
            )
            path.write_text(json.dumps(run, indent=1, default=str))
            print(
                f"{method} seed {seed}: best {metrics.KNN_TOP1} {best:.2f} "
                f"in {len(run['events'])} trial-epochs, {run['minutes']:.1f} min",
                flush=True,
            )
        finally:
            claim.unlink()


if __name__ == "__main__":
    main()
