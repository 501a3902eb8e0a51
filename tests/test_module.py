"""The BYOL LightningModule: EMA ownership, tau schedule, batch layouts, peer compatibility."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from tiny import quiet_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from byol_tune import metrics
from byol_tune.core.module import BYOL
from byol_tune.parts import momentum
from byol_tune.parts.backbones import backbone_names, build_backbone, feature_dim
from byol_tune.parts.heads import MLPHead
from byol_tune.parts.loss import NormalizedMSELoss
from byol_tune.parts.momentum import tau_at


def _tiny_backbone() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )


def _views_loader(n: int = 32, batch: int = 8) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(n, 3, 8, 8, generator=g), torch.randn(n, 3, 8, 8, generator=g)
    return DataLoader(TensorDataset(x1, x2), batch_size=batch, drop_last=True)


def _tiny_model(**kwargs: object) -> BYOL:
    """The tiny backbone with small heads; keyword arguments go to BYOL."""
    dims = {
        "projector_hidden_dim": 16,
        "projector_out_dim": 4,
        "predictor_hidden_dim": 16,
        "input_shape": (3, 8, 8),
    }
    return BYOL(_tiny_backbone(), **{**dims, **kwargs})  # type: ignore[arg-type]


def _target_state(model: BYOL) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.backbone_momentum.parameters()]


def test_minerva_constructor_and_helpers() -> None:
    backbone = _tiny_backbone()
    model = BYOL(
        backbone=backbone,
        projection_head=MLPHead(8, 16, 4),
        prediction_head=MLPHead(4, 16, 4),
        learning_rate=0.05,
        schedule=10,
        criterion=NormalizedMSELoss(),
        optimizer=torch.optim.SGD,
        optimizer_kwargs={"momentum": 0.9},
        lr_scheduler=torch.optim.lr_scheduler.StepLR,
        lr_scheduler_kwargs={"step_size": 1},
    )
    x = torch.randn(4, 3, 8, 8)
    assert model(x).shape == (4, 4)
    assert model.forward_momentum(x).shape == (4, 4) and not model.forward_momentum(x).requires_grad
    assert model.cosine_schedule(0, 10, 0.996, 1.0) == pytest.approx(0.996)
    assert not any(p.requires_grad for p in model.backbone_momentum.parameters())
    assert not any(p.requires_grad for p in model.projection_head_momentum.parameters())
    target = _target_state(model)
    quiet_trainer().fit(model, _views_loader())  # minerva batches: (x0, x1)
    assert isinstance(model.trainer.optimizers[0], torch.optim.SGD)
    assert any(not torch.equal(a, b) for a, b in zip(target, _target_state(model), strict=True))
    assert model.hparams["optimizer"] == "SGD"


def test_optimizer_class_keeps_biases_and_norms_undecayed() -> None:
    """An optimizer class (minerva, quadra) gets the same two groups as the named ones: biases and norm
    weights without decay, the rest with optimizer_kwargs' weight decay, else the module's, else the
    class's own default."""

    def decays(**kwargs: object) -> list[tuple[int, float]]:
        optimizer = _tiny_model(lr_scheduler=None, **kwargs).configure_optimizers()
        return [(len(g["params"]), g["weight_decay"]) for g in optimizer.param_groups]

    sgd = torch.optim.SGD
    # conv + 2 linear weights per head: 5 decayed; conv bias, BN weight/bias, head BN weights/biases: 9
    assert decays(optimizer=sgd, optimizer_kwargs={"weight_decay": 0.1}) == [(5, 0.1), (9, 0.0)]
    assert decays(optimizer=sgd, weight_decay=0.05) == [(5, 0.05), (9, 0.0)]
    assert decays(optimizer=torch.optim.AdamW) == [(5, 0.01), (9, 0.0)]  # AdamW's default
    assert decays(optimizer=sgd, optimizer_kwargs={"weight_decay": 0.1}, exclude_bias_norm=False) == [
        (14, 0.1)
    ]
    assert decays(optimizer="sgd", weight_decay=0.05) == [(5, 0.05), (9, 0.0)]  # the named path alike


def test_target_follows_ema_of_online_after_each_step() -> None:
    model = _tiny_model(
        learning_rate=0.1,
        schedule=4,
        input_shape=(3, 8, 8),
    )
    seen: list[tuple[int, float]] = []

    class Check(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
            seen.append((trainer.global_step, model.tau))

    quiet_trainer(callbacks=[Check()]).fit(model, _views_loader(n=32, batch=8))
    # 4 optimizer steps; after step k (0-based) the EMA used tau_k of the cosine over K=4
    assert [s for s, _ in seen] == [1, 2, 3, 4]
    assert [t for _, t in seen] == pytest.approx([tau_at(k, 0.996, 4) for k in range(4)])
    assert seen[0][1] == pytest.approx(0.996)


def test_ema_respects_gradient_accumulation(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny_model(
        learning_rate=0.1,
        input_shape=(3, 8, 8),
        tau_base=0.5,
    )
    updates: list[float] = []
    original = momentum.TargetUpdate.__call__

    def counting(self: momentum.TargetUpdate, m: float) -> None:
        updates.append(m)
        original(self, m)

    monkeypatch.setattr(momentum.TargetUpdate, "__call__", counting)
    quiet_trainer(accumulate_grad_batches=2).fit(model, _views_loader(n=32, batch=8))
    assert model.trainer.global_step == 2
    # backbone + projector together, once per real optimizer step, with tau of the cosine over those
    # K = 2 steps (4 batches / 2 accumulated): tau_0 = 0.5, tau_1 = 0.75
    assert updates == [tau_at(0, 0.5, 2), tau_at(1, 0.5, 2)] == [0.5, 0.75]
    assert model.target_update is not None and len(model.target_update.ema_params) == len(
        [*model.backbone.parameters(), *model.projection_head.parameters()]
    )


def test_single_step_ema_matches_formula() -> None:
    torch.manual_seed(0)
    model = _tiny_model(
        learning_rate=0.1,
        input_shape=(3, 8, 8),
        tau_base=0.9,
        cosine_tau=False,
        lr_scheduler=None,
    )
    before = _target_state(model)
    quiet_trainer(max_steps=1).fit(model, _views_loader(n=8, batch=8))
    online = [p.detach() for p in model.backbone.parameters()]
    for t0, t1, o in zip(before, _target_state(model), online, strict=True):
        torch.testing.assert_close(t1, 0.9 * t0 + 0.1 * o, atol=1e-6, rtol=0)


def test_raw_image_batches_are_augmented_by_module() -> None:
    calls: list[tuple[int, ...]] = []

    class Augment(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            calls.append(tuple(x.shape))
            x = x.float() / 255
            return x + 0.01 * torch.randn_like(x), x

    model = _tiny_model(
        input_shape=(3, 8, 8),
        augment=Augment(),
    )
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    loader = DataLoader(TensorDataset(images, torch.zeros(16, dtype=torch.long)), batch_size=8)
    quiet_trainer().fit(model, loader)
    assert calls == [(8, 3, 8, 8), (8, 3, 8, 8)]
    assert metrics.LOSS in model.trainer.callback_metrics


def test_raw_batch_without_augment_is_an_error() -> None:
    model = _tiny_model(
        input_shape=(3, 8, 8),
    )
    with pytest.raises(ValueError, match="augment"):
        model.views((torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long)))


@pytest.mark.parametrize("name", backbone_names())
def test_every_registered_backbone_gives_flat_features(name: str) -> None:
    if name == "mlp":
        backbone, x = build_backbone(name, input_dim=12, output_dim=20), torch.randn(2, 12)
        expected = 20
    else:
        kwargs = {"small_image_stem": True} if name.startswith("resnet") else {}
        backbone, x = build_backbone(name, **kwargs), torch.randn(2, 3, 32, 32)
        expected = {"small_cnn": 256, "resnet18": 512, "resnet50": 2048}[name]
    assert feature_dim(backbone, x) == expected
    model = BYOL(
        backbone,
        projector_hidden_dim=8,
        projector_out_dim=4,
        predictor_hidden_dim=8,
        input_shape=tuple(x.shape[1:]),
    )
    assert model(x).shape == (2, 4)


def test_unknown_backbone_lists_choices() -> None:
    with pytest.raises(ValueError, match="small_cnn"):
        build_backbone("vgg11")


def test_feature_map_backbone_is_pooled_for_projector() -> None:
    backbone = nn.Conv2d(3, 6, 3, padding=1)  # (B, 6, H, W) feature maps, like minerva's DeepLab
    model = BYOL(
        backbone, projector_hidden_dim=8, projector_out_dim=4, predictor_hidden_dim=8, input_shape=(3, 8, 8)
    )
    x = torch.randn(2, 3, 8, 8)
    assert model.embed(x).shape == (2, 6)
    assert model(x).shape == (2, 4) and model.forward_momentum(x).shape == (2, 4)


def test_quadra_semantics_constant_tau_and_epoch_lr_interval() -> None:
    """quadra: base teacher momentum with cosine decay switched off; LR scheduler stepped per epoch."""
    model = _tiny_model(
        learning_rate=0.1,
        input_shape=(3, 8, 8),
        tau_base=0.99,
        cosine_tau=False,
        lr_scheduler_interval="epoch",
        warmup_epochs=0,
    )
    lrs: list[float] = []
    taus: list[float] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

        def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
            taus.append(model.tau)

    quiet_trainer(max_epochs=2, callbacks=[Record()]).fit(model, _views_loader(n=32, batch=8))
    assert taus == [0.99] * 8
    # cosine over 2 epochs, stepped at epoch ends: full LR through epoch 1, half through epoch 2
    assert lrs == pytest.approx([0.1] * 4 + [0.05] * 4)


def test_step_interval_lr_warmup_then_cosine() -> None:
    model = _tiny_model(
        learning_rate=0.1,
        input_shape=(3, 8, 8),
        warmup_epochs=1,
        optimizer="lars",
    )
    lrs: list[float] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    quiet_trainer(max_epochs=2, callbacks=[Record()]).fit(model, _views_loader(n=32, batch=8))
    # 8 steps, 4 warm-up steps: (k+1)/5 of the LR, then cosine over the remaining 4
    assert lrs[:4] == pytest.approx([0.02, 0.04, 0.06, 0.08])
    assert lrs[4:] == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)])


@pytest.mark.parametrize("max_epochs", [-1, 3])
def test_warmup_counts_epochs_of_the_loader_when_max_steps_ends_the_run(max_epochs: int) -> None:
    """Trainer(max_steps=6), 4 steps an epoch: one warm-up epoch is 4 steps whether max_epochs is unset
    (-1) or longer than max_steps allows; the cosine then spans the 2 steps left."""
    model = _tiny_model(learning_rate=0.1, warmup_epochs=1)
    lrs: list[float] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = quiet_trainer(max_epochs=max_epochs, max_steps=6, callbacks=[Record()])
    trainer.fit(model, _views_loader(n=32, batch=8))
    assert lrs == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1, 0.05])
    assert model.schedule_steps() == 6


def test_endless_run_has_no_schedule_length() -> None:
    model = _tiny_model()
    with pytest.raises(ValueError, match=r"^lr_scheduler 'warmup_cosine': an endless run \(no max_epochs"):
        quiet_trainer(max_epochs=-1).fit(model, _views_loader())


def test_knn_callback_evaluates_every_eval_every_epochs_and_at_the_last() -> None:
    """max_epochs -1 has no last epoch to evaluate early at; a run ended by max_steps evaluates at it."""
    from types import SimpleNamespace

    from byol_tune.core.knn_callback import KNNCallback

    callback = KNNCallback(bank=[], val=[], num_classes=None, eval_every=3)  # type: ignore[arg-type]
    evaluated: list[int] = []
    callback.evaluate = lambda trainer, module: evaluated.append(trainer.current_epoch + 1) or {}  # type: ignore[method-assign]
    for max_epochs, max_steps in ((-1, -1), (4, -1), (-1, 8)):  # max_steps 8: 4 epochs of 2 steps
        for epoch in range(4):
            trainer = SimpleNamespace(
                current_epoch=epoch,
                max_epochs=max_epochs,
                max_steps=max_steps,
                global_step=2 * (epoch + 1),
                should_stop=False,
            )
            callback.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert evaluated == [3, 3, 4, 3, 4]


def test_embed_resizes_stored_images_to_eval_size() -> None:
    """Images stored at 32 px, views trained at 16 px: evaluation sees them at 16 px too."""
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5))
    model = BYOL(backbone, input_shape=(3, 16, 16), mean=(0.5,) * 3, std=(0.25,) * 3, eval_size=16)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    resized = F.interpolate(model.prepare(images), size=(16, 16), mode="bilinear", antialias=True)
    torch.testing.assert_close(model.embed(images), backbone(resized), rtol=0, atol=0)
    small = images[:, :, :16, :16]  # already at 16: as it is
    torch.testing.assert_close(model.embed(small), backbone(model.prepare(small)), rtol=0, atol=0)


def test_constant_tau_needs_no_run_length() -> None:
    model = _tiny_model(tau_base=0.99, cosine_tau=False)
    assert model.tau_at(12) == 0.99  # no Trainer attached: no schedule length asked for
    assert momentum.tau_at(5, 0.99, 0, cosine=False) == 0.99
