"""Tests for byol_tune.parts.transforms (BYOL augmentations, batched and PIL paths)."""

from __future__ import annotations

import pickle
from dataclasses import replace
from typing import Any

import pytest
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import functional as tvF

from byol_tune.parts.pixel_ops import adjust_hue, mod6, select, solarize
from byol_tune.parts.transforms import (
    BatchViewAugment,
    PilTwoViews,
    TwoViewAugment,
    ViewParams,
    byol_view_params,
    clean_transform,
    pil_view_transform,
)

MEAN = (0.49, 0.48, 0.45)
STD = (0.247, 0.243, 0.261)
ZERO, ONE = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
# Every random op off, crop covers the whole (square) image.
OFF = ViewParams(crop_min_scale=1.0, hflip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)


def _images(b: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=g)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


def _view(params: ViewParams, mean: tuple = MEAN, std: tuple = STD) -> BatchViewAugment:
    return BatchViewAugment(params, mean, std)


def test_all_off_is_plain_normalisation() -> None:
    x = _images()
    out = _view(OFF)(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out, _normalise(x), atol=1e-5, rtol=0)


def test_float_input_matches_uint8_input() -> None:
    x = _images()
    torch.testing.assert_close(_view(OFF)(x.float() / 255.0), _normalise(x), atol=1e-5, rtol=0)


def test_hflip_is_torch_flip() -> None:
    x = _images()
    out = _view(replace(OFF, hflip_p=1.0))(x)
    torch.testing.assert_close(out, torch.flip(_normalise(x), dims=[3]), atol=1e-5, rtol=0)


def test_grayscale_gives_equal_channels() -> None:
    out = _view(replace(OFF, grayscale_p=1.0), ZERO, ONE)(_images())
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    x = _images().float() / 255.0
    expected = 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(out[:, 0], expected, atol=1e-6, rtol=0)


def test_solarize_exact_values() -> None:
    x = torch.tensor([0.0, 0.25, 0.49, 0.5, 0.75, 1.0]).view(1, 1, 1, 6).expand(2, 3, 6, 6)
    params = replace(OFF, image_size=6, solarize_p=1.0)
    out = _view(params, ZERO, ONE)(x.contiguous())
    expected = torch.tensor([0.0, 0.25, 0.49, 0.5, 0.25, 0.0]).view(1, 1, 1, 6).expand(2, 3, 6, 6)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_solarize_equals_torchvision_solarize() -> None:
    """min(x, 1 - x) is solarize at 0.5 exactly: every float32 within 2,000 ulps of 0.5, a stride over
    [0, 2], and negatives; the batched view uses it."""
    half = torch.tensor(0.5).view(torch.int32)
    bits = torch.cat([torch.arange(int(half) - 2000, int(half) + 2000), torch.arange(0, 0x40000000, 4099)])
    x = torch.cat([bits.to(torch.int32).view(torch.float32), -torch.rand(100)])
    assert torch.equal(solarize(x), tvF.solarize(x, 0.5))
    image = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = _view(replace(OFF, image_size=8, solarize_p=1.0), ZERO, ONE)(image)
    torch.testing.assert_close(out, tvF.solarize(image, 0.5), atol=1e-6, rtol=0)


@pytest.mark.parametrize("mask_shape", [(6, 3, 5, 5), (6, 1, 1, 1), (6, 5, 5)])
def test_select_equals_torch_where_for_finite_differences(mask_shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(len(mask_shape))
    shape = (6, 3, 5, 5) if len(mask_shape) == 4 else (6, 5, 5)
    a, b = torch.randn(shape, generator=g) * 1e3, torch.randn(shape, generator=g) * 1e-3
    mask = torch.rand(mask_shape, generator=g) < 0.5
    assert torch.equal(select(mask, a, b), torch.where(mask, a, b))


def test_invert_is_one_minus_x() -> None:
    x = _images().float() / 255.0
    out = _view(replace(OFF, invert_p=1.0), ZERO, ONE)(x)
    torch.testing.assert_close(out, 1.0 - x, atol=1e-6, rtol=0)


def test_channel_permute_permutes_channels() -> None:
    x = torch.stack([torch.full((8, 8), v) for v in (0.1, 0.5, 0.9)]).expand(64, 3, 8, 8)
    params = replace(OFF, image_size=8, channel_permute_p=1.0)
    out = _view(params, ZERO, ONE)(x.contiguous(), torch.Generator().manual_seed(0))
    per_sample = out[:, :, 0, 0]  # (B, 3)
    torch.testing.assert_close(per_sample.sort(dim=1).values, x[:, :, 0, 0], atol=1e-6, rtol=0)
    assert len({tuple(row.tolist()) for row in per_sample}) > 1


def test_seeded_generator_reproducible_and_seeds_differ() -> None:
    aug = TwoViewAugment(*byol_view_params(32), mean=MEAN, std=STD)
    x = _images(8)
    a1, a2 = aug(x, torch.Generator().manual_seed(1))
    b1, b2 = aug(x, torch.Generator().manual_seed(1))
    c1, _ = aug(x, torch.Generator().manual_seed(2))
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.allclose(a1, c1)
    assert not torch.allclose(a1, a2)


def test_per_sample_randomness() -> None:
    x = _images(1).expand(2, 3, 32, 32).contiguous()
    for params in (ViewParams(), replace(OFF, jitter_p=1.0)):
        out = _view(params)(x, torch.Generator().manual_seed(0))
        assert not torch.allclose(out[0], out[1]), params


def rgb_to_hsv(x: Tensor) -> Tensor:
    """Reference (unfused) batched RGB -> HSV, all channels in [0, 1]; (B, 3, H, W) -> (B, 3, H, W)."""
    maxc, _ = x.max(dim=1)  # (B, H, W)
    delta = maxc - x.min(dim=1).values
    s = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = ((maxc.unsqueeze(1) - x) / safe.unsqueeze(1)).unbind(1)
    r, g, _ = x.unbind(1)
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    return torch.stack((torch.remainder(h / 6.0, 1.0), s, maxc), dim=1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """Reference (unfused) batched HSV -> RGB, (B, 3, H, W) -> (B, 3, H, W).

    c_n = v - v*s*clamp(min(k, 4-k), 0, 1) with k = (n + 6h) mod 6 and n = 5, 3, 1 for R, G, B.
    """
    h, s, v = hsv.unsqueeze(2).unbind(1)  # each (B, 1, H, W)
    n = torch.tensor([5.0, 3.0, 1.0], device=hsv.device, dtype=hsv.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * h, 6.0)  # (B, 3, H, W)
    return v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


def test_hsv_round_trip_and_zero_hue_shift() -> None:
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x[0, :, 0, 0] = 0.3  # grey pixel: zero saturation
    hsv = rgb_to_hsv(x)
    assert hsv.min() >= 0.0 and hsv.max() <= 1.0
    torch.testing.assert_close(hsv_to_rgb(hsv), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(adjust_hue(x, torch.zeros(4)), x, atol=1e-5, rtol=0)
    shifted = adjust_hue(x, torch.full((4,), 0.5))
    assert (shifted - x).abs().max() > 0.1
    torch.testing.assert_close(adjust_hue(shifted, torch.full((4,), 0.5)), x, atol=1e-5, rtol=0)
    for shift in (-0.37, 0.1, 0.5):  # fused version == HSV round trip == torchvision, per sample
        hsv[:, 0] = torch.remainder(rgb_to_hsv(x)[:, 0] + shift, 1.0)
        torch.testing.assert_close(adjust_hue(x, torch.full((4,), shift)), hsv_to_rgb(hsv))
        torch.testing.assert_close(adjust_hue(x, torch.full((4,), shift)), tvF.adjust_hue(x, shift))
    mixed = adjust_hue(x, torch.tensor([0.0, 0.2, -0.2, 0.4]))
    torch.testing.assert_close(mixed[2], tvF.adjust_hue(x[2], -0.2))


def test_mod6_equals_remainder_over_its_range() -> None:
    """A fine grid of [-6, 18) and the 20,000 floats either side of -6, -3, -0, 0, 3, 6, 12 and 13:
    equal values (``torch.equal`` does not see a zero's sign, the one thing that may differ)."""
    near = [
        (torch.tensor(b).view(torch.int32) + torch.arange(-20_000, 20_000, dtype=torch.int32)).view(
            torch.float32
        )
        for b in (-6.0, -3.0, -0.0, 0.0, 3.0, 6.0, 12.0, 13.0)
    ]
    k = torch.cat([torch.linspace(-6.0, 18.0, 1_000_001), *near])
    k = k[(k >= -6.0) & (k < 18.0)]
    assert torch.equal(mod6(k), torch.remainder(k, 6.0))
    # -1e-7 + 6 rounds to 6.0 in float32, as in remainder
    got = mod6(torch.tensor([5.999999, 6.0, 11.5, 12.0, -0.5, -1e-7]))
    assert torch.equal(got, torch.tensor([5.999999, 0.0, 5.5, 0.0, 5.5, 6.0]))


def test_jitter_hue_keeps_value_and_brightness_is_one_factor_per_sample() -> None:
    x = _images(8).float() / 255.0
    gen = torch.Generator().manual_seed(0)
    only: dict[str, Any] = {
        "jitter_p": 1.0,
        "brightness": 0.0,
        "contrast": 0.0,
        "saturation": 0.0,
        "hue": 0.0,
    }
    hue = _view(replace(OFF, **{**only, "hue": 0.5}), ZERO, ONE)(x, gen)
    assert (hue - x).abs().max() > 0.05
    torch.testing.assert_close(hue.amax(dim=1), x.amax(dim=1), atol=1e-5, rtol=0)  # HSV value
    bright = _view(replace(OFF, **{**only, "brightness": 0.4}), ZERO, ONE)(x, gen)
    ratio = torch.where(x > 0.05, bright / x.clamp_min(0.05), torch.nan).flatten(1)  # (B, N)
    ratio = torch.where(bright.flatten(1) < 1.0, ratio, torch.nan)  # unclamped pixels only
    hi, lo = ratio.nan_to_num(nan=-9.0).amax(1), ratio.nan_to_num(nan=9.0).amin(1)
    assert (hi - lo).max() < 1e-4
    factors = ratio.nanmean(1)
    assert factors.min() >= 0.6 - 1e-5 and factors.max() <= 1.4 + 1e-5 and factors.std() > 0.01


def test_byol_view_params_asymmetric() -> None:
    v1, v2 = byol_view_params(96)
    assert (v1.blur_p, v1.solarize_p, v2.blur_p, v2.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    assert v1.image_size == v2.image_size == 96
    n1, n2 = byol_view_params(32, blur=False, hflip_p=0.3)
    assert n1.blur_p == n2.blur_p == 0.0 and n2.solarize_p == 0.2
    assert n1.hflip_p == n2.hflip_p == 0.3
    assert ViewParams(image_size=224).blur_kernel_size == 23  # paper: 23x23 at 224


@pytest.mark.parametrize(
    ("field", "value"),
    [("hflip_p", 1.5), ("blur_p", -0.1), ("crop_min_scale", 0.0), ("hue", 0.6),
     ("brightness", -1.0), ("image_size", 1)],
)  # fmt: skip
def test_bad_params_raise_naming_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"{field}.*{value}"):
        ViewParams(**{field: value})


def test_bad_input_shape_and_stats() -> None:
    with pytest.raises(ValueError, match="std"):
        BatchViewAugment(ViewParams(), MEAN, (0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="shape"):
        _view(ViewParams())(torch.zeros(2, 1, 32, 32))


def test_output_size_differs_from_input() -> None:
    aug = TwoViewAugment(*byol_view_params(64), mean=MEAN, std=STD)
    v1, v2 = aug(_images(3, size=96))
    assert v1.shape == v2.shape == (3, 3, 64, 64) and v1.dtype == torch.float32
    full = _view(replace(OFF, image_size=64))(_images(3, size=96))
    assert full.shape == (3, 3, 64, 64)


def test_pil_path_shapes_and_views_differ() -> None:
    torch.manual_seed(0)
    img = Image.fromarray(_images(1, size=48)[0].permute(1, 2, 0).numpy())
    views = pickle.loads(pickle.dumps(PilTwoViews(*byol_view_params(32), mean=MEAN, std=STD)))
    v1, v2 = views(img)
    assert v1.shape == v2.shape == (3, 32, 32) and v1.dtype == v2.dtype == torch.float32
    assert type(v1) is torch.Tensor and not torch.allclose(v1, v2)
    out = pil_view_transform(ViewParams(channel_permute_p=1.0, invert_p=0.5), MEAN, STD)(img)
    assert out.shape == (3, 32, 32)


def test_pil_path_extras_same_semantics() -> None:
    torch.manual_seed(0)
    rgb = torch.tensor([30, 120, 250], dtype=torch.uint8).view(1, 1, 3).expand(32, 32, 3)
    img, x = Image.fromarray(rgb.numpy()), rgb.permute(2, 0, 1).float() / 255.0
    inverted = pil_view_transform(replace(OFF, invert_p=1.0), ZERO, ONE)(img)
    torch.testing.assert_close(inverted, 1.0 - x)
    gray = pil_view_transform(replace(OFF, grayscale_p=1.0), ZERO, ONE)(img)
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    permute = pil_view_transform(replace(OFF, channel_permute_p=1.0), ZERO, ONE)
    seen = torch.stack([permute(img)[:, 0, 0] for _ in range(20)])  # (20, 3)
    torch.testing.assert_close(seen.sort(dim=1).values, x[:, 0, 0].expand(20, 3))
    assert len({tuple(row.argsort().tolist()) for row in seen}) > 1


def test_pil_path_all_off_matches_batched_path() -> None:
    x = _images(1)
    img = Image.fromarray(x[0].permute(1, 2, 0).numpy())
    out = pil_view_transform(OFF, MEAN, STD)(img)
    torch.testing.assert_close(out, _normalise(x)[0], atol=1e-5, rtol=0)


def test_clean_transform_pil_and_tensor() -> None:
    x = _images(1, size=40)[0]
    img = Image.fromarray(x.permute(1, 2, 0).numpy())
    t = clean_transform(32, MEAN, STD, resize=40)
    a, b = t(img), t(x)
    assert a.shape == b.shape == (3, 32, 32) and a.dtype == b.dtype == torch.float32
    torch.testing.assert_close(a, _normalise(x[None, :, 4:36, 4:36])[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    assert clean_transform(32, MEAN, STD)(_images(1, size=64)[0]).shape == (3, 32, 32)


def test_blur_per_sample_sigma_in_paper_range() -> None:
    x = torch.zeros(16, 3, 33, 33)
    x[:, :, 16, 16] = 1.0  # impulse: the output is the (normalised, symmetric) kernel
    params = replace(OFF, image_size=33, blur_p=1.0)
    out = _view(params, ZERO, ONE)(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.sum(dim=(2, 3)), torch.ones(16, 3))
    torch.testing.assert_close(out, out.flip(2).flip(3))
    peak = out[:, 0, 16, 16]
    k = params.blur_kernel_size
    lo, hi = (tvF.gaussian_blur(x[:1], [k, k], [s, s])[0, 0, 16, 16] for s in (2.0, 0.1))
    assert bool((peak >= lo - 1e-6).all() and (peak <= hi + 1e-6).all()) and peak.std() > 0.01
    const = _view(params, ZERO, ONE)(torch.full((2, 3, 33, 33), 0.3))
    torch.testing.assert_close(const, torch.full_like(const, 0.3))  # reflect padding: no dark rim


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_crop_boxes_respect_scale_and_ratio(flip: float) -> None:
    size, out_size, bsz = 96, 32, 64
    ramp = torch.arange(size, dtype=torch.float32) / size
    x = torch.stack([ramp.expand(size, size), ramp[:, None].expand(size, size), 0 * ramp.expand(size, size)])
    params = replace(OFF, image_size=out_size, crop_min_scale=0.2, hflip_p=flip)
    out = _view(params, ZERO, ONE)(x.expand(bsz, 3, size, size), torch.Generator().manual_seed(0))
    # On a linear ramp bilinear sampling is exact; interior steps give the box size in pixels.
    w = (out[:, 0, 5, 2:-1] - out[:, 0, 5, 1:-2]).mean(1) * size * out_size
    h = (out[:, 1, 2:-1, 5] - out[:, 1, 1:-2, 5]).mean(1) * size * out_size
    assert bool((w < 0).all()) if flip else bool((w > 0).all())
    w, h = w.abs(), h
    area = w * h / size**2
    assert area.min() >= 0.2 - 0.02 and area.max() <= 1.0 + 1e-4 and area.std() > 0.05
    assert (w / h).min() >= 0.75 - 0.03 and (w / h).max() <= 4 / 3 + 0.03
