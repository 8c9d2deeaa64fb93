"""tiered-ImageNet (Ren et al., 2018): 351 / 97 / 160 classes grouped into 34 categories.

Reference: M. Ren et al., "Meta-Learning for Semi-Supervised Few-Shot
Classification", ICLR 2018 (https://github.com/renmengye/few-shot-ssl-public).
Train: 20 categories, 351 classes, 448,695 images; val: 6, 97, 124,261; test: 8, 160,
206,209; 84x84 RGB.

Two distributed formats are read (both per split; ``val`` is spelled ``val``):

* Ren et al.'s original, in ``tiered-imagenet.tar`` (the archive learn2learn fetches):
  ``tiered-imagenet/{split}_images_png.pkl``, a list of PNG-encoded images (byte
  arrays), and ``tiered-imagenet/{split}_labels.pkl``, a dict with ``label_specific``
  (class per image), ``label_specific_str`` (class names), ``label_general`` and
  ``label_general_str`` (category per image and category names). This one is
  downloaded with ``download=True`` from learn2learn's Google Drive file (12 GB, no
  published checksum: the content counts are checked instead).
* The decompressed form used by MetaOptNet and RFS (Tian et al., 2020):
  ``{split}_images.npz`` with key ``images`` (uint8 ``[N, 84, 84, 3]``) and
  ``{split}_labels.pkl`` (same dict; RFS reads ``labels``, Ren's writes
  ``label_specific``; both are accepted). Place these files in ``ROOT/tiered_imagenet/``.
  Ren's decompression used OpenCV (``cv2.imdecode``), which yields BGR, so these
  arrays are flipped to RGB by default (``npz_bgr=True``); this channel order is
  what Ren's code implies, not something verified against a copy of the file here.

Pickles are opened with a data-only unpickler. Groups are the category names when the
labels file has them.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from metabridge.data.cache import cached, resize_uint8
from metabridge.data.class_dataset import ClassDataset
from metabridge.data.download import RemoteFile, fetch_and_extract
from metabridge.data.safe_pickle import load_pickle
from metabridge.data.spec import DatasetFormatError, DatasetSpec, canonical_split, check_counts

_GDRIVE_ID = "1g1aIDy2Ar_MViF2gDXFYDBTR-HYecV07"

SPEC = DatasetSpec(
    name="tiered_imagenet",
    files={
        "archive": RemoteFile(
            "tiered-imagenet.tar",
            (f"https://drive.usercontent.google.com/download?id={_GDRIVE_ID}&export=download&confirm=t",),
            unverified_ok=True,
            note="No checksum is published; the content (classes, image counts) is checked.",
        )
    },
    classes={"train": 351, "val": 97, "test": 160},
    images={"train": 448_695, "val": 124_261, "test": 206_209},
    reference="Ren et al. 2018",
)
ARCHIVE_TOP = "tiered-imagenet"
NATIVE_SIZE = 84


def _labels(path: Path, n_images: int) -> tuple[np.ndarray, list[str], list[str] | None]:
    """Per-image class ids, class names, and (if present) each class's category name."""
    d = load_pickle(path, encoding="latin1")
    if not isinstance(d, dict):
        raise DatasetFormatError(f"{path} is not a tiered-ImageNet labels dict. Delete it and get it again.")
    key = "label_specific" if "label_specific" in d else "labels" if "labels" in d else None
    if key is None:
        raise DatasetFormatError(
            f"{path} has neither 'label_specific' nor 'labels' (keys: {sorted(d)[:6]}). Delete it and get it again."
        )
    raw = np.asarray(d[key], dtype=np.int64)
    if raw.shape != (n_images,):
        raise DatasetFormatError(
            f"{path}: {raw.shape[0]} labels for {n_images} images. Delete both files and get them again."
        )
    ids, labels = np.unique(raw, return_inverse=True)
    names_all = d.get("label_specific_str")
    names = (
        [str(names_all[i]) for i in ids]
        if names_all is not None and len(names_all) > ids.max()
        else [f"class_{i}" for i in ids]
    )
    groups = None
    if "label_general" in d and "label_general_str" in d:
        general = np.asarray(d["label_general"], dtype=np.int64)
        gnames = d["label_general_str"]
        first = np.zeros(len(ids), dtype=np.int64)
        first[labels[::-1]] = np.arange(len(labels))[::-1]  # one image of each class
        groups = [str(gnames[general[i]]) for i in first]
    return labels, names, groups


def _decode_pngs(items: list, source: Path) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(items), NATIVE_SIZE, NATIVE_SIZE, 3), dtype=np.uint8)
    for i, item in enumerate(items):
        with Image.open(io.BytesIO(bytes(np.asarray(item, dtype=np.uint8)))) as im:
            arr = np.asarray(im.convert("RGB"))
        if arr.shape != (NATIVE_SIZE, NATIVE_SIZE, 3):
            raise DatasetFormatError(f"{source}: image {i} is {arr.shape}, expected 84x84x3.")
        out[i] = arr
    return out


def _read(base: Path, split: str, download: bool, npz_bgr: bool) -> tuple[np.ndarray, Path, Path]:
    npz, npz_labels = base / f"{split}_images.npz", base / f"{split}_labels.pkl"
    if npz.exists() and npz_labels.exists():
        with np.load(npz) as z:
            if "images" not in z:
                raise DatasetFormatError(f"{npz} has no 'images' array (found {list(z.keys())}).")
            images = z["images"]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (NATIVE_SIZE, NATIVE_SIZE, 3):
            raise DatasetFormatError(f"{npz}: images are {images.dtype} {images.shape}, expected uint8 [N, 84, 84, 3].")
        return (images[..., ::-1] if npz_bgr else images), npz, npz_labels
    folder = fetch_and_extract(
        SPEC.files["archive"],
        base,
        base / ARCHIVE_TOP,
        download=download,
        what=f"tiered-ImageNet {split}",
        top=ARCHIVE_TOP,
        alternative=f", or place {split}_images.npz and {split}_labels.pkl (MetaOptNet/RFS format) in {base}",
    )
    png, labels = folder / f"{split}_images_png.pkl", folder / f"{split}_labels.pkl"
    if not png.exists() or not labels.exists():
        raise DatasetFormatError(f"{folder} lacks {png.name} or {labels.name}: delete {folder} and extract again.")
    items = load_pickle(png, encoding="latin1")
    return _decode_pngs(list(items), png), png, labels


def load_tiered_imagenet(
    root: str | Path, split: str = "train", download: bool = False, image_size: int = NATIVE_SIZE, npz_bgr: bool = True
) -> ClassDataset:
    """tiered-ImageNet ``split`` (train/val/test) as ``[N, 3, image_size, image_size]`` uint8."""
    split = canonical_split(split)
    base = Path(root).expanduser() / "tiered_imagenet"

    def build() -> ClassDataset:
        images, img_path, lab_path = _read(base, split, download, npz_bgr)
        labels, names, groups = _labels(lab_path, len(images))
        ds = ClassDataset(
            images=torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),
            labels=torch.from_numpy(labels),
            class_names=names,
            groups=groups,
            name=f"tiered_imagenet-{split}",
        )
        check_counts(ds, SPEC, split, str(img_path))
        ds.images = resize_uint8(ds.images, image_size)
        return ds

    return cached(base / f"{split}_{image_size}px.pt", build)
