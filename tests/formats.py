"""Writers of small datasets in the real on-disk formats, sized for training tests (random content)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _pickle(path: Path, obj: object) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 8, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py`` with data_batch_1..5, test_batch and batches.meta."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = _rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        _pickle(d / name, {b"batch_label": b"b", b"data": data, b"labels": labels, b"filenames": []})
    _pickle(d / "batches.meta", {b"label_names": [b"c%d" % i for i in range(10)]})
    return root


def write_cifar100(root: Path, n: int = 40, seed: int = 0) -> Path:
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    rng = _rng(seed)
    for name in ("train", "test"):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        _pickle(d / name, {b"data": data, b"fine_labels": fine, b"coarse_labels": [0] * n})
    _pickle(d / "meta", {b"fine_label_names": [b"f"] * 100})
    return root


def write_stl10(root: Path, n: int = 16, seed: int = 0) -> Path:
    """``root/stl10_binary/{unlabeled,train,test}_X.bin`` (+ ``_y.bin`` with labels 1..10)."""
    d = root / "stl10_binary"
    d.mkdir(parents=True)
    rng = _rng(seed)
    for split in ("unlabeled", "train", "test"):
        rng.integers(0, 256, n * 3 * 96 * 96, dtype=np.uint8).tofile(d / f"{split}_X.bin")
        if split != "unlabeled":
            rng.integers(1, 11, n, dtype=np.uint8).tofile(d / f"{split}_y.bin")
    return root


def write_image_folder(root: Path, classes: int = 2, per_class: int = 8, size: int = 40) -> Path:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png``."""
    rng = _rng(0)
    for split, count in (("train", per_class), ("val", max(2, per_class // 2))):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def write_vectors(path: Path, n: int = 64, dim: int = 12, classes: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = _rng(0)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, dim)).astype(np.float32) + y[:, None]
    np.savez(path, x_train=x, y_train=y, x_val=x[: n // 4], y_val=y[: n // 4])
    return path
