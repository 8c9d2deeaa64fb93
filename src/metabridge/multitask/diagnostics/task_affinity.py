"""Lookahead inter-task affinity (Fifty et al. 2021, "Efficiently Identifying Task Groupings for
Multi-Task Learning", NeurIPS; Task Affinity Grouping, TAG).

At step t with batch X^t, shared parameters theta_s and task-specific parameters theta_j, take
one SGD step of the *shared* parameters on task i's loss alone::

    theta_{s|i}^{t+1} = theta_s^t - lr * grad_{theta_s} L_i(X^t; theta_s^t, theta_i^t)

and measure how much it lowered (or raised) every task j's loss on the *same* batch, with the
task-specific parameters left as they are (TAG, Sec. 3, eq. 3)::

    Z^t_{i->j} = 1 - L_j(X^t; theta_{s|i}^{t+1}, theta_j^t) / L_j(X^t; theta_s^t, theta_j^t)

``Z_{i->j} > 0``: task i's gradient step helps task j (positive transfer); ``< 0``: it hurts.
The diagonal ``Z_{i->i}`` is task i's own relative improvement. The affinities used for
grouping are averaged over training steps (TAG: ``Z_{i->j} = (1/T) sum_t Z^t_{i->j}``;
:class:`AffinityAccumulator`).

The returned matrix is indexed ``Z[i, j] = Z_{i->j}``: row = the task whose step is taken
(source), column = the task whose loss is measured (target).

Nothing of the model is modified: the K per-task gradients come from one batched backward pass
(:func:`~metabridge.multitask.gradients.per_task_gradients`, ``torch.autograd.grad``, so no
``.grad`` is touched), the K looked-ahead parameter sets are fresh tensors, and every forward
goes through :func:`torch.func.functional_call` with *copies* of the module's buffers (so a
batch-norm layer in training mode updates copies of its running statistics, not its own). The
K lookahead forwards run as one :func:`torch.func.vmap` over the K parameter sets (and K buffer
copies, so batch norm in training mode batches too) where every operation of the model
supports it, else as a loop (e.g. dropout: vmap refuses random operations). The module's train/eval mode is used as
it is; with dropout active the K + 1 forwards draw different masks, so put the model in eval
mode (or use none) for a noise-free affinity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from ..gradients import GradientMode, per_task_gradients

__all__ = ["AffinityAccumulator", "LookaheadMode", "lookahead_affinity"]

LookaheadMode = Literal["auto", "vmap", "loop"]
LossFn = Callable[[Any], Any]


def _as_loss_vector(value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Tensor) for v in value):
        return torch.stack([v.reshape(()) for v in value])
    raise TypeError(
        f"loss_fn must return the K per-task losses as a [K] tensor or a list of scalar tensors "
        f"(got {type(value).__name__})."
    )


def _shared_names(model: nn.Module, shared: Iterable[Any] | None) -> list[str]:
    named = dict(model.named_parameters())
    by_id = {id(p): n for n, p in named.items()}
    if shared is None:
        if not hasattr(model, "shared_parameters"):
            raise ValueError(
                f"{type(model).__name__} has no shared_parameters(): pass shared= (the shared "
                "parameters, or their names) to say which parameters the lookahead updates."
            )
        shared = model.shared_parameters()  # type: ignore[operator]
    names = []
    for item in shared:
        if isinstance(item, str):
            if item not in named:
                raise KeyError(f"shared parameter name {item!r} is not a parameter of {type(model).__name__}.")
            names.append(item)
        elif isinstance(item, Tensor):
            if id(item) not in by_id:
                raise ValueError("a tensor in shared= is not a parameter of the model.")
            names.append(by_id[id(item)])
        else:
            raise TypeError(f"shared= takes parameters or parameter names (got {type(item).__name__}).")
    names = [n for n in dict.fromkeys(names) if named[n].requires_grad]
    if not names:
        raise ValueError("lookahead_affinity: the model has no shared parameters that require grad.")
    return names


def _check_base_losses(losses: Tensor) -> Tensor:
    """``losses`` if it is a ``[K]`` vector with a graph to the parameters, else a clear error."""
    if losses.dim() != 1 or losses.shape[0] < 1:
        raise ValueError(
            f"loss_fn must return the K per-task losses as a [K] tensor (got shape {tuple(losses.shape)})."
        )
    if not losses.requires_grad:
        raise ValueError(
            "the losses do not depend on the shared parameters (no graph): check loss_fn and "
            "that gradients are enabled for the model's parameters."
        )
    return losses


def _lookahead_params(shared: Mapping[str, Tensor], grads: Tensor, lr: float) -> dict[str, Tensor]:
    """The K looked-ahead shared parameter sets: ``stacked[n][i] = theta_n - lr * g_i`` (the slice of
    the flat per-task gradient ``grads`` [K, P] that belongs to parameter n, in ``shared``'s order)."""
    k = grads.shape[0]
    stacked: dict[str, Tensor] = {}
    offset = 0
    for n, p in shared.items():
        stacked[n] = p.detach().unsqueeze(0) - lr * grads[:, offset : offset + p.numel()].reshape(k, *p.shape).to(
            p.dtype
        )
        offset += p.numel()
    return stacked


def _losses_after_lookahead(
    losses_at: Callable[[Mapping[str, Tensor], dict[str, Tensor]], Tensor],
    stacked: Mapping[str, Tensor],
    buffers: Mapping[str, Tensor],
    k: int,
    *,
    mode: LookaheadMode,
    chunk_size: int | None,
) -> Tensor:
    """The ``[K, K]`` losses after each of the K lookahead steps (row i: after task i's step), without
    a graph: batched under ``vmap`` (``mode`` "vmap" or "auto") or one forward per step ("loop", and
    "auto"'s fallback where an operation cannot be batched). Each forward gets its own buffer copies."""
    after: Tensor | None = None
    with torch.no_grad():
        if mode in ("auto", "vmap"):
            # one copy of the buffers per parameter set, so that in-place buffer updates (batch norm's
            # running statistics in training mode) are batched like the parameters
            bufs = {n: b.unsqueeze(0).expand(k, *b.shape).clone() for n, b in buffers.items()}
            try:
                after = vmap(losses_at, chunk_size=chunk_size)(stacked, bufs)
            except (RuntimeError, NotImplementedError, ValueError):
                if mode == "vmap":
                    raise
                after = None
        if after is None:
            after = torch.stack(
                [
                    losses_at({n: t[i] for n, t in stacked.items()}, {n: b.clone() for n, b in buffers.items()})
                    for i in range(k)
                ]
            )
    return after


def lookahead_affinity(
    model: nn.Module,
    loss_fn: LossFn,
    batch_inputs: Any,
    lr: float,
    *,
    shared: Iterable[Any] | None = None,
    mode: LookaheadMode = "auto",
    chunk_size: int | None = None,
    gradient_mode: GradientMode = "auto",
) -> Tensor:
    """The ``[K, K]`` lookahead affinity ``Z[i, j] = 1 - L_j(theta_s - lr g_i) / L_j(theta_s)`` on one batch.

    Args:
        model: the multi-task model (left unchanged: parameters, their ``.grad``, buffers).
        loss_fn: ``loss_fn(model_outputs) -> losses [K]`` (a tensor, or a list of K scalars) on the
            batch, e.g. ``lambda out: torch.stack([t.loss(p, y[:, k]) for k, (t, p) in
            enumerate(zip(tasks, out.predictions))])``. Every loss must be > 0 (it is a denominator).
            It must be a pure function of the outputs (it is called under ``vmap``).
        batch_inputs: the model's input: one tensor, or a tuple of positional arguments.
        lr: the lookahead step size (TAG uses the training learning rate).
        shared: the parameters the lookahead updates (tensors or names); default the model's
            :meth:`~metabridge.multitask.models.MultiTaskModel.shared_parameters`.
        mode: ``"vmap"`` (the K lookahead forwards batched), ``"loop"`` (K forwards), or
            ``"auto"`` (vmap, falling back to the loop where an operation cannot be batched).
        chunk_size: passed to :func:`torch.func.vmap` to bound memory (chunks of parameter sets).
        gradient_mode: how the K per-task gradients are computed (:func:`per_task_gradients`).

    Returns:
        ``Z`` [K, K] (detached, dtype of the losses): row i = the task whose step is taken.
    """
    if mode not in ("auto", "vmap", "loop"):
        raise ValueError(f"mode must be 'auto', 'vmap' or 'loop' (got {mode!r}).")
    if not lr > 0:
        raise ValueError(f"lr must be > 0 (got {lr!r}).")
    args = batch_inputs if isinstance(batch_inputs, tuple) else (batch_inputs,)
    names = _shared_names(model, shared)
    params = dict(model.named_parameters())
    shared_set_names = set(names)
    fixed = {n: p.detach() for n, p in params.items() if n not in shared_set_names}
    buffers = dict(model.named_buffers())

    def buffer_copies() -> dict[str, Tensor]:
        return {n: b.clone() for n, b in buffers.items()}

    # L(theta): the base losses, with a graph to the shared parameters only
    with torch.enable_grad():
        base_params = {**fixed, **{n: params[n] for n in names}}
        losses = _check_base_losses(
            _as_loss_vector(loss_fn(functional_call(model, (base_params, buffer_copies()), args)))
        )
        grads = per_task_gradients(losses, [params[n] for n in names], mode=gradient_mode, retain_graph=False)
    base = losses.detach()
    k = base.shape[0]
    bad = [j for j, v in enumerate(base.tolist()) if not (v > 0 and v < float("inf"))]
    if bad:
        raise ValueError(
            f"task(s) {bad} have base loss {[base[j].item() for j in bad]}: the affinity "
            "1 - L_j(after) / L_j(before) needs finite losses > 0."
        )

    stacked = _lookahead_params({n: params[n] for n in names}, grads, lr)

    def losses_at(shared_set: Mapping[str, Tensor], bufs: dict[str, Tensor]) -> Tensor:
        return _as_loss_vector(loss_fn(functional_call(model, ({**fixed, **shared_set}, bufs), args)))

    after = _losses_after_lookahead(losses_at, stacked, buffers, k, mode=mode, chunk_size=chunk_size)
    if after.shape != (k, k):
        raise ValueError(f"loss_fn returned {tuple(after.shape[1:])} losses at the lookahead but {k} at the base.")
    return (1.0 - after.to(base.dtype) / base.unsqueeze(0)).detach()


class AffinityAccumulator:
    """Running mean of lookahead affinities over training steps (TAG averages ``Z^t`` over t).

    Args:
        num_tasks: K (optional: inferred from the first matrix).
        task_names: optional names of the K tasks (kept in :meth:`to_dict`).

    Usage: ``acc.add(lookahead_affinity(...))`` at the chosen steps, or ``acc.update(model, loss_fn,
    x, lr)`` which computes and adds; then ``acc.mean()`` ([K, K], float64) for grouping.
    """

    def __init__(self, num_tasks: int | None = None, task_names: Sequence[str] | None = None) -> None:
        if num_tasks is not None and (not isinstance(num_tasks, int) or num_tasks < 1):
            raise ValueError(f"num_tasks must be a positive integer (got {num_tasks!r}).")
        if task_names is not None and num_tasks is not None and len(task_names) != num_tasks:
            raise ValueError(f"{len(task_names)} task names for {num_tasks} tasks.")
        self.num_tasks = num_tasks if num_tasks is not None else (len(task_names) if task_names else None)
        self.task_names = list(task_names) if task_names is not None else None
        self._sum: Tensor | None = None
        self.count = 0

    def add(self, affinity: Tensor) -> None:
        """Add one step's ``[K, K]`` affinity matrix."""
        z = torch.as_tensor(affinity).detach().to(device="cpu", dtype=torch.float64)
        k = self.num_tasks if self.num_tasks is not None else (z.shape[0] if z.dim() == 2 else -1)
        if z.shape != (k, k):
            raise ValueError(f"expected a [{k}, {k}] affinity matrix (got shape {tuple(z.shape)}).")
        if not bool(torch.isfinite(z).all()):
            raise ValueError("the affinity matrix has non-finite entries.")
        self.num_tasks = k
        self._sum = z.clone() if self._sum is None else self._sum + z
        self.count += 1

    def update(self, model: nn.Module, loss_fn: LossFn, batch_inputs: Any, lr: float, **kwargs: Any) -> Tensor:
        """Compute :func:`lookahead_affinity` on this batch, add it, and return it."""
        z = lookahead_affinity(model, loss_fn, batch_inputs, lr, **kwargs)
        self.add(z)
        return z

    def mean(self) -> Tensor:
        """The mean ``[K, K]`` affinity over the added steps (float64)."""
        if self._sum is None:
            raise ValueError("AffinityAccumulator is empty: add() at least one affinity matrix first.")
        return self._sum / self.count

    def reset(self) -> None:
        self._sum = None
        self.count = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: ``{"tasks", "steps" (count), "mean" ([[K x K]] or None)}``."""
        return {
            "tasks": self.task_names,
            "steps": self.count,
            "mean": self.mean().tolist() if self._sum is not None else None,
        }

    def __repr__(self) -> str:
        return f"AffinityAccumulator(num_tasks={self.num_tasks}, steps={self.count})"
