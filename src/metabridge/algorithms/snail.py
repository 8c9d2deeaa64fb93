"""SNAIL: a simple neural attentive meta-learner (Mishra, Rohaninejad, Chen & Abbeel, ICLR 2018).

The episode is a sequence: the support pairs ``(embed(x_j), code(y_j))`` (``code``: one-hot
label or regression target and a "labelled" flag, :mod:`metabridge.algorithms.black_box`)
in an order shuffled per training episode, then the query ``(embed(x_q), 0)``; SNAIL
predicts the query's label from the output at its position. The network is the paper's
composition of two causal building blocks (Sec. 3.1, with the pseudo-code of each):

* ``DenseBlock(R, D)``: a causal 1-D convolution of kernel 2 and dilation ``R`` gives
  ``x_f, x_g``; the block outputs ``concat(x, tanh(x_f) * sigmoid(x_g))`` (a gated
  activation, dense concatenation along the channels);
* ``TCBlock(T, D)``: ``ceil(log2 T)`` dense blocks of ``D`` filters with dilations doubling
  per block, so the output at ``t`` sees the inputs ``t - T + 1 .. t``. The paper's
  pseudo-code starts at dilation 2^1; here it starts at 2^0 = 1, so that the receptive field
  covers every offset below T (with 2^1.. only even offsets are reached by convolution);
* ``AttentionBlock(K, V)``: causal single-head soft attention, ``read =
  softmax(mask(Q K^T) / sqrt(K)) V`` (Vaswani et al. 2017, Eq. 1) with queries, keys of
  size K and values of size V from linear maps of the input, output ``concat(x, read)``.
  The key map starts as a copy of the query map (``W_k = W_q``, ``b_k = b_q`` at
  initialisation; they train apart), so the initial attention logits ``(W_q x_t + b).(W_q x_j + b)``
  are a similarity of the two elements and a query attends to the support elements that
  resemble it from the first step. With independent random maps the logits are a random
  bilinear form, uncorrelated with similarity, and the network first has to learn both to
  match and to decode the matched label, a saddle: with independent maps SNAIL stayed at
  chance on glyphs for a whole compare budget, and on a toy of the same sequences (random
  class prototypes, no backbone) the tied start learned quickly where the untied one stayed
  near chance (not measured in a stored experiment).

The few-shot architecture of the paper (5-way Omniglot, its appendix): AttentionBlock(64, 32),
TCBlock(T, 128), AttentionBlock(256, 128), TCBlock(T, 128), AttentionBlock(512, 256), then a
1x1 convolution (a linear map) to the N logits at the query's position; these are the
defaults (``keys``, ``values``, ``filters``; ``tc_length`` is T). The loss is the query's
cross-entropy (MSE for regression).

Queries are independent: each query is read as its own sequence ``support + that query``.
Because every block is causal, the outputs at the support positions do not depend on the
query, so the support is run once per task and every query's last position is computed
from the cached support activations (one convolution tap at ``t - R`` and attention over
the support and the query itself): the same numbers as running ``[T*Q, S+1]`` sequences
(:meth:`SNAIL.sequence_outputs`, used by the tests to check it), at the cost of one support
pass per task. Causality is exact: an output at ``t`` depends on the elements ``0..t``
only. Any sequence length is accepted (test-time K may differ from training K); beyond
``tc_length`` elements the convolutions no longer reach the earliest ones, the attention
blocks still do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .black_box import BlackBoxLearner
from .registry import register_algorithm


class CausalConv(nn.Module):
    """Kernel-2 causal convolution with dilation ``R`` over ``[B, L, C]``:
    ``out_t = W_past x_{t-R} + W_now x_t + b`` (``x_{t-R} = 0`` for ``t < R``)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__()
        self.dilation = int(dilation)
        self.past = nn.Linear(in_channels, out_channels, bias=False)
        self.now = nn.Linear(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        shifted = F.pad(x, (0, 0, self.dilation, 0))[:, : x.shape[1]]
        return self.past(shifted) + self.now(x)

    def step(self, history: Tensor, x: Tensor) -> Tensor:
        """Outputs at position ``L`` for inputs ``x [B, Q, C]`` there after ``history [B, L, C]``."""
        out = self.now(x)
        at = history.shape[1] - self.dilation
        if at >= 0:
            out = out + self.past(history[:, at : at + 1])
        return out


class DenseBlock(nn.Module):
    """``concat(x, tanh(x_f) * sigmoid(x_g))`` with ``x_f, x_g`` from one causal convolution."""

    def __init__(self, in_channels: int, dilation: int, filters: int) -> None:
        super().__init__()
        self.conv = CausalConv(in_channels, 2 * filters, dilation)
        self.out_channels = in_channels + filters

    @staticmethod
    def _gate(x: Tensor, conv_out: Tensor) -> Tensor:
        xf, xg = conv_out.chunk(2, dim=-1)
        return torch.cat([x, torch.tanh(xf) * torch.sigmoid(xg)], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        return self._gate(x, self.conv(x))

    def step(self, history: Tensor, x: Tensor) -> Tensor:
        return self._gate(x, self.conv.step(history, x))


class AttentionBlock(nn.Module):
    """Causal soft attention ``concat(x, softmax(mask(q k^T) / sqrt(K)) v)``, the key map
    initialised as the query map (module docstring)."""

    def __init__(self, in_channels: int, key_size: int, value_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(in_channels, key_size)
        self.key = nn.Linear(in_channels, key_size)
        self.value = nn.Linear(in_channels, value_size)
        self.scale = 1.0 / math.sqrt(key_size)
        self.out_channels = in_channels + value_size
        with torch.no_grad():  # similarity-based initial attention (module docstring)
            self.key.weight.copy_(self.query.weight)
            self.key.bias.copy_(self.query.bias)

    def forward(self, x: Tensor) -> Tensor:
        length = x.shape[1]
        logits = self.query(x) @ self.key(x).transpose(1, 2) * self.scale
        future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        probs = logits.masked_fill(future, float("-inf")).softmax(dim=-1)
        return torch.cat([x, probs @ self.value(x)], dim=-1)

    def step(self, history: Tensor, x: Tensor) -> Tensor:
        """Each of the ``Q`` inputs ``x [B, Q, C]`` at position ``L`` attends to ``history``
        ``[B, L, C]`` and to itself, not to the other ``Q - 1``."""
        q = self.query(x)
        past = q @ self.key(history).transpose(1, 2) * self.scale  # [B, Q, L]
        own = (q * self.key(x)).sum(dim=-1, keepdim=True) * self.scale  # [B, Q, 1]
        probs = torch.cat([past, own], dim=-1).softmax(dim=-1)
        read = probs[..., :-1] @ self.value(history) + probs[..., -1:] * self.value(x)
        return torch.cat([x, read], dim=-1)


@register_algorithm()
class SNAIL(BlackBoxLearner):
    """SNAIL over any embedding network (module docstring).

    Args:
        body: embedding network ``[B, *x] -> [B, D]``.
        feature_dim: D.
        task: ``"classification"`` or ``"regression"`` (supplied by ``build``).
        out_dim: N (classification) or d_y (regression).
        keys: key size of each attention block; one attention block per entry, with a TC
            block between consecutive ones (paper, 5-way: 64, 256, 512).
        values: value size of each attention block (paper: 32, 128, 256).
        filters: filters D of every dense block (paper: 128).
        tc_length: T of the TC blocks, ``ceil(log2 T)`` dense blocks each (paper: the sequence
            length N*K + 1; 26 covers 5-way 5-shot). Longer sequences are accepted.
        seed: seed of the module's generator (support order in training) and of the fixed
            test-time support order.
        permute_labels: also relabel the classes of every training episode at random
            (the episode sampler already does).
    """

    name: ClassVar[str] = "snail"

    def __init__(
        self,
        body: nn.Module,
        feature_dim: int,
        task: str,
        out_dim: int,
        keys: Sequence[int] = (64, 256, 512),
        values: Sequence[int] = (32, 128, 256),
        filters: int = 128,
        tc_length: int = 26,
        seed: int = 0,
        permute_labels: bool = False,
    ) -> None:
        super().__init__(body, feature_dim, task, out_dim, seed=seed, permute_labels=permute_labels)
        keys, values = tuple(int(k) for k in keys), tuple(int(v) for v in values)
        if not keys or len(keys) != len(values) or min(keys + values) < 1:
            raise ValueError(
                f"SNAIL needs as many positive key sizes as value sizes, at least one "
                f"(got keys={keys}, values={values})."
            )
        if filters < 1 or tc_length < 2:
            raise ValueError(f"SNAIL needs filters >= 1 and tc_length >= 2 (got {filters}, {tc_length}).")
        self.keys, self.values, self.filters, self.tc_length = keys, values, int(filters), int(tc_length)
        blocks: list[nn.Module] = []
        channels = self.feature_dim + self.code_dim
        for i, (k, v) in enumerate(zip(keys, values)):
            if i:
                for j in range(math.ceil(math.log2(self.tc_length))):  # one TC block
                    dense = DenseBlock(channels, 2**j, self.filters)
                    blocks.append(dense)
                    channels = dense.out_channels
            attention = AttentionBlock(channels, k, v)
            blocks.append(attention)
            channels = attention.out_channels
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(channels, self.out_dim)

    def sequence_outputs(self, sequence: Tensor) -> Tensor:
        """The outputs ``[B, L, out_dim]`` at every position of whole input sequences
        ``[B, L, D + code_dim]`` (embeddings and codes): the causal network as one function."""
        h = sequence
        for block in self.blocks:
            h = block(h)
        return self.head(h)

    def read_support(self, feats: Tensor, labels: Tensor) -> list[Tensor]:
        """The input of every block at the support positions, ``[T, S, C_b]`` each."""
        h = torch.cat([feats, self.label_code(labels, feats.dtype)], dim=-1)
        history = []
        for block in self.blocks:
            history.append(h)
            h = block(h)
        return history

    def read_queries(self, state: list[Tensor], feats: Tensor) -> Tensor:
        """The output at position S of ``support + query`` for every query, ``[T, Q, out_dim]``."""
        h = torch.cat([feats, self.query_code(feats)], dim=-1)
        for block, history in zip(self.blocks, state):
            h = block.step(history, h)  # type: ignore[operator]  # every block defines step()
        return self.head(h)
