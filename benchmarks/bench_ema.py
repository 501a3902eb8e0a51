"""Benchmark 3: the EMA update of the target network (resnet18 + projector).

Ours: ``byol_tune.parts.momentum.TargetUpdate``, what the BYOL module runs after every optimizer step:
one fused ``_foreach_lerp_`` over the parameters (float32 on the CPU: with one shared 0-dim weight)
plus one fused ``_foreach_copy_`` of the buffers (BatchNorm statistics), over tensor lists gathered
once. ``momentum.update_momentum`` (the lightly-style function) gathers them on every call. lightly 1.6:
``lightly.models.utils.update_momentum``, ``_foreach_mul_`` then ``_foreach_add_`` (parameters only,
gathered every call). All update the same online/target pair, alternating, so they touch the same
memory; "parameters only" is the scalar-weight ``_foreach_lerp_`` alone, without the buffer copy.

Run: ``python benchmarks/bench_ema.py [--quick] [--json PATH] [--projector-hidden 4096]``.
"""

from __future__ import annotations

import copy
from typing import Any

import benchutil
import torch
from torch import nn

from byol_tune.parts import momentum
from byol_tune.parts.backbones import build_backbone
from byol_tune.parts.heads import MLPHead

M = 0.996


@torch.no_grad()
def params_only(online: nn.Module, target: nn.Module, m: float) -> None:
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), 1.0 - m)


def main() -> None:
    p = benchutil.parser(__doc__)
    p.add_argument("--projector-hidden", type=int, default=1024, help="lightly's example: 1024")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 9)")
    p.add_argument("--calls", type=int, help="updates per round and contender (default 20)")
    args = p.parse_args()
    device = benchutil.setup(args)
    from lightly.models.utils import update_momentum as lightly_update

    rounds = args.rounds or (3 if args.quick else 9)
    calls = args.calls or (3 if args.quick else 20)
    online = nn.Sequential(
        build_backbone("resnet18", small_image_stem=True), MLPHead(512, args.projector_hidden, 256)
    ).to(device)
    target = copy.deepcopy(online)
    n_params = sum(t.numel() for t in online.parameters())
    n_buffers = sum(t.numel() for t in online.buffers())
    module_update = momentum.TargetUpdate([(online, target)])
    contenders = {
        "lightly update_momentum": lambda: lightly_update(online, target, M),
        "ours, the module's TargetUpdate": lambda: module_update(M),
        "ours update_momentum (gathers every call)": lambda: momentum.update_momentum(online, target, M),
        "ours, parameters only (lerp)": lambda: params_only(online, target, M),
    }
    for fn in contenders.values():  # warm-up
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            seconds[name].append(benchutil.time_calls(fn, calls, device))

    peer = seconds["lightly update_momentum"]
    figures: dict[str, Any] = {"parameters": n_params, "buffer_values": n_buffers}
    rows = []
    for name, times in seconds.items():
        ratio = benchutil.median([a / b for a, b in zip(peer, times, strict=True)])
        ms = benchutil.median(times) * 1e3
        figures[name] = {"ms_per_update": ms, "ratio_to_lightly": ratio, "seconds_per_round": times}
        rows.append((name, ms, ratio, min(times) * 1e3, max(times) * 1e3))
    markdown = benchutil.table(["EMA update", "ms (median)", "ratio to lightly", "min ms", "max ms"], rows)
    ours = figures["ours, the module's TargetUpdate"]["ratio_to_lightly"]
    markdown += (
        f"\n\nresnet18 (small-image stem) + projector 512-{args.projector_hidden}-256: "
        f"{n_params / 1e6:.2f} M parameters, {n_buffers / 1e3:.1f} k buffer values; {rounds} rounds x "
        f"{calls} updates, device {device}.\n- ours (the module's update): {ours:.2f}x lightly (goal >= 1.5)"
    )
    settings = {"projector_hidden": args.projector_hidden, "rounds": rounds, "calls": calls}
    benchutil.report(args, device, "ema", settings, markdown, figures)


if __name__ == "__main__":
    main()
