"""A memory-augmented learner: MANN (Santoro et al., ICML 2016) and its CS330 LSTM variant.

Santoro et al. (Sec. 2.1) meta-learn ``theta* = argmin_theta E_{D ~ p(D)} [L(D; theta)]``
(their Eq. 1) with a network that reads an episode as a sequence of (input, label) pairs
and predicts each label from what it has read. Here (black-box adaptation
``y_ts = f_theta(D^tr, x_ts)``) a stacked LSTM controller reads the support pairs
``(embed(x_j), code(y_j))`` (``code``: the one-hot label, or the regression target, and a
"labelled" flag; see :mod:`metabridge.algorithms.black_box`) in an order shuffled per
episode, giving the final state ``(h_S, c_S)`` of every layer; each query is read as one
more step ``(embed(x_q), 0)`` from ``(h_S, c_S)``, on its own (the final support state is
replicated once per query, all queries of all tasks in one batched LSTM call), so no query
sees another. Two read-outs:

* ``memory=True`` (default): Santoro et al.'s external memory with content-based reading
  (their Sec. 3.1). At every support step ``j`` the controller emits a key
  ``k_j = tanh(W_k h_j)`` that is written to memory; with least-recently-used writing
  into a zero-initialised memory of at least S slots every write goes to an unused slot,
  so after the support the memory rows are ``M = [k_1, ..., k_S]`` (the write rule here:
  one row per support example, queries never write, so they stay independent). A query
  emits its key ``k_q`` and a key strength ``beta_q = softplus(w_b h_q + b_b)`` (NTM,
  Graves et al. 2014, Eq. 5) and reads by cosine similarity (Santoro et al., Eqs. 2-4)::

      w_r(j) = softmax_j(beta_q * K(k_q, k_j)),  K(u, v) = u.v / (|u| |v|),
      r_q    = sum_j w_r(j) k_j,

  and predicts ``W_o [h_q; r_q] + b``. Content addressing makes the read
  similarity-based from initialisation (the same map makes the query's key and the
  stored keys), so the learner only has to learn to decode the label the retrieved key
  carries, a first-order problem.
* ``memory=False``: the CS330 homework variant, no external memory, the prediction is
  ``W_o h_q + b``. The LSTM has to learn associative recall in its state, with nothing
  similarity-based to start from, so in short training runs it stays at chance, on
  glyphs and on a noiseless toy of the same sequences alike, whatever the learning rate:
  it needs far longer training (not measured in a stored experiment).

Training minimises the query cross-entropy (or MSE) of these predictions over tasks, the
support read in a fresh random order per task and step (the module's generator). The LSTM
and the memory read any number of support examples, so test-time K may differ from
training K; N (the size of the one-hot code and of the output) is fixed when the learner
is built.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .black_box import BlackBoxLearner
from .registry import register_algorithm


class MANNState(NamedTuple):
    """What MANN keeps of a support set: the controller's final state and the memory."""

    h: Tensor  #: [layers, T, hidden]
    c: Tensor  #: [layers, T, hidden]
    memory: Tensor | None  #: [T, S, key_size] written keys (None without memory)


@register_algorithm()
class MANN(BlackBoxLearner):
    """LSTM controller with a content-addressed memory, or the CS330 LSTM (module docstring).

    Args:
        body: embedding network ``[B, *x] -> [B, D]`` (any registered backbone's body).
        feature_dim: D.
        task: ``"classification"`` or ``"regression"`` (supplied by ``build``).
        out_dim: N (classification) or d_y (regression).
        hidden: LSTM state size of every layer (CS330: 128).
        layers: stacked LSTM layers (CS330: 2).
        memory: read the support through Santoro et al.'s content-addressed memory (default);
            ``False`` is the CS330 variant (the LSTM state is the only memory).
        key_size: size of a memory row / key (Santoro et al., Omniglot: 40).
        seed: seed of the module's generator (support order in training) and of the fixed
            test-time support order.
        permute_labels: also relabel the classes of every training episode at random
            (the episode sampler already does).
    """

    name: ClassVar[str] = "mann"

    def __init__(
        self,
        body: nn.Module,
        feature_dim: int,
        task: str,
        out_dim: int,
        hidden: int = 128,
        layers: int = 2,
        memory: bool = True,
        key_size: int = 40,
        seed: int = 0,
        permute_labels: bool = False,
    ) -> None:
        super().__init__(body, feature_dim, task, out_dim, seed=seed, permute_labels=permute_labels)
        if hidden < 1 or layers < 1 or key_size < 1:
            raise ValueError(
                f"MANN needs hidden, layers and key_size >= 1 (got hidden={hidden}, layers={layers}, "
                f"key_size={key_size})."
            )
        self.hidden, self.layers = int(hidden), int(layers)
        self.memory, self.key_size = bool(memory), int(key_size)
        self.lstm = nn.LSTM(self.feature_dim + self.code_dim, self.hidden, num_layers=self.layers, batch_first=True)
        if self.memory:
            self.key = nn.Linear(self.hidden, self.key_size)
            self.strength = nn.Linear(self.hidden, 1)
            nn.init.constant_(self.strength.bias, 10.0)  # sharp reads from the start (beta ~ 10)
        self.head = nn.Linear(self.hidden + (self.key_size if self.memory else 0), self.out_dim)

    def read_support(self, feats: Tensor, labels: Tensor) -> MANNState:
        """Controller state ``(h, c)``, each ``[layers, T, hidden]``, after the support
        sequence, and the memory ``[T, S, key_size]`` of the keys written at its steps."""
        seq = torch.cat([feats, self.label_code(labels, feats.dtype)], dim=-1)
        out, (h, c) = self.lstm(seq)
        return MANNState(h, c, torch.tanh(self.key(out)) if self.memory else None)

    def read_queries(self, state: MANNState, feats: Tensor) -> Tensor:
        """One controller step per query from the support's final state and, with memory,
        a content-based read of the support's keys: ``[T, Q, D] -> [T, Q, out_dim]``."""
        t, q = feats.shape[:2]
        steps = torch.cat([feats, self.query_code(feats)], dim=-1).reshape(t * q, 1, -1)
        out, _ = self.lstm(steps, (state.h.repeat_interleave(q, dim=1), state.c.repeat_interleave(q, dim=1)))
        hq = out[:, 0].view(t, q, self.hidden)
        if state.memory is None:
            return self.head(hq)
        key = torch.tanh(self.key(hq))  # [T, Q, key]
        cosine = F.normalize(key, dim=-1) @ F.normalize(state.memory, dim=-1).transpose(1, 2)  # [T, Q, S]
        weights = (F.softplus(self.strength(hq)) * cosine).softmax(dim=-1)
        return self.head(torch.cat([hq, weights @ state.memory], dim=-1))
