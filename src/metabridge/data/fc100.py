"""FC100 (Oreshkin et al., 2018): CIFAR-100 split by superclass, 60 / 20 / 20 classes.

Reference: B. N. Oreshkin, P. Rodriguez, A. Lacoste, "TADAM: Task dependent adaptive
metric for improved few-shot learning", NeurIPS 2018. The 20 CIFAR-100 superclasses
are split 12 / 4 / 4 (5 fine classes each, 600 images per class), so no superclass is
shared between splits. Superclass indices (CIFAR-100 coarse label order): train
1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19; val 8, 11, 13, 16; test 0, 7, 12, 14 -- the
split of the TADAM and MetaOptNet releases, checked against the lists torchmeta
ships for FC100. Built from the official CIFAR-100 python archive
(:mod:`metabridge.data.cifar100`), 32x32 RGB by default.
"""

from __future__ import annotations

from pathlib import Path

from metabridge.data import cifar100
from metabridge.data.cache import resize_uint8
from metabridge.data.cifar100 import load_cifar100
from metabridge.data.class_dataset import ClassDataset
from metabridge.data.spec import DatasetFormatError, DatasetSpec, canonical_split, check_counts

SPLIT_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "train": (
        "fish",
        "flowers",
        "food_containers",
        "fruit_and_vegetables",
        "household_electrical_devices",
        "household_furniture",
        "large_man-made_outdoor_things",
        "large_natural_outdoor_scenes",
        "reptiles",
        "trees",
        "vehicles_1",
        "vehicles_2",
    ),
    "val": ("large_carnivores", "large_omnivores_and_herbivores", "non-insect_invertebrates", "small_mammals"),
    "test": ("aquatic_mammals", "insects", "medium_mammals", "people"),
}

SPEC = DatasetSpec(
    name="fc100",
    files={"archive": cifar100.SPEC.archive},
    classes={"train": 60, "val": 20, "test": 20},
    images_per_class=600,
    reference="Oreshkin et al. 2018",
)


def load_fc100(root: str | Path, split: str = "train", download: bool = False, image_size: int = 32) -> ClassDataset:
    """FC100 ``split`` (train/val/test) as ``[N, 3, image_size, image_size]`` uint8; groups are superclasses."""
    split = canonical_split(split)
    full = load_cifar100(root, download=download)
    assert full.groups is not None
    supers = SPLIT_SUPERCLASSES[split]
    unknown = sorted(set(supers) - set(full.groups))
    if unknown:
        raise DatasetFormatError(f"CIFAR-100 meta lacks the superclasses {unknown}: not the official archive.")
    classes = [c for c, g in enumerate(full.groups) if g in supers]
    ds = full.subset_classes(classes, name=f"fc100-{split}")
    check_counts(ds, SPEC, split, str(Path(root).expanduser() / "cifar100"))
    ds.images = resize_uint8(ds.images, image_size)
    return ds
