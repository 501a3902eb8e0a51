"""Shared by the benchmark scripts: device choice, machine description, timing, tables and JSON.

Timing rules (issue 5): peer and ours run interleaved in one process over several rounds and the median
is reported, because the machines are shared and noisy. On CUDA the clock is read after a synchronize,
only at the edges of a timed window, so the measurement adds no host syncs inside it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import logging
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset


def parser(description: str | None) -> argparse.ArgumentParser:
    """The flags every script takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run of a few seconds")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--seed", type=int, default=0)
    return p


def setup(args: argparse.Namespace) -> torch.device:
    """Seed, threads, quiet Lightning; returns cuda if available, else cpu."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # x86 CPU flags of native bfloat16 matrix maths


def cpu_bf16_flags() -> list[str]:
    """Which of :data:`BF16_CPU_FLAGS` this CPU has (Linux's /proc/cpuinfo; none found elsewhere)."""
    with contextlib.suppress(OSError):
        flags = set(Path("/proc/cpuinfo").read_text().split())
        return [f for f in BF16_CPU_FLAGS if f in flags]
    return []


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast can pay on ``device``: a CUDA GPU with bfloat16, or a CPU with AMX or
    AVX512-BF16 (elsewhere oneDNN converts to float32 and back, slower than float32 alone)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(cpu_bf16_flags())


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "cpu_bf16_flags": cpu_bf16_flags(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        info["lightly"] = importlib.metadata.version("lightly")
    return info


# Dense bfloat16 tensor-core peaks in TFLOP/s (NVIDIA's datasheets, without sparsity), matched in this
# order against the GPU's name: the first key the name contains wins ("H100 PCIe" before "H100").
GPU_BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
)


def bf16_peak_tflops(device: torch.device, given: float | None = None) -> float | None:
    """The device's bf16 peak for model FLOP utilisation: ``given`` (``--peak-tflops``) if set, else the
    table's for a known GPU, else None (a CPU, an unknown GPU: MFU is then not reported)."""
    if given is not None:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in GPU_BF16_PEAK_TFLOPS if key in name), None)


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of the matrix products and convolutions ``fn`` runs, backward passes
    included (torch's ``FlopCounterMode``: 2 per multiply-add; elementwise ops not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> float:
    sync(device)
    return time.perf_counter()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def time_calls(fn: Callable[[], object], calls: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` over ``calls`` back-to-back calls."""
    start = clock(device)
    for _ in range(calls):
        fn()
    return (clock(device) - start) / calls


class Repeat(Dataset):
    """The same pre-made batch ``n`` times (use with ``DataLoader(..., batch_size=None)``)."""

    def __init__(self, batch: Any, n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:
        return self.batch


class KeepWorkers:
    """``loader`` handed to Lightning as a plain iterable. Lightning shuts a ``DataLoader``'s workers down
    at the end of every ``fit`` (``CombinedLoader.reset``), persistent or not; a loop like lightly's keeps
    them between rounds. Wrapped, each round takes a fresh iterator over the same persistent workers, as
    the peer's rounds do, instead of paying a worker restart (about 1 s here) inside a few timed steps."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Any:
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


class _WindowClock(L.Callback):
    """Reads the clock when the first batch (already fetched) starts and when the last one ends."""

    def __init__(self, device: torch.device, last_step: int) -> None:
        self.device, self.last_step = device, last_step
        self.times: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == 0:
            self.times.append(clock(self.device))

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.last_step:
            self.times.append(clock(self.device))


def fit_seconds_per_step(
    module: L.LightningModule,
    loader: DataLoader | KeepWorkers,
    steps: int,
    device: torch.device,
    precision: str = "32-true",
) -> float:
    """Train ``module`` for ``steps`` optimizer steps in a fresh Trainer; seconds per step, from the start
    of the first step (Trainer set-up and the first fetch excluded) to the end of the last. Warm the
    module up once with an untimed call first (first-call costs: allocation, torch.compile)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    window = _WindowClock(device, last_step=steps)
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_steps=steps,
        precision=precision,  # type: ignore[arg-type]
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[window],
    )
    trainer.fit(module, loader)
    if len(window.times) != 2:
        raise RuntimeError(f"expected {steps} steps, the loader ran out after {trainer.global_step}")
    return (window.times[1] - window.times[0]) / steps


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats get 3 significant digits (whole numbers from 100 on)."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report(
    args: argparse.Namespace,
    device: torch.device,
    name: str,
    settings: dict[str, Any],
    markdown: str,
    figures: dict[str, Any],
) -> None:
    """Print the Markdown and, with ``--json``, write everything make_results.py needs."""
    print(markdown)
    if args.json:
        payload = {
            "benchmark": name,
            "quick": bool(args.quick),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(device),
            "settings": settings,
            "figures": figures,
            "markdown": markdown,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
