"""Datasets as in-memory uint8 :class:`ClassDataset` s: the standard few-shot sets with checked
downloads, the offline glyph benchmark, one's own image folders or ``.npz`` files, an open
registry, and batched augmentation.

``load_dataset(name_or_path, root, split)`` loads any of them; ``register_dataset`` adds one's
own loader; ``load_image_folder`` reads one's own images with more options.
"""

from .augment import Augment, augment_for, to_float
from .class_dataset import ClassDataset
from .download import ChecksumError, DownloadError, HTMLPageError, UnsafeArchiveError
from .image_folder import load_image_folder
from .registry import available_datasets, dataset_spec, load_dataset, register_dataset, unregister_dataset
from .spec import DatasetFormatError

__all__ = [
    "Augment",
    "ChecksumError",
    "ClassDataset",
    "DatasetFormatError",
    "DownloadError",
    "HTMLPageError",
    "UnsafeArchiveError",
    "augment_for",
    "available_datasets",
    "dataset_spec",
    "load_dataset",
    "load_image_folder",
    "register_dataset",
    "to_float",
    "unregister_dataset",
]
