"""kNN top-1 on the embedded shapes: raw pixels, a random-init backbone, BYOL after the default budget.

Run: ``python benchmarks/embedded_baselines.py [--seeds 0 1] [--set key=value ...]``. Prints a Markdown
table; the README's figures come from it. BYOL must beat both baselines by >= 10 points.
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch

from byol_tune import metrics
from byol_tune.config import load_config
from byol_tune.core.build import build_run
from byol_tune.core.data import TensorData
from byol_tune.core.fit import fit
from byol_tune.parts.backbones import InputStandardize
from byol_tune.parts.knn import knn_accuracy


def pixel_knn(bank: TensorData, val: TensorData, k: int, temperature: float, standardise: bool) -> float:
    def flat(x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255
        return (InputStandardize()(x) if standardise else x).flatten(1)

    return knn_accuracy(flat(val.x), val.y, flat(bank.x), bank.y, 10, k, temperature).top1


def random_init_knn(overrides: list[str]) -> float:
    config = load_config(None, overrides)
    L.seed_everything(config.seed, verbose=False)
    parts = build_run(config)
    module = parts.module.eval()
    with torch.no_grad():
        bank = module.embed(parts.splits.bank.x)  # type: ignore[attr-defined]
        val = module.embed(parts.splits.val.x)  # type: ignore[attr-defined]
    bank_y, val_y = parts.splits.bank.y, parts.splits.val.y  # type: ignore[attr-defined]
    return knn_accuracy(val, val_y, bank, bank_y, 10, config.knn_k, config.knn_temperature).top1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--output-dir", default="runs/baselines")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        overrides = [*args.overrides, f"seed={seed}", f"shapes_seed={seed}", f"output_dir={args.output_dir}"]
        config = load_config(None, overrides)
        parts = build_run(config)
        bank, val = parts.splits.bank, parts.splits.val
        assert isinstance(bank, TensorData) and isinstance(val, TensorData)
        k, t = config.knn_k, config.knn_temperature
        start = time.perf_counter()
        result = fit(config, progress_bar=False)
        minutes = (time.perf_counter() - start) / 60
        rows.append(
            (
                seed,
                pixel_knn(bank, val, k, t, standardise=False),
                pixel_knn(bank, val, k, t, standardise=True),
                random_init_knn(overrides),
                result.metrics[metrics.KNN_TOP1],
                result.metrics.get(metrics.LINEAR_TOP1, float("nan")),
                config.max_epochs,
                minutes,
            )
        )
    print(
        "| seed | raw pixels | raw pixels (standardised) | random-init backbone | BYOL kNN | BYOL linear "
        "| epochs | minutes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for seed, raw, raw_std, rand, byol, linear, epochs, minutes in rows:
        print(
            f"| {seed} | {raw:.1f} | {raw_std:.1f} | {rand:.1f} | {byol:.1f} | {linear:.1f} | {epochs} "
            f"| {minutes:.1f} |"
        )
    for row in rows:
        margin = row[4] - max(row[1], row[2], row[3])
        print(f"seed {row[0]}: BYOL beats the best baseline by {margin:.1f} points (goal: >= 10)")


if __name__ == "__main__":
    main()
