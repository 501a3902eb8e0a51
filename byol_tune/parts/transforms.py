"""BYOL's asymmetric image augmentations (Grill et al. 2020, "Bootstrap Your Own Latent", Table 6).

One parametrised view (:class:`ViewParams`) is used twice with different blur/solarize probabilities
(:func:`byol_view_params`), in two interchangeable paths with the same parameters and semantics:

* :class:`BatchViewAugment` / :class:`TwoViewAugment`: batched on the batch's device, per-sample
  random parameters, no Python loop over samples. Use it for in-memory datasets (the fast path).
* :func:`pil_view_transform` / :class:`PilTwoViews`: per-image torchvision v2 pipelines for large
  on-disk datasets read through DataLoader workers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

from byol_tune.errors import ConfigError
from byol_tune.parts.pixel_ops import SOLARIZE_THRESHOLD, adjust_hue, gaussian_blur, gray, select, solarize

Triple = tuple[float, float, float]
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # RandomResizedCrop aspect-ratio range (paper / torchvision)
BLUR_SIGMA = (0.1, 2.0)  # Gaussian blur sigma range (paper, Table 6)
_CROP_TRIES = 10  # torchvision RandomResizedCrop.get_params tries before the centre-crop fallback
# Columns of the per-sample uniform draw: crop scale, crop log-ratio, crop offsets (y, x), flip,
# jitter mask, jitter factors (b, c, s, h), grayscale, blur mask, sigma, solarize, permute mask,
# permutation keys (3), invert.
_SPLITS = (_CROP_TRIES, _CROP_TRIES, 2, 1, 1, 4, 1, 1, 1, 1, 1, 3, 1)


@dataclass(frozen=True)
class ViewParams:
    """Parameters of one augmented view; defaults are the paper's view 1 (Table 6) at 32x32."""

    image_size: int = 32
    crop_min_scale: float = 0.08  # random resized crop scale (min, 1.0), ratio (3/4, 4/3)
    hflip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 1.0  # gaussian blur, sigma ~ U(0.1, 2.0), kernel ~10% of image side (odd)
    solarize_p: float = 0.0  # threshold 0.5 on [0,1]
    channel_permute_p: float = 0.0  # extras (not in the paper) found to help on tiny synthetic data
    invert_p: float = 0.0

    def __post_init__(self) -> None:
        def bad(name: str, value: object, need: str) -> ConfigError:
            return ConfigError(f"ViewParams.{name} must be {need}, got {value!r}")

        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise bad("image_size", size, "an int >= 2")
        if not 0.0 < self.crop_min_scale <= 1.0:
            raise bad("crop_min_scale", self.crop_min_scale, "in (0, 1]")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_p") and not 0.0 <= value <= 1.0:
                raise bad(f.name, value, "a probability in [0, 1]")
        for name in ("brightness", "contrast", "saturation"):
            if not getattr(self, name) >= 0.0:
                raise bad(name, getattr(self, name), ">= 0")
        if not 0.0 <= self.hue <= 0.5:
            raise bad("hue", self.hue, "in [0, 0.5]")

    @property
    def blur_kernel_size(self) -> int:
        """Odd kernel of ~10% of the side: 23 at 224 as in the paper, 3 at 32."""
        k = int(0.1 * self.image_size)
        return max(3, k if k % 2 == 1 else k + 1)


def byol_view_params(image_size: int, blur: bool = True, **overrides: Any) -> tuple[ViewParams, ViewParams]:
    """Paper views (Table 6): view 1 blur_p=1.0 solarize_p=0.0; view 2 blur_p=0.1 solarize_p=0.2;
    blur=False sets both blur_p to 0 (as lightly and solo-learn do for 32x32).

    ``overrides`` (any :class:`ViewParams` field) apply to both views and take precedence.
    """
    view1: dict[str, Any] = {"blur_p": 1.0 if blur else 0.0, "solarize_p": 0.0}
    view2: dict[str, Any] = {"blur_p": 0.1 if blur else 0.0, "solarize_p": 0.2}
    shared = {"image_size": image_size, **overrides}
    return ViewParams(**{**view1, **shared}), ViewParams(**{**view2, **shared})


def _check_stats(mean: Triple, std: Triple) -> None:
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ConfigError(f"mean/std must be 3 values with std > 0, got mean={mean} std={std}")


class _Draws(NamedTuple):
    """Named columns of one view's per-sample uniform draw, (B, 37) split by ``_SPLITS``."""

    scale_u: Tensor  # (B, 10)
    ratio_u: Tensor  # (B, 10)
    offset_u: Tensor  # (B, 2)
    flip_u: Tensor  # (B, 1), and (B, 1) for every column below but factors_u and keys_u
    jitter_u: Tensor
    factors_u: Tensor  # (B, 4): brightness, contrast, saturation, hue
    gray_u: Tensor
    blur_u: Tensor
    sigma_u: Tensor
    solarize_u: Tensor
    permute_u: Tensor
    keys_u: Tensor  # (B, 3)
    invert_u: Tensor


def _draws(u: Tensor) -> _Draws:
    return _Draws(*u.split(_SPLITS, dim=1))


def _fires(col: Tensor, prob: float) -> Tensor:
    """(B, 1) uniform draw -> (B, 1, 1, 1) mask of the samples an op with probability ``prob`` hits."""
    return (col < prob).view(-1, 1, 1, 1)


def _factor(strength: float, col: Tensor) -> Tensor:
    """ColorJitter's per-sample factor U(max(0, 1 - s), 1 + s), (B,) -> (B, 1, 1, 1)."""
    lo = max(0.0, 1.0 - strength)
    return (lo + (1.0 + strength - lo) * col).view(-1, 1, 1, 1)


def _brightness(x: Tensor, d: _Draws, p: ViewParams) -> Tensor:
    return (x * _factor(p.brightness, d.factors_u[:, 0])).clamp(0.0, 1.0)


def _contrast(x: Tensor, d: _Draws, p: ViewParams) -> Tensor:
    f, mean = _factor(p.contrast, d.factors_u[:, 1]), gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return (f * x + (1.0 - f) * mean).clamp(0.0, 1.0)


def _saturation(x: Tensor, d: _Draws, p: ViewParams) -> Tensor:
    f = _factor(p.saturation, d.factors_u[:, 2])
    return (f * x + (1.0 - f) * gray(x)).clamp(0.0, 1.0)


def _hue(x: Tensor, d: _Draws, p: ViewParams) -> Tensor:
    return adjust_hue(x, (2.0 * d.factors_u[:, 3] - 1.0) * p.hue).clamp(0.0, 1.0)


# ColorJitter's ops by torchvision's index (0 brightness, 1 contrast, 2 saturation, 3 hue) and strength.
_JITTER_OPS: tuple[tuple[Callable[[Tensor, _Draws, ViewParams], Tensor], str], ...] = (
    (_brightness, "brightness"),
    (_contrast, "contrast"),
    (_saturation, "saturation"),
    (_hue, "hue"),
)


def _after_jitter(
    x: Tensor, jittered: Tensor | None, d: _Draws, p: ViewParams, mean: Tensor, std: Tensor
) -> Tensor:
    """Everything after the colour-jitter ops: keep ``jittered`` where the jitter fires, grayscale,
    blur, solarize, the extras, normalisation; (B, 3, S, S) in [0, 1] -> normalised (B, 3, S, S)."""
    if jittered is not None:
        x = select(_fires(d.jitter_u, p.jitter_p), jittered, x)
    if p.grayscale_p > 0:
        x = select(_fires(d.gray_u, p.grayscale_p), gray(x).expand_as(x), x)
    if p.blur_p > 0:
        sigma = BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * d.sigma_u[:, 0]  # (B,)
        x = select(_fires(d.blur_u, p.blur_p), gaussian_blur(x, sigma, p.blur_kernel_size), x)
    if p.solarize_p > 0:
        x = select(_fires(d.solarize_u, p.solarize_p), solarize(x), x)
    if p.channel_permute_p > 0:
        perm = d.keys_u.argsort(dim=1).view(-1, 3, 1, 1).expand_as(x)  # (B, 3, S, S)
        x = select(_fires(d.permute_u, p.channel_permute_p), x.gather(1, perm), x)
    if p.invert_p > 0:
        x = select(_fires(d.invert_u, p.invert_p), 1.0 - x, x)
    return (x - mean) / std


def _crop_theta(d: _Draws, p: ViewParams, bsz: int, h_in: int, w_in: int) -> Tensor:
    """The affine map of a random resized crop plus flip, for ``affine_grid``: boxes drawn like
    torchvision's RandomResizedCrop (first of 10 valid tries, else centre crop), vectorised over
    (B, 10) candidates; (B, 2, 3)."""
    lo = p.crop_min_scale
    area = h_in * w_in * (lo + (1.0 - lo) * d.scale_u)  # (B, 10)
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * d.ratio_u)  # (B, 10)
    cw, ch = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    valid = (cw > 0) & (cw <= w_in) & (ch > 0) & (ch <= h_in)  # (B, 10)
    first = valid.to(torch.uint8).argmax(dim=1, keepdim=True)  # first valid try, (B, 1)
    ok = valid.any(dim=1)  # (B,)
    # torchvision's centre-crop fallback, clipped to the ratio range.
    fw, fh = w_in, h_in
    if w_in / h_in < CROP_RATIO[0]:
        fh = round(fw / CROP_RATIO[0])
    elif w_in / h_in > CROP_RATIO[1]:
        fw = round(fh * CROP_RATIO[1])
    w = torch.where(ok, cw.gather(1, first)[:, 0], float(fw))  # (B,)
    h = torch.where(ok, ch.gather(1, first)[:, 0], float(fh))
    top = torch.minimum(torch.floor(d.offset_u[:, 0] * (h_in - h + 1)), h_in - h)
    left = torch.minimum(torch.floor(d.offset_u[:, 1] * (w_in - w + 1)), w_in - w)
    top = torch.where(ok, top, float((h_in - fh) // 2))
    left = torch.where(ok, left, float((w_in - fw) // 2))
    # Output edges [-1, 1] map onto the box edges (align_corners=False); flip negates x-scale.
    sx = torch.where(d.flip_u[:, 0] < p.hflip_p, -w / w_in, w / w_in)
    tx, ty = (2.0 * left + w) / w_in - 1.0, (2.0 * top + h) / h_in - 1.0
    zero = torch.zeros_like(sx)
    return torch.stack((sx, zero, tx, zero, h / h_in, ty), dim=1).view(bsz, 2, 3)


_Stage = TypeVar("_Stage", bound=Callable[..., Tensor])


@functools.cache
def _compiled(fn: _Stage) -> _Stage:
    """One ``torch.compile`` per stage function, shared by every view and augment in the process."""
    return cast(_Stage, torch.compile(fn))


class BatchViewAugment(torch.nn.Module):
    """Batched, on-device: per-sample random parameters for a whole (B, 3, H, W) batch at once,
    on the batch's device.

    Pipeline (paper, Table 6): random resized crop + horizontal flip (one ``affine_grid`` +
    ``grid_sample``), colour jitter, grayscale, Gaussian blur, solarize, then the extras (channel
    permutation, inversion) and normalisation. Colour-jitter ops run in a random order that is drawn
    once per *batch* (torchvision draws it per image). Unlike torchvision's resize, ``grid_sample``
    does not antialias when a crop is shrunk.

    ``compiled=True`` runs the crop boxes, each colour-jitter op and everything after the jitter
    through ``torch.compile``, which fuses their many small elementwise ops into a few loops (numbers
    in benchmarks/RESULTS.md); ``affine_grid`` and ``grid_sample`` stay eager, as compiled they ran
    slower on a CPU. The same random draws then give the same views up to float rounding, not bit
    for bit, hence opt-in. The first batches pay the compilation (seconds; torch caches it on disk for
    later processes), and on a CPU it needs a C++ compiler. Every process compiles its own (with
    ``augment_on_device: false``, each DataLoader worker), and each new set of ViewParams values
    compiles anew: a search whose space varies the augmentation recompiles per trial, and past
    torch's limit of 8 variants a stage runs eagerly.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, params: ViewParams, mean: Triple, std: Triple, compiled: bool = False) -> None:
        super().__init__()
        _check_stats(mean, std)
        self.params = params
        self.compiled = compiled
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """images uint8 (B, 3, H, W) or float in [0, 1] -> normalised float32 (B, 3, S, S)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        p, dev = self.params, images.device
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        src = generator.device if generator is not None else dev
        # float32 whatever the default dtype (Lightning's bf16-true sets bfloat16 around the step)
        u = torch.rand((x.shape[0], sum(_SPLITS)), generator=generator, device=src, dtype=torch.float32)
        d = _draws(u.to(dev))
        theta = self._stage(_crop_theta)(d, p, x.shape[0], x.shape[2], x.shape[3])  # (B, 2, 3)
        # eager even when compiled: compiled, these two ran slower on a CPU
        grid = F.affine_grid(theta, [x.shape[0], 3, p.image_size, p.image_size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        jittered = None
        if p.jitter_p > 0:
            order_src = src if generator is not None else torch.device("cpu")
            order = torch.randperm(4, generator=generator, device=order_src).tolist()
            jittered = x
            for op, strength in (_JITTER_OPS[i] for i in order):
                if getattr(p, strength) > 0:
                    jittered = self._stage(op)(jittered, d, p)
        return self._stage(_after_jitter)(x, jittered, d, p, self.mean.to(dev), self.std.to(dev))

    def _stage(self, fn: _Stage) -> _Stage:
        return _compiled(fn) if self.compiled else fn


class TwoViewAugment(torch.nn.Module):
    """The two asymmetric BYOL views of one batch.

    Typically ``TwoViewAugment(*byol_view_params(32), mean=..., std=...)``; ``compiled`` as in
    :class:`BatchViewAugment`.
    """

    def __init__(
        self, view1: ViewParams, view2: ViewParams, mean: Triple, std: Triple, compiled: bool = False
    ) -> None:
        super().__init__()
        self.view1 = BatchViewAugment(view1, mean, std, compiled)
        self.view2 = BatchViewAugment(view2, mean, std, compiled)

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) -> two normalised float32 (B, 3, S, S) views."""
        return self.view1(images, generator), self.view2(images, generator)


def pil_view_transform(params: ViewParams, mean: Triple, std: Triple) -> Callable[[Any], Tensor]:
    """Per-image torchvision v2 pipeline (PIL or tensor image), same parameters and semantics."""
    _check_stats(mean, std)
    p = params
    ops: list[Callable[..., Any]] = [
        v2.RandomResizedCrop(p.image_size, scale=(p.crop_min_scale, 1.0), ratio=CROP_RATIO),
        v2.RandomHorizontalFlip(p.hflip_p),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
    ]
    jitter = v2.ColorJitter(p.brightness, p.contrast, p.saturation, p.hue)
    optional: list[tuple[float, Callable[..., Any]]] = [
        (p.jitter_p, jitter),
        (p.grayscale_p, v2.Grayscale(num_output_channels=3)),
        (p.blur_p, v2.GaussianBlur(p.blur_kernel_size, sigma=BLUR_SIGMA)),
        (p.solarize_p, v2.RandomSolarize(SOLARIZE_THRESHOLD, p=1.0)),
        (p.channel_permute_p, v2.RandomChannelPermutation()),
        (p.invert_p, v2.RandomInvert(p=1.0)),
    ]
    ops += [v2.RandomApply([op], p=prob) for prob, op in optional if prob > 0]
    ops += [v2.Normalize(list(mean), list(std)), v2.ToPureTensor()]
    return v2.Compose(ops)


class PilTwoViews:
    """Picklable callable for DataLoader workers: image -> (view1 tensor, view2 tensor)."""

    def __init__(self, view1: ViewParams, view2: ViewParams, mean: Triple, std: Triple) -> None:
        self.view1 = pil_view_transform(view1, mean, std)
        self.view2 = pil_view_transform(view2, mean, std)

    def __call__(self, image: Any) -> tuple[Tensor, Tensor]:
        return self.view1(image), self.view2(image)


def clean_transform(
    image_size: int, mean: Triple, std: Triple, resize: int | None = None
) -> Callable[[Any], Tensor]:
    """Evaluation transform: resize the short side to ``resize`` (default ``image_size``), centre
    crop ``image_size``, to float in [0, 1], normalise. Accepts PIL images or (3, H, W) tensors."""
    _check_stats(mean, std)
    return v2.Compose(
        [
            v2.Resize(resize or image_size),
            v2.CenterCrop(image_size),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
            v2.ToPureTensor(),
        ]
    )
