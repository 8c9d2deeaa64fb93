"""What several benchmarks share: where the peer libraries' environment lives, and a
synthetic uint8 dataset of a real dataset's shape (no download, no disk)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.class_dataset import ClassDataset

#: The virtual environment of the peer libraries that ``scripts/install_peers.sh`` builds
#: (``$PEERS_DIR/venv``, by default under ``~/.cache/metabridge/peers``).
PEER_VENV = Path.home() / ".cache" / "metabridge" / "peers" / "venv"


def synthetic_dataset(
    num_classes: int = 1200, per_class: int = 20, size: int = 28, channels: int = 1, seed: int = 0
) -> ClassDataset:
    """Random uint8 images, ``per_class`` of each of ``num_classes`` classes (Omniglot-sized by default)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (num_classes * per_class, channels, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return ClassDataset(images, labels, [str(c) for c in range(num_classes)], name="synthetic")
