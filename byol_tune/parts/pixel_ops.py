"""Batched pixel operations on (B, 3, H, W) float images in [0, 1], with per-sample parameters: the
building blocks of :class:`byol_tune.parts.transforms.BatchViewAugment`. Plain tensor arithmetic that
``torch.compile`` can fuse; tests/test_transforms.py checks each against a reference (torchvision's
op, ``torch.where``, ``torch.remainder``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SOLARIZE_THRESHOLD = 0.5  # on [0, 1] images; solarize() relies on 0.5
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def gray(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma."""
    r, g, b = x.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by a per-sample ``shift`` (B,) in [-0.5, 0.5]; (B, 3, H, W) -> (B, 3, H, W).

    The RGB -> HSV -> RGB round trip with h += shift, fused: v = max and v*s = max - min, so only h is
    needed; c_n = v - v*s*clamp(min(k, 4-k), 0, 1) with k = (n + 6h) mod 6 and n = 5, 3, 1 for R, G, B.
    (tests/test_transforms.py keeps the unfused round trip as its reference.)
    """
    r, g, b = x.unbind(1)  # each (B, H, W)
    # elementwise max/min: aminmax over the 3-channel dim ran 10x slower on a CPU
    maxc, minc = torch.maximum(torch.maximum(r, g), b), torch.minimum(torch.minimum(r, g), b)
    delta = maxc - minc
    h6 = select(maxc == r, g - b, select(maxc == g, 2.0 * delta + b - r, 4.0 * delta + r - g))
    h6 = h6 / (delta + (delta == 0).to(x.dtype)) + 6.0 * shift.view(-1, 1, 1)  # grey: 0 / 1
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = mod6(n + h6.unsqueeze(1))  # (B, 3, H, W)
    return maxc.unsqueeze(1) - delta.unsqueeze(1) * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


def mod6(k: Tensor) -> Tensor:
    """``torch.remainder(k, 6.0)`` for k in [-6, 18) (adjust_hue's range is [-3, 13]), equal to it but
    for the sign of a zero: each subtraction of 6 or 12 is exact (Sterbenz' lemma) and the +6 for k < 0
    rounds as remainder's own. It is plain arithmetic, so ``torch.compile`` vectorises it (3x faster
    than a compiled ``remainder`` on a CPU)."""
    wraps = (k >= 6.0).to(k.dtype) + (k >= 12.0).to(k.dtype)
    return k - 6.0 * wraps + 6.0 * (k < 0.0).to(k.dtype)


def solarize(x: Tensor) -> Tensor:
    """Invert the values at or above ``SOLARIZE_THRESHOLD`` (0.5), as torchvision's ``solarize``: at 0.5,
    ``x >= 0.5`` holds exactly where ``1 - x <= x``, so it is an elementwise min (``1 - x`` is exact
    there), one pass instead of a comparison and a select."""
    return torch.minimum(x, 1.0 - x)


def select(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``torch.where(mask, a, b)`` as a lerp with weights 0 and 1: the same values wherever ``a - b`` is
    finite (a zero may change sign; a NaN or overflow in ``a - b`` spreads), 3-4x faster than ``where``
    on a CPU for full-size and per-sample masks (measured on (64, 3, 32, 32)). Views stay in [0, 1]."""
    return torch.lerp(b, a, mask.to(a.dtype))


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with a per-sample ``sigma`` (B,), reflect padding, as a depthwise conv;
    (B, C, H, W) -> (B, C, H, W)."""
    bsz, c, hgt, wid = x.shape
    k = kernel_size
    taps = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2  # (k,)
    kernel = torch.exp(-0.5 * (taps / sigma[:, None]) ** 2)  # (B, k)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, k)
    pad = k // 2
    y = F.pad(x.reshape(1, bsz * c, hgt, wid), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, kernel.view(bsz * c, 1, 1, k), groups=bsz * c)  # (1, B*C, H+2p, W)
    y = F.conv2d(y, kernel.view(bsz * c, 1, k, 1), groups=bsz * c)  # (1, B*C, H, W)
    return y.view(bsz, c, hgt, wid)
