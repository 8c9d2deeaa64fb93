"""Score an algorithm on fixed evaluation episodes: mean +- 95% CI per episode.

Each episode (task) gets one score, its query accuracy (classification) or query
mean squared error (regression), and the report is the mean over episodes with the
half-width of its 95% confidence interval (:func:`metabridge.stats.mean_ci95`).
The usual few-shot protocol scores 600 episodes (Finn et al. 2017; Chen et al. 2019;
the default of a run's ``val_episodes`` / ``test_episodes``); draw them with
``fixed_episodes(n, seed=...)`` and pass the same ``seed`` to score several methods on
identical tasks. Scores do not depend on how the episodes are batched.

Library functions return accuracy as a fraction in [0, 1]; every command prints and writes it
in percent, the unit of the papers' tables (:func:`as_reported`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .algorithms.base import MetaAlgorithm, per_task_score
from .device import resolve_device
from .stats import MeanCI, mean_ci95
from .tasks.batch import TaskBatch


def check_prediction(pred: Tensor, batch: TaskBatch) -> None:
    """Raise ``ValueError`` when ``pred`` does not fit ``batch.query_y``.

    Without this check a ``[T, Q]`` regression target against a ``[T, Q, 1]``
    prediction would silently broadcast to ``[T, Q, Q]`` and give a wrong MSE.
    """
    target = batch.query_y
    if target.dtype == torch.long:
        if pred.dim() != 3 or tuple(pred.shape[:2]) != tuple(target.shape):
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} does not match query labels {tuple(target.shape)}; "
                "predict must return [tasks, queries, n_way] logits."
            )
        if batch.n_way is not None and pred.shape[-1] != batch.n_way:
            raise ValueError(
                f"the model outputs {pred.shape[-1]} logits but the episodes are {batch.n_way}-way; "
                f"build the model with out_dim={batch.n_way} (or evaluate with --n-way {pred.shape[-1]})."
            )
    elif tuple(pred.shape) != tuple(target.shape):
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} does not match query targets {tuple(target.shape)}; "
            "predict must return one output per query target."
        )


def _model_device(module: torch.nn.Module) -> torch.device:
    for param in module.parameters():
        return param.device
    for buffer in module.buffers():
        return buffer.device
    return torch.device("cpu")


def episode_scores(
    algorithm: MetaAlgorithm,
    episodes: Iterable[TaskBatch],
    device: torch.device | str | None = None,
    *,
    progress: bool = False,
    total: int | None = None,
) -> Tensor:
    """Per-episode scores ``[num_episodes]`` (float64, on CPU).

    The outer model runs in eval mode under ``torch.no_grad``; algorithms whose
    ``adapt`` takes gradient steps re-enable gradients inside it. The previous
    train/eval mode is restored afterwards. ``total`` (number of batches) only sizes
    the progress bar.
    """
    dev = _model_device(algorithm) if device is None else resolve_device(device)
    was_training = algorithm.training
    algorithm.eval()
    scores: list[Tensor] = []
    try:
        with torch.no_grad():
            for batch in tqdm(episodes, desc="eval", unit="batch", total=total, disable=not progress, leave=False):
                batch = batch.to(dev)
                pred = algorithm.predict(batch)
                check_prediction(pred, batch)
                scores.append(per_task_score(pred.detach(), batch.query_y).cpu())
    finally:
        algorithm.train(was_training)
    if not scores:
        raise ValueError("no evaluation episodes were given; ask for at least one episode.")
    return torch.cat(scores)


def evaluate(
    algorithm: MetaAlgorithm,
    episodes: Iterable[TaskBatch],
    device: torch.device | str | None = None,
    *,
    progress: bool = False,
    total: int | None = None,
) -> MeanCI:
    """Mean and 95% CI half-width of per-episode accuracy (classification) or MSE (regression).

    Args:
        algorithm: any :class:`~metabridge.algorithms.base.MetaAlgorithm`, already on ``device``.
        episodes: batches of tasks, e.g. ``source.fixed_episodes(600, seed=...)``.
        device: where the episodes are sent (``None``: wherever the algorithm's parameters are).
        progress: show a progress bar (``total`` batches long when given).
    """
    return mean_ci95(episode_scores(algorithm, episodes, device, progress=progress, total=total))


def as_reported(result: MeanCI, metric: str | None) -> MeanCI:
    """``result`` in the unit commands print and write: accuracy (a fraction here) in percent,
    the unit of the papers' tables; MSE unchanged."""
    if metric != "accuracy":
        return result
    return MeanCI(result.mean * 100.0, result.ci95 * 100.0, result.n)
