"""Task-conditioned networks: ONE network f_theta(y | x, z_k) for every task, told which task it
is solving by a task descriptor z_k (CS330 lecture 2, "conditioning on the task").

The network is an optional shared encoder u = phi(x) followed by an MLP trunk with L hidden layers,
each conditioned on z before its nonlinearity. With g_0 = u and a_l = W_l g_{l-1} + b_l:

* ``"concat"``   (concatenation-based):   g_l = ReLU(W_l [g_{l-1}, z] + b_l)  (z joins each hidden layer's input)
* ``"add"``      (additive):              g_l = ReLU(a_l + V_l z)
* ``"multiply"`` (multiplicative/gating):  g_l = ReLU(a_l * (V_l z))            (elementwise)
* ``"film"``     (FiLM, Perez et al. 2018, "FiLM: Visual Reasoning with a General Conditioning
  Layer", AAAI, eq. 1-2): g_l = ReLU(gamma_l(z) * a_l + beta_l(z)), gamma_l and beta_l affine in z and
  initialised to gamma = 1, beta = 0, so the freshly built network ignores z (it is the unconditioned
  MLP), as FiLM is placed between a layer and its ReLU in Perez et al.'s residual blocks.

and the prediction is y = W_out g_L + b_out. Concatenation and addition are the same function
class written two ways (W_l [g, z] = W_l^g g + W_l^z z, the lecture's remark); both are offered
because they are parametrised, and so initialised and regularised, differently. At least one hidden layer is
required. The encoder does not see z, so it runs once per input and is shared by every task.

The descriptor z_k is the one-hot vector e_k (``descriptor="onehot"``, no parameters) or a learned
embedding (``descriptor="embedding"``, a [K, embedding_dim] table, N(0, 1) at initialisation).

Multiplicative gating with one-hot z selects per-task subnetworks (lecture 2): if the hidden
units of every layer are split into K blocks and V_l has column k equal to 1 on block k and 0
elsewhere, the gate zeroes every other block's pre-activations (ReLU(0) = 0), and task k's prediction
equals that of the ordinary MLP made of block k of every hidden layer (the block-k rows of W_1 and
b_1; the block-k-by-block-k submatrix of W_l and the block-k entries of b_l; the block-k columns of
W_out, and b_out), i.e. K separate networks (tested in ``tests/test_mtl_models.py``). At
initialisation V_l is all ones for one-hot z (every task starts from the same network) and
N(0, 1/embedding_dim) for learned embeddings (gates of unit scale).

Forward evaluates all K tasks in one pass: the trunk runs on a [K, B, ...] batch in which the
encoded inputs are shared and z differs along the first axis (no Python loop over tasks), and task
k's output does not depend on which other tasks are evaluated with it
(:meth:`TaskConditioned.forward_tasks`).

Output sizes: every task reads the same output layer. With different sizes per task (``out_dim`` a
list) the output layer has max_k out_dim_k units and task k reads the first out_dim_k of them
(no per-task parameters are added; the network stays one network).

``features`` is None: no representation is shared by the tasks after conditioning, and the trunk's
parameters lie downstream of the encoder, so methods that need the gradients w.r.t. shared
features do not apply. The task parameters are the learned embedding (none for one-hot z).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from .base import MultiTaskModel, TaskOutputs
from .encoders import check_out_dims, encode, resolve_encoder

__all__ = ["ConditioningMode", "DescriptorKind", "TaskConditioned"]

ConditioningMode = Literal["concat", "add", "multiply", "film"]
DescriptorKind = Literal["onehot", "embedding"]
MODES = ("concat", "add", "multiply", "film")
DESCRIPTORS = ("onehot", "embedding")


def _per_task(h: Tensor, t: int) -> Tensor:
    """[B, H] (shared by every task) or [T, B, H] -> [T, B, H]."""
    return h.unsqueeze(0).expand(t, -1, -1) if h.dim() == 2 else h


def concat_descriptor(h: Tensor, z: Tensor) -> Tensor:
    """[h, z] for every task: h [B, H] or [T, B, H], z [T, Z] -> [T, B, H + Z]."""
    h = _per_task(h, z.shape[0])
    return torch.cat([h, z[:, None, :].expand(-1, h.shape[1], -1).to(h.dtype)], dim=-1)


class AddCondition(nn.Module):
    """a + W z (a task-dependent shift of the pre-activations)."""

    def __init__(self, z_dim: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(z_dim, width, bias=False)

    def forward(self, h: Tensor, z: Tensor) -> Tensor:
        return h + self.proj(z)[:, None, :]


class MultiplyCondition(nn.Module):
    """a * (W z) (a task-dependent gate on every unit's pre-activation)."""

    def __init__(self, z_dim: int, width: int, onehot: bool) -> None:
        super().__init__()
        self.gate = nn.Linear(z_dim, width, bias=False)
        with torch.no_grad():
            if onehot:
                self.gate.weight.fill_(1.0)
            else:
                self.gate.weight.normal_(0.0, z_dim**-0.5)

    def forward(self, h: Tensor, z: Tensor) -> Tensor:
        return h * self.gate(z)[:, None, :]


class FiLMCondition(nn.Module):
    """gamma(z) * a + beta(z), gamma and beta affine in z, initialised to gamma = 1, beta = 0."""

    def __init__(self, z_dim: int, width: int) -> None:
        super().__init__()
        self.gamma = nn.Linear(z_dim, width)
        self.beta = nn.Linear(z_dim, width)
        with torch.no_grad():
            self.gamma.weight.zero_()
            self.gamma.bias.fill_(1.0)
            self.beta.weight.zero_()
            self.beta.bias.zero_()

    def forward(self, h: Tensor, z: Tensor) -> Tensor:
        return self.gamma(z)[:, None, :] * h + self.beta(z)[:, None, :]


class TaskConditioned(MultiTaskModel):
    """One network for all K tasks, conditioned on a task descriptor (see the module docstring).

    Args:
        encoder: shared network ``x -> [B, feature_dim]`` before the conditioned trunk (e.g. a
            :class:`~.encoders.ConvEncoder` for images), or ``None``: the trunk reads the input
            vector x [B, feature_dim] itself.
        feature_dim: size of the encoder's output (the input size when ``encoder`` is None;
            ``None`` reads the encoder's ``out_dim``).
        num_tasks: K.
        out_dim: output size shared by every task, or a list of K sizes (see the module docstring).
        mode: ``"concat"``, ``"add"``, ``"multiply"`` or ``"film"``.
        descriptor: ``"onehot"`` (z_k = e_k, dimension K) or ``"embedding"`` (learned).
        embedding_dim: dimension of a learned descriptor (default 16); must be None or K for one-hot.
        hidden: widths of the trunk's hidden layers (at least one); each is conditioned on z.
    """

    def __init__(
        self,
        encoder: nn.Module | None,
        feature_dim: int | None,
        num_tasks: int,
        out_dim: int | Sequence[int],
        *,
        mode: ConditioningMode = "film",
        descriptor: DescriptorKind = "onehot",
        embedding_dim: int | None = None,
        hidden: Sequence[int] = (128,),
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"TaskConditioned: mode must be one of {', '.join(MODES)} (got {mode!r}).")
        if descriptor not in DESCRIPTORS:
            raise ValueError(f"TaskConditioned: descriptor must be 'onehot' or 'embedding' (got {descriptor!r}).")
        if not isinstance(num_tasks, int) or isinstance(num_tasks, bool) or num_tasks <= 0:
            raise ValueError(f"TaskConditioned: num_tasks must be a positive int (got {num_tasks!r}).")
        hidden = tuple(hidden)
        if not hidden or any(not isinstance(h, int) or h <= 0 for h in hidden):
            raise ValueError(
                f"TaskConditioned: hidden must be at least one positive width (got {hidden!r}); the "
                "conditioning acts on the hidden layers' activations."
            )
        self.encoder, self.feature_dim = resolve_encoder("TaskConditioned", encoder, feature_dim)
        self.out_dims = check_out_dims("TaskConditioned", out_dim, num_tasks)
        self.num_tasks, self.mode, self.descriptor, self.hidden = num_tasks, mode, descriptor, hidden
        if descriptor == "onehot":
            if embedding_dim not in (None, num_tasks):
                raise ValueError(
                    f"TaskConditioned: a one-hot descriptor has dimension num_tasks={num_tasks} "
                    f"(got embedding_dim={embedding_dim}); use descriptor='embedding' for another size."
                )
            self.z_dim = num_tasks
            self.task_embedding = None
        else:
            embedding_dim = 16 if embedding_dim is None else embedding_dim
            if not isinstance(embedding_dim, int) or embedding_dim <= 0:
                raise ValueError(f"TaskConditioned: embedding_dim must be a positive int (got {embedding_dim!r}).")
            self.z_dim = embedding_dim
            self.task_embedding = nn.Parameter(torch.randn(num_tasks, embedding_dim))

        extra = self.z_dim if mode == "concat" else 0
        self.layers = nn.ModuleList()
        self.conditioners = nn.ModuleList()  # empty for "concat": z enters through the layers' inputs
        prev = self.feature_dim
        for width in hidden:
            self.layers.append(nn.Linear(prev + extra, width))
            if mode != "concat":
                self.conditioners.append(self._conditioner(width))
            prev = width
        self.output = nn.Linear(prev, max(self.out_dims))

    def _conditioner(self, width: int) -> nn.Module:
        if self.mode == "add":
            return AddCondition(self.z_dim, width)
        if self.mode == "multiply":
            return MultiplyCondition(self.z_dim, width, onehot=self.descriptor == "onehot")
        return FiLMCondition(self.z_dim, width)

    def descriptors(self) -> Tensor:
        """The K task descriptors z_k, [K, z_dim]."""
        if self.task_embedding is not None:
            return self.task_embedding
        w = self.output.weight
        return torch.eye(self.num_tasks, dtype=w.dtype, device=w.device)

    def forward_descriptors(self, x: Tensor, z: Tensor) -> Tensor:
        """The trunk's output for every input and every descriptor: ``z`` [T, z_dim] -> [T, B, max out_dim]
        (row t is the network conditioned on z[t]; the encoder runs once)."""
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"TaskConditioned: descriptors must be [T, {self.z_dim}] (got {tuple(z.shape)}).")
        g = encode("TaskConditioned", self.encoder, x, self.feature_dim)
        z = z.to(g.dtype)
        for i, layer in enumerate(self.layers):
            if self.mode == "concat":
                a = layer(concat_descriptor(g, z))
            else:
                a = self.conditioners[i](layer(g), z)  # layer(g) is shared by the tasks while g is [B, H]
            g = torch.relu(a)
        return self.output(g)

    def forward_tasks(self, x: Tensor, tasks: Sequence[int]) -> list[Tensor]:
        """Predictions of the given tasks only (in that order), in one pass."""
        tasks = [int(t) for t in tasks]
        if not tasks or any(not 0 <= t < self.num_tasks for t in tasks):
            raise ValueError(f"TaskConditioned: task indices must be in [0, {self.num_tasks}) (got {tasks}).")
        out = self.forward_descriptors(x, self.descriptors()[tasks])
        return [out[i, :, : self.out_dims[t]] for i, t in enumerate(tasks)]

    def forward(self, x: Tensor) -> TaskOutputs:
        out = self.forward_descriptors(x, self.descriptors())
        return TaskOutputs([out[k, :, :d] for k, d in enumerate(self.out_dims)], None)

    def task_parameters(self) -> Iterator[nn.Parameter]:
        return iter(() if self.task_embedding is None else (self.task_embedding,))

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}, mode={self.mode!r}, descriptor={self.descriptor!r}, z_dim={self.z_dim}"
