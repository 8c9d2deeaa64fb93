"""A class-indexed image dataset held in memory as uint8 tensors.

Every few-shot dataset in metabridge (Omniglot, mini-/tiered-ImageNet, CIFAR-FS,
FC100, the offline glyph benchmark, fixtures in tests) is loaded into this one
form, so that sampling an N-way K-shot episode is a tensor gather
(``metabridge.tasks.episodes``) and never a Python loop over images.

The pixels may live on an accelerator (:meth:`ClassDataset.to`): episodes are then
gathered where the model runs and no batch of images crosses the host-device bus. The
labels, and the class index built from them, always stay on the host, where episode
indices are drawn from a CPU ``torch.Generator`` (so a seed gives the same episodes on
every device).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


def host_to_device(t: Tensor, device: torch.device | str) -> Tensor:
    """``t`` on ``device``, copied without making the host wait where that is possible.

    A copy from pageable host memory to a CUDA device with ``non_blocking=False`` ends with
    a stream synchronisation (the host waits for all queued GPU work), and with
    ``non_blocking=True`` it is still staged through a driver buffer. So a host tensor bound
    for CUDA is first pinned (page-locked; torch's caching host allocator keeps the block
    alive until the copy has run) and then copied asynchronously. Every other move (to the
    CPU, between devices, to ``meta``, or when CUDA is not available) is a plain ``t.to``;
    a tensor already on ``device`` is returned as it is. The values are exact either way.
    """
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu" and torch.cuda.is_available():
        if not t.is_pinned():
            t = t.pin_memory()
        return t.to(device, non_blocking=True)
    return t.to(device)


@dataclass
class ClassDataset:
    """Images ``[N, C, H, W]`` uint8 with int64 labels ``[N]`` in ``0..num_classes-1``.

    ``class_names[c]`` names class ``c``; ``groups`` optionally maps each class to
    a group name (an Omniglot alphabet, a glyph script, a CIFAR superclass).
    ``images`` may be on any device (:meth:`to`); ``labels`` are meant for the host.
    """

    images: Tensor
    labels: Tensor
    class_names: list[str]
    groups: list[str] | None = None
    name: str = "dataset"
    #: how this split's classes were chosen and how to choose others (one's own folders); error
    #: messages about too few classes or images end with it
    split_note: str = ""
    _index: tuple[Tensor, Tensor] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8:
            raise ValueError(f"{self.name}: images must be uint8 (got {self.images.dtype}); store pixels as 0..255.")
        if self.images.dim() != 4:
            raise ValueError(f"{self.name}: images must be [N, C, H, W] (got shape {tuple(self.images.shape)}).")
        channels, last = self.images.shape[1], self.images.shape[3]
        if last in (1, 3, 4) and channels not in (1, 3, 4) and self.images.shape[2] != last:
            raise ValueError(
                f"{self.name}: images look channels-last [N, H, W, C] (shape {tuple(self.images.shape)}); "
                "pass images.permute(0, 3, 1, 2) to make them [N, C, H, W]."
            )
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

    @property
    def device(self) -> torch.device:
        """Where the pixels are (episodes are gathered there)."""
        return self.images.device

    @property
    def nbytes(self) -> int:
        """Size of the pixels in bytes (what :meth:`to` puts on the device)."""
        return self.images.numel() * self.images.element_size()

    def to(self, device: torch.device | str) -> ClassDataset:
        """This dataset with its pixels on ``device`` (``self`` when they are there already).

        Only ``images`` move (one copy, at set-up); ``labels`` and the cached class index
        stay on the host, shared with ``self``, because episode indices are drawn there
        (:class:`~metabridge.tasks.episodes.EpisodeSampler`). The pixels are the same bytes.
        """
        device = torch.device(device)
        images = host_to_device(self.images, device)
        if images is self.images and self.labels.device.type == "cpu":
            return self
        return replace(self, images=images, labels=self.labels.cpu(), _index=self._index)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def class_index(self) -> tuple[Tensor, Tensor]:
        """``(table, counts)``: ``table[c, :counts[c]]`` are the image indices of class ``c``
        (padded with -1), built once and cached."""
        if self._index is None:
            labels = self.labels.cpu()  # the index is a host structure (see the module docstring)
            counts = torch.bincount(labels, minlength=self.num_classes)
            order = torch.argsort(labels, stable=True)
            width = int(counts.max()) if len(counts) else 0
            starts = torch.cumsum(counts, 0) - counts
            pos = torch.arange(len(order)) - starts[labels[order]]
            table = torch.full((self.num_classes, width), -1, dtype=torch.long)
            table[labels[order], pos] = order
            self._index = (table, counts)
        return self._index

    def subset_classes(self, classes: list[int] | Tensor, name: str | None = None) -> ClassDataset:
        """A new dataset with only ``classes`` (relabelled ``0..len(classes)-1`` in the given order)."""
        classes = torch.as_tensor(classes, dtype=torch.long)
        remap = torch.full((self.num_classes,), -1, dtype=torch.long)
        remap[classes] = torch.arange(len(classes))
        keep = (remap[self.labels] >= 0).nonzero().flatten()  # on the host: no device-side nonzero sync
        return ClassDataset(
            images=self.images[host_to_device(keep, self.images.device)],
            labels=remap[self.labels[keep]],
            class_names=[self.class_names[c] for c in classes.tolist()],
            groups=None if self.groups is None else [self.groups[c] for c in classes.tolist()],
            name=name or self.name,
        )
