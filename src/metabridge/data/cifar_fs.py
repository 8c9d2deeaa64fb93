"""CIFAR-FS (Bertinetto et al., 2019): 64 / 16 / 20 CIFAR-100 classes, 600 images each.

Reference: L. Bertinetto, J. F. Henriques, P. H. S. Torr, A. Vedaldi, "Meta-learning
with differentiable closed-form solvers", ICLR 2019 (R2D2). Built from the official
CIFAR-100 python archive (see :mod:`metabridge.data.cifar100`), 32x32 RGB by default.

The class lists below are the split of the R2D2 release, written out as
``(superclass, class)`` pairs; they were checked against the split files that
torchmeta ships for CIFAR-FS (``assets/cifar100/cifar-fs/*.json``), which reproduce
Bertinetto et al.'s ``splits/bertinetto`` lists. Classes keep CIFAR-100's fine-label
order within a split.
"""

from __future__ import annotations

from pathlib import Path

from metabridge.data import cifar100
from metabridge.data.cache import resize_uint8
from metabridge.data.cifar100 import load_cifar100
from metabridge.data.class_dataset import ClassDataset
from metabridge.data.spec import DatasetFormatError, DatasetSpec, canonical_split, check_counts

SPLIT_CLASSES: dict[str, tuple[tuple[str, str], ...]] = {
    "train": (
        ("aquatic_mammals", "dolphin"),
        ("aquatic_mammals", "seal"),
        ("fish", "aquarium_fish"),
        ("fish", "ray"),
        ("fish", "trout"),
        ("flowers", "orchid"),
        ("flowers", "sunflower"),
        ("flowers", "tulip"),
        ("food_containers", "bottle"),
        ("food_containers", "bowl"),
        ("food_containers", "can"),
        ("food_containers", "cup"),
        ("food_containers", "plate"),
        ("fruit_and_vegetables", "apple"),
        ("fruit_and_vegetables", "mushroom"),
        ("fruit_and_vegetables", "orange"),
        ("fruit_and_vegetables", "pear"),
        ("household_electrical_devices", "clock"),
        ("household_electrical_devices", "keyboard"),
        ("household_furniture", "chair"),
        ("household_furniture", "couch"),
        ("insects", "bee"),
        ("insects", "caterpillar"),
        ("insects", "cockroach"),
        ("large_carnivores", "bear"),
        ("large_carnivores", "lion"),
        ("large_carnivores", "tiger"),
        ("large_carnivores", "wolf"),
        ("large_man-made_outdoor_things", "bridge"),
        ("large_man-made_outdoor_things", "castle"),
        ("large_man-made_outdoor_things", "house"),
        ("large_man-made_outdoor_things", "road"),
        ("large_man-made_outdoor_things", "skyscraper"),
        ("large_natural_outdoor_scenes", "cloud"),
        ("large_natural_outdoor_scenes", "forest"),
        ("large_natural_outdoor_scenes", "mountain"),
        ("large_omnivores_and_herbivores", "elephant"),
        ("large_omnivores_and_herbivores", "kangaroo"),
        ("medium_mammals", "porcupine"),
        ("medium_mammals", "possum"),
        ("medium_mammals", "raccoon"),
        ("medium_mammals", "skunk"),
        ("non-insect_invertebrates", "lobster"),
        ("non-insect_invertebrates", "spider"),
        ("people", "boy"),
        ("people", "girl"),
        ("reptiles", "dinosaur"),
        ("reptiles", "lizard"),
        ("reptiles", "snake"),
        ("reptiles", "turtle"),
        ("small_mammals", "hamster"),
        ("small_mammals", "mouse"),
        ("small_mammals", "rabbit"),
        ("small_mammals", "shrew"),
        ("small_mammals", "squirrel"),
        ("trees", "oak_tree"),
        ("trees", "palm_tree"),
        ("trees", "pine_tree"),
        ("trees", "willow_tree"),
        ("vehicles_1", "bus"),
        ("vehicles_1", "train"),
        ("vehicles_2", "lawn_mower"),
        ("vehicles_2", "streetcar"),
        ("vehicles_2", "tank"),
    ),
    "val": (
        ("aquatic_mammals", "beaver"),
        ("aquatic_mammals", "otter"),
        ("fish", "flatfish"),
        ("fish", "shark"),
        ("household_electrical_devices", "lamp"),
        ("household_electrical_devices", "television"),
        ("insects", "beetle"),
        ("insects", "butterfly"),
        ("large_natural_outdoor_scenes", "sea"),
        ("large_omnivores_and_herbivores", "camel"),
        ("large_omnivores_and_herbivores", "cattle"),
        ("non-insect_invertebrates", "crab"),
        ("reptiles", "crocodile"),
        ("trees", "maple_tree"),
        ("vehicles_1", "motorcycle"),
        ("vehicles_2", "tractor"),
    ),
    "test": (
        ("aquatic_mammals", "whale"),
        ("flowers", "poppy"),
        ("flowers", "rose"),
        ("fruit_and_vegetables", "sweet_pepper"),
        ("household_electrical_devices", "telephone"),
        ("household_furniture", "bed"),
        ("household_furniture", "table"),
        ("household_furniture", "wardrobe"),
        ("large_carnivores", "leopard"),
        ("large_natural_outdoor_scenes", "plain"),
        ("large_omnivores_and_herbivores", "chimpanzee"),
        ("medium_mammals", "fox"),
        ("non-insect_invertebrates", "snail"),
        ("non-insect_invertebrates", "worm"),
        ("people", "baby"),
        ("people", "man"),
        ("people", "woman"),
        ("vehicles_1", "bicycle"),
        ("vehicles_1", "pickup_truck"),
        ("vehicles_2", "rocket"),
    ),
}

SPEC = DatasetSpec(
    name="cifar_fs",
    files={"archive": cifar100.SPEC.archive},
    classes={"train": 64, "val": 16, "test": 20},
    images_per_class=600,
    reference="Bertinetto et al. 2019",
)


def load_cifar_fs(root: str | Path, split: str = "train", download: bool = False, image_size: int = 32) -> ClassDataset:
    """CIFAR-FS ``split`` (train/val/test) as ``[N, 3, image_size, image_size]`` uint8; groups are superclasses."""
    split = canonical_split(split)
    full = load_cifar100(root, download=download)
    index = {name: i for i, name in enumerate(full.class_names)}
    wanted = SPLIT_CLASSES[split]
    missing = [c for _, c in wanted if c not in index]
    if missing:
        raise DatasetFormatError(f"CIFAR-100 meta lacks the CIFAR-FS classes {missing}: not the official archive.")
    for sup, c in wanted:
        if full.groups is not None and full.groups[index[c]] != sup:
            raise DatasetFormatError(f"CIFAR-100 puts {c!r} in {full.groups[index[c]]!r}, expected {sup!r}.")
    ds = full.subset_classes(sorted(index[c] for _, c in wanted), name=f"cifar_fs-{split}")
    check_counts(ds, SPEC, split, str(Path(root).expanduser() / "cifar100"))
    ds.images = resize_uint8(ds.images, image_size)
    return ds
