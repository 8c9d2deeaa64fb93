"""A memory-augmented learner: the CS330 variant of MANN (Santoro et al., ICML 2016).

Santoro et al. (Sec. 2.1) meta-learn ``theta* = argmin_theta E_{D ~ p(D)} [L(D; theta)]``
(their Eq. 1) with a network that reads an episode as a sequence of (input, label) pairs
and predicts each label from what it has read so far. The CS330 homework variant (the one
implemented here, black-box adaptation ``y_ts = f_theta(D^tr, x_ts)``) replaces the
external memory by a stacked LSTM whose state is the memory:

* the support pairs ``(embed(x_j), code(y_j))`` are read in an order shuffled per episode
  (``code``: the one-hot label, or the regression target, and a "labelled" flag; see
  :mod:`metabridge.algorithms.black_box`), giving the final state ``(h_S, c_S)`` of every layer;
* each query is read as one more step ``(embed(x_q), 0)`` from ``(h_S, c_S)`` and its
  prediction is ``W h_{S+1} + b``: the class logits, or the regression value. Every query
  continues the support sequence on its own (the final support state is replicated once
  per query, all queries of all tasks in one batched LSTM call), so no query sees another.

Training minimises the query cross-entropy (or MSE) of these predictions over tasks, the
support read in a fresh random order per task and step (the module's generator). The LSTM
reads any number of support examples, so test-time K may differ from training K; N (the
size of the one-hot code and of the output) is fixed when the learner is built.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from .black_box import BlackBoxLearner
from .registry import register_algorithm


@register_algorithm
class MANN(BlackBoxLearner):
    """LSTM black-box learner (module docstring).

    Args:
        body: embedding network ``[B, *x] -> [B, D]`` (any registered backbone's body).
        feature_dim: D.
        task: ``"classification"`` or ``"regression"`` (supplied by ``build``).
        out_dim: N (classification) or d_y (regression).
        hidden: LSTM state size of every layer (CS330: 128).
        layers: stacked LSTM layers (CS330: 2).
        seed: seed of the module's generator (support order in training) and of the fixed
            test-time support order.
        permute_labels: also relabel the classes of every training episode at random
            (the episode sampler already does).
    """

    name: ClassVar[str] = "mann"

    def __init__(self, body: nn.Module, feature_dim: int, task: str, out_dim: int, hidden: int = 128,
                 layers: int = 2, seed: int = 0, permute_labels: bool = False) -> None:
        super().__init__(body, feature_dim, task, out_dim, seed=seed, permute_labels=permute_labels)
        if hidden < 1 or layers < 1:
            raise ValueError(f"MANN needs hidden >= 1 and layers >= 1 (got hidden={hidden}, layers={layers}).")
        self.hidden, self.layers = int(hidden), int(layers)
        self.lstm = nn.LSTM(self.feature_dim + self.code_dim, self.hidden, num_layers=self.layers, batch_first=True)
        self.head = nn.Linear(self.hidden, self.out_dim)

    def read_support(self, feats: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Final LSTM state ``(h, c)``, each ``[layers, T, hidden]``, after the support sequence."""
        seq = torch.cat([feats, self.label_code(labels, feats.dtype)], dim=-1)
        _, state = self.lstm(seq)
        return state

    def read_queries(self, state: tuple[Tensor, Tensor], feats: Tensor) -> Tensor:
        """One LSTM step per query from the support's final state: ``[T, Q, D] -> [T, Q, out_dim]``."""
        h, c = state
        t, q = feats.shape[:2]
        steps = torch.cat([feats, self.query_code(feats)], dim=-1).reshape(t * q, 1, -1)
        out, _ = self.lstm(steps, (h.repeat_interleave(q, dim=1), c.repeat_interleave(q, dim=1)))
        return self.head(out[:, 0]).view(t, q, self.out_dim)

