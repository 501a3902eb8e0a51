"""Shared test helpers: the tiny embedded-data config and a callback that dumps each rank's weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch

TINY: dict[str, Any] = {
    "shapes_train_size": 256,
    "shapes_val_size": 64,
    "batch_size": 32,
    "max_epochs": 2,
    "eval_every": 1,
    "knn_k": 20,
    "projector_hidden_dim": 64,
    "projector_out_dim": 32,
    "predictor_hidden_dim": 64,
}


def run_module(module: str, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``python -m module args...`` in ``cwd``, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def quiet_trainer(max_epochs: int = 1, **kwargs: Any) -> L.Trainer:
    """A CPU Lightning Trainer with no logger, checkpoints, progress bar or model summary."""
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


class DumpWeights(L.Callback):
    """At the end of fit, every rank saves its module's state_dict and tau to ``out/rank{N}.pt``, with
    the random state its first training batch started from (which the on-device views are drawn from)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.rng: torch.Tensor | None = None

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if self.rng is None:
            self.rng = torch.get_rng_state()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        dump = {"state": state, "tau": pl_module.tau, "rng": self.rng}
        torch.save(dump, self.out / f"rank{trainer.global_rank}.pt")


def assert_ranks_identical(out: Path) -> None:
    """rank0.pt and rank1.pt hold the same online and target weights and tau.

    BatchNorm running statistics are not compared: DDP does not synchronise them after the last forward
    (each rank saw its own shard).
    """
    rank0 = torch.load(out / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank1.pt", weights_only=True)
    assert rank0["state"].keys() == rank1["state"].keys()
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    weights = [k for k in rank0["state"] if not k.endswith(buffers)]
    assert any(k.startswith("backbone_momentum.") for k in weights)
    assert any(k.startswith("prediction_head.") for k in weights)
    for key in weights:
        assert torch.equal(rank0["state"][key], rank1["state"][key]), key
    assert rank0["tau"] == rank1["tau"] < 1.0
