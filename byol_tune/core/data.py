"""Data for BYOL: the embedded shapes, CIFAR-10/100, STL-10, ImageFolder trees and feature vectors.

Datasets that fit in memory are held as uint8 tensors and served a whole batch per fetch
(``__getitems__``); their two views are made batched on the training device by the module's augment,
so a GPU is never starved by PIL workers. ImageFolder trees use the per-image PIL path in DataLoader
workers. Every split also has a clean (un-augmented) version for the kNN bank and queries.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from byol_tune.config import BYOLConfig
from byol_tune.core import readers
from byol_tune.errors import DataError
from byol_tune.parts.shapes import make_shapes
from byol_tune.parts.transforms import (
    PilTwoViews,
    TwoViewAugment,
    ViewParams,
    byol_view_params,
    clean_transform,
)
from byol_tune.parts.vector_augment import VectorTwoViews

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SHAPES_MEAN = (0.5, 0.5, 0.5)
SHAPES_STD = (0.25, 0.25, 0.25)
SHAPES_VAL_SEED_OFFSET = 1_000_003


class TensorData(Dataset):
    """In-memory samples (uint8 images or float vectors) with optional labels, fetched a batch at a time."""

    def __init__(self, x: Tensor, y: Tensor | None) -> None:
        self.x = x
        self.y = y if y is not None else torch.full((len(x),), -1, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.x[index], self.y[index]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices)
        return self.x[idx], self.y[idx]


def stacked(batch: Any) -> Any:
    """Collate for :class:`TensorData`, whose ``__getitems__`` already returns a stacked batch."""
    return batch


@dataclass(frozen=True)
class DataInfo:
    input_shape: tuple[int, ...]
    num_classes: int | None  # None: no labels, so RankMe is the only objective
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    is_image: bool


@dataclass
class DataSplits:
    """Training data and the clean bank (kNN memory) and val (queries) splits."""

    train: Dataset
    bank: Dataset
    val: Dataset
    info: DataInfo
    in_memory: bool  # TensorData batches of raw samples, augmented by the module


def _num_classes(*labels: Tensor | None) -> int | None:
    present = [y for y in labels if y is not None and len(y)]
    if not present:
        return None
    return int(max(int(y.max()) for y in present)) + 1


def _tensor_splits(
    train: readers.ArraySplit,
    bank: readers.ArraySplit,
    val: readers.ArraySplit,
    mean: tuple[float, float, float] | None,
    std: tuple[float, float, float] | None,
) -> DataSplits:
    is_image = train.images.ndim == 4
    info = DataInfo(
        input_shape=tuple(train.images.shape[1:]),
        num_classes=_num_classes(bank.labels, val.labels),
        mean=mean,
        std=std,
        is_image=is_image,
    )
    return DataSplits(
        train=TensorData(train.images, train.labels),
        bank=TensorData(bank.images, bank.labels),
        val=TensorData(val.images, val.labels),
        info=info,
        in_memory=True,
    )


def check_batch_size(splits: DataSplits, batch_size: int) -> None:
    """A batch larger than the training split never fills (the last partial batch is dropped)."""
    if batch_size > len(splits.train):  # type: ignore[arg-type]
        raise DataError(
            f"batch_size {batch_size} exceeds the training split's {len(splits.train)} samples"  # type: ignore[arg-type]
        )


def absolute_data_dir(data_dir: str | None, root: Path) -> str | None:
    """``data_dir`` with a relative path taken from ``root``: Ray runs trials and workers in folders of
    its own, where a relative path names nothing."""
    if not data_dir:
        return data_dir
    path = Path(data_dir).expanduser()
    return str(path if path.is_absolute() else root / path)


def load_splits(config: BYOLConfig) -> DataSplits:
    """Read the configured dataset; every problem with the data is a one-line :class:`DataError`."""
    root = config.data_dir or ""
    if config.dataset == "shapes":
        x, y = make_shapes(config.shapes_train_size, config.shapes_seed)
        vx, vy = make_shapes(config.shapes_val_size, config.shapes_seed + SHAPES_VAL_SEED_OFFSET)
        train = readers.ArraySplit(x, y)
        return _tensor_splits(train, train, readers.ArraySplit(vx, vy), SHAPES_MEAN, SHAPES_STD)
    if config.dataset in ("cifar10", "cifar100"):
        read = readers.read_cifar10 if config.dataset == "cifar10" else readers.read_cifar100
        train = read(root, train=True)
        return _tensor_splits(train, train, read(root, train=False), CIFAR_MEAN, CIFAR_STD)
    if config.dataset == "stl10":
        unlabeled = readers.read_stl10(root, "unlabeled")
        bank, val = readers.read_stl10(root, "train"), readers.read_stl10(root, "test")
        return _tensor_splits(unlabeled, bank, val, IMAGENET_MEAN, IMAGENET_STD)
    if config.dataset == "vectors":
        train = readers.read_vectors(root, "train", config.val_fraction)
        val = readers.read_vectors(root, "val", config.val_fraction)
        return _tensor_splits(train, train, val, None, None)
    return _image_folder_splits(config)


def _image_folder_splits(config: BYOLConfig) -> DataSplits:
    size = config.image_size or 224
    train, val = readers.image_folder(config.data_dir or "", config.val_fraction)
    bank = copy.copy(train)  # the same images (one scan of the folder), with its own transform below
    view1, view2 = _view_params(config, size)
    train.transform = PilTwoViews(view1, view2, IMAGENET_MEAN, IMAGENET_STD)
    clean = clean_transform(size, IMAGENET_MEAN, IMAGENET_STD, resize=round(size * 256 / 224))
    bank.transform = clean
    val.transform = clean
    n_classes = len(getattr(train, "classes", [])) or None
    info = DataInfo((3, size, size), n_classes, IMAGENET_MEAN, IMAGENET_STD, is_image=True)
    return DataSplits(train=train, bank=bank, val=val, info=info, in_memory=False)


def _view_params(config: BYOLConfig, image_size: int) -> tuple[ViewParams, ViewParams]:
    blur = config.blur if config.blur is not None else image_size > 32
    view1, view2 = byol_view_params(
        image_size,
        blur=blur,
        crop_min_scale=config.crop_min_scale,
        jitter_p=config.jitter_p,
        brightness=config.brightness,
        contrast=config.contrast,
        saturation=config.saturation,
        hue=config.hue,
        grayscale_p=config.grayscale_p,
        channel_permute_p=config.channel_permute_p,
        invert_p=config.invert_p,
    )
    # the paper solarises the second view only; its probability is a config field
    return view1, dataclasses.replace(view2, solarize_p=config.solarize_p)


def build_augment(config: BYOLConfig, info: DataInfo) -> torch.nn.Module:
    """The batched two-view augment for in-memory data (images or vectors)."""
    if not info.is_image:
        return VectorTwoViews(config.vector_noise_std, config.vector_mask_p)
    size = config.image_size or info.input_shape[-1]
    view1, view2 = _view_params(config, size)
    mean, std = info.mean or SHAPES_MEAN, info.std or SHAPES_STD
    return TwoViewAugment(view1, view2, mean, std, compiled=config.compile_augment)


class AugmentCollate:
    """CPU path for in-memory data: make the two views in the DataLoader worker instead of the step."""

    def __init__(self, augment: Callable[[Tensor], tuple[Tensor, Tensor]]) -> None:
        self.augment = augment

    def __call__(self, batch: tuple[Tensor, Tensor]) -> tuple[tuple[Tensor, Tensor], Tensor]:
        x, y = batch
        with torch.no_grad():
            return self.augment(x), y


class BYOLDataModule(L.LightningDataModule):
    """Serves the training split; the kNN callback reads ``splits.bank`` and ``splits.val``."""

    def __init__(
        self,
        splits: DataSplits,
        batch_size: int,
        num_workers: int = 0,
        cpu_augment: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        super().__init__()
        check_batch_size(splits, batch_size)
        self.splits = splits
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.cpu_augment = cpu_augment

    def train_dataloader(self) -> DataLoader:
        collate: Callable[..., Any] | None = None
        if self.splits.in_memory:
            collate = AugmentCollate(self.cpu_augment) if self.cpu_augment else stacked
        return DataLoader(
            self.splits.train,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,  # equal batches keep BatchNorm statistics comparable between steps
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate,
            pin_memory=torch.cuda.is_available(),
        )


def eval_loader(dataset: Dataset, indices: Sequence[int], batch_size: int = 512) -> DataLoader:
    """A loader over ``indices`` of a clean split, without padding or shuffling."""
    if isinstance(dataset, TensorData):
        rows = list(indices)
        return DataLoader(
            TensorData(dataset.x[rows], dataset.y[rows]), batch_size=batch_size, collate_fn=stacked
        )
    return DataLoader(torch.utils.data.Subset(dataset, list(indices)), batch_size=batch_size, shuffle=False)
