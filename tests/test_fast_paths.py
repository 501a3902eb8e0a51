"""Each fast path computes what the plain path computes (benchmarks/ measures how much faster).

``views_as_one_batch`` is exact only where BatchNorm does not look at the batch (eval mode, or a network
without BatchNorm); in training mode its BatchNorm statistics span both views, and a test pins down
exactly that difference. ``channels_last`` is the same maths in another summation order, so it is
compared to a float32 tolerance; bf16 autocast to a bfloat16 one; the compiled augmentation (fused
arithmetic) to a float32 tolerance. Logging tau/lr as CPU tensors and the fused buffer copy are exact.
"""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import pytest
import torch
from tiny import TINY, quiet_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from byol_tune import metrics
from byol_tune.config import make_config
from byol_tune.core.build import build_module
from byol_tune.core.data import DataInfo, build_augment
from byol_tune.core.fit import fit
from byol_tune.core.module import BYOL
from byol_tune.parts import momentum
from byol_tune.parts.momentum import tau_at
from byol_tune.parts.transforms import TwoViewAugment, byol_view_params

SHAPE = (3, 8, 8)


def _conv_backbone(batch_norm: bool = True) -> nn.Module:
    norm: list[nn.Module] = [nn.BatchNorm2d(8)] if batch_norm else []
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), *norm, nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip


def _model(seed: int = 0, batch_norm: bool = True, **kwargs: object) -> BYOL:
    """Same seed, same weights: the fast and the plain model start identical."""
    torch.manual_seed(seed)
    heads: dict[str, object] = {}
    if not batch_norm:  # the paper's heads have BatchNorm; these are Linear-ReLU-Linear
        heads = {
            "projection_head": nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)),
            "prediction_head": nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 4)),
        }
    dims = {"projector_hidden_dim": 16, "projector_out_dim": 4, "predictor_hidden_dim": 16}
    return BYOL(  # type: ignore[arg-type]
        _conv_backbone(batch_norm),
        learning_rate=0.1,
        lr_scheduler=None,
        schedule=10,
        input_shape=SHAPE,
        **{**dims, **heads, **kwargs},
    )


def _views(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *SHAPE, generator=g), torch.randn(n, *SHAPE, generator=g)


def _fit(model: BYOL, steps: int = 3, precision: str = "32-true") -> BYOL:
    x1, x2 = _views(8 * steps)
    L.seed_everything(0, verbose=False)
    trainer = quiet_trainer(max_steps=steps, precision=precision)
    trainer.fit(model, DataLoader(TensorDataset(x1, x2), batch_size=8))
    return model


def _loss_and_grads(model: BYOL) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    loss = model.view_loss(*_views())
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def _assert_all_close(a: list[torch.Tensor], b: list[torch.Tensor], atol: float, rtol: float) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, atol=atol, rtol=rtol)


def _target(model: BYOL) -> list[torch.Tensor]:
    nets = (model.backbone_momentum, model.projection_head_momentum)
    return [t.detach().clone() for net in nets for t in (*net.parameters(), *net.buffers())]


def test_views_as_one_batch_same_loss_and_gradients_with_batchnorm_in_eval_mode() -> None:
    plain, fast = _model().eval(), _model(views_as_one_batch=True).eval()
    loss, grads = _loss_and_grads(plain)
    fast_loss, fast_grads = _loss_and_grads(fast)
    torch.testing.assert_close(fast_loss, loss, atol=1e-6, rtol=1e-5)
    _assert_all_close(fast_grads, grads, atol=1e-6, rtol=1e-5)


def test_views_as_one_batch_same_training_run_without_batchnorm() -> None:
    """The whole path (loss, optimizer step, EMA after it) in a Trainer, in training mode."""
    plain = _fit(_model(batch_norm=False))
    fast = _fit(_model(batch_norm=False, views_as_one_batch=True))
    torch.testing.assert_close(
        fast.trainer.callback_metrics[metrics.LOSS], plain.trainer.callback_metrics[metrics.LOSS]
    )
    _assert_all_close(_target(fast), _target(plain), atol=1e-6, rtol=1e-5)


def test_views_as_one_batch_batchnorm_statistics_span_both_views() -> None:
    """What does differ in training mode: one BatchNorm update over 2B samples instead of two over B."""
    plain, fast = _model(), _model(views_as_one_batch=True)
    x1, x2 = _views()
    plain.view_loss(x1, x2)
    fast.view_loss(x1, x2)
    conv, bn = plain.backbone[0], plain.backbone[1]
    with torch.no_grad():
        mean1, mean2 = conv(x1).mean(dim=(0, 2, 3)), conv(x2).mean(dim=(0, 2, 3))  # (C,)
    m = bn.momentum
    torch.testing.assert_close(bn.running_mean, (1 - m) * m * mean1 + m * mean2)
    torch.testing.assert_close(fast.backbone[1].running_mean, m * (mean1 + mean2) / 2)
    with pytest.raises(ValueError, match="views of one shape"):
        fast.view_loss(x1, x2[:4])


def test_channels_last_same_loss_gradients_and_training_run() -> None:
    plain, fast = _model(), _model(channels_last=True)
    assert fast.backbone[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.backbone_momentum[0].weight.is_contiguous(memory_format=torch.channels_last)
    loss, grads = _loss_and_grads(plain)
    fast_loss, fast_grads = _loss_and_grads(fast)
    torch.testing.assert_close(fast_loss, loss, atol=1e-5, rtol=1e-4)
    _assert_all_close(fast_grads, grads, atol=1e-5, rtol=1e-4)
    plain, fast = _fit(_model()), _fit(_model(channels_last=True))
    _assert_all_close(_target(fast), _target(plain), atol=1e-5, rtol=1e-4)
    images = torch.randint(0, 256, (4, *SHAPE), dtype=torch.uint8)
    torch.testing.assert_close(fast.eval().embed(images), plain.eval().embed(images), atol=1e-5, rtol=1e-4)


def test_bf16_autocast_same_loss_and_training_run_to_bfloat16_precision() -> None:
    """``precision: bf16-mixed`` (Lightning's autocast, on CPUs with AMX or AVX512-BF16 too): convolutions
    and matmuls in bfloat16 (8 significant bits), weights, optimizer and the target's EMA in float32. The
    same run to bfloat16's precision, not float32's: a numerics change, hence a flag and not a default."""
    plain = _model()
    loss, _ = _loss_and_grads(plain)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast_loss = plain.view_loss(*_views())
    torch.testing.assert_close(fast_loss.float(), loss, atol=2e-2, rtol=2e-2)
    assert abs(fast_loss.float().item() - loss.item()) > 0  # really computed in bfloat16
    plain, fast = _fit(_model()), _fit(_model(), precision="bf16-mixed")
    assert all(t.dtype == torch.float32 for t in _target(fast) if t.is_floating_point())
    _assert_all_close(_target(fast), _target(plain), atol=2e-2, rtol=2e-2)
    assert max((f - p).abs().max().item() for f, p in zip(_target(fast), _target(plain), strict=True)) > 0


def test_tau_and_lr_are_logged_with_their_exact_values() -> None:
    """Logged from CPU tensors (no device copy per step): the values are those of the schedule."""
    model = _fit(_model(), steps=3)
    logged = model.trainer.callback_metrics
    assert logged[metrics.TAU].item() == pytest.approx(tau_at(2, 0.996, 10), abs=1e-7)
    assert logged[metrics.LR].item() == pytest.approx(0.1, abs=1e-8)


def test_fused_buffer_copy_copies_every_buffer_exactly() -> None:
    online, target = _conv_backbone(), _conv_backbone()
    online.train()(torch.randn(4, *SHAPE))  # running stats and num_batches_tracked move
    momentum.update_momentum(online, target, m=0.5)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        assert t.dtype == o.dtype and torch.equal(t, o)
    with pytest.raises(ValueError, match="buffers"):
        momentum.update_momentum(online, copy.deepcopy(online).append(nn.BatchNorm1d(1, affine=False)), m=0.5)


def test_target_update_gathered_once_equals_update_momentum_every_step() -> None:
    torch.manual_seed(0)
    online = nn.ModuleList([_conv_backbone(), nn.Linear(8, 4)])
    gathered, walked = copy.deepcopy(online), copy.deepcopy(online)
    update = momentum.TargetUpdate(list(zip(online, gathered, strict=True)))
    for step in range(3):
        with torch.no_grad():  # the optimizer changes the online weights in place
            for p in online.parameters():
                p.add_(torch.randn_like(p))
        online[0].train()(torch.randn(4, *SHAPE))
        update(0.9 - 0.1 * step)
        for o, w in zip(online, walked, strict=True):
            momentum.update_momentum(o, w, 0.9 - 0.1 * step)
    for g, w in zip(gathered.state_dict().values(), walked.state_dict().values(), strict=True):
        assert torch.equal(g, w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_target_update_equals_scalar_lerp_bitwise(dtype: torch.dtype) -> None:
    """float32 on the CPU takes the shared 0-dim weight; other dtypes the scalar overload: same bits."""
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(30, 20), nn.Linear(20, 7)).to(dtype)
    target, reference = copy.deepcopy(online), copy.deepcopy(online)
    with torch.no_grad():
        torch._foreach_add_(list(online.parameters()), [torch.randn_like(p) for p in online.parameters()])
    update = momentum.TargetUpdate([(online, target)])
    assert (update.weight is not None) == (dtype == torch.float32)
    for m in (0.996, 0.3, 1.0):  # lerp switches formula at weight 0.5
        update(m)
        with torch.no_grad():
            torch._foreach_lerp_(list(reference.parameters()), list(online.parameters()), 1.0 - m)
        pairs = zip(target.parameters(), reference.parameters(), strict=True)
        assert all(torch.equal(t, r) for t, r in pairs)
    assert not torch.equal(target[0].weight, online[0].weight)


def test_fast_path_config_fields_reach_the_module_and_its_hparams() -> None:
    config = make_config({"views_as_one_batch": True, "channels_last": True})
    info = DataInfo((3, 32, 32), 10, (0.5,) * 3, (0.25,) * 3, is_image=True)
    module = build_module(config, info, augment=None)
    assert module.views_as_one_batch and module.channels_last
    assert module.hparams["views_as_one_batch"] is True and module.hparams["channels_last"] is True
    assert not make_config({}).views_as_one_batch and not make_config({}).channels_last


@pytest.mark.parametrize("blur", [False, True])
def test_compiled_augment_gives_the_eager_views_up_to_float_rounding(blur: bool) -> None:
    """Same draws, same views: every op on (both views, so solarize too), crops that shrink 20 -> 16."""
    torch._dynamo.reset()  # no variants left from other tests, so none can fall back to eager
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    views = byol_view_params(16, blur=blur, channel_permute_p=0.5, invert_p=0.5)
    eager, compiled = (
        TwoViewAugment(*views, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3), compiled=c) for c in (False, True)
    )
    images = torch.randint(
        0, 256, (32, 3, 20, 20), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    for seed in range(3):
        expected = eager(images, torch.Generator().manual_seed(seed))
        got = compiled(images, torch.Generator().manual_seed(seed))
        for e, g in zip(expected, got, strict=True):
            torch.testing.assert_close(g, e, atol=2e-5, rtol=0)
    # compiled, each whole: the crop box and the four jitter ops (shared by the views), the rest per view
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs == 7


@pytest.mark.slow
def test_compile_augment_config_field_trains_like_the_eager_augment(tmp_path: Path) -> None:
    config = {**TINY, "max_epochs": 1, "eval_every": 1, "output_dir": str(tmp_path)}
    augment = build_augment(
        make_config({**config, "compile_augment": True}), DataInfo((3, 32, 32), 10, None, None, is_image=True)
    )
    assert isinstance(augment, TwoViewAugment) and augment.view1.compiled and augment.view2.compiled
    assert not make_config({}).compile_augment
    eager = fit(config, progress_bar=False).metrics[metrics.LOSS]
    compiled = fit({**config, "compile_augment": True}, progress_bar=False).metrics[metrics.LOSS]
    assert compiled == pytest.approx(eager, rel=1e-3)
