"""Inner-loop machinery shared by the gradient-based methods (MAML, FOMAML, Meta-SGD,
ANIL, Reptile, and DRS's test-time fine-tuning).

The inner loop of Finn et al. (2017), Eq. 1, generalized to k steps with step sizes
alpha_s (a float, per-tensor scalars as in MAML++ (Antoniou et al. 2019), or
per-element tensors as in Meta-SGD (Li et al. 2017)):

    phi^(0) = theta,   phi^(s+1) = phi^(s) - alpha_s (.) grad_phi L(phi^(s); D^tr)

It is written with ``torch.func.grad`` over a functional forward, so the outer
autograd sees the whole unrolled loop (second order) unless ``first_order`` drops
the inner gradients from the graph (FOMAML: d phi / d theta = I).
Tasks are mapped either with ``torch.func.vmap`` or with a plain loop
(``task_batching``); both give identical results and the faster one is chosen by
measurement (see ``metabridge.benchmarks.peers``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor
from torch.func import grad, vmap
from torch.utils._pytree import tree_flatten, tree_map

from .base import task_loss

Params = dict[str, Tensor]
StepSize = Callable[[int], dict[str, Tensor | float]]
#: A per-task loss ``(prediction [S, out], target [S] or [S, d_y]) -> scalar``.
LossFn = Callable[[Tensor, Tensor], Tensor]
TaskBatching = Literal["vmap", "loop"]


def check_positive(**values: float) -> None:
    """Raise a ValueError naming every non-positive hyperparameter."""
    bad = {k: v for k, v in values.items() if not v > 0}
    if bad:
        names = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise ValueError(f"{names}: must be positive; pass a value > 0.")


def sgd_inner_loop(
    forward: Callable[[Params, Tensor], Tensor],
    fast: Params,
    x: Tensor,
    y: Tensor,
    steps: int,
    step_size: StepSize,
    first_order: bool,
    loss_fn: LossFn = task_loss,
) -> Params:
    """Run ``steps`` gradient steps on ``loss_fn(forward(fast, x), y)`` for one task.

    Args:
        forward: ``(fast_params, x) -> prediction``; closes over any frozen parameters.
        fast: the parameters being adapted (phi^(0)).
        steps: k (0 returns ``fast`` unchanged).
        step_size: ``s -> {name: alpha_s}`` (floats or tensors broadcastable to the params).
        first_order: detach the inner gradients (first-order MAML).
        loss_fn: the inner (support) loss L; default :func:`task_loss` (cross-entropy for
            int64 labels, mean squared error for float targets).
    """

    def loss(p: Params) -> Tensor:
        return loss_fn(forward(p, x), y)

    for s in range(steps):
        g = grad(loss)(fast)
        alphas = step_size(s)
        if first_order:
            g = {k: v.detach() for k, v in g.items()}
        fast = {k: fast[k] - alphas[k] * g[k] for k in fast}
    return fast


def map_tasks(fn: Callable[..., Any], shared: Any, *per_task: Any, mode: TaskBatching = "vmap") -> Any:
    """Apply ``fn(shared, *task_slices)`` to every task and stack the outputs on dim 0.

    ``per_task`` are tensors (or dicts of tensors) whose leading dimension is the task.

    ``vmap`` vectorizes over the leading task dimension; ``loop`` runs the tasks one
    after another. Batch norm inside ``fn`` sees one task's examples either way.
    """
    if mode == "vmap":
        return vmap(fn, in_dims=(None,) + (0,) * len(per_task), randomness="different")(shared, *per_task)
    if mode == "loop":
        num_tasks = tree_flatten(per_task)[0][0].shape[0]
        outs = [fn(shared, *tree_map(lambda t: t[i], per_task)) for i in range(num_tasks)]
        return tree_map(lambda *xs: torch.stack(xs), *outs)
    raise ValueError(f"task_batching must be 'vmap' or 'loop' (got {mode!r}).")
