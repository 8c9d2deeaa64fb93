"""mini-ImageNet (Vinyals et al., 2016) with the split of Ravi & Larochelle (2017).

References: O. Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS
2016; S. Ravi and H. Larochelle, "Optimization as a Model for Few-Shot Learning",
ICLR 2017 (split: 64 train / 16 val / 20 test classes of 600 images each, 84x84 RGB).

Format supported precisely: the pickles ``mini-imagenet-cache-{train,validation,test}.pkl``
written by Ren et al.'s few-shot-ssl code and distributed by learn2learn. Each is a
dict with ``image_data``: uint8 array ``[N, 84, 84, 3]`` (RGB) and ``class_dict``:
``{wnid: [row indices]}``. Hosted at https://zenodo.org/record/7978538 (the mirror
learn2learn uses; a locally placed ``mini-imagenet-cache-val.pkl``, the older name,
is accepted too). No checksum is published for these files, so the download is
accepted on content: the loader checks 64/16/20 classes of 600 84x84x3 images and
records the sha256 of what it fetched beside the file. Pickles are opened with a
data-only unpickler (no code execution).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metabridge.data.cache import cached, resize_uint8
from metabridge.data.class_dataset import ClassDataset
from metabridge.data.download import RemoteFile, ensure_file
from metabridge.data.safe_pickle import load_pickle
from metabridge.data.spec import DatasetFormatError, DatasetSpec, canonical_split, check_counts

_ZENODO = "https://zenodo.org/record/7978538/files/"
_FILES = {
    "train": "mini-imagenet-cache-train.pkl",
    "val": "mini-imagenet-cache-validation.pkl",
    "test": "mini-imagenet-cache-test.pkl",
}
_OLD_NAMES = {"val": "mini-imagenet-cache-val.pkl"}

SPEC = DatasetSpec(
    name="mini_imagenet",
    files={
        split: RemoteFile(
            fn,
            (_ZENODO + fn,),
            unverified_ok=True,
            note="No checksum is published; the content (classes, counts, shapes) is checked.",
        )
        for split, fn in _FILES.items()
    },
    classes={"train": 64, "val": 16, "test": 20},
    images_per_class=600,
    reference="Vinyals et al. 2016; Ravi & Larochelle 2017",
)

NATIVE_SIZE = 84


def decode_cache_pickle(obj: object, source: Path, name: str) -> ClassDataset:
    """Turn a ``{'image_data', 'class_dict'}`` pickle into a ClassDataset (classes sorted by wnid)."""
    if not isinstance(obj, dict) or "image_data" not in obj or "class_dict" not in obj:
        keys = sorted(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
        raise DatasetFormatError(
            f"{source} is not a mini-ImageNet cache pickle (expected keys 'image_data' and 'class_dict', "
            f"found {keys}). Delete it and download it again."
        )
    data = np.asarray(obj["image_data"])
    if data.dtype != np.uint8 or data.ndim != 4 or data.shape[3] != 3:
        raise DatasetFormatError(
            f"{source}: image_data is {data.dtype} {data.shape}, expected uint8 [N, H, W, 3]. Delete it and download again."
        )
    class_dict = obj["class_dict"]
    names = sorted(class_dict)
    labels = np.full(len(data), -1, dtype=np.int64)
    assigned = 0
    for c, wnid in enumerate(names):
        rows = np.asarray(class_dict[wnid], dtype=np.int64)
        labels[rows] = c
        assigned += len(rows)
    if assigned != len(data):
        raise DatasetFormatError(
            f"{source}: class_dict lists {assigned} rows for {len(data)} images (an image in two classes or none). "
            f"Delete it and download again."
        )
    if (labels < 0).any():
        raise DatasetFormatError(
            f"{source}: {int((labels < 0).sum())} images belong to no class. Delete it and download again."
        )
    images = torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2)))
    return ClassDataset(images, torch.from_numpy(labels), names, None, name)


def _raw_file(base: Path, split: str, download: bool) -> Path:
    remote = SPEC.files[split]
    old = base / _OLD_NAMES.get(split, remote.filename)
    if not (base / remote.filename).exists() and old.exists():
        return old  # the older file name, placed by hand
    return ensure_file(remote, base, download=download, what=f"mini-ImageNet {split}")


def load_mini_imagenet(
    root: str | Path, split: str = "train", download: bool = False, image_size: int = NATIVE_SIZE
) -> ClassDataset:
    """mini-ImageNet ``split`` (train/val/test) as ``[N, 3, image_size, image_size]`` uint8."""
    split = canonical_split(split)
    base = Path(root).expanduser() / "mini_imagenet"

    def build() -> ClassDataset:
        path = _raw_file(base, split, download)
        ds = decode_cache_pickle(load_pickle(path, encoding="latin1"), path, f"mini_imagenet-{split}")
        check_counts(ds, SPEC, split, str(path))
        if ds.images.shape[-1] != NATIVE_SIZE or ds.images.shape[-2] != NATIVE_SIZE:
            raise DatasetFormatError(f"{path}: images are {tuple(ds.images.shape[-2:])}, expected 84x84.")
        ds.images = resize_uint8(ds.images, image_size)
        return ds

    return cached(base / f"{split}_{image_size}px.pt", build)
