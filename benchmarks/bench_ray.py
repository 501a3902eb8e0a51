"""Ray overhead (issue 5, item 5): one fixed config trained by the plain trainer and as Tune trials.

Per-trial overhead = (search wall time - the plain trainer's wall time x trials) / trials, with the Ray
cluster's start-up timed apart. Trials run one at a time (the default concurrency), 1 worker each, so
"search wall time" grows linearly with the number of trials if the overhead is constant.
Run: ``python benchmarks/bench_ray.py [--epochs 2] [--trials 1 3]``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import benchutil
import torch
import yaml

from byol_tune.config import make_config
from byol_tune.core.fit import fit
from byol_tune.search.ray_train import Resources, init_ray
from byol_tune.search.space import load_space
from byol_tune.search.tuner import SearchSettings, build_tuner, trial_overrides


def main() -> None:
    p = benchutil.parser(__doc__)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--trials", type=int, nargs="+", default=[1, 3])
    args = p.parse_args()
    import ray

    device = benchutil.setup(args)
    epochs, trial_counts = (1, [1, 2]) if args.quick else (args.epochs, args.trials)
    fixed = {"eval_every": 1, "linear_probe": False}
    if args.quick:
        fixed.update(shapes_train_size=512, shapes_val_size=128, knn_k=20)
    folder = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    config = make_config({**fixed, "max_epochs": epochs, "output_dir": str(folder / "plain")})
    start = time.perf_counter()
    fit(config, progress_bar=False)
    plain = time.perf_counter() - start

    space_file = folder / "fixed.yaml"
    space_file.write_text(yaml.safe_dump({"space": fixed}))
    space = load_space(space_file)
    start = time.perf_counter()
    init_ray(None, num_cpus=max(1, int(torch.get_num_threads())))
    cluster = time.perf_counter() - start
    rows, figures = [], {"plain_seconds": plain, "cluster_start_seconds": cluster, "searches": []}
    try:
        cpus = ray.cluster_resources()["CPU"]
        resources = Resources(workers=1, cpus_per_worker=round(cpus - 0.1, 1))
        for n in trial_counts:
            settings = SearchSettings(num_samples=n, max_epochs=epochs, scheduler="none", searcher="random")
            tuner = build_tuner(space, settings, resources, trial_overrides(settings, {}), folder, f"s{n}")
            start = time.perf_counter()
            tuner.fit()
            wall = time.perf_counter() - start
            per_trial = (wall - n * plain) / n
            rows.append([n, wall, n * plain, per_trial, wall / (n * plain)])
            figures["searches"].append({"trials": n, "wall_seconds": wall, "overhead_per_trial": per_trial})
    finally:
        ray.shutdown()
    markdown = (
        f"Plain trainer, {epochs} epoch(s) of the embedded default config: {plain:.1f} s. "
        f"Ray cluster start-up (once per search): {cluster:.1f} s.\n\n"
        + benchutil.table(
            ["trials", "search wall s", "plain x trials s", "overhead per trial s", "wall / plain"], rows
        )
        + "\n\nGoal: overhead per trial <= 10 s."
    )
    settings_out = {"epochs": epochs, "trials": trial_counts, "workers_per_trial": 1}
    benchutil.report(args, device, "ray", settings_out, markdown, figures)


if __name__ == "__main__":
    main()
