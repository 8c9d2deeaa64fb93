"""Multi-gate Mixture-of-Experts (Ma et al. 2018, "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts", KDD, Sec. 4.2, the MMoE equations below).

E shared experts f_1..f_E (MLPs) read the input u; every task k has its own softmax gate over
the experts and its own tower h_k:

    y_k    = h_k(f^k(u))
    f^k(u) = sum_i g^k(u)_i f_i(u)
    g^k(u) = softmax(W_gk u)            (W_gk [E, D_u], no bias, as in the paper)

Here u is the output of an optional shared encoder (``encoder=None``: u = x, the input vector, as
in the paper). The experts are held as stacked weights (:class:`~.encoders.StackedLinear`) and
evaluated together in one ``einsum`` per layer; the K gates are one [K, E, D_u] tensor, also one
``einsum``.

Shared and task-specific parameters: the encoder and the experts are shared; the gates and the
towers are task-specific. ``features`` is everything the task-specific parts read that depends on
shared parameters, so that gradients w.r.t. ``features`` carry every path to the shared
parameters: the experts' outputs flattened, [B, E * D] (E experts of output size D); with an
encoder, preceded by the encoder's output that the gates read: [B, D_u + E * D]. The predictions
are computed from this very tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from .base import MultiTaskModel, TaskOutputs
from .encoders import StackedLinear, check_out_dims, encode, resolve_encoder

__all__ = ["MMoE"]


class MMoE(MultiTaskModel):
    """Multi-gate Mixture-of-Experts.

    Args:
        encoder: shared network ``x -> [B, feature_dim]`` whose output the experts and gates read, or
            ``None``: they read the input vector x [B, feature_dim].
        feature_dim: size of u (the encoder's output, or the input size when ``encoder`` is None;
            ``None`` reads the encoder's ``out_dim``).
        out_dims: output size of every task (K = len(out_dims)).
        num_experts: E.
        expert_hidden: widths of every expert's layers (ReLU after each); the last is the experts'
            output size D.
        tower_hidden: widths of every task tower's hidden layers (ReLU); empty for linear towers.
    """

    def __init__(
        self,
        encoder: nn.Module | None,
        feature_dim: int | None,
        out_dims: Sequence[int],
        num_experts: int = 4,
        expert_hidden: Sequence[int] = (64,),
        tower_hidden: Sequence[int] = (32,),
    ) -> None:
        super().__init__()
        if not isinstance(num_experts, int) or isinstance(num_experts, bool) or num_experts <= 0:
            raise ValueError(f"MMoE: num_experts must be a positive int (got {num_experts!r}).")
        expert_hidden, tower_hidden = tuple(expert_hidden), tuple(tower_hidden)
        if not expert_hidden or any(not isinstance(h, int) or h <= 0 for h in expert_hidden):
            raise ValueError(f"MMoE: expert_hidden must be at least one positive width (got {expert_hidden!r}).")
        if any(not isinstance(h, int) or h <= 0 for h in tower_hidden):
            raise ValueError(f"MMoE: tower_hidden widths must be positive ints (got {tower_hidden!r}).")
        self.encoder, self.feature_dim = resolve_encoder("MMoE", encoder, feature_dim)
        self.has_encoder = not isinstance(self.encoder, nn.Identity)
        self.out_dims = check_out_dims("MMoE", out_dims)
        self.num_tasks, self.num_experts = len(self.out_dims), num_experts
        self.expert_dim = expert_hidden[-1]

        self.experts = nn.ModuleList()
        prev = self.feature_dim
        for h in expert_hidden:
            self.experts.append(StackedLinear(num_experts, prev, h))
            prev = h
        bound = 1.0 / math.sqrt(self.feature_dim)
        self.gates = nn.Parameter(torch.empty(self.num_tasks, num_experts, self.feature_dim).uniform_(-bound, bound))
        self.towers = nn.ModuleList()
        for out in self.out_dims:
            layers: list[nn.Module] = []
            prev = self.expert_dim
            for h in tower_hidden:
                layers += [nn.Linear(prev, h), nn.ReLU()]
                prev = h
            layers.append(nn.Linear(prev, out))
            self.towers.append(nn.Sequential(*layers))

    def forward(self, x: Tensor) -> TaskOutputs:
        u = encode("MMoE", self.encoder, x, self.feature_dim)
        h = u
        for layer in self.experts:
            h = torch.relu(layer(h))  # [E, B, D_l]: every expert in one einsum
        experts = h.transpose(0, 1).flatten(1)  # [B, E * D]
        features = torch.cat([u, experts], dim=1) if self.has_encoder else experts
        gate_in = features[:, : self.feature_dim] if self.has_encoder else u
        expert_out = features[:, -experts.shape[1] :].reshape(-1, self.num_experts, self.expert_dim)
        gates = torch.softmax(torch.einsum("bf,kef->kbe", gate_in, self.gates.to(u.dtype)), dim=-1)  # [K, B, E]
        mixed = torch.einsum("kbe,bed->kbd", gates, expert_out)  # f^k(u), [K, B, D]
        return TaskOutputs([tower(mixed[k]) for k, tower in enumerate(self.towers)], features)

    def gate_weights(self, x: Tensor) -> Tensor:
        """g^k(u) for every task and input, [K, B, E] (for inspecting what each task uses)."""
        u = encode("MMoE", self.encoder, x, self.feature_dim)
        return torch.softmax(torch.einsum("bf,kef->kbe", u, self.gates.to(u.dtype)), dim=-1)

    def task_parameters(self) -> Iterator[nn.Parameter]:
        yield self.gates
        yield from self.towers.parameters()
