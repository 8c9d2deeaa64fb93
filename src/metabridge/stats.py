"""Mean and 95% confidence interval over evaluation episodes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class MeanCI:
    """A mean with the half-width of its 95% confidence interval (normal approximation,
    1.96 standard errors, as reported by Finn et al. 2017 and most few-shot papers)."""

    mean: float
    ci95: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.ci95:.2g}"

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "ci95": self.ci95, "n": self.n}


def mean_ci95(values: Tensor | list[float]) -> MeanCI:
    """Mean and 1.96 * sample std / sqrt(n) of per-episode scores."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = v.numel()
    if n == 0:
        raise ValueError("mean_ci95 needs at least one value.")
    if not torch.isfinite(v).all():
        raise ValueError("mean_ci95: some episode scores are NaN or infinite; the model diverged.")
    half = 1.96 * float(v.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    return MeanCI(float(v.mean()), half, n)
