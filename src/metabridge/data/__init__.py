"""Datasets (in-memory uint8 ``ClassDataset``), downloads with checksums, the offline
glyph benchmark, and batched augmentation."""

from .augment import Augment, augment_for, to_float
from .class_dataset import ClassDataset
from .registry import available_datasets, load_dataset

__all__ = ["Augment", "ClassDataset", "augment_for", "available_datasets", "load_dataset", "to_float"]
