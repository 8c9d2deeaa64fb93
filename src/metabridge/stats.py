"""Means with 95% intervals: over evaluation episodes (normal approximation) and over a few
independent runs such as seeds (Student t)."""

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


#: Student's t 0.975 quantile for 1..30 degrees of freedom (two-sided 95%).
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


def t_quantile975(df: int) -> float:
    """Student's t 0.975 quantile with ``df`` degrees of freedom: a table to 30, beyond it the
    Cornish-Fisher expansion around the normal quantile (error below 1e-4 there)."""
    if df < 1:
        raise ValueError(f"t_quantile975 needs at least 1 degree of freedom (got {df}).")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_t_interval95(values: Tensor | list[float]) -> MeanCI:
    """Mean and 95% Student-t half-width, t(0.975, n-1) * sample std / sqrt(n), of a few
    independent runs (seeds): the interval over seeds that a headline result reports beside
    each run's own episode CI. With one value the half-width is NaN (no spread to estimate)."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = v.numel()
    if n == 0:
        raise ValueError("mean_t_interval95 needs at least one value.")
    if not torch.isfinite(v).all():
        raise ValueError("mean_t_interval95: some values are NaN or infinite; a run diverged.")
    half = t_quantile975(n - 1) * float(v.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    return MeanCI(float(v.mean()), half, n)
