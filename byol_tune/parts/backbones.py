"""Backbone registry: every backbone maps an input batch to flat features ``(B, D)``.

The feature dimension is measured with a dry forward pass (:func:`feature_dim`), never hard-coded, so
any ``nn.Module`` a user brings works with the heads.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch import Tensor, nn

BackboneFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, BackboneFactory] = {}


def register(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Add a backbone factory under ``name``."""

    def wrap(factory: BackboneFactory) -> BackboneFactory:
        _REGISTRY[name] = factory
        return factory

    return wrap


def backbone_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def build_backbone(name: str, **kwargs: object) -> nn.Module:
    """Build a registered backbone; unknown names raise ``ValueError`` listing the choices."""
    if name not in _REGISTRY:
        raise ValueError(f"backbone: unknown name {name!r}; choose from {', '.join(backbone_names())}")
    return _REGISTRY[name](**kwargs)


@torch.no_grad()
def feature_dim(backbone: nn.Module, example: Tensor) -> int:
    """Flat feature size of ``backbone`` on ``example`` (a batch of >= 2), in eval mode."""
    was_training = backbone.training
    backbone.eval()
    try:
        out = backbone_features(backbone, example)
    finally:
        backbone.train(was_training)
    return int(out.shape[1])


def backbone_features(backbone: nn.Module, x: Tensor) -> Tensor:
    """Backbone output as ``(B, D)``: takes ``["out"]`` of dict outputs, global-pools feature maps."""
    y = backbone(x)
    if isinstance(y, dict):
        y = y["out"]
    if y.ndim > 2:
        y = y.flatten(start_dim=2).mean(dim=2)  # (B, C, *) -> (B, C)
    return y


class InputStandardize(nn.Module):
    """Per-image, per-channel standardisation of the input (a parameter-free InstanceNorm).

    Without it BYOL on small synthetic data has nothing but colour to bootstrap from and does not learn
    in minutes on a CPU (see ../shared/EMBEDDED_DATA.md in the team notes).
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


@register("small_cnn")
def small_cnn(widths: tuple[int, ...] = (16, 32, 64, 256), input_norm: bool = True) -> nn.Module:
    """Four conv-BN-ReLU stages with stride 2 after the first, then global average pooling.

    Fast enough to learn the embedded shapes dataset in minutes on a 2-core CPU.
    """
    layers: list[nn.Module] = [InputStandardize()] if input_norm else []
    cin = 3
    for width in widths:
        layers += _conv_bn_relu(cin, width, stride=2)
        cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def _resnet(
    arch: Callable[..., torchvision.models.ResNet], small_image_stem: bool, input_norm: bool
) -> nn.Module:
    net = arch(weights=None)
    if small_image_stem:
        # CIFAR stem (He et al. 2016, Sec. 4.2; solo-learn and lightly at 32x32): 3x3 conv, no max-pool.
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return nn.Sequential(InputStandardize(), net) if input_norm else net


@register("resnet18")
def resnet18(small_image_stem: bool = False, input_norm: bool = False) -> nn.Module:
    return _resnet(torchvision.models.resnet18, small_image_stem, input_norm)


@register("resnet50")
def resnet50(small_image_stem: bool = False, input_norm: bool = False) -> nn.Module:
    return _resnet(torchvision.models.resnet50, small_image_stem, input_norm)


@register("mlp")
def mlp_encoder(input_dim: int = 0, hidden_dim: int = 256, output_dim: int = 256) -> nn.Module:
    """Encoder for feature-vector data (Edifice's vector BYOL): Linear-BN-ReLU-Linear."""
    if input_dim < 1:
        raise ValueError(f"input_dim must be >= 1 for the mlp backbone, got {input_dim}")
    return nn.Sequential(
        nn.Linear(input_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, output_dim),
    )
