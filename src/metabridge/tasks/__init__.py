"""Tasks as batched tensors: :class:`TaskBatch`, N-way K-shot episodes from any class-indexed
uint8 dataset, and the regression task families of the seed papers."""

from .batch import TaskBatch, batch_slices
from .episodes import EpisodeSampler
from .linear_regression import LinearRegressionFamily, LinearTaskParams
from .sinusoid import SinusoidFamily

__all__ = [
    "EpisodeSampler",
    "LinearRegressionFamily",
    "LinearTaskParams",
    "SinusoidFamily",
    "TaskBatch",
    "batch_slices",
]
