"""Tests for the embedded synthetic shapes dataset (byol_tune.parts.shapes)."""

from __future__ import annotations

import math

import pytest
import torch

from byol_tune.parts.shapes import SHAPE_NAMES, _grid, _local_coords, _silhouette, make_shapes


def _posed_masks(k: int, angles: int = 1, size: int = 64) -> torch.Tensor:
    """Silhouettes (angles, size, size) of class k centred, radius 0.8 of the half-side, aspect 1."""
    theta = torch.arange(angles) * (2 * math.pi / angles)  # (A,)
    zeros, ones = torch.zeros(angles), torch.ones(angles)
    u, v = _local_coords(_grid(size), zeros, zeros, theta, 0.8 * ones, ones)  # (A, H, W)
    return _silhouette(k, u, v)


def test_dtype_shape_and_range() -> None:
    for size in (8, 20):
        images, labels = make_shapes(30, seed=0, image_size=size)
        assert images.shape == (30, 3, size, size)
        assert images.dtype == torch.uint8
        assert labels.shape == (30,)
        assert labels.dtype == torch.int64
        assert int(labels.min()) >= 0 and int(labels.max()) < len(SHAPE_NAMES)
    assert len(SHAPE_NAMES) == 10 and len(set(SHAPE_NAMES)) == 10
    # random colours use most of the 0-255 range
    images, _ = make_shapes(200, seed=0)
    assert int(images.min()) < 20 and int(images.max()) > 235


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"num_images": 0, "seed": 0}, "num_images must be >= 1, got 0"),
        ({"num_images": 4, "seed": 0, "image_size": 7}, "image_size must be >= 8, got 7"),
    ],
)
def test_invalid_arguments_raise(kwargs: dict[str, int], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        make_shapes(**kwargs)


def test_deterministic_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a_images, a_labels = make_shapes(600, seed=3)  # more than one render chunk per class
    assert torch.equal(torch.get_rng_state(), state)
    b_images, b_labels = make_shapes(600, seed=3)
    assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)
    c_images, c_labels = make_shapes(600, seed=4)
    assert not torch.equal(a_labels, c_labels)
    assert (a_images != c_images).float().mean() > 0.9


@pytest.mark.parametrize("n", [1, 9, 10, 23, 1001])
def test_labels_balanced(n: int) -> None:
    _, labels = make_shapes(n, seed=1, image_size=8)
    counts = torch.bincount(labels, minlength=10).float()  # (10,)
    assert (counts - n / 10).abs().max() <= 1


def test_labels_shuffled() -> None:
    _, labels = make_shapes(100, seed=1, image_size=8)
    assert not torch.equal(labels, torch.arange(100) % 10)


def test_silhouettes_lie_inside_the_pose_disc() -> None:
    # every shape fits in its unit disc (radius 0.8 here), so the border is empty and it has area
    for k, name in enumerate(SHAPE_NAMES):
        mask = _posed_masks(k)[0]  # (H, W)
        border = torch.cat([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
        assert not border.any(), name
        assert 0.1 < mask.float().mean() < 0.55, name


def test_silhouettes_pairwise_distinct_under_rotation() -> None:
    angles = 72
    masks = [_posed_masks(k, angles) for k in range(len(SHAPE_NAMES))]  # each (A, H, W)
    for a in range(len(SHAPE_NAMES)):
        for b in range(a + 1, len(SHAPE_NAMES)):
            ref, rotated = masks[a][0], masks[b]  # (H, W), (A, H, W)
            inter = (ref & rotated).sum((1, 2)).float()  # (A,)
            union = (ref | rotated).sum((1, 2)).float()  # (A,)
            best = float((inter / union).max())
            assert best < 0.9, (SHAPE_NAMES[a], SHAPE_NAMES[b], best)


def test_class_is_not_in_the_mean_colour() -> None:
    images, labels = make_shapes(4000, seed=0)
    rgb = images.float().mean((2, 3))  # (N, 3)
    centroids = torch.stack([rgb[labels == k].mean(0) for k in range(10)])  # (10, 3)
    # standard error of a class mean is ~46 / sqrt(400) = 2.3 grey levels
    assert (centroids - rgb.mean(0)).abs().max() < 8
    # a nearest-centroid classifier on mean RGB stays near chance on fresh images
    q_images, q_labels = make_shapes(1000, seed=1)
    q_rgb = q_images.float().mean((2, 3))  # (Q, 3)
    pred = torch.cdist(q_rgb, centroids).argmin(1)  # (Q,)
    assert (pred == q_labels).float().mean() < 0.15
