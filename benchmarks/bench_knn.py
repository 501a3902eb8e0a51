"""Benchmark 4: kNN evaluation, alone and as a share of training.

1. The classifier (``knn_accuracy``: weighted kNN, k=200, T=0.1, chunked) on a 50,000 x 512 bank with
   10,000 queries: time (median of ``REPEATS`` calls; the first call, which also pays for fresh memory,
   is shown apart) and peak memory (CUDA: allocator peak; CPU: growth of the peak RSS).
2. A whole evaluation (clean features of bank and val + kNN + RankMe, what the kNN callback does) as a
   share of a training epoch, on the embedded data's sizes with the default config, and at CIFAR-10 size
   (resnet18, small stem) with ``configs/cifar10_resnet18.yaml``. Images are random uint8 of the right
   shapes (timing does not depend on content; generating the shapes takes minutes on a CPU). Epochs
   and the CIFAR-size feature extraction are estimated from measured steps and a measured subset;
   the output says which figures are estimates. Features, RankMe and kNN each take the median of
   ``REPEATS`` timed calls: the callback runs every ``eval_every`` epochs, so its steady state counts.

Run: ``python benchmarks/bench_knn.py [--quick] [--json PATH]``.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from typing import Any, TypeVar

import benchutil
import torch

from byol_tune.config import BYOLConfig, load_config
from byol_tune.core.build import build_module
from byol_tune.core.data import BYOLDataModule, DataInfo, DataSplits, TensorData, build_augment
from byol_tune.core.knn_callback import embed_split
from byol_tune.parts.knn import knn_accuracy
from byol_tune.parts.rankme import rankme

REPEATS = 3
T = TypeVar("T")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def knn_classifier(n_bank: int, n_query: int, dim: int, device: torch.device) -> dict[str, float]:
    """Seconds (median of ``REPEATS`` calls, the first included) and peak extra memory (first call) of
    ``knn_accuracy``; run first: RSS peaks are monotone."""
    g = torch.Generator().manual_seed(0)
    bank, query = torch.randn(n_bank, dim, generator=g), torch.randn(n_query, dim, generator=g)
    bank_y, query_y = (
        torch.randint(0, 10, (n_bank,), generator=g),
        torch.randint(0, 10, (n_query,), generator=g),
    )
    bank, query, bank_y, query_y = (t.to(device) for t in (bank, query, bank_y, query_y))
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def call() -> None:
        knn_accuracy(query, query_y, bank, bank_y, 10)

    first = benchutil.time_calls(call, 1, device)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    else:
        peak = peak_rss_mib() - before
    seconds = benchutil.median([first] + [benchutil.time_calls(call, 1, device) for _ in range(REPEATS - 1)])
    return {
        "seconds": seconds,
        "first_call_seconds": first,
        "peak_extra_mib": peak,
        "inputs_mib": (n_bank + n_query) * dim * 4 / 2**20,
    }


def timed(fn: Callable[[], T], device: torch.device) -> tuple[float, T]:
    """Median seconds of ``REPEATS`` calls of ``fn``, and the last call's result."""
    seconds = []
    for _ in range(REPEATS):
        start = benchutil.clock(device)
        result = fn()
        seconds.append(benchutil.clock(device) - start)
    return benchutil.median(seconds), result


def random_split(n: int, size: int) -> TensorData:
    return TensorData(
        torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8), torch.randint(0, 10, (n,))
    )


def setting(
    config: BYOLConfig, n_train: int, n_val: int, *, batch: int, steps: int, subset: int | None,
    knn_seconds: float | None, device: torch.device,
) -> dict[str, Any]:  # fmt: skip
    """Seconds of a training epoch (from ``steps`` measured steps at ``batch``) and of one evaluation:
    features of ``subset`` images (scaled to all), RankMe and kNN (measured unless ``knn_seconds``)."""
    info = DataInfo((3, 32, 32), 10, (0.5,) * 3, (0.25,) * 3, is_image=True)
    module = build_module(config, info, build_augment(config, info)).to(device)
    train = random_split(batch * steps, 32)
    loader = BYOLDataModule(DataSplits(train, train, train, info, True), batch).train_dataloader()
    benchutil.fit_seconds_per_step(module, loader, 1, device, config.precision)  # warm-up
    step = benchutil.fit_seconds_per_step(module, loader, steps, device, config.precision)
    epoch = step / batch * (n_train // config.batch_size) * config.batch_size  # per image at `batch`
    module.eval()
    n_embed = min(subset or n_train + n_val, n_train + n_val)
    images = random_split(n_embed, 32)
    embed, (feats, labels) = timed(lambda: embed_split(module, images, range(n_embed)), device)
    embed *= (n_train + n_val) / n_embed
    idx = torch.arange(n_train + n_val, device=feats.device) % n_embed  # a subset's features, repeated
    bank, val = feats[idx[:n_train]], feats[idx[n_train:]]
    rank_s, _ = timed(lambda: rankme(val.cpu()), device)
    if knn_seconds is None:
        bank_y, val_y = labels[idx[:n_train]], labels[idx[n_train:]]
        knn_seconds, _ = timed(lambda: knn_accuracy(val, val_y, bank, bank_y, 10, config.knn_k), device)
    evaluation = embed + rank_s + knn_seconds
    return {
        "epoch_seconds": epoch,
        "eval_seconds": evaluation,
        "features_seconds": embed,
        "knn_seconds": knn_seconds,
        "rankme_seconds": rank_s,
        "eval_every": config.eval_every,
        "knn_share_of_eval": knn_seconds / evaluation,
        "eval_per_training_time": evaluation / (epoch * config.eval_every),
        "measured_batch": batch,
        "measured_steps": steps,
        "embedded_subset": n_embed,
    }


def main() -> None:
    args = benchutil.parser(__doc__).parse_args()
    device = benchutil.setup(args)
    cuda, quick = device.type == "cuda", args.quick
    n_bank, n_query = (5_000, 1_000) if quick else (50_000, 10_000)
    knn = knn_classifier(n_bank, n_query, 512, device)
    full_knn = knn["seconds"] * (50_000 * 10_000) / (n_bank * n_query)  # = measured when not --quick

    emb = load_config(None, ["shapes_train_size=500", "shapes_val_size=100"] if quick else [])
    cifar = load_config("cifar10_resnet18", ["data_dir=unused"])
    batch = cifar.batch_size if cuda else 8 if quick else 16
    results = {
        "embedded (default config)": setting(
            emb, emb.shapes_train_size, emb.shapes_val_size, batch=emb.batch_size,
            steps=1 if quick else 3, subset=None, knn_seconds=None, device=device,
        ),
        "CIFAR-10 size (cifar10_resnet18)": setting(
            cifar, 50_000, 10_000, batch=batch, steps=1 if quick else 2,
            subset=256 if quick else None if cuda else 512, knn_seconds=full_knn, device=device,
        ),
    }  # fmt: skip
    knn_cols = ("seconds", "first_call_seconds", "peak_extra_mib", "inputs_mib")
    knn_headers = ["kNN classifier (k=200, chunk 1024)", "bank", "queries", "seconds", "first call s"]
    markdown = benchutil.table(
        [*knn_headers, "peak extra MiB", "inputs MiB"],
        [("knn_accuracy", f"{n_bank} x 512", n_query, *(knn[k] for k in knn_cols))],
    )
    cols = ("epoch_seconds", "eval_seconds", "features_seconds", "knn_seconds")
    rows = [
        (name, *(r[k] for k in cols), f"{100 * r['knn_share_of_eval']:.1f}%", r["eval_every"],
         f"{100 * r['eval_per_training_time']:.1f}%")
        for name, r in results.items()
    ]  # fmt: skip
    headers = [
        "data",
        "epoch s",
        "eval s",
        "features s",
        "kNN s",
        "kNN / eval",
        "eval_every",
        "eval / training",
    ]
    emb_r, cifar_r = results.values()
    scaled = ", scaled to 50,000 x 10,000" if quick else ""
    notes = [
        f"Device {device}; eval / training = one evaluation / (eval_every epochs of training); features, "
        f"RankMe and both kNN figures: median of {REPEATS} calls each.",
        f"Estimated: embedded epoch from {emb_r['measured_steps']} measured steps ({emb.shapes_train_size} "
        f"train / {emb.shapes_val_size} val images); CIFAR epoch from {cifar_r['measured_steps']} steps at "
        f"batch {batch} scaled per image; CIFAR features from {cifar_r['embedded_subset']} images scaled to "
        f"60,000; CIFAR kNN = the classifier above{scaled}.",
        f"- kNN / evaluation: {100 * emb_r['knn_share_of_eval']:.1f}% embedded, "
        f"{100 * cifar_r['knn_share_of_eval']:.1f}% CIFAR size (goal <= 10%)",
        f"- evaluation / training at the default eval_every: {100 * emb_r['eval_per_training_time']:.1f}%"
        f" embedded, {100 * cifar_r['eval_per_training_time']:.1f}% CIFAR size (goal <= 10%)",
    ]
    markdown += "\n\n" + benchutil.table(headers, rows) + "\n\n" + "\n".join(notes)
    figures = {"knn_classifier": knn, **results}
    settings = {"bank": n_bank, "queries": n_query, "dim": 512, "cifar_measured_batch": batch}
    benchutil.report(args, device, "knn", settings, markdown, figures)


if __name__ == "__main__":
    main()
