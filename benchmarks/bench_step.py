"""Benchmark 1: one BYOL training step, model only: our module vs lightly's published BYOL loop.

Both get the same pre-made float views, resnet18 with the small-image stem and no fc (one initial
backbone, copied), lightly's example heads (projector 512-1024-256, predictor 256-1024-256) and plain
SGD at lr 0.06. Ours is the ``BYOL`` LightningModule trained by a Lightning ``Trainer`` (forward of both
views through online and target, symmetric loss, backward, optimizer step, then the module's own EMA);
lightly's is its example loop, written here from lightly's public API: ``update_momentum`` with
``cosine_schedule``, ``BYOLProjectionHead``/``BYOLPredictionHead``, ``NegativeCosineSimilarity``.
Our fast options are measured one at a time and all together; rounds interleave lightly and ours.

``--backbone resnet50`` (ImageNet stem, 224x224 by default; the projector takes its 2048 features) is
issue 5's GPU case beside resnet18 at 32x32. Every variant's model FLOP rate is the FLOPs of one step
(matrix products and convolutions of both views through online and target, forward and backward,
counted once by torch's ``FlopCounterMode`` on lightly's loop, the same maths as ours) over its time;
with a known peak (a GPU in ``benchutil.GPU_BF16_PEAK_TFLOPS``, or ``--peak-tflops``) also its model
FLOP utilisation against the device's dense bf16 peak, float32 variants included.

Run: ``python benchmarks/bench_step.py [--quick] [--json PATH] [--batch-size N] [--compile on]
[--backbone resnet50] [--peak-tflops X]``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import benchutil
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from byol_tune import metrics
from byol_tune.core.module import BYOL
from byol_tune.parts.backbones import build_backbone, feature_dim

LR, TAU_BASE, SCHEDULE = 0.06, 0.996, 10_000
PROJ, PRED = (512, 1024, 256), (256, 1024, 256)


class LightlyBYOL(nn.Module):
    """lightly's BYOL example model: online backbone + heads, target copies frozen; the projector takes
    ``feature_dim`` inputs (resnet18's 512 in lightly's example)."""

    def __init__(self, backbone: nn.Module, feature_dim: int = PROJ[0]) -> None:
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        super().__init__()
        self.backbone = backbone
        self.projection_head = BYOLProjectionHead(feature_dim, *PROJ[1:])
        self.prediction_head = BYOLPredictionHead(*PRED)
        self.backbone_momentum = copy.deepcopy(backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def forward(self, x: Tensor) -> Tensor:
        return self.prediction_head(self.projection_head(self.backbone(x).flatten(start_dim=1)))

    def forward_momentum(self, x: Tensor) -> Tensor:
        y = self.backbone_momentum(x).flatten(start_dim=1)
        return self.projection_head_momentum(y).detach()


def lightly_stepper(
    backbone: nn.Module, device: torch.device, feature_dim: int = PROJ[0]
) -> Callable[[Tensor, Tensor], None]:
    """``step(x0, x1)``: one step of lightly's example loop (EMA first, then the SGD step)."""
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.utils import update_momentum
    from lightly.utils.scheduler import cosine_schedule

    model = LightlyBYOL(backbone, feature_dim).to(device)
    criterion = NegativeCosineSimilarity()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    step = [0]

    def run(x0: Tensor, x1: Tensor) -> None:
        m = cosine_schedule(step[0], SCHEDULE, TAU_BASE, 1.0)
        update_momentum(model.backbone, model.backbone_momentum, m=m)
        update_momentum(model.projection_head, model.projection_head_momentum, m=m)
        p0, z0 = model(x0), model.forward_momentum(x0)
        p1, z1 = model(x1), model.forward_momentum(x1)
        loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        step[0] += 1

    return run


class FloatLoggingBYOL(BYOL):
    """Our module as it was before: tau and lr logged as Python floats, which Lightning copies to the
    device, a blocking host-device sync each on a GPU. Measures what logging CPU tensors saves."""

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self.view_loss(*self.views(batch))
        self.log(metrics.LOSS, loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log(metrics.TAU, self.tau_at(self.trainer.global_step), on_step=True, on_epoch=False)
        self.log(metrics.LR, self.optimizers_lr(), on_step=True, on_epoch=False)
        return loss


def our_module(
    backbone: nn.Module, size: int, compile_backbone: bool = False, float_logging: bool = False, **fast: Any
) -> BYOL:
    """Our module with lightly's example settings (plain SGD, constant lr, no weight decay)."""
    module = (FloatLoggingBYOL if float_logging else BYOL)(
        copy.deepcopy(backbone),
        learning_rate=LR,
        optimizer="sgd",
        sgd_momentum=0.0,
        weight_decay=0.0,
        lr_scheduler=None,
        schedule=SCHEDULE,
        tau_base=TAU_BASE,
        projector_hidden_dim=PROJ[1],
        projector_out_dim=PROJ[2],
        predictor_hidden_dim=PRED[1],
        input_shape=(3, size, size),
        **fast,
    )
    if compile_backbone:  # not a config field: measured slower on CPU (see README), kept here for GPUs
        module.backbone.compile()
        module.backbone_momentum.compile()
    return module


def variants(device: torch.device, compile_on: bool) -> dict[str, tuple[dict[str, Any], str]]:
    """name -> (our_module keyword arguments, Trainer precision). bf16 autocast only where the device
    computes in bfloat16 natively (:func:`benchutil.native_bf16`): a GPU, or a CPU with AMX/AVX512-BF16."""
    cuda = device.type == "cuda"
    out: dict[str, tuple[dict[str, Any], str]] = {
        "ours (defaults)": ({}, "32-true"),
        "ours + channels_last": ({"channels_last": True}, "32-true"),
        "ours + views_as_one_batch": ({"views_as_one_batch": True}, "32-true"),
    }
    if compile_on:
        out["ours + torch.compile"] = ({"compile_backbone": True}, "32-true")
    bf16 = benchutil.native_bf16(device)
    if bf16:  # a numerics change (config ``precision: bf16-mixed``), so a flag, never a default
        out["ours + bf16 autocast"] = ({}, "bf16-mixed")
    if cuda:
        out["ours, tau/lr logged as floats (2 syncs/step)"] = ({"float_logging": True}, "32-true")
    all_on = {"channels_last": True, "views_as_one_batch": True, "compile_backbone": compile_on}
    out["ours, all fast options"] = (all_on, "bf16-mixed" if bf16 else "32-true")
    return out


def main() -> None:
    p = benchutil.parser(__doc__)
    p.add_argument(
        "--backbone",
        choices=("resnet18", "resnet50"),
        default="resnet18",
        help="resnet18 with the small-image stem (lightly's example) or resnet50 with ImageNet's",
    )
    p.add_argument(
        "--batch-size", type=int, help="default: 256 on CUDA (128 for resnet50), 16 on CPU (4), 8 quick (2)"
    )
    p.add_argument("--image-size", type=int, help="default: 32, 224 for resnet50 (16 and 32 with --quick)")
    p.add_argument("--peak-tflops", type=float, help="the device's bf16 peak, for MFU (default: known GPUs)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3 on CPU, 5 on CUDA)")
    p.add_argument("--steps", type=int, help="timed steps per round (default 2 on CPU, 20 on CUDA, 1 quick)")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="auto: on for CUDA only")
    args = p.parse_args()
    device = benchutil.setup(args)
    cuda = device.type == "cuda"
    r50 = args.backbone == "resnet50"
    # defaults (resnet18, resnet50): quick, CUDA, CPU
    batches, sizes = ((8, 2), (256, 128), (16, 4)), ((16, 32), (32, 224), (32, 224))
    case = 0 if args.quick else 1 if cuda else 2
    batch, size = args.batch_size or batches[case][r50], args.image_size or sizes[case][r50]
    rounds = args.rounds or (2 if args.quick else 5 if cuda else 3)
    steps = args.steps or (1 if args.quick else 20 if cuda else 2)
    compile_on = args.compile == "on" or (args.compile == "auto" and cuda)

    backbone = build_backbone(args.backbone, small_image_stem=size < 64)
    dim = feature_dim(backbone, torch.randn(2, 3, size, size))
    x0, x1 = torch.randn(2, batch, 3, size, size, device=device).unbind(0)
    flops = benchutil.count_flops(lambda: lightly_stepper(copy.deepcopy(backbone), device, dim)(x0, x1))
    peak_tflops = benchutil.bf16_peak_tflops(device, args.peak_tflops)
    peer = lightly_stepper(copy.deepcopy(backbone), device, dim)
    ours = {
        name: (our_module(backbone, size, **kwargs).to(device), precision)
        for name, (kwargs, precision) in variants(device, compile_on).items()
    }
    seconds: dict[str, list[float]] = {"lightly (example loop)": [], **{name: [] for name in ours}}
    peak: dict[str, float] = {}
    peer(x0, x1)  # warm-up, untimed
    for module, precision in ours.values():
        loader = DataLoader(benchutil.Repeat((x0, x1), 1), batch_size=None)
        benchutil.fit_seconds_per_step(module, loader, 1, device, precision)
    for r in range(rounds):
        for name in seconds:
            if cuda:  # peak above what is resident (every variant's weights stay on the GPU)
                torch.cuda.reset_peak_memory_stats(device)
                resident = torch.cuda.memory_allocated(device)
            if name in ours:
                module, precision = ours[name]
                loader = DataLoader(benchutil.Repeat((x0, x1), steps), batch_size=None)
                seconds[name].append(benchutil.fit_seconds_per_step(module, loader, steps, device, precision))
            else:
                seconds[name].append(benchutil.time_calls(lambda: peer(x0, x1), steps, device))
            if cuda:
                step_peak = (torch.cuda.max_memory_allocated(device) - resident) / 2**20
                peak[name] = max(peak.get(name, 0.0), step_peak)
            print(f"round {r + 1}/{rounds} {name}: {seconds[name][-1]:.3f} s/step", flush=True)

    peer_times = seconds["lightly (example loop)"]
    figures: dict[str, Any] = {}
    rows = []
    for name, times in seconds.items():
        ratio = benchutil.median([a / b for a, b in zip(peer_times, times, strict=True)])
        sps = 1.0 / benchutil.median(times)
        tflops = flops * sps / 1e12
        figures[name] = {"steps_per_s": sps, "images_per_s": sps * batch, "ratio_to_lightly": ratio}
        figures[name] |= {"seconds_per_round": times, "model_tflops": tflops}
        row = [name, sps, sps * batch, ratio, min(times), max(times), tflops]
        if peak_tflops:
            figures[name]["mfu"] = tflops / peak_tflops
            row.append(f"{100 * tflops / peak_tflops:.1f}%")
        if cuda:
            figures[name]["peak_mib"] = peak[name]
            row.append(peak[name])
        rows.append(row)
    headers = ["variant", "steps/s (median)", "images/s", "ratio to lightly", "min s/step", "max s/step"]
    headers += [
        "model TFLOP/s",
        *(["MFU"] if peak_tflops else []),
        *(["peak MiB above resident"] if cuda else []),
    ]
    markdown = benchutil.table(headers, rows)
    fast = [n for n in ours if n != "ours (defaults)" and "floats" not in n]
    best = max(fast, key=lambda n: figures[n]["ratio_to_lightly"])
    markdown += (
        f"\n\n{args.backbone}, batch {batch} at {size}x{size}, {rounds} rounds x {steps} timed steps, "
        f"device {device}; ratio = median over rounds of (lightly s/step) / (ours s/step); "
        f"{flops / 1e9:,.1f} GFLOP of matrix products and convolutions per step"
        + (f", MFU against a dense bf16 peak of {peak_tflops:g} TFLOP/s" if peak_tflops else "")
        + ".\n"
        f"- defaults: {figures['ours (defaults)']['ratio_to_lightly']:.2f}x lightly (goal >= 1.0)\n"
        f"- best fast option, {best}: {figures[best]['ratio_to_lightly']:.2f}x lightly (goal >= 1.2)"
    )
    settings = {"backbone": args.backbone, "batch_size": batch, "image_size": size, "rounds": rounds}
    settings |= {"steps": steps, "flops_per_step": flops, "peak_tflops": peak_tflops}
    benchutil.report(args, device, "step", {**settings, "compile": compile_on}, markdown, figures)


if __name__ == "__main__":
    main()
