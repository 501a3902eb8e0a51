"""Ray overhead (issue 5, item 5): one fixed config trained by the plain trainer and as Tune trials.

Per-trial overhead = (search wall time - the plain trainer's wall time x trials) / trials, with the Ray
cluster's start-up timed apart. Trials run one at a time (the default concurrency) through each runner:
in the Tune trial's own process (``--runner trial``, the default for one worker), through a
``TorchTrainer`` with one worker (``--runner train``), and through a ``TorchTrainer`` with two DDP workers
sharing the machine. Search wall time should grow linearly with the number of trials.
``--long-epochs N`` also times one in-trial trial of N epochs against the plain trainer (a ~3-minute
trial was N=24 on a 2-core AVX2 machine, N=54 on a 2-core AMX one), ``--long-rounds`` times
interleaved, the median ratio reported.
Run: ``python benchmarks/bench_ray.py [--epochs 2] [--trials 1 3] [--long-epochs 24]``.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import benchutil
import torch
import yaml
from make_results import LONG_TRIAL_GOAL

from byol_tune.config import make_config
from byol_tune.core.fit import fit
from byol_tune.search.ray_train import Resources, init_ray
from byol_tune.search.space import SearchSpace, load_space
from byol_tune.search.tuner import SearchSettings, build_tuner, trial_overrides


def plain_seconds(fixed: dict[str, Any], epochs: int, folder: Path) -> float:
    config = make_config({**fixed, "max_epochs": epochs, "output_dir": str(folder / f"plain{epochs}")})
    start = time.perf_counter()
    fit(config, progress_bar=False)
    return time.perf_counter() - start


def search_seconds(space: SearchSpace, epochs: int, trials: int, resources: Resources, folder: Path) -> float:
    settings = SearchSettings(num_samples=trials, max_epochs=epochs, scheduler="none", searcher="random")
    name = f"{'trial' if resources.in_trial else 'train'}{resources.workers}_{epochs}e_{trials}t"
    tuner = build_tuner(space, settings, resources, trial_overrides(settings, {}), folder, name)
    start = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - start


def main() -> None:
    p = benchutil.parser(__doc__)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--trials", type=int, nargs="+", default=[1, 3])
    p.add_argument("--long-epochs", type=int, default=0, help="also time one trial this long (0: skip)")
    p.add_argument("--long-rounds", type=int, default=3, help="plain/trial pairs for --long-epochs")
    args = p.parse_args()
    import ray

    device = benchutil.setup(args)
    epochs, trial_counts = (1, [1, 2]) if args.quick else (args.epochs, args.trials)
    fixed: dict[str, Any] = {"eval_every": 1, "linear_probe": False}
    if args.quick:
        fixed.update(shapes_train_size=512, shapes_val_size=128, knn_k=20)
    folder = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    plain = plain_seconds(fixed, epochs, folder)
    space_file = folder / "fixed.yaml"
    space_file.write_text(yaml.safe_dump({"space": fixed}))
    space = load_space(space_file)

    start = time.perf_counter()
    init_ray(None, num_cpus=max(1, int(torch.get_num_threads())))
    cluster = time.perf_counter() - start
    figures: dict[str, Any] = {"plain_seconds": plain, "cluster_start_seconds": cluster, "searches": []}
    rows: list[list[object]] = []
    try:
        cpus = ray.cluster_resources()["CPU"]
        one = round(cpus - 0.1, 1)
        runners = [
            ("in the trial process, 1 worker", Resources(workers=1, cpus_per_worker=one, in_trial=True)),
            ("TorchTrainer, 1 worker", Resources(workers=1, cpus_per_worker=one)),
            ("TorchTrainer, 2 DDP workers", Resources(workers=2, cpus_per_worker=math.floor(5 * one) / 10)),
        ]
        for label, resources in runners:
            for n in trial_counts:
                wall = search_seconds(space, epochs, n, resources, folder)
                per_trial = (wall - n * plain) / n
                rows.append(
                    [label, resources.torch_threads(), n, wall, n * plain, per_trial, wall / (n * plain)]
                )
                figures["searches"].append(
                    {"runner": label, "trials": n, "wall_seconds": wall, "overhead_per_trial": per_trial}
                )
        long_text = ""
        if args.long_epochs:
            # plain and trial interleaved, round after round, on the running cluster: its background
            # processes weigh on both, and a slow minute of a shared machine lands in one round only
            rounds = []
            for i in range(args.long_rounds):
                long_plain = plain_seconds(fixed, args.long_epochs, folder / f"round{i}")
                long_wall = search_seconds(space, args.long_epochs, 1, runners[0][1], folder / f"round{i}")
                rounds.append({"plain_seconds": long_plain, "wall_seconds": long_wall})
            ratio = statistics.median(r["wall_seconds"] / r["plain_seconds"] for r in rounds)
            figures["long"] = {"epochs": args.long_epochs, "rounds": rounds, "ratio": ratio}
            each = "; ".join(f"{r['wall_seconds']:.0f} s against {r['plain_seconds']:.0f} s" for r in rounds)
            long_text = (
                f"\n\nOne {args.long_epochs}-epoch trial in the trial process against the plain trainer, "
                f"{len(rounds)} rounds ({each}): **{ratio:.2f}x** median (goal <= {LONG_TRIAL_GOAL:.2f}x)."
            )
    finally:
        ray.shutdown()
    in_trial = [s["overhead_per_trial"] for s in figures["searches"] if s["runner"] == runners[0][0]]
    markdown = (
        f"Plain trainer, {epochs} epoch(s) of the embedded default config: {plain:.1f} s. "
        f"Ray cluster start-up (once per search): {cluster:.1f} s.\n\n"
        + benchutil.table(
            [
                "runner",
                "threads/worker",
                "trials",
                "search wall s",
                "plain x trials s",
                "overhead per trial s",
                "wall / plain",
            ],
            rows,
        )
        + f"\n\n- Overhead per trial, default runner (in the trial process): {max(in_trial):.1f} s at most "
        f"(goal <= 10 s)." + long_text
    )
    settings_out = {
        "epochs": epochs,
        "trials": trial_counts,
        "long_epochs": args.long_epochs,
        "long_rounds": args.long_rounds,
    }
    benchutil.report(args, device, "ray", settings_out, markdown, figures)


if __name__ == "__main__":
    main()
