"""Evaluation callback: weighted kNN accuracy (the search objective) and RankMe on clean features.

Every ``eval_every`` epochs and after the last one, backbone features of the clean bank (train split)
and val split are extracted in eval mode. Under DDP each rank embeds a strided shard (no padding
duplicates, unlike DistributedSampler), the shards are gathered and re-ordered, and every rank computes
the same metrics, so any rank may log them.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import Dataset

from byol_tune import metrics
from byol_tune.core.data import eval_loader
from byol_tune.errors import DivergedError
from byol_tune.parts.knn import check_temperature, knn_accuracy
from byol_tune.parts.probe import linear_probe
from byol_tune.parts.rankme import rankme


class KNNCallback(L.Callback):
    def __init__(
        self,
        bank: Dataset,
        val: Dataset,
        num_classes: int | None,
        eval_every: int = 1,
        k: int = 200,
        temperature: float = 0.1,
        batch_size: int = 512,
    ) -> None:
        super().__init__()
        if eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {eval_every}")
        check_temperature(temperature)  # as knn_predict would, but before any training
        self.bank = bank
        self.val = val
        self.num_classes = num_classes
        self.eval_every = eval_every
        self.k = k
        self.temperature = temperature
        self.batch_size = batch_size
        self.history: list[dict[str, float]] = []

    def state_dict(self) -> dict[str, Any]:
        """The evaluations so far, saved in checkpoints: a resumed run's history starts at epoch 1."""
        return {"history": [dict(h) for h in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(h) for h in state_dict.get("history", [])]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        last = (trainer.max_epochs is not None and 0 < trainer.max_epochs <= epoch) or (  # -1: no limit
            0 < trainer.max_steps <= trainer.global_step
        )
        if epoch % self.eval_every == 0 or last or trainer.should_stop:
            result = self.evaluate(trainer, pl_module)
            for name, value in result.items():
                if name not in ("epoch", "step"):
                    pl_module.log(name, value, on_step=False, on_epoch=True, sync_dist=False)

    @torch.no_grad()
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        start = time.perf_counter()
        was_training = pl_module.training
        pl_module.eval()  # clean features: BatchNorm uses running statistics
        try:
            result = self.final_metrics(trainer, pl_module, linear=False)
        finally:
            pl_module.train(was_training)
        result["eval_seconds"] = time.perf_counter() - start
        self.history.append({"epoch": trainer.current_epoch + 1, "step": trainer.global_step, **result})
        return result

    def final_metrics(
        self, trainer: L.Trainer | None, pl_module: L.LightningModule, linear: bool = True
    ) -> dict[str, float]:
        """RankMe, kNN and (if ``linear``) the linear probe on clean features; the caller sets eval mode.

        ``trainer`` None: a single process (no DDP), e.g. evaluating a loaded model outside ``fit``."""
        val_x, val_y = self.features(trainer, pl_module, self.val)
        bank: tuple[Tensor, Tensor] | None = None
        if self.num_classes is not None and bool((val_y >= 0).all()):
            bank = self.features(trainer, pl_module, self.bank)
        if not all(bool(x.isfinite().all()) for x in [val_x] + ([bank[0]] if bank else [])):
            raise _diverged(trainer, pl_module)
        return feature_metrics(val_x, val_y, bank, self.num_classes, self.k, self.temperature, linear)

    @torch.no_grad()
    def features(
        self, trainer: L.Trainer | None, pl_module: L.LightningModule, dataset: Dataset
    ) -> tuple[Tensor, Tensor]:
        """Features and labels of the whole ``dataset`` in order, identical on every rank."""
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        n = len(dataset)  # type: ignore[arg-type]
        local_x, local_y = embed_split(pl_module, dataset, range(rank, n, world), self.batch_size)
        if trainer is None or world == 1:
            return local_x.cpu(), local_y.cpu()
        return _gather_strided(trainer, local_x, local_y, n)


def _diverged(trainer: L.Trainer | None, pl_module: L.LightningModule) -> DivergedError:
    """NaN or infinite features: the error names the learning rate and precision that led there."""
    lr = pl_module.hparams.get("learning_rate")
    precision = str(trainer.precision) if trainer is not None else None
    keys = f"learning_rate {lr:g}" if isinstance(lr, float | int) else "learning_rate"
    keys += f" / precision {precision}" if precision else ""
    when = f" by epoch {trainer.current_epoch + 1}" if trainer is not None else ""
    advice = "lower learning_rate"
    if precision not in (None, "32-true", "bf16-mixed", "64-true"):
        advice += ", or train in precision 32-true or bf16-mixed"
    return DivergedError(
        f"{keys}: training diverged{when}: the backbone's features are NaN or infinite; {advice}"
    )


def feature_metrics(
    val_x: Tensor,
    val_y: Tensor,
    bank: tuple[Tensor, Tensor] | None,
    num_classes: int | None,
    k: int,
    temperature: float,
    linear: bool,
) -> dict[str, float]:
    """RankMe of the val features; with a labelled ``bank`` (features, labels) also kNN top-1/top-5
    and, if ``linear``, the linear probe (trained on the bank, scored on val)."""
    result: dict[str, float] = {metrics.RANKME: rankme(val_x)}
    if bank is None or num_classes is None:
        return result
    bank_x, bank_y = bank
    acc = knn_accuracy(val_x, val_y, bank_x, bank_y, num_classes, k, temperature)
    result[metrics.KNN_TOP1], result[metrics.KNN_TOP5] = acc.top1, acc.top5
    if linear:
        result[metrics.LINEAR_TOP1] = linear_probe(bank_x, bank_y, val_x, val_y, num_classes)
    return result


@torch.no_grad()
def embed_split(
    module: L.LightningModule, dataset: Dataset, indices: range, batch_size: int = 512
) -> tuple[Tensor, Tensor]:
    """Clean features and labels of ``dataset[indices]`` on the module's device: (n, D), (n,)."""
    feats, labels = [], []
    for x, y in eval_loader(dataset, indices, batch_size):
        feats.append(module.embed(x.to(module.device)).float())  # type: ignore[operator]
        labels.append(y.to(module.device))
    return torch.cat(feats), torch.cat(labels)


def _gather_strided(trainer: L.Trainer, x: Tensor, y: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Gather rank-strided shards (rank r holds items r, r+W, ...) back into dataset order."""
    world = trainer.world_size
    per_rank = -(-n // world)
    pad = per_rank - x.shape[0]
    x = torch.cat([x, x.new_zeros(pad, x.shape[1])])
    y = torch.cat([y, y.new_full((pad,), -1)])
    all_x: Any = trainer.strategy.all_gather(x)  # (W, per_rank, D)
    all_y: Any = trainer.strategy.all_gather(y)  # (W, per_rank)
    # item i of rank r is dataset index r + i * W: transposing to (per_rank, W) restores order
    ordered_x = all_x.transpose(0, 1).reshape(-1, x.shape[1])[:n]
    ordered_y = all_y.transpose(0, 1).reshape(-1)[:n]
    return ordered_x.cpu(), ordered_y.cpu()
