"""Run by tests/test_ddp.py: a 2-process CPU DDP fit (gloo) whose ranks dump their final weights.

Lightning's DDP launcher starts rank 1 by re-running this script with the same arguments.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

from byol_tune.core.fit import fit


class DumpWeights(L.Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"state": state, "tau": pl_module.tau}, self.out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    out = Path(sys.argv[1])
    result = fit(
        {
            "shapes_train_size": 256,
            "shapes_val_size": 64,
            "batch_size": 32,
            "max_epochs": 2,
            "eval_every": 1,
            "knn_k": 20,
            "projector_hidden_dim": 64,
            "projector_out_dim": 32,
            "predictor_hidden_dim": 64,
            "accelerator": "cpu",
            "devices": 2,
            "strategy": "ddp",
            "output_dir": str(out / "runs"),
            "linear_probe": False,
        },
        progress_bar=False,
        callbacks=[DumpWeights(out)],
    )
    (out / f"history{result.history and len(result.history)}.txt").write_text(repr(result.history))
