"""What several benchmarks share: a record of the machine they ran on, and a synthetic
uint8 dataset of a real dataset's shape (no download, no disk)."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..data.class_dataset import ClassDataset


def machine(device: str) -> dict[str, Any]:
    """CPU model, cores, threads, torch version, load, time (and the GPU when used)."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "loadavg_start": os.getloadavg()}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def synthetic_dataset(num_classes: int = 1200, per_class: int = 20, size: int = 28, channels: int = 1,
                      seed: int = 0) -> ClassDataset:
    """Random uint8 images, ``per_class`` of each of ``num_classes`` classes (Omniglot-sized by default)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (num_classes * per_class, channels, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return ClassDataset(images, labels, [str(c) for c in range(num_classes)], name="synthetic")
