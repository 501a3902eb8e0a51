"""Readers round-trip tiny files written in the exact official on-disk formats.

Pixels are written by explicit byte-offset formulas taken from the format descriptions (not by the
reader's own reshape), so a wrong reshape or a missing STL-10 transpose fails these tests.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from byol_tune.core.readers import (
    image_folder,
    pil_loader_checked,
    read_cifar10,
    read_cifar100,
    read_stl10,
    read_vectors,
)
from byol_tune.errors import DataError


def pixel_array(i: Any, c: Any, r: Any, k: Any) -> Any:
    """Value of image i, channel c, row r, column k; asymmetric in r/k so transposes show."""
    return (i * 31 + c * 67 + r * 5 + k * 11) % 256


def pixel(i: int, c: int, r: int, k: int) -> int:
    return int(pixel_array(i, c, r, k))


def expected_images(n: int, size: int, offset: int = 0) -> np.ndarray:
    i, c, r, k = np.meshgrid(*(np.arange(s) for s in (n, 3, size, size)), indexing="ij")
    return pixel_array(i + offset, c, r, k)


def cifar_rows(n: int, offset: int) -> np.ndarray:
    """CIFAR layout: byte c*1024 + r*32 + k of a row is channel c, row r, column k."""
    i, c, r, k = np.meshgrid(*(np.arange(s) for s in (n, 3, 32, 32)), indexing="ij")
    data = np.zeros(n * 3072, dtype=np.uint8)
    data[i * 3072 + c * 1024 + r * 32 + k] = pixel_array(i + offset, c, r, k)
    return data.reshape(n, 3072)


def dump(path: Path, obj: Any) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar(d: Path, names: list[str], n: int, label_key: bytes, labels: list[int]) -> Path:
    """Batch dicts with bytes keys, as the official Python-2 pickles load with encoding="bytes"."""
    d.mkdir(parents=True)
    for b, name in enumerate(names):
        batch = {b"batch_label": b"b", b"data": cifar_rows(n, b * n), b"filenames": [b"x"] * n}
        dump(d / name, batch | {label_key: labels[b * n : (b + 1) * n], b"coarse_labels": [0] * n})
    return d


def write_cifar10(root: Path) -> Path:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    d = write_cifar(root / "cifar-10-batches-py", names, 4, b"labels", [j % 10 for j in range(24)])
    dump(d / "batches.meta", {b"label_names": [b"c%d" % i for i in range(10)]})
    return d


def write_cifar100(root: Path) -> Path:
    labels = [97, 98, 99, 98, 98, 98]
    d = write_cifar(root / "cifar-100-python", ["train", "test"], 3, b"fine_labels", labels)
    dump(d / "meta", {b"fine_label_names": [b"f"] * 100, b"coarse_label_names": [b"c"] * 20})
    return d


STL_LABELS = {"train": [1, 10, 5], "test": [3, 2, 1]}


def write_stl10(root: Path) -> Path:
    d = root / "stl10_binary"
    d.mkdir(parents=True)
    for n_split, split in enumerate(["unlabeled", "train", "test"]):
        # Column-major per channel: byte c*9216 + k*96 + r of an image is (channel c, row r, col k).
        i, c, r, k = np.meshgrid(*(np.arange(s) for s in (3, 3, 96, 96)), indexing="ij")
        data = np.zeros(3 * 27648, dtype=np.uint8)
        data[i * 27648 + c * 9216 + k * 96 + r] = pixel_array(i + 3 * n_split, c, r, k)
        data.tofile(d / f"{split}_X.bin")
        if split != "unlabeled":
            np.array(STL_LABELS[split], dtype=np.uint8).tofile(d / f"{split}_y.bin")
    return d


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("as_folder", [False, True])
def test_cifar10_round_trip(tmp_path: Path, train: bool, as_folder: bool) -> None:
    d = write_cifar10(tmp_path)
    split = read_cifar10(d if as_folder else tmp_path, train=train)
    n, offset = (20, 0) if train else (4, 20)
    assert split.images.dtype == torch.uint8 and split.images.shape == (n, 3, 32, 32)
    assert np.array_equal(split.images.numpy(), expected_images(n, 32, offset))
    assert split.images[1, 2, 3, 4].item() == pixel(1 + offset, 2, 3, 4)
    assert split.labels is not None and split.labels.dtype == torch.int64
    assert split.labels.tolist() == [(offset + j) % 10 for j in range(n)]


@pytest.mark.parametrize("train", [True, False])
def test_cifar100_round_trip(tmp_path: Path, train: bool) -> None:
    write_cifar100(tmp_path)
    split = read_cifar100(tmp_path, train=train)
    offset = 0 if train else 3
    assert split.images.shape == (3, 3, 32, 32)
    assert np.array_equal(split.images.numpy(), expected_images(3, 32, offset))
    assert split.labels is not None
    assert split.labels.tolist() == ([97, 98, 99] if train else [98, 98, 98])


@pytest.mark.parametrize("n_split,split", [(0, "unlabeled"), (1, "train"), (2, "test")])
def test_stl10_round_trip(tmp_path: Path, n_split: int, split: Any) -> None:
    write_stl10(tmp_path)
    out = read_stl10(tmp_path, split)
    assert out.images.dtype == torch.uint8 and out.images.shape == (3, 3, 96, 96)
    assert np.array_equal(out.images.numpy(), expected_images(3, 96, 3 * n_split))
    assert out.images[2, 1, 7, 50].item() == pixel(2 + 3 * n_split, 1, 7, 50)
    if split == "unlabeled":
        assert out.labels is None
    else:
        assert out.labels is not None and out.labels.dtype == torch.int64
        assert out.labels.tolist() == [v - 1 for v in STL_LABELS[split]]


@pytest.mark.parametrize("ext", ["npz", "pt"])
@pytest.mark.parametrize("labeled", [True, False])
def test_vectors_explicit_splits(tmp_path: Path, ext: str, labeled: bool) -> None:
    arrays: dict[str, Any] = {
        "x_train": np.arange(12, dtype=np.float64).reshape(4, 3),
        "x_val": np.ones((2, 3), dtype=np.float32),
    }
    if labeled:
        arrays |= {"y_train": np.array([0, 1, 2, 1], dtype=np.int32), "y_val": np.array([5, 6])}
    path = tmp_path / f"f.{ext}"
    if ext == "npz":
        np.savez(path, **arrays)
    else:
        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)
    train, val = read_vectors(path, "train"), read_vectors(path, "val")
    assert train.images.dtype == torch.float32 and train.images.shape == (4, 3)
    assert train.images[3, 2].item() == 11.0 and val.images.shape == (2, 3)
    if labeled:
        assert train.labels is not None and train.labels.dtype == torch.int64
        assert train.labels.tolist() == [0, 1, 2, 1]
        assert val.labels is not None and val.labels.tolist() == [5, 6]
    else:
        assert train.labels is None and val.labels is None


def test_vectors_single_array_is_split_deterministically(tmp_path: Path) -> None:
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    np.savez(tmp_path / "f.npz", x=x, y=np.arange(20))
    train, val = read_vectors(tmp_path / "f.npz", "train"), read_vectors(tmp_path / "f.npz", "val")
    assert len(train.images) == 18 and len(val.images) == 2
    assert train.labels is not None and val.labels is not None
    rows = sorted(train.labels.tolist() + val.labels.tolist())
    assert rows == list(range(20))  # disjoint and complete
    assert torch.equal(train.images[:, 0], train.labels.float() * 2)  # rows stay with labels
    again = read_vectors(tmp_path / "f.npz", "val")
    assert again.labels is not None and torch.equal(again.labels, val.labels)


def test_val_fraction_reaches_the_readers_through_the_config(tmp_path: Path) -> None:
    """Vectors and a class-folder tree without val/ are split by the config's val_fraction."""
    from byol_tune.config import make_config
    from byol_tune.core.data import load_splits

    np.savez(tmp_path / "f.npz", x=np.ones((300, 4), dtype=np.float32), y=np.arange(300) % 3)
    for fraction, n_val in ((0.1, 30), (0.5, 150)):
        splits = load_splits(make_config({"dataset": "vectors", "data_dir": str(tmp_path / "f.npz"),
                                          "backbone": "mlp", "val_fraction": fraction}))  # fmt: skip
        assert (len(splits.train), len(splits.val)) == (300 - n_val, n_val)  # type: ignore[arg-type]
    for i in range(10):
        write_png(tmp_path / "imgs" / f"c{i % 2}" / f"{i}.png", (i, i, i))
    splits = load_splits(make_config({"dataset": "imagefolder", "data_dir": str(tmp_path / "imgs"),
                                      "image_size": 16, "val_fraction": 0.3}))  # fmt: skip
    assert (len(splits.train), len(splits.val)) == (7, 3)  # type: ignore[arg-type]
    # the kNN bank: the train images without augmentation, one transform each
    train, bank = splits.train, splits.bank
    assert bank.samples == train.samples and bank is not train  # type: ignore[attr-defined]
    assert bank.transform is splits.val.transform is not train.transform  # type: ignore[attr-defined]
    assert bank[0][0].shape == (3, 16, 16) and len(train[0][0]) == 2  # a clean image; two views


def write_png(path: Path, color: tuple[int, int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (2, 3), color).convert(mode).save(path)


@pytest.mark.parametrize("layout", ["train_val", "train_only", "flat"])
def test_image_folder_layouts(tmp_path: Path, layout: str) -> None:
    base = tmp_path / "train" if layout != "flat" else tmp_path
    for j in range(10):
        write_png(base / "cat" / f"{j}.png", (10, 20, j))
        write_png(base / "dog" / f"{j}.png", (200, 100, j))
    if layout == "train_val":
        write_png(tmp_path / "val" / "cat" / "v.png", (1, 2, 3))
        write_png(tmp_path / "val" / "dog" / "v.png", (4, 5, 6))
    train, val = image_folder(tmp_path)
    assert train.classes == val.classes == ["cat", "dog"]
    # Either the two val/ images, or 10% of the 20 images split off deterministically.
    assert (len(train), len(val)) == ((20, 2) if layout == "train_val" else (18, 2))
    if layout != "train_val":
        assert not {p for p, _ in train.samples} & {p for p, _ in val.samples}
    img, target = train[0]
    assert img.mode == "RGB" and img.size == (2, 3)
    assert img.getpixel((1, 2)) == ((10, 20, 0) if target == 0 else (200, 100, 0))
    train.transform = lambda im: "aug"
    assert val.transform is None and train[0][0] == "aug"


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_pil_loader_converts_to_rgb(tmp_path: Path, mode: str) -> None:
    write_png(tmp_path / "a.png", (51, 51, 51), mode)  # survives the web palette
    img = pil_loader_checked(str(tmp_path / "a.png"))
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (51, 51, 51)


# ------------------------------------------------------------------------------- error cases


def raises_naming(path: Path, fn: Callable[[], object], fragment: str = "") -> None:
    with pytest.raises(DataError) as info:
        fn()
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg and fragment in msg, msg


@pytest.mark.parametrize("reader", [read_cifar10, read_cifar100])
def test_cifar_missing_dir_and_not_a_dir(tmp_path: Path, reader: Any) -> None:
    raises_naming(tmp_path / "nope", lambda: reader(tmp_path / "nope", True), "missing directory")
    (tmp_path / "f").write_text("x")
    raises_naming(tmp_path / "f", lambda: reader(tmp_path / "f", True), "not a directory")
    raises_naming(tmp_path, lambda: reader(tmp_path, True), "missing directory")


def test_cifar10_missing_batch(tmp_path: Path) -> None:
    d = write_cifar10(tmp_path)
    (d / "data_batch_3").unlink()
    raises_naming(d, lambda: read_cifar10(tmp_path, True), "missing file data_batch_3")


CIFAR_CORRUPTIONS: dict[str, tuple[Any, str]] = {
    "not_pickle": (b"garbage bytes", "not a readable CIFAR pickle"),
    "truncated": (None, "not a readable CIFAR pickle"),
    "not_dict": ([1, 2], "expected a dict"),
    "wrong_keys": ({b"data": cifar_rows(1, 0)}, "missing key b'labels'"),
    "length": ({b"data": cifar_rows(2, 0), b"labels": [1]}, "2 images"),
    "shape": ({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, "expected (N, 3072)"),
    "dtype": ({b"data": np.zeros((1, 3072), np.int64), b"labels": [1]}, "uint8"),
    "range": ({b"data": cifar_rows(1, 0), b"labels": [10]}, "outside 0..9"),
    "no_rows": ({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, "holds no images"),
    "float_labels": ({b"data": cifar_rows(1, 0), b"labels": [1.7]}, "not a list of integers"),
    "ragged_labels": ({b"data": cifar_rows(2, 0), b"labels": [[1], [2, 3]]}, "not a list of integers"),
}


@pytest.mark.parametrize("case", sorted(CIFAR_CORRUPTIONS))
def test_cifar10_bad_batch_file(tmp_path: Path, case: str) -> None:
    d = write_cifar10(tmp_path)
    content, fragment = CIFAR_CORRUPTIONS[case]
    target = d / "test_batch"
    if case == "truncated":
        target.write_bytes(target.read_bytes()[:200])
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        dump(target, content)
    raises_naming(target, lambda: read_cifar10(tmp_path, False), fragment)


def test_cifar100_wrong_label_key(tmp_path: Path) -> None:
    d = write_cifar100(tmp_path)
    dump(d / "train", {b"data": cifar_rows(1, 0), b"labels": [1]})
    raises_naming(d / "train", lambda: read_cifar100(tmp_path, True), "fine_labels")


@pytest.mark.parametrize(
    "name,content,fragment",
    [
        ("train_X.bin", None, "missing file train_X.bin"),
        ("train_X.bin", b"", "empty file"),
        ("train_X.bin", b"\0" * (27648 + 5), "not a multiple of 27648"),
        ("train_y.bin", None, "missing file train_y.bin"),
        ("train_y.bin", bytes([1, 2]), "2 labels for 3 images"),
        ("train_y.bin", bytes([1, 0, 11]), "outside 1..10"),
    ],
)
def test_stl10_bad_files(tmp_path: Path, name: str, content: bytes | None, fragment: str) -> None:
    d = write_stl10(tmp_path)
    if content is None:
        (d / name).unlink()
        where = d
    else:
        (d / name).write_bytes(content)
        where = d / name
    raises_naming(where, lambda: read_stl10(tmp_path, "train"), fragment)


def test_stl10_missing_root(tmp_path: Path) -> None:
    raises_naming(tmp_path / "no", lambda: read_stl10(tmp_path / "no", "test"), "missing directory")


VECTOR_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "keys": ({"features": np.ones((3, 2), np.float32)}, "missing key x_train"),
    "int_x": ({"x_train": np.ones((3, 2), np.int64)}, "2-D floating point"),
    "ndim_x": ({"x_train": np.ones((3, 2, 2), np.float32)}, "2-D floating point"),
    "empty_x": ({"x_train": np.ones((0, 2), np.float32)}, "is empty"),
    "float_y": ({"x_train": np.ones((3, 2), np.float32), "y_train": np.ones(3)}, "1-D integer"),
    "length": ({"x_train": np.ones((3, 2), np.float32), "y_train": np.ones(2, int)}, "2 labels"),
    "str_x": ({"x_train": np.array([["a"]])}, "x_train"),
    "tiny_x": ({"x": np.ones((1, 2), np.float32)}, "at least 2 samples"),
    "nan_x": ({"x_train": np.array([[0.0, np.nan]], np.float32)}, "NaN or infinite"),
    "no_columns": ({"x_train": np.ones((3, 0), np.float32)}, "has no columns"),
    "negative_y": ({"x_train": np.ones((2, 2), np.float32), "y_train": np.array([0, -1])}, "negative labels"),
}


@pytest.mark.parametrize("case", sorted(VECTOR_CASES))
def test_vectors_bad_content(tmp_path: Path, case: str) -> None:
    arrays, fragment = VECTOR_CASES[case]
    np.savez(tmp_path / "f.npz", **arrays)
    raises_naming(tmp_path / "f.npz", lambda: read_vectors(tmp_path / "f.npz", "train"), fragment)


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("missing.npz", "missing file"),
        ("dir.npz", "not a file"),
        ("f.csv", "unsupported"),
        ("bad.npz", "not an .npz archive (no zip header)"),
        ("bad.pt", "unreadable"),
        ("list.pt", "expected a dict"),
    ],
)
def test_vectors_bad_file(tmp_path: Path, name: str, fragment: str) -> None:
    path = tmp_path / name
    if name == "dir.npz":
        path.mkdir()
    elif name == "list.pt":
        torch.save([torch.ones(2)], path)
    elif name != "missing.npz":
        path.write_bytes(b"not an archive")
    raises_naming(path, lambda: read_vectors(path, "train"), fragment)


def test_image_folder_errors(tmp_path: Path) -> None:
    raises_naming(tmp_path / "no", lambda: image_folder(tmp_path / "no"), "missing directory")
    (tmp_path / "file").write_text("x")
    raises_naming(tmp_path / "file", lambda: image_folder(tmp_path / "file"), "not a directory")
    (tmp_path / "empty").mkdir()
    raises_naming(tmp_path / "empty", lambda: image_folder(tmp_path / "empty"), "no class folders")


def test_image_folder_class_without_images(tmp_path: Path) -> None:
    write_png(tmp_path / "cat" / "a.png", (1, 1, 1))
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    raises_naming(tmp_path, lambda: image_folder(tmp_path), "dog")


def test_image_folder_val_classes_differ(tmp_path: Path) -> None:
    write_png(tmp_path / "train" / "cat" / "a.png", (1, 1, 1))
    write_png(tmp_path / "val" / "dog" / "a.png", (1, 1, 1))
    raises_naming(tmp_path, lambda: image_folder(tmp_path), "differ")


@pytest.mark.parametrize("truncated", [False, True])
def test_pil_loader_unreadable(tmp_path: Path, truncated: bool) -> None:
    path = tmp_path / "a.png"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if truncated else b"not a png at all")
    raises_naming(path, lambda: pil_loader_checked(str(path)), "unreadable image")


def test_image_folder_unreadable_image_raises_on_access(tmp_path: Path) -> None:
    write_png(tmp_path / "train" / "cat" / "a.png", (1, 1, 1))
    write_png(tmp_path / "val" / "cat" / "a.png", (1, 1, 1))
    (tmp_path / "val" / "cat" / "a.png").write_bytes(b"junk")
    _, val = image_folder(tmp_path)
    raises_naming(tmp_path / "val" / "cat" / "a.png", lambda: val[0], "unreadable image")
