"""The progress bar every trainer shows (tqdm, on rank 0 only)."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(
    total: float, initial: float, *, enabled: bool, desc: str, unit: str = "step", seconds: bool = False
) -> Any:
    """A tqdm bar of ``total`` steps (or, with ``seconds=True``, of ``total`` seconds of training),
    starting at ``initial``; ``enabled=False`` (quiet runs, ranks other than 0) draws nothing."""
    if seconds:
        return tqdm(
            total=total,
            initial=min(initial, total),
            disable=not enabled,
            desc=desc,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of training [{elapsed}{postfix}]",
        )
    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit=unit, dynamic_ncols=True)
