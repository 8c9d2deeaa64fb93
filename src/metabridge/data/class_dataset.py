"""A class-indexed image dataset held in memory as uint8 tensors.

Every few-shot dataset in metabridge (Omniglot, mini-/tiered-ImageNet, CIFAR-FS,
FC100, the offline glyph benchmark, fixtures in tests) is loaded into this one
form, so that sampling an N-way K-shot episode is a tensor gather
(``metabridge.tasks.episodes``) and never a Python loop over images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class ClassDataset:
    """Images ``[N, C, H, W]`` uint8 with int64 labels ``[N]`` in ``0..num_classes-1``.

    ``class_names[c]`` names class ``c``; ``groups`` optionally maps each class to
    a group name (an Omniglot alphabet, a glyph script, a CIFAR superclass).
    """

    images: Tensor
    labels: Tensor
    class_names: list[str]
    groups: list[str] | None = None
    name: str = "dataset"
    _index: tuple[Tensor, Tensor] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8:
            raise ValueError(f"{self.name}: images must be uint8 (got {self.images.dtype}); store pixels as 0..255.")
        if self.images.dim() != 4:
            raise ValueError(f"{self.name}: images must be [N, C, H, W] (got shape {tuple(self.images.shape)}).")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"{self.name}: labels shape {tuple(self.labels.shape)} does not match {self.images.shape[0]} images."
            )
        self.labels = self.labels.long()
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"{self.name}: labels must lie in 0..{len(self.class_names) - 1}.")
        if self.groups is not None and len(self.groups) != len(self.class_names):
            raise ValueError(f"{self.name}: groups must name one group per class.")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def class_index(self) -> tuple[Tensor, Tensor]:
        """``(table, counts)``: ``table[c, :counts[c]]`` are the image indices of class ``c``
        (padded with -1), built once and cached."""
        if self._index is None:
            counts = torch.bincount(self.labels, minlength=self.num_classes)
            order = torch.argsort(self.labels, stable=True)
            width = int(counts.max()) if len(counts) else 0
            starts = torch.cumsum(counts, 0) - counts
            pos = torch.arange(len(order)) - starts[self.labels[order]]
            table = torch.full((self.num_classes, width), -1, dtype=torch.long)
            table[self.labels[order], pos] = order
            self._index = (table, counts)
        return self._index

    def subset_classes(self, classes: list[int] | Tensor, name: str | None = None) -> "ClassDataset":
        """A new dataset with only ``classes`` (relabelled ``0..len(classes)-1`` in the given order)."""
        classes = torch.as_tensor(classes, dtype=torch.long)
        remap = torch.full((self.num_classes,), -1, dtype=torch.long)
        remap[classes] = torch.arange(len(classes))
        keep = remap[self.labels] >= 0
        return ClassDataset(
            images=self.images[keep],
            labels=remap[self.labels[keep]],
            class_names=[self.class_names[c] for c in classes.tolist()],
            groups=None if self.groups is None else [self.groups[c] for c in classes.tolist()],
            name=name or self.name,
        )
