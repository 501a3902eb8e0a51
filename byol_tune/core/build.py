"""From one :class:`BYOLConfig` to the module, data and callbacks: shared by every trainer.

The plain trainer (:mod:`byol_tune.core.fit`) and the Ray Train worker both call :func:`build_run`, so a
config trains the same way everywhere.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch import nn

from byol_tune.config import BYOLConfig
from byol_tune.core.data import BYOLDataModule, DataInfo, DataSplits, build_augment, load_splits
from byol_tune.core.knn_callback import KNNCallback
from byol_tune.core.module import BYOL
from byol_tune.parts.backbones import build_backbone


@dataclass
class RunParts:
    module: BYOL
    datamodule: BYOLDataModule
    knn: KNNCallback
    splits: DataSplits


def build_backbone_for(config: BYOLConfig, info: DataInfo) -> nn.Module:
    if config.backbone == "mlp":
        return build_backbone(
            "mlp",
            input_dim=info.input_shape[0],
            hidden_dim=config.encoder_hidden_dim,
            output_dim=config.encoder_dim,
        )
    size = config.image_size or info.input_shape[-1]
    kwargs: dict[str, Any] = {}
    input_norm = config.input_norm
    if config.backbone == "small_cnn":
        kwargs["input_norm"] = True if input_norm is None else input_norm
    elif config.backbone.startswith("resnet"):
        stem = config.small_image_stem
        kwargs["small_image_stem"] = size < 64 if stem is None else stem
        kwargs["input_norm"] = bool(input_norm)
    return build_backbone(config.backbone, **kwargs)


def build_module(config: BYOLConfig, info: DataInfo, augment: nn.Module | None) -> BYOL:
    size = config.image_size or info.input_shape[-1]
    input_shape = (3, size, size) if info.is_image else info.input_shape
    return BYOL(
        backbone=build_backbone_for(config, info),
        learning_rate=config.scaled_learning_rate(),
        schedule=config.tau_schedule_steps,
        optimizer=config.optimizer,
        lr_scheduler="warmup_cosine" if config.lr_schedule == "cosine" else "constant",
        lr_scheduler_interval=config.lr_scheduler_interval,
        warmup_epochs=config.warmup_epochs,
        weight_decay=config.weight_decay,
        sgd_momentum=config.sgd_momentum,
        exclude_bias_norm=config.exclude_bias_norm,
        tau_base=config.tau_base,
        cosine_tau=config.tau_schedule == "cosine",
        projector_hidden_dim=config.projector_hidden_dim,
        projector_out_dim=config.projector_out_dim,
        predictor_hidden_dim=config.predictor_hidden_dim,
        input_shape=input_shape,
        augment=augment,
        mean=info.mean,
        std=info.std,
        views_as_one_batch=config.views_as_one_batch,
        channels_last=config.channels_last,
        # in-memory images stored at another size are resized for evaluation to the trained image_size;
        # image folders' clean transform does that already
        eval_size=size if info.is_image and size != info.input_shape[-1] else None,
    )


def build_run(config: BYOLConfig) -> RunParts:
    splits = load_splits(config)
    augment = build_augment(config, splits.info) if splits.in_memory else None
    on_device = config.augment_on_device
    module = build_module(config, splits.info, augment if on_device else None)
    datamodule = BYOLDataModule(
        splits,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        cpu_augment=None if on_device or augment is None else augment,
    )
    knn = KNNCallback(
        splits.bank,
        splits.val,
        splits.info.num_classes,
        eval_every=config.eval_every,
        k=config.knn_k,
        temperature=config.knn_temperature,
    )
    return RunParts(module=module, datamodule=datamodule, knn=knn, splits=splits)


def hparams(config: BYOLConfig) -> dict[str, Any]:
    """What gets logged: every config field plus the derived, named learning rate."""
    return {**config.model_dump(), "scaled_learning_rate": config.scaled_learning_rate()}


class _NoLightningTips(logging.Filter):
    """Drops Lightning's advertising "Tip:" lines (litlogger, litmodels), printed at every fit."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: For seamless cloud" not in record.getMessage()


def lightning_rank_zero_log() -> logging.Logger:
    """Where Lightning's ``rank_zero_info`` lines go now: ``lightning_utilities`` keeps one module-level
    logger, set by whichever of lightning.pytorch / pytorch_lightning / the fabrics was imported last."""
    from lightning_utilities.core import rank_zero

    return rank_zero.log


@contextlib.contextmanager
def quiet_dependency_output() -> Iterator[None]:
    """Around a Lightning ``Trainer``'s construction and ``fit``: Lightning 2.x on torch 2.14 warns at
    every fit that its own pytree code uses a deprecated torch API (``isinstance(treespec, LeafSpec)``),
    which is for Lightning to fix, not users; and it advertises its cloud services at every fit."""
    tips = _NoLightningTips()
    log = lightning_rank_zero_log()
    log.addFilter(tips)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)` is deprecated")
            yield
    finally:
        log.removeFilter(tips)
