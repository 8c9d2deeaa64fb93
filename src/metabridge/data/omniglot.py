"""Omniglot (Lake et al., 2015) from the official background/evaluation archives.

Reference: B. M. Lake, R. Salakhutdinov, J. B. Tenenbaum, "Human-level concept
learning through probabilistic program induction", Science 350(6266), 2015. Data:
https://github.com/brendenlake/omniglot (``python/images_background.zip``: 30
alphabets, 964 characters; ``python/images_evaluation.zip``: 20 alphabets, 659
characters; each character drawn by 20 people as a 105x105 binary PNG).

Splits
------
* ``background`` / ``evaluation``: Lake et al.'s own split by alphabet.
* ``train`` / ``val`` / ``test`` / ``trainval``: the protocol of Vinyals et al. (2016)
  as run by MAML (Finn et al., 2017): the 1623 characters of both archives are
  shuffled, 1200 are used for meta-training (MAML holds 100 of them out for
  validation: ``train`` = 1100, ``val`` = 100, ``trainval`` = 1200) and the other
  423 for testing. MAML shuffles ``os.listdir`` order with ``random.seed(1)``, which
  is not reproducible across file systems; here the characters are sorted first and
  shuffled with ``random.Random(1)``, so the split is deterministic but is *not* the
  identical list of Vinyals et al. / MAML.
* ``rotations=True`` (the default for the Vinyals-style splits) adds the 90, 180 and
  270 degree rotations of every character as new classes (4x the classes), as in
  Vinyals et al. and Santoro et al.

Images are resized to ``image_size`` (28 by default, MAML's protocol) with Pillow's
Lanczos filter and stored with strokes bright: 255 is ink, 0 is paper (the PNGs are
the reverse). Checksums: the md5 digests used by torchvision's ``Omniglot``; no
sha256 is published by the host, so none is pinned.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metabridge.data.cache import cached
from metabridge.data.class_dataset import ClassDataset
from metabridge.data.download import RemoteFile, fetch_and_extract
from metabridge.data.spec import DatasetFormatError

_BASE = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
_MIRROR = "https://github.com/brendenlake/omniglot/raw/master/python/"


@dataclass(frozen=True)
class OmniglotSpec:
    """Files and expected counts; ``archives[name] = (file, alphabets, characters)``."""

    archives: dict[str, tuple[RemoteFile, int, int]]
    drawers: int = 20
    n_train: int = 1100
    n_val: int = 100
    seed: int = 1


SPEC = OmniglotSpec(
    archives={
        "images_background": (
            RemoteFile(
                "images_background.zip",
                (_BASE + "images_background.zip", _MIRROR + "images_background.zip"),
                md5="68d2efa1b9178cc56df9314c21c6e718",
            ),
            30,
            964,
        ),
        "images_evaluation": (
            RemoteFile(
                "images_evaluation.zip",
                (_BASE + "images_evaluation.zip", _MIRROR + "images_evaluation.zip"),
                md5="6b91aef0f799c5bb55b94e3f2daec811",
            ),
            20,
            659,
        ),
    }
)

SPLITS = ("background", "evaluation", "train", "val", "test", "trainval")


def _decode_png(path: Path, size: int) -> np.ndarray:
    from PIL import Image  # Pillow ships with matplotlib

    with Image.open(path) as raw:
        im = raw.convert("L")
        if im.size != (size, size):
            im = im.resize((size, size), resample=Image.Resampling.LANCZOS)
        return 255 - np.asarray(im, dtype=np.uint8)


def _read_folder(folder: Path, archive: str, size: int) -> ClassDataset:
    """Decode ``folder/<alphabet>/<character>/*.png`` and check the counts."""
    _, n_alpha, n_char = SPEC.archives[archive]
    alphabets = sorted(p for p in folder.iterdir() if p.is_dir())
    images: list[np.ndarray] = []
    labels: list[int] = []
    names: list[str] = []
    groups: list[str] = []
    for alpha in alphabets:
        for char in sorted(p for p in alpha.iterdir() if p.is_dir()):
            pngs = sorted(char.glob("*.png"))
            if len(pngs) != SPEC.drawers:
                raise DatasetFormatError(
                    f"Omniglot {char} has {len(pngs)} PNGs, expected {SPEC.drawers}: the extraction at {folder} "
                    f"is incomplete. Delete it (and the zip) and download again."
                )
            for png in pngs:
                images.append(_decode_png(png, size))
                labels.append(len(names))
            names.append(f"{alpha.name}/{char.name}")
            groups.append(alpha.name)
    if len(alphabets) != n_alpha or len(names) != n_char:
        raise DatasetFormatError(
            f"Omniglot {archive}: found {len(alphabets)} alphabets and {len(names)} characters in {folder}, "
            f"expected {n_alpha} and {n_char}. Delete {folder} and its zip and download again."
        )
    return ClassDataset(
        images=torch.from_numpy(np.stack(images)[:, None]),
        labels=torch.tensor(labels, dtype=torch.long),
        class_names=names,
        groups=groups,
        name=f"omniglot-{archive}",
    )


def load_archive(root: str | Path, archive: str, *, download: bool = False, image_size: int = 28) -> ClassDataset:
    """One of Lake's archives (``images_background`` or ``images_evaluation``), cached."""
    base = Path(root).expanduser() / "omniglot"
    cache_file = base / f"{archive}_{image_size}px.pt"

    def build() -> ClassDataset:
        folder = fetch_and_extract(
            SPEC.archives[archive][0], base, base / archive, download=download, what=f"Omniglot {archive}", top=archive
        )
        return _read_folder(folder, archive, image_size)

    return cached(cache_file, build)


def _rotate(ds: ClassDataset) -> ClassDataset:
    """Append the 90/180/270-degree rotations of every class as new classes."""
    n = ds.num_classes
    images = [ds.images] + [torch.rot90(ds.images, k, dims=(2, 3)) for k in (1, 2, 3)]
    labels = [ds.labels + k * n for k in range(4)]
    names = [f"{c}/rot{90 * k:03d}" for k in range(4) for c in ds.class_names]
    groups = None if ds.groups is None else [g for _ in range(4) for g in ds.groups]
    return ClassDataset(torch.cat(images), torch.cat(labels), names, groups, ds.name)


def vinyals_partition(num_classes: int) -> dict[str, list[int]]:
    """Indices (into background+evaluation characters, sorted) of each Vinyals-style split."""
    order = list(range(num_classes))
    random.Random(SPEC.seed).shuffle(order)
    tr, va = SPEC.n_train, SPEC.n_val
    return {
        "train": sorted(order[:tr]),
        "val": sorted(order[tr : tr + va]),
        "trainval": sorted(order[: tr + va]),
        "test": sorted(order[tr + va :]),
    }


def load_omniglot(
    root: str | Path, split: str = "train", download: bool = False, image_size: int = 28, rotations: bool | None = None
) -> ClassDataset:
    """Omniglot ``split`` as a :class:`ClassDataset` of ``[N, 1, image_size, image_size]`` uint8.

    ``rotations`` defaults to ``True`` for ``train``/``val``/``test``/``trainval`` and
    ``False`` for Lake's ``background``/``evaluation``. Groups are alphabet names.
    """
    split = {"validation": "val", "valid": "val"}.get(split, split)
    if split not in SPLITS:
        raise ValueError(f"unknown Omniglot split {split!r}; choose one of {', '.join(SPLITS)}.")
    if rotations is None:
        rotations = split not in ("background", "evaluation")
    if split in ("background", "evaluation"):
        ds = load_archive(root, f"images_{split}", download=download, image_size=image_size)
    else:
        bg = load_archive(root, "images_background", download=download, image_size=image_size)
        ev = load_archive(root, "images_evaluation", download=download, image_size=image_size)
        both = ClassDataset(
            images=torch.cat([bg.images, ev.images]),
            labels=torch.cat([bg.labels, ev.labels + bg.num_classes]),
            class_names=bg.class_names + ev.class_names,
            groups=(bg.groups or []) + (ev.groups or []),
        )
        ds = both.subset_classes(vinyals_partition(both.num_classes)[split])
    if rotations:
        ds = _rotate(ds)
    ds.name = f"omniglot-{split}"
    return ds
