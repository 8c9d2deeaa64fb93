"""The official CIFAR-100 python archive, read whole (train + test = 600 images per class).

Reference: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images",
2009; https://www.cs.toronto.edu/~kriz/cifar.html. ``cifar-100-python.tar.gz``
(169,001,437 bytes) holds ``cifar-100-python/{train,test,meta}``: pickled dicts with
``data`` (uint8 ``[N, 3072]``, channel-major 32x32 RGB), ``fine_labels``,
``coarse_labels``; ``meta`` has ``fine_label_names`` (100) and ``coarse_label_names``
(20). The host publishes the md5 (eb9058c3a382ffc7106e4002c42a8d85); the sha256 pinned
here is the one Keras's ``cifar100.load_data`` pins for the same URL. CIFAR-FS and
FC100 are class subsets of this archive (see ``cifar_fs`` and ``fc100``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metabridge.data.cache import cached
from metabridge.data.class_dataset import ClassDataset
from metabridge.data.download import RemoteFile, fetch_and_extract
from metabridge.data.safe_pickle import load_pickle
from metabridge.data.spec import DatasetFormatError


@dataclass(frozen=True)
class Cifar100Spec:
    """The archive and the counts a complete copy has."""

    archive: RemoteFile
    train_images: int = 50_000
    test_images: int = 10_000
    fine_classes: int = 100
    coarse_classes: int = 20


SPEC = Cifar100Spec(
    archive=RemoteFile(
        "cifar-100-python.tar.gz",
        ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
        sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        size=169_001_437,
    )
)
TOP = "cifar-100-python"


def _get(d: dict, key: str, path: Path):
    for k in (key, key.encode()):
        if k in d:
            return d[k]
    raise DatasetFormatError(
        f"{path} has no {key!r} entry: it is not a CIFAR-100 python pickle. Delete it and download again."
    )


def _names(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _read_part(path: Path, expected: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = load_pickle(path, encoding="bytes")
    data = np.asarray(_get(d, "data", path), dtype=np.uint8)
    fine = np.asarray(_get(d, "fine_labels", path), dtype=np.int64)
    coarse = np.asarray(_get(d, "coarse_labels", path), dtype=np.int64)
    if data.shape != (expected, 3072) or fine.shape != (expected,) or coarse.shape != (expected,):
        raise DatasetFormatError(
            f"{path}: data {data.shape} and {fine.shape[0]} labels, expected ({expected}, 3072). "
            f"The archive is not the official CIFAR-100 one: delete it and the extracted folder and download again."
        )
    return data.reshape(expected, 3, 32, 32), fine, coarse


def load_cifar100(root: str | Path, download: bool = False) -> ClassDataset:
    """All 60,000 CIFAR-100 images by fine class; ``groups`` are the coarse (super)class names.

    Cached as ``ROOT/cifar100/cifar100_all_32px.pt``.
    """
    base = Path(root).expanduser() / "cifar100"

    def build() -> ClassDataset:
        folder = fetch_and_extract(SPEC.archive, base, base / TOP, download=download, what="CIFAR-100", top=TOP)
        meta = load_pickle(folder / "meta", encoding="bytes")
        fine_names = _names(_get(meta, "fine_label_names", folder / "meta"))
        coarse_names = _names(_get(meta, "coarse_label_names", folder / "meta"))
        if len(fine_names) != SPEC.fine_classes or len(coarse_names) != SPEC.coarse_classes:
            raise DatasetFormatError(
                f"{folder / 'meta'} names {len(fine_names)} fine and {len(coarse_names)} coarse classes, expected "
                f"{SPEC.fine_classes} and {SPEC.coarse_classes}. Delete {folder} and download again."
            )
        parts = [_read_part(folder / "train", SPEC.train_images), _read_part(folder / "test", SPEC.test_images)]
        images = np.concatenate([p[0] for p in parts])
        fine = np.concatenate([p[1] for p in parts])
        coarse = np.concatenate([p[2] for p in parts])
        parent = np.full(len(fine_names), -1, dtype=np.int64)
        parent[fine] = coarse
        if (parent < 0).any() or (parent[fine] != coarse).any():
            raise DatasetFormatError(
                f"{folder}: fine and coarse labels are inconsistent. Delete it and download again."
            )
        return ClassDataset(
            images=torch.from_numpy(images),
            labels=torch.from_numpy(fine),
            class_names=fine_names,
            groups=[coarse_names[p] for p in parent],
            name="cifar100",
        )

    return cached(base / "cifar100_all_32px.pt", build)
