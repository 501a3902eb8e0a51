"""Benchmark 2: end to end, uint8 images in memory -> two augmented views -> training step.

lightly's pipeline: a torch ``DataLoader`` with ``--workers`` worker processes over PIL images (as
torchvision's CIFAR-10 dataset serves them) with ``BYOLTransform`` (blur off at 32x32, as lightly's
example), then its example loop (``bench_step.lightly_stepper``). Ours: the package's own data path,
``BYOLDataModule`` over ``TensorData`` (a whole uint8 batch per fetch, same number of workers) and the
batched on-device ``TwoViewAugment`` inside the module's training step. Both loaders keep their workers
between rounds; every round starts a fresh iterator and an untimed warm-up step. Our model-only rate
(pre-made float views) is measured in the same rounds, for "ours end to end / ours model only". Where
the device computes bfloat16 natively (a GPU, or a CPU with AMX/AVX512-BF16), ours runs once more with
bf16 autocast, end to end and model only; lightly's example loop has no such option and stays float32.
``--backbone small_cnn`` swaps resnet18 for the embedded default config's backbone (both pipelines, with
lightly's example heads as above): about 90x the images per second of resnet18's model-only rate on a
2-core CPU, so the augmentation's share of a step shows.

Run: ``python benchmarks/bench_e2e.py [--quick] [--json PATH] [--workers N] [--batch-size N]
[--backbone small_cnn]``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import benchutil
import lightning as L
import numpy as np
import torch
from bench_step import lightly_stepper, our_module
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from byol_tune.core.data import CIFAR_MEAN, CIFAR_STD, BYOLDataModule, DataInfo, DataSplits, TensorData
from byol_tune.parts.backbones import build_backbone, feature_dim
from byol_tune.parts.transforms import TwoViewAugment, byol_view_params


class PilImages(Dataset):
    """uint8 HWC images served as PIL images through a transform, as torchvision's CIFAR10 does."""

    def __init__(self, images: np.ndarray, transform: Callable[[Image.Image], Any]) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.transform(Image.fromarray(self.images[index])), 0


def lightly_loader(images: Tensor, size: int, batch: int, workers: int) -> DataLoader:
    from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform

    transform = BYOLTransform(
        view_1_transform=BYOLView1Transform(input_size=size, gaussian_blur=0.0),
        view_2_transform=BYOLView2Transform(input_size=size, gaussian_blur=0.0),
    )
    hwc = images.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, 3)
    return DataLoader(
        PilImages(hwc, transform),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def lightly_round(
    loader: DataLoader, steps: int, device: torch.device, step: Callable[[Tensor, Tensor], None]
) -> float:
    """Seconds per step of a fresh iterator, from the first step (first fetch excluded, as for ours)
    to the end of the last, later fetches included."""
    batches = iter(loader)
    (x0, x1), _ = next(batches)
    start = benchutil.clock(device)
    for i in range(steps):
        if i > 0:
            (x0, x1), _ = next(batches)
        step(x0.to(device, non_blocking=True), x1.to(device, non_blocking=True))
    return (benchutil.clock(device) - start) / steps


def main() -> None:
    p = benchutil.parser(__doc__)
    p.add_argument("--batch-size", type=int, help="default: 16 on CPU, 256 on CUDA (8 with --quick)")
    p.add_argument("--image-size", type=int, default=32, help="stored and view size")
    p.add_argument("--workers", type=int, help="DataLoader workers for both (default: min(8, CPUs))")
    p.add_argument(
        "--backbone",
        choices=("resnet18", "small_cnn"),
        default="resnet18",
        help="resnet18 (small-image stem, lightly's example) or small_cnn (the embedded default config's)",
    )
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3, 5 on CUDA)")
    p.add_argument("--steps", type=int, help="timed steps per round (default 2, 20 on CUDA)")
    args = p.parse_args()
    device = benchutil.setup(args)
    cuda = device.type == "cuda"
    batch = args.batch_size or (8 if args.quick else 256 if cuda else 16)
    size = 16 if args.quick and args.image_size == 32 else args.image_size
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    rounds = args.rounds or (2 if args.quick else 5 if cuda else 3)
    steps = args.steps or (2 if args.quick else 20 if cuda else 2)
    n_images = batch * steps * 2
    images = torch.randint(0, 256, (n_images, 3, size, size), dtype=torch.uint8)

    options = {"small_image_stem": True} if args.backbone == "resnet18" else {}
    backbone = build_backbone(args.backbone, **options)
    dim = feature_dim(backbone, images[:2].float())
    peer = lightly_stepper(copy.deepcopy(backbone), device, dim)
    peer_loader = lightly_loader(images, size, batch, workers)
    augment = TwoViewAugment(*byol_view_params(size, blur=False), mean=CIFAR_MEAN, std=CIFAR_STD)
    e2e = our_module(backbone, size, augment=augment).to(device)
    compiled = TwoViewAugment(
        *byol_view_params(size, blur=False), mean=CIFAR_MEAN, std=CIFAR_STD, compiled=True
    )
    e2e_compiled = our_module(backbone, size, augment=compiled).to(device)
    model_only = our_module(backbone, size).to(device)
    data = TensorData(images, torch.zeros(n_images, dtype=torch.long))
    info = DataInfo((3, size, size), 1, CIFAR_MEAN, CIFAR_STD, is_image=True)
    splits = DataSplits(data, data, data, info, True)
    our_loader = benchutil.KeepWorkers(BYOLDataModule(splits, batch, workers).train_dataloader())
    # our default (num_workers: 0): for in-memory data a batch is one slice, fetched in the main process
    main_loader = benchutil.KeepWorkers(BYOLDataModule(splits, batch).train_dataloader())
    premade = torch.randn(2, batch, 3, size, size, device=device).unbind(0)

    peer_name, e2e_name, model_name = (
        "lightly (DataLoader + BYOLTransform)",
        "ours (on-device TwoViewAugment)",
        "ours, model only",
    )
    in_main = ", batches fetched in the main process (our default `num_workers: 0`)"
    compiled_name = "ours, compiled augmentation (`compile_augment: true`)"
    # name -> (module, its loader or None for the pre-made views, Trainer precision); bf16 where the device
    # computes it natively
    ours: dict[str, tuple[L.LightningModule, benchutil.KeepWorkers | None, str]] = {
        e2e_name: (e2e, our_loader, "32-true"),
        e2e_name + in_main: (e2e, main_loader, "32-true"),
        compiled_name: (e2e_compiled, our_loader, "32-true"),
        compiled_name + in_main: (e2e_compiled, main_loader, "32-true"),
        model_name: (model_only, None, "32-true"),
    }
    bf16 = benchutil.native_bf16(device)
    if bf16:
        e2e_bf16 = our_module(backbone, size, augment=augment).to(device)
        ours[e2e_name + ", bf16 autocast"] = (e2e_bf16, our_loader, "bf16-mixed")
        ours[model_name + ", bf16 autocast"] = (
            our_module(backbone, size).to(device),
            None,
            "bf16-mixed",
        )
    seconds: dict[str, list[float]] = {name: [] for name in (peer_name, *ours)}
    for r in range(rounds + 1):  # round 0: untimed warm-up of all
        n = steps if r else 1
        times = [lightly_round(peer_loader, n, device, peer)]
        for module, loader, precision in ours.values():
            views = loader or DataLoader(benchutil.Repeat(premade, n), batch_size=None)
            times.append(benchutil.fit_seconds_per_step(module, views, n, device, precision))
        if r == 0:
            continue
        for name, t in zip(seconds, times, strict=True):
            seconds[name].append(t)
        print(f"round {r}/{rounds}: " + ", ".join(f"{t:.3f} s/step" for t in times), flush=True)

    rate = {name: batch / benchutil.median(times) for name, times in seconds.items()}

    def ratio_of(slow: str, fast: str) -> float:
        return benchutil.median([a / b for a, b in zip(seconds[slow], seconds[fast], strict=True)])

    ratio, fraction = ratio_of(peer_name, e2e_name), ratio_of(model_name, e2e_name)
    # the other end-to-end variants: figure-key suffix, how the summary names it, row name
    variants = [
        ("main_process", "ours, batches fetched in the main process", e2e_name + in_main),
        ("compiled", "ours with the compiled augmentation", compiled_name),
        ("compiled_main_process", "both", compiled_name + in_main),
    ]
    variant_figures: dict[str, float] = {}
    for key, _, name in variants:
        variant_figures[f"ratio_to_lightly_{key}"] = ratio_of(peer_name, name)
        variant_figures[f"fraction_of_model_only_{key}"] = ratio_of(model_name, name)
    rows = [(name, rate[name], min(seconds[name]), max(seconds[name])) for name in seconds]
    markdown = benchutil.table(["pipeline", "images/s (median)", "min s/step", "max s/step"], rows)
    markdown += (
        f"\n\n{args.backbone}, batch {batch}, {size}x{size} uint8 images in memory, {workers} DataLoader "
        f"workers each, {rounds} rounds x {steps} timed steps, device {device}.\n"
        f"- ours end to end: {ratio:.2f}x lightly's pipeline (goal >= 1.25)\n"
        f"- ours end to end: {fraction:.2f} of our own model-only rate (goal >= 0.9)"
    )
    for key, label, _ in variants:
        markdown += (
            f"\n- {label}: {variant_figures[f'ratio_to_lightly_{key}']:.2f}x lightly's pipeline, "
            f"{variant_figures[f'fraction_of_model_only_{key}']:.2f} of our own model-only rate"
        )
    markdown += f" (in the main process: ours only; lightly keeps its {workers} workers)"
    bf16_figures = {}
    if bf16:
        bf16_figures = {
            "ratio_to_lightly_bf16": ratio_of(peer_name, e2e_name + ", bf16 autocast"),
            "fraction_of_model_only_bf16": ratio_of(
                model_name + ", bf16 autocast", e2e_name + ", bf16 autocast"
            ),
        }
        markdown += (
            f"\n- ours end to end with bf16 autocast (`precision: bf16-mixed`; lightly's example loop stays "
            f"float32): {bf16_figures['ratio_to_lightly_bf16']:.2f}x lightly's pipeline\n"
            f"- ours end to end with bf16 autocast: {bf16_figures['fraction_of_model_only_bf16']:.2f} of our "
            "own bf16 model-only rate"
        )
    figures = {
        "images_per_s": rate,
        "seconds_per_round": seconds,
        "ratio_to_lightly": ratio,
        "fraction_of_model_only": fraction,
        **variant_figures,
        **bf16_figures,
    }
    settings = {
        "backbone": args.backbone,
        "batch_size": batch,
        "image_size": size,
        "workers": workers,
        "rounds": rounds,
        "steps": steps,
    }
    benchutil.report(args, device, "e2e", settings, markdown, figures)


if __name__ == "__main__":
    main()
