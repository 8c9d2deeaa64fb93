"""Tiny algorithms and builders for the train / checkpoint / evaluate / CLI tests.

They implement the :class:`MetaAlgorithm` contract without depending on the real
algorithm registry, so these tests exercise the training machinery on its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metabridge.algorithms.base import MetaAlgorithm, Predictor, task_loss
from metabridge.algorithms.registry import register_algorithm
from metabridge.config import ExperimentConfig
from metabridge.experiment import Experiment, build_task_sources
from metabridge.tasks.batch import TaskBatch


@register_algorithm(replace=True)
class ToyANIL(MetaAlgorithm):
    """A small regressor whose ``adapt`` takes one autograd SGD step on the linear head.

    Training differentiates through that step (second order); evaluation computes
    the step with ``torch.enable_grad`` inside ``adapt``, as real GBML algorithms do.
    Dropout makes training consume the global torch RNG, so an exact resume must
    restore it.
    """

    name = "toy_anil"

    def __init__(
        self,
        hidden: int = 16,
        inner_lr: float = 0.05,
        dropout: float = 0.1,
        nan_at_call: int | None = None,
        nan_in_eval: bool = False,
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(1, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.Tanh()
        )
        self.head = nn.Linear(hidden, 1)
        self.inner_lr = inner_lr
        self.nan_at_call = nan_at_call
        self.nan_in_eval = nan_in_eval
        self.calls = 0

    @classmethod
    def build(cls, make_model, data, **hparams):
        """Its own small network: the registry's backbone is not used."""
        return cls(**hparams)

    def _adapted_head(self, feats: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        t = feats.shape[0]
        with torch.enable_grad():
            w = self.head.weight.t().unsqueeze(0).repeat(t, 1, 1)  # [T, h, 1]
            b = self.head.bias.view(1, 1, 1).repeat(t, 1, 1)
            if not self.training:
                w, b = w.detach().requires_grad_(), b.detach().requires_grad_()
                feats = feats.detach()
            loss = F.mse_loss(feats @ w + b, y, reduction="none").mean(dim=(1, 2)).sum()
            gw, gb = torch.autograd.grad(loss, (w, b), create_graph=self.training)
        return w - self.inner_lr * gw, b - self.inner_lr * gb

    def adapt(self, batch: TaskBatch) -> Predictor:
        w, b = self._adapted_head(self.body(batch.support_x), batch.support_y)
        if self.nan_in_eval and not self.training:
            b = b * float("nan")
        return lambda x: self.body(x) @ w + b

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        self.calls += 1
        loss = task_loss(self.predict(batch), batch.query_y)
        if self.nan_at_call is not None and self.calls >= self.nan_at_call:
            loss = loss * float("nan")
        return loss


def toy_builder(**algo_kwargs):
    """An ``ExperimentConfig -> Experiment`` builder using :class:`ToyANIL` and the config's tasks."""

    def build(config: ExperimentConfig) -> Experiment:
        config.validate()
        train, val, test, _ = build_task_sources(config)
        return Experiment(config, ToyANIL(**algo_kwargs), train, val, test)

    return build


def toy_config(out_dir, **overrides) -> ExperimentConfig:
    """A fast sinusoid config (a few steps, few episodes)."""
    base = dict(
        task="sinusoid",
        algorithm="toy_anil",
        k_shot=5,
        q_query=5,
        meta_batch_size=4,
        steps=12,
        eval_every=4,
        val_episodes=20,
        test_episodes=20,
        eval_batch_size=10,
        checkpoint_every=4,
        log_every=2,
        lr=1e-2,
        seed=3,
        device="cpu",
        out_dir=str(out_dir),
    )
    base.update(overrides)
    return ExperimentConfig(**base)


def params_vector(module: nn.Module) -> Tensor:
    return torch.cat([p.detach().flatten().cpu() for p in module.parameters()])


class Killed(Exception):
    """Stands in for the process being killed."""


def kill_at(step_to_die: int):
    """An ``on_step`` callback that "kills" the run after step ``step_to_die``."""

    def on_step(step: int, loss: float) -> None:
        if step == step_to_die:
            raise Killed(step)

    return on_step
