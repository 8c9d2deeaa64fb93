"""Registry entries of the standard few-shot datasets and the checks made against them.

A :class:`DatasetSpec` records, for one dataset, the files to fetch (URLs,
filenames, checksums) and the counts a correct copy must produce for each split, so
that a wrong or incomplete file is caught by name instead of training silently on
the wrong data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from metabridge.data.class_dataset import ClassDataset
from metabridge.data.download import RemoteFile

SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


class DatasetFormatError(RuntimeError):
    """Files were found but do not hold what the dataset's registry entry says they should."""


@dataclass(frozen=True)
class DatasetSpec:
    """Files and expected counts of one dataset.

    ``classes[split]`` is the number of classes; ``images_per_class`` (when every
    class has the same number, as in mini-ImageNet or Omniglot) or ``images[split]``
    (total, as in tiered-ImageNet) the number of images.
    """

    name: str
    files: dict[str, RemoteFile]
    classes: dict[str, int]
    images_per_class: int | None = None
    images: dict[str, int] = field(default_factory=dict)
    reference: str = ""


def canonical_split(split: str, allowed: tuple[str, ...] = ("train", "val", "test")) -> str:
    """Map ``validation``/``valid`` to ``val`` and reject unknown split names."""
    s = SPLIT_ALIASES.get(split, split)
    if s not in allowed:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(allowed)}.")
    return s


def check_counts(ds: ClassDataset, spec: DatasetSpec, split: str, source: str) -> ClassDataset:
    """Raise :class:`DatasetFormatError` if ``ds`` has the wrong number of classes or images."""
    fix = f"The files under {source} are incomplete or not the expected ones: delete them and download again."
    want_classes = spec.classes.get(split)
    if want_classes is not None and ds.num_classes != want_classes:
        raise DatasetFormatError(f"{spec.name} {split}: found {ds.num_classes} classes, expected {want_classes}. {fix}")
    if spec.images_per_class is not None:
        counts = torch.bincount(ds.labels, minlength=ds.num_classes)
        bad = (counts != spec.images_per_class).nonzero().flatten().tolist()
        if bad:
            c = bad[0]
            raise DatasetFormatError(
                f"{spec.name} {split}: class {ds.class_names[c]!r} has {int(counts[c])} images, expected "
                f"{spec.images_per_class} ({len(bad)} classes differ). {fix}"
            )
    want_images = spec.images.get(split)
    if want_images is not None and len(ds) != want_images:
        raise DatasetFormatError(f"{spec.name} {split}: found {len(ds)} images, expected {want_images}. {fix}")
    return ds
