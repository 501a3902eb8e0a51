"""Readers for the on-disk dataset formats byol-tune trains on.

Nothing here downloads: users point us at data they already have, so every problem with that data
(missing, truncated, wrong format) must surface as a one-line :class:`DataError` naming the path,
rather than as a deep numpy/pickle traceback halfway through a tuning run.
"""

from __future__ import annotations

import copy
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torchvision
from PIL import Image

from byol_tune.errors import DataError

STL_IMAGE_BYTES = 3 * 96 * 96
VAL_FRACTION = 0.1
SPLIT_SEED = 0


@dataclass(frozen=True)
class ArraySplit:
    """One split held in memory: uint8 images (N, 3, H, W) or float32 vectors (N, D).

    ``labels`` is int64 (N,), or None for unlabeled data (e.g. STL-10 ``unlabeled``).
    """

    images: torch.Tensor
    labels: torch.Tensor | None


def _err(path: str | Path, problem: object, kind: str = "") -> DataError:
    """Build a DataError whose message is exactly one line, however multi-line ``problem`` is."""
    text = " ".join(str(problem).split())
    return DataError(f"{kind + ' ' if kind else ''}{path}: {text}")


def _existing_dir(root: str | Path) -> Path:
    """Return ``root`` as a Path, or fail clearly if it is missing or not a directory."""
    path = Path(root).expanduser()
    if not path.exists():
        raise _err(path, "missing directory", "data_dir")
    if not path.is_dir():
        raise _err(path, "not a directory", "data_dir")
    return path


def _split_indices(n: int, what: Path, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, val) split, ``val_fraction`` of the items (at least 1, at most n - 1) to
    val, so every trial of a sweep sees the same val set."""
    if n < 2:
        raise _err(what, f"need at least 2 samples to split off a val set, found {n}")
    n_val = min(n - 1, max(1, int(n * val_fraction)))
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# ---------------------------------------------------------------- CIFAR (python-pickle format)


def _cifar_dir(root: str | Path, folder: str, expected: Sequence[str]) -> Path:
    """Accept either the parent of ``folder`` or ``folder`` itself, as users pass both."""
    path = _existing_dir(root)
    if (path / folder).is_dir():
        return path / folder
    if any((path / name).exists() for name in expected):
        return path
    raise _err(path, f"missing directory {folder} (and no {expected[0]} file here)", "data_dir")


def _read_cifar_file(path: Path, label_key: bytes, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Load one CIFAR batch pickle and validate it; returns data (N, 3072) uint8, labels (N,)."""
    # CIFAR files are pickles (the official format): unpickling can run arbitrary code, so only
    # read data directories you trust.
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except Exception as exc:  # pickle raises many unrelated exception types on garbage
        raise _err(path, f"not a readable CIFAR pickle ({type(exc).__name__}: {exc})", "file") from exc
    if not isinstance(batch, Mapping):
        raise _err(path, f"expected a dict, found {type(batch).__name__}", "file")
    batch = {(k.encode() if isinstance(k, str) else k): v for k, v in batch.items()}
    for key in (b"data", label_key):
        if key not in batch:
            raise _err(path, f"missing key {key!r} (keys: {sorted(map(repr, batch))})", "file")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise _err(path, "b'data' must be a uint8 array of shape (N, 3072)", "file")
    if data.shape[1] != 3 * 32 * 32:
        raise _err(path, f"b'data' has shape {data.shape}, expected (N, 3072)", "file")
    if len(data) == 0:
        raise _err(path, "b'data' holds no images", "file")
    try:
        labels = np.asarray(batch[label_key])
        if labels.dtype.kind == "f":  # 1.7 would silently become class 1
            raise ValueError("fractional labels")
        labels = labels.astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise _err(path, f"{label_key!r} is not a list of integers", "file") from exc
    if labels.ndim != 1 or len(labels) != len(data):
        raise _err(path, f"{len(data)} images but {label_key!r} has shape {labels.shape}", "file")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise _err(path, f"{label_key!r} outside 0..{n_classes - 1}", "file")
    return data, labels


def _read_cifar(d: Path, names: Sequence[str], label_key: bytes, n_classes: int) -> ArraySplit:
    """Concatenate the named batch files into one ArraySplit of (N, 3, 32, 32) images."""
    for name in names:
        if not (d / name).is_file():
            raise _err(d, f"missing file {name}", "data_dir")
    parts = [_read_cifar_file(d / name, label_key, n_classes) for name in names]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    # Each row is 1024 R, then 1024 G, then 1024 B values, each plane row-major 32x32.
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32))
    return ArraySplit(images=images, labels=torch.from_numpy(labels))


def read_cifar10(root: str | Path, train: bool) -> ArraySplit:
    """Read CIFAR-10 as the official ``cifar-10-python.tar.gz`` unpacks."""
    train_names = [f"data_batch_{i}" for i in range(1, 6)]
    d = _cifar_dir(root, "cifar-10-batches-py", [*train_names, "test_batch"])
    return _read_cifar(d, train_names if train else ["test_batch"], b"labels", 10)


def read_cifar100(root: str | Path, train: bool) -> ArraySplit:
    """Read CIFAR-100 (fine labels) as the official ``cifar-100-python.tar.gz`` unpacks."""
    d = _cifar_dir(root, "cifar-100-python", ["train", "test"])
    return _read_cifar(d, ["train" if train else "test"], b"fine_labels", 100)


# ---------------------------------------------------------------- STL-10 (binary format)


def _memmap(path: Path) -> np.ndarray:
    """Map a raw uint8 file without reading it (the unlabeled split is 2.7 GB)."""
    if not path.is_file():
        raise _err(path.parent, f"missing file {path.name}", "data_dir")
    if path.stat().st_size == 0:
        raise _err(path, "empty file", "file")
    # mode "c" (copy-on-write) gives a writable array, so torch.from_numpy does not warn, while the
    # file itself can never be modified.
    return np.memmap(path, dtype=np.uint8, mode="c")


def read_stl10(root: str | Path, split: Literal["unlabeled", "train", "test"]) -> ArraySplit:
    """Read STL-10 ``stl10_binary/{split}_X.bin`` (and ``_y.bin``) without copying the pixels.

    ``images`` is a non-contiguous view of the memory-mapped file: the format stores each channel
    column-major, so the view is transposed rather than copied.
    """
    if split not in ("unlabeled", "train", "test"):
        raise _err(root, f"unknown STL-10 split {split!r}", "data_dir")
    path = _existing_dir(root)
    d = path / "stl10_binary" if (path / "stl10_binary").is_dir() else path
    raw = _memmap(d / f"{split}_X.bin")
    if raw.size % STL_IMAGE_BYTES:
        raise _err(
            d / f"{split}_X.bin",
            f"size {raw.size} bytes is not a multiple of {STL_IMAGE_BYTES} (truncated?)",
            "file",
        )
    images = torch.from_numpy(raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2))
    if split == "unlabeled":
        return ArraySplit(images=images, labels=None)
    y_path = d / f"{split}_y.bin"
    y = np.asarray(_memmap(y_path), dtype=np.int64)
    if len(y) != len(images):
        raise _err(y_path, f"{len(y)} labels for {len(images)} images", "file")
    if y.min() < 1 or y.max() > 10:
        raise _err(y_path, "labels outside 1..10", "file")
    return ArraySplit(images=images, labels=torch.from_numpy(y - 1))


# ---------------------------------------------------------------- feature vectors (.npz / .pt)


def _load_vector_file(path: Path) -> dict[str, Any]:
    """Load every array of a .npz/.pt file into a dict, refusing pickled objects in both."""
    if not path.exists():
        raise _err(path, "missing file", "file")
    if not path.is_file():
        raise _err(path, "not a file", "file")
    try:
        if path.suffix == ".npz":
            if not zipfile.is_zipfile(path):  # np.load would take it for a pickle and advise unpickling
                raise _err(path, "not an .npz archive (no zip header)", "file")
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        if path.suffix == ".pt":
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, Mapping):
                raise _err(path, f"expected a dict of tensors, found {type(obj).__name__}", "file")
            return dict(obj)
    except DataError:
        raise
    except Exception as exc:
        raise _err(path, f"unreadable ({type(exc).__name__}: {exc})", "file") from exc
    raise _err(path, f"unsupported extension {path.suffix!r} (expected .npz or .pt)", "file")


def _to_tensor(value: Any, key: str, path: Path) -> torch.Tensor:
    """Convert an ndarray/tensor to a tensor, reporting non-numeric dtypes as bad data."""
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.from_numpy(np.asarray(value))
    except TypeError as exc:
        raise _err(path, f"{key} has unsupported dtype ({exc})", "file") from exc


def read_vectors(
    path: str | Path, split: Literal["train", "val"], val_fraction: float = VAL_FRACTION
) -> ArraySplit:
    """Read precomputed feature vectors: keys x_train/x_val (+ optional y_*), or x (+ optional y).

    A file with only ``x``/``y`` is split (``val_fraction`` to val, 10% by default) with a fixed seed so
    train and val never overlap and stay the same across runs.
    """
    p = Path(path).expanduser()
    if split not in ("train", "val"):
        raise _err(p, f"unknown split {split!r} (expected 'train' or 'val')", "file")
    arrays = _load_vector_file(p)
    if f"x_{split}" in arrays:
        x_key, y_key = f"x_{split}", f"y_{split}"
    elif "x" in arrays:
        x_key, y_key = "x", "y"
    else:
        raise _err(p, f"missing key x_{split} (or x); keys: {sorted(arrays)}", "file")
    x = _to_tensor(arrays[x_key], x_key, p)
    if not x.is_floating_point() or x.ndim != 2:
        raise _err(p, f"{x_key} must be 2-D floating point, got {x.dtype} {tuple(x.shape)}", "file")
    if len(x) == 0:
        raise _err(p, f"{x_key} is empty", "file")
    y = None
    if y_key in arrays:
        y = _to_tensor(arrays[y_key], y_key, p)
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or y.ndim != 1:
            raise _err(p, f"{y_key} must be 1-D integer, got {y.dtype} {tuple(y.shape)}", "file")
        if len(y) != len(x):
            raise _err(p, f"{len(y)} labels in {y_key} for {len(x)} rows in {x_key}", "file")
        if y.min() < 0:
            raise _err(p, f"{y_key} has negative labels (classes are 0..C-1)", "file")
        y = y.to(torch.int64)
    if x.shape[1] == 0:
        raise _err(p, f"{x_key} has no columns", "file")
    if not torch.isfinite(x).all():
        raise _err(p, f"{x_key} holds NaN or infinite values", "file")
    x = x.to(torch.float32)
    if x_key == "x":
        train_idx, val_idx = _split_indices(len(x), p, val_fraction)
        idx = torch.from_numpy(train_idx if split == "train" else val_idx)
        x, y = x[idx], (None if y is None else y[idx])
    return ArraySplit(images=x, labels=y)


# ---------------------------------------------------------------- image folders


def pil_loader_checked(path: str) -> Image.Image:
    """Open an image as RGB, turning a corrupt file into a DataError that names it."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _err(path, f"unreadable image ({type(exc).__name__}: {exc})", "image") from exc


def _folder(root: Path) -> torchvision.datasets.ImageFolder:
    """Build an ImageFolder with our loader, translating torchvision's errors to DataError."""
    root = _existing_dir(root)
    if not any(p.is_dir() for p in root.iterdir()):
        raise _err(root, "no class folders", "image folder")
    try:
        return torchvision.datasets.ImageFolder(str(root), loader=pil_loader_checked)
    except FileNotFoundError as exc:  # raised for classes without any image file
        raise _err(root, exc, "image folder") from exc


def _restrict(ds: torchvision.datasets.ImageFolder, idx: np.ndarray) -> torchvision.datasets.ImageFolder:
    """Copy of ``ds`` keeping only ``idx``; a copy (unlike a Subset) keeps its own transform."""
    out = copy.copy(ds)
    out.samples = [ds.samples[i] for i in idx]
    out.imgs = out.samples
    out.targets = [t for _, t in out.samples]
    return out


def image_folder(
    root: str | Path, val_fraction: float = VAL_FRACTION
) -> tuple[torchvision.datasets.ImageFolder, torchvision.datasets.ImageFolder]:
    """Return (train, val) ImageFolders from ``root/train`` + ``root/val``, or split (``val_fraction``).

    Without ``root/val`` the images of ``root/train`` (or of ``root`` itself, as class folders) are
    split deterministically. Both results are real ImageFolders with independent ``transform``
    attributes, so set BYOL augmentations on train and eval transforms on val.
    """
    path = _existing_dir(root)
    train_dir, val_dir = path / "train", path / "val"
    if train_dir.is_dir() and val_dir.is_dir():
        train, val = _folder(train_dir), _folder(val_dir)
        if train.classes != val.classes:
            raise _err(
                path,
                f"val classes {val.classes} differ from train classes {train.classes}",
                "image folder",
            )
        return train, val
    if val_dir.is_dir():
        raise _err(path, "has val/ but no train/", "image folder")
    full = _folder(train_dir if train_dir.is_dir() else path)
    train_idx, val_idx = _split_indices(len(full), Path(full.root), val_fraction)
    return _restrict(full, train_idx), _restrict(full, val_idx)
