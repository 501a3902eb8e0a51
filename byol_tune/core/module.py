"""The BYOL LightningModule (Grill et al., 2020).

Online network = backbone + projector + predictor, trained by gradient descent. Target network =
backbone + projector, an exponential moving average of the online ones that the module itself updates
after every real optimizer step (so gradient accumulation is respected and no caller can forget it).
The module takes typed arguments, never a config object; :func:`byol_tune.core.build.build_module`
maps a :class:`~byol_tune.config.BYOLConfig` onto them.

Minerva users: ``BYOL(backbone=..., projection_head=..., prediction_head=..., learning_rate=...,
schedule=..., criterion=..., optimizer=SGD, optimizer_kwargs=..., lr_scheduler=..., ...)`` works, as do
``forward`` (online prediction), ``forward_momentum``, ``cosine_schedule``, ``update_momentum`` and
``deactivate_requires_grad``. Unlike minerva, ``schedule`` counts optimizer steps and tau really moves.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer

from byol_tune import metrics
from byol_tune.config import HALF_TRUE_REASON, SELF_ACCUMULATING_REASON
from byol_tune.parts import momentum
from byol_tune.parts.backbones import backbone_features, feature_dim
from byol_tune.parts.heads import MLPHead
from byol_tune.parts.loss import NormalizedMSELoss
from byol_tune.parts.optim import build_optimizer, param_groups, warmup_cosine

Criterion = Callable[[Tensor, Tensor], Tensor]


class BYOL(L.LightningModule):
    def __init__(
        self,
        backbone: nn.Module,
        projection_head: nn.Module | None = None,
        prediction_head: nn.Module | None = None,
        learning_rate: float = 1e-3,
        schedule: int | None = None,
        criterion: Criterion | None = None,
        optimizer: str | type[Optimizer] = "sgd",
        optimizer_kwargs: dict[str, Any] | None = None,
        lr_scheduler: str | type[torch.optim.lr_scheduler.LRScheduler] | None = "warmup_cosine",
        lr_scheduler_kwargs: dict[str, Any] | None = None,
        *,
        lr_scheduler_interval: Literal["step", "epoch"] = "step",
        warmup_epochs: float = 0.0,
        weight_decay: float = 0.0,
        sgd_momentum: float = 0.9,
        exclude_bias_norm: bool = True,
        tau_base: float = 0.996,
        cosine_tau: bool = True,
        projector_hidden_dim: int = 4096,
        projector_out_dim: int = 256,
        predictor_hidden_dim: int = 4096,
        input_shape: Sequence[int] = (3, 32, 32),
        augment: nn.Module | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        views_as_one_batch: bool = False,
        channels_last: bool = False,
        eval_size: int | None = None,
    ) -> None:
        """
        Args:
            backbone: maps inputs to features (flat, or maps that get global-pooled).
            projection_head, prediction_head: default to the paper's MLPs with the given dims.
            learning_rate: the rate the optimizer uses (already scaled, if scaling is wanted).
            schedule: length K of the tau cosine in optimizer steps; None = the whole training run.
            criterion: ``criterion(prediction, target)``; default 2 - 2cos.
            optimizer: "sgd", "adamw", "lars", or an optimizer class called with
                ``(param_groups, lr=learning_rate, **optimizer_kwargs)``.
            lr_scheduler: "warmup_cosine", "constant", None, or a scheduler class called with
                ``(optimizer, **lr_scheduler_kwargs)`` and stepped every ``lr_scheduler_interval``.
            tau_base, cosine_tau: target momentum starts at tau_base; cosine ramp to 1 or constant.
            input_shape: one sample's shape, to measure the backbone's feature size.
            augment: turns a batch of raw images into two views in the training step (on device).
            mean, std: normalisation applied to uint8 inputs for evaluation features.
            views_as_one_batch: forward both views as one ``2B`` batch through the online and the
                target network (bigger matrix products, half the kernel launches). Changes numerics:
                in training mode BatchNorm normalises over both views together instead of each view
                alone; with no BatchNorm, or in eval mode, the loss is the same.
            channels_last: keep image backbones and their inputs in NHWC memory format (faster
                convolution kernels on GPUs, with bf16 especially). Same maths, other summation order.
            eval_size: resize evaluation images (:meth:`embed`) to this side first (bilinear,
                antialiased), for images stored at another size than the views are trained at.
        """
        super().__init__()
        # optimizer/scheduler classes are kept as attributes, not hparams, so checkpoints stay
        # loadable with weights_only=True; their names are logged instead
        self.save_hyperparameters(
            ignore=[
                "backbone",
                "projection_head",
                "prediction_head",
                "criterion",
                "augment",
                "optimizer",
                "optimizer_kwargs",
                "lr_scheduler",
                "lr_scheduler_kwargs",
            ]
        )
        self.hparams["optimizer"] = optimizer if isinstance(optimizer, str) else optimizer.__name__
        self.hparams["lr_scheduler"] = (
            lr_scheduler if lr_scheduler is None or isinstance(lr_scheduler, str) else lr_scheduler.__name__
        )
        self.optimizer = optimizer
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.lr_scheduler = lr_scheduler
        self.lr_scheduler_kwargs = dict(lr_scheduler_kwargs or {})
        self.backbone = backbone
        # our projector takes pooled (B, D) features; a user's head (minerva pools in it) gets raw output
        self.pool_features = projection_head is None
        if projection_head is None:
            dim = feature_dim(backbone, torch.zeros(2, *input_shape))
            projection_head = MLPHead(dim, projector_hidden_dim, projector_out_dim)
        if prediction_head is None:
            out_dim = _out_features(projection_head, projector_out_dim)
            prediction_head = MLPHead(out_dim, predictor_hidden_dim, out_dim)
        self.projection_head = projection_head
        self.prediction_head = prediction_head
        self.backbone_momentum = copy.deepcopy(backbone)
        self.projection_head_momentum = copy.deepcopy(projection_head)
        momentum.deactivate_requires_grad(self.backbone_momentum)
        momentum.deactivate_requires_grad(self.projection_head_momentum)
        self.criterion: Criterion = criterion if criterion is not None else NormalizedMSELoss()
        self.augment = augment
        self.learning_rate = learning_rate
        self.schedule_length = schedule
        self.tau_base = tau_base
        self.cosine_tau = cosine_tau
        self.tau = tau_base
        self.register_buffer("_mean", _channel_stat(mean, 0.0), persistent=False)
        self.register_buffer("_std", _channel_stat(std, 1.0), persistent=False)
        self.views_as_one_batch = views_as_one_batch
        self.channels_last = channels_last
        self.target_update: momentum.TargetUpdate | None = None  # gathered at the first step
        if channels_last:
            for net in (self.backbone, self.backbone_momentum):
                net.to(memory_format=torch.channels_last)

    # ---- forward passes -------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Online prediction q(z(f(x)))."""
        return self.prediction_head(self.projection_head(self._backbone_out(self.backbone, x)))

    @torch.no_grad()
    def forward_momentum(self, x: Tensor) -> Tensor:
        """Target projection z'(f'(x)), detached."""
        return self.projection_head_momentum(self._backbone_out(self.backbone_momentum, x)).detach()

    def _backbone_out(self, backbone: nn.Module, x: Tensor) -> Tensor:
        x = self._backbone_input(backbone, x)
        return backbone_features(backbone, x) if self.pool_features else _unwrap(backbone(x))

    def _backbone_input(self, backbone: nn.Module, x: Tensor) -> Tensor:
        """Floats in ``backbone``'s dtype (``precision: 64-true`` casts the model, not the views made
        here), image batches in NHWC memory format when ``channels_last`` is on; no copy if already so."""
        weight = next(backbone.parameters(), None)
        dtype = weight.dtype if weight is not None and x.is_floating_point() else x.dtype
        layout = torch.channels_last if self.channels_last and x.ndim == 4 else torch.preserve_format
        return x.to(dtype=dtype, memory_format=layout)

    def embed(self, x: Tensor) -> Tensor:
        """Clean backbone features ``(B, D)`` for evaluation; uint8 images are normalised first, and
        resized to ``eval_size`` when given."""
        x = self.prepare(x)
        size = self.hparams.get("eval_size")
        if size and x.ndim == 4 and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return backbone_features(self.backbone, self._backbone_input(self.backbone, x))

    def prepare(self, x: Tensor) -> Tensor:
        if x.dtype == torch.uint8:
            mean = self.get_buffer("_mean")
            std = self.get_buffer("_std")
            return (x.float() / 255 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
        return x

    # ---- training -------------------------------------------------------------------------
    def views(self, batch: Any) -> tuple[Tensor, Tensor]:
        """Two augmented views from any supported batch layout.

        ``((x1, x2), labels, ...)`` or ``(x1, x2)`` (minerva, lightly): views made by the data loader.
        ``images`` or ``(images, labels, ...)``: raw images, augmented here by ``self.augment``.
        """
        first = batch[0] if isinstance(batch, list | tuple) else batch
        if isinstance(first, list | tuple) and len(first) == 2:
            return first[0], first[1]
        if (
            isinstance(batch, list | tuple)
            and len(batch) == 2
            and isinstance(batch[1], Tensor)
            and batch[1].shape == first.shape
            and first.ndim > 1
        ):
            return batch[0], batch[1]
        if self.augment is None:
            raise ValueError("batch holds raw images but the module has no augment to make views")
        augment: Any = self.augment
        view1, view2 = augment(first)
        return view1, view2

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x1, x2 = self.views(batch)
        loss = self.view_loss(x1, x2)
        self.log(metrics.LOSS, loss, prog_bar=True, on_step=True, on_epoch=True)
        # tau (the one this step's EMA update will use) and lr are logged as CPU tensors: Lightning would
        # copy a Python float to the module's device, a blocking host-device sync on a GPU every step
        tau = torch.tensor(self.tau_at(self.trainer.global_step))
        self.log(metrics.TAU, tau, on_step=True, on_epoch=False)
        self.log(metrics.LR, torch.tensor(self.optimizers_lr()), on_step=True, on_epoch=False)
        return loss

    def view_loss(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Symmetric loss (Grill et al. 2020, Eq. 4, averaged): the online prediction of each view
        regresses the target projection of the other."""
        if self.views_as_one_batch:
            if x1.shape != x2.shape:
                shapes = f"{tuple(x1.shape)} and {tuple(x2.shape)}"
                raise ValueError(f"views_as_one_batch needs views of one shape, got {shapes}")
            both = torch.cat((x1, x2))  # (2B, ...)
            p1, p2 = self.forward(both).chunk(2)  # (B, D) each
            z1, z2 = self.forward_momentum(both).chunk(2)
        else:
            p1, p2 = self.forward(x1), self.forward(x2)
            z1, z2 = self.forward_momentum(x1), self.forward_momentum(x2)
        return 0.5 * (self.criterion(p1, z2) + self.criterion(p2, z1))

    def optimizers_lr(self) -> float:
        optimizer = self.optimizers()
        opt = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
        return float(opt.param_groups[0]["lr"])  # type: ignore[union-attr]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Step the online network, then move the target towards it (one EMA per real step)."""
        step = self.trainer.global_step  # optimizer steps completed before this one
        super().optimizer_step(*args, **kwargs)
        self.tau = self.tau_at(step)
        if self.target_update is None:
            self.target_update = momentum.TargetUpdate(
                [
                    (self.backbone, self.backbone_momentum),
                    (self.projection_head, self.projection_head_momentum),
                ]
            )
        self.target_update(self.tau)

    def on_train_start(self) -> None:
        self.target_update = None  # gather again: the modules may have moved or changed since
        dtypes = {p.dtype for p in self.backbone_momentum.parameters()}
        if dtypes & {torch.bfloat16, torch.float16}:  # Lightning's bf16-true / 16-true casts the module
            raise ValueError(f"precision: {', '.join(map(str, sorted(dtypes, key=str)))}: {HALF_TRUE_REASON}")
        strategy, accumulate = self.trainer.strategy, self.trainer.accumulate_grad_batches
        if strategy.handles_gradient_accumulation and accumulate > 1:  # DeepSpeed's
            raise ValueError(
                f"accumulate_grad_batches {accumulate} with {type(strategy).__name__}: "
                + SELF_ACCUMULATING_REASON
            )
        if self.trainer.world_size > 1:
            # every process was seeded alike, for one starting model; the views drawn in the step must
            # then differ per process, as DataLoader workers' do (Lightning seeds those per rank)
            torch.manual_seed((torch.initial_seed() + self.global_rank) % 2**63)

    def tau_at(self, step: int) -> float:
        if not self.cosine_tau:  # a constant tau needs no run length
            return momentum.tau_at(step, self.tau_base, 1, cosine=False)
        return momentum.tau_at(step, self.tau_base, self.schedule_steps())

    def schedule_steps(self) -> int:
        if self.schedule_length is not None:
            return self.schedule_length
        return self._run_steps("schedule (tau's)")

    def _run_steps(self, what: str) -> int:
        """The optimizer steps of the whole run, which a schedule spans unless given its own length."""
        steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(steps):
            raise ValueError(f"{what}: an endless run (no max_epochs or max_steps) has no length to span")
        return max(1, int(steps))

    def _steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (Lightning's count for each device, over the accumulation)."""
        trainer = self.trainer
        if trainer.train_dataloader is None:  # as estimated_stepping_batches does when max_epochs is set
            trainer.fit_loop.setup_data()
        batches = trainer.num_training_batches
        if not math.isfinite(batches):
            raise ValueError("warmup_epochs: a train loader without a length has no epochs")
        return max(1, math.ceil(batches / trainer.accumulate_grad_batches))

    def configure_optimizers(self) -> Any:
        hp: Any = self.hparams
        online = nn.ModuleList([self.backbone, self.projection_head, self.prediction_head])
        groups = param_groups(online, hp.weight_decay, hp.exclude_bias_norm)
        if isinstance(self.optimizer, str):
            optimizer = build_optimizer(
                self.optimizer, groups, self.learning_rate, hp.weight_decay, hp.sgd_momentum
            )
        else:
            # biases and norms (exclude_bias_norm) keep no decay; the rest takes optimizer_kwargs' weight
            # decay, else the module's when set, else the optimizer class's own default
            given = self.optimizer_kwargs.get("weight_decay", hp.weight_decay or None)
            for group in groups:
                if group.pop("lars_exclude", False):
                    continue
                group.pop("weight_decay", None)
                if given is not None:
                    group["weight_decay"] = given
            optimizer_cls: Any = self.optimizer
            optimizer = optimizer_cls(groups, lr=self.learning_rate, **self.optimizer_kwargs)
        scheduler = self._scheduler(optimizer)
        if scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": hp.lr_scheduler_interval},
        }

    def _scheduler(self, optimizer: Optimizer) -> Any:
        hp: Any = self.hparams
        if self.lr_scheduler is None:
            return None
        if not isinstance(self.lr_scheduler, str):
            return self.lr_scheduler(optimizer, **self.lr_scheduler_kwargs)
        if self.lr_scheduler not in ("warmup_cosine", "constant"):
            raise ValueError(f"lr_scheduler: unknown name {self.lr_scheduler!r}")
        total = self._run_steps(f"lr_scheduler {self.lr_scheduler!r}")
        if hp.lr_scheduler_interval == "epoch":  # max_steps may end the run before max_epochs
            warmup, total = math.ceil(hp.warmup_epochs), math.ceil(total / self._steps_per_epoch())
        else:  # no warm-up needs no epoch length (a loader without one trains by max_steps)
            warmup = round(hp.warmup_epochs * self._steps_per_epoch()) if hp.warmup_epochs else 0
        cosine = self.lr_scheduler == "warmup_cosine"
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total, cosine)
        )

    # ---- lightly / minerva helpers ----------------------------------------------------------
    @staticmethod
    def cosine_schedule(step: int, max_steps: int, start_value: float, end_value: float) -> float:
        return momentum.cosine_schedule(step, max_steps, start_value, end_value)

    @staticmethod
    def update_momentum(model: nn.Module, model_ema: nn.Module, m: float) -> None:
        momentum.update_momentum(model, model_ema, m)

    @staticmethod
    def deactivate_requires_grad(model: nn.Module) -> None:
        momentum.deactivate_requires_grad(model)


def _unwrap(y: Any) -> Tensor:
    return y["out"] if isinstance(y, dict) else y


def _out_features(head: nn.Module, fallback: int) -> int:
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else fallback


def _channel_stat(values: Sequence[float] | None, default: float) -> Tensor:
    return torch.tensor(list(values) if values is not None else [default], dtype=torch.float32)
