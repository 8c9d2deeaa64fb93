"""N-way K-shot Q-query episodes from a class-indexed in-memory dataset.

An episode (Vinyals et al. 2016) draws N classes, then K support and Q query
images of each, without replacement, so a support image is never a query image.
Local label j names the task's j-th class; ``class_ids[t, j]`` is its global class.
A whole meta-batch is drawn with tensor operations: random keys + argsort pick
classes and instances, and one gather fetches the uint8 pixels.

Training episodes may be augmented (``augment=``, e.g. a
:class:`metabridge.data.augment.Augment`): :meth:`EpisodeSampler.sample` draws the
augmentation's random parameters from the same generator as the episode, right after
its indices, so a run's episodes, augmented or not, are a function of that
generator's state alone (an exact resume restores it). :meth:`fixed_episodes`
(validation and test) is never augmented.

Device. The sampler gathers pixels wherever its dataset's ``images`` are: built with
``device=`` (or moved with :meth:`EpisodeSampler.to`) it keeps the uint8 dataset on that
device, and every batch it returns is born there (images, labels and ``class_ids``), so a
training step copies no images from the host. Indices are always drawn on the host, from
the caller's CPU ``torch.Generator``, with the class index kept on the host; only the small
``[T, N, K+Q]`` index tensor is sent to the device (pinned, asynchronously for CUDA). The
generator's draws therefore do not depend on the device, and a CPU sampler and a device
sampler given the same generator state return the same episodes, pixel for pixel
(augmentation parameters are drawn from the same generator on the host as well,
:mod:`metabridge.data.augment`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from ..data.class_dataset import ClassDataset, host_to_device
from .batch import TaskBatch, batch_slices


class EpisodeSampler:
    """Samples batches of N-way K-shot Q-query tasks from ``dataset``.

    Args:
        dataset: images uint8 ``[N, C, H, W]`` with labels.
        n_way, k_shot, q_query: episode shape.
        transform: a deterministic function applied to the float images ``[T, S, C, H, W]``
            of every episode, training and fixed (e.g. flattening for an MLP); the default
            only scales uint8 pixels to ``[0, 1]``.
        augment: ``augment(images, generator)`` applied to the float images in ``[0, 1]``
            ``[T, N, K+Q, C, H, W]`` (support and query alike, per image) of the episodes
            :meth:`sample` draws, with its random parameters from ``generator``; never to
            :meth:`fixed_episodes`. Applied before ``transform``.
        device: keep the dataset's pixels on this device (one copy, here) and gather every
            episode there (module docstring); ``None`` (default): wherever ``dataset.images``
            are (the host, for every loader).
    """

    def __init__(
        self,
        dataset: ClassDataset,
        n_way: int,
        k_shot: int,
        q_query: int,
        transform: Callable[[Tensor], Tensor] | None = None,
        augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if n_way < 1 or k_shot < 1 or q_query < 0:
            raise ValueError(
                f"episode shape must have n_way >= 1, k_shot >= 1, q_query >= 0 (got {n_way}-way "
                f"{k_shot}-shot {q_query}-query)."
            )
        table, counts = dataset.class_index()
        need = k_shot + q_query
        eligible = torch.nonzero(counts >= need).flatten()
        if dataset.num_classes < n_way:
            raise ValueError(
                f"{dataset.name} has {dataset.num_classes} classes, fewer than n_way={n_way}; "
                f"choose n_way <= {dataset.num_classes}{dataset.split_note}."
            )
        if len(eligible) < n_way:
            sizes = counts.sort(descending=True).values
            largest_ok = int(sizes[n_way - 1])  # k_shot + q_query that n_way classes can still give
            fix = f"lower k_shot + q_query to at most {largest_ok}"
            if len(eligible):
                fix += f", or n_way to at most {len(eligible)}"
            raise ValueError(
                f"{dataset.name}: only {len(eligible)} classes have k_shot + q_query = {need} images "
                f"(class sizes range from {int(counts.min())} to {int(counts.max())}); {fix}{dataset.split_note}."
            )
        self.dataset = dataset if device is None else dataset.to(device)
        self.n_way, self.k_shot, self.q_query = n_way, k_shot, q_query
        self.transform = transform
        self.augment = augment
        self._table = table
        self._counts = counts
        self._eligible = eligible

    @property
    def device(self) -> torch.device:
        """Where the episodes are gathered (the device of the dataset's pixels)."""
        return self.dataset.images.device

    def to(self, device: torch.device | str) -> EpisodeSampler:
        """This sampler with its dataset's pixels on ``device`` (``self`` when they are there).

        The copy shares the episode shape, ``transform``, ``augment`` and the host-side class
        index with ``self``, so both draw identical episodes from identical generator states."""
        dataset = self.dataset.to(device)
        if dataset is self.dataset:
            return self
        moved = copy.copy(self)
        moved.dataset = dataset
        return moved

    def sample_indices(self, num_tasks: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(classes [T, N], image_idx [T, N, K+Q])`` for ``num_tasks`` episodes, on the host
        (drawn from ``generator``, a CPU generator, whatever the sampler's device)."""
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1 (got {num_tasks}).")
        n_elig = len(self._eligible)
        order = torch.rand(num_tasks, n_elig, generator=generator).argsort(dim=1)[:, : self.n_way]
        classes = self._eligible[order]
        width = self._table.shape[1]
        keys = torch.rand(num_tasks, self.n_way, width, generator=generator)
        keys.masked_fill_(torch.arange(width) >= self._counts[classes][..., None], 2.0)
        pos = keys.argsort(dim=2)[..., : self.k_shot + self.q_query]
        return classes, self._table[classes[..., None], pos]

    def sample(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        """Draw ``num_tasks`` episodes as one :class:`TaskBatch` (float images in [0, 1]),
        augmented with parameters from ``generator`` when the sampler has an ``augment``."""
        classes, idx = self.sample_indices(num_tasks, generator)
        return self.episodes_from_indices(classes, idx, augment_with=generator)

    def episodes_from_indices(
        self, classes: Tensor, idx: Tensor, augment_with: torch.Generator | None = None
    ) -> TaskBatch:
        """The :class:`TaskBatch` of episodes given by :meth:`sample_indices`' output; augmented,
        with parameters drawn from ``augment_with``, only when that is given and the sampler
        has an ``augment``."""
        t, n, k, q = idx.shape[0], self.n_way, self.k_shot, self.q_query
        pixels = self.dataset.images
        dev = pixels.device
        images = pixels[host_to_device(idx.flatten(), dev)].view(t, n, k + q, *pixels.shape[1:])
        images = images.float().div_(255.0)
        if self.augment is not None and augment_with is not None:
            images = self.augment(images, augment_with)
        support = images[:, :, :k].reshape(t, n * k, *images.shape[3:])
        query = images[:, :, k:].reshape(t, n * q, *images.shape[3:])
        if self.transform is not None:
            support, query = self.transform(support), self.transform(query)
        labels = torch.arange(n, device=dev)
        return TaskBatch(
            support,
            labels.repeat_interleave(k).expand(t, -1).clone(),
            query,
            labels.repeat_interleave(q).expand(t, -1).clone(),
            class_ids=host_to_device(classes, dev),
            n_way=n,
        )

    def fixed_episodes(self, num_episodes: int, seed: int, batch_size: int = 32) -> Iterator[TaskBatch]:
        """The same ``num_episodes`` episodes for a given ``seed``, whatever ``batch_size``:
        two methods evaluated with one seed are scored on identical tasks. The indices of
        all episodes are drawn at once (small); pixels are gathered one batch at a time."""
        parts = list(batch_slices(num_episodes, batch_size))  # checks the counts first
        classes, idx = self.sample_indices(num_episodes, torch.Generator().manual_seed(seed))
        for part in parts:
            yield self.episodes_from_indices(classes[part], idx[part])
