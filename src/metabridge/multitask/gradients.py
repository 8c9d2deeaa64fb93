"""Per-task gradients of K losses with respect to shared tensors, as one [K, P] matrix.

``G[i] = d L_i / d theta`` (flattened over every tensor in ``inputs``). Two ways:

* ``"batched"``: one vectorised backward pass, ``torch.autograd.grad(losses, inputs,
  grad_outputs=I_K, is_grads_batched=True)`` (vmap over the vector-Jacobian product);
* ``"loop"``: K ordinary backward passes, each retaining the graph.

``"auto"`` (the default) measures: for each graph shape (K, the inputs' shapes, the loss's
last operation, the device) its first six calls alternate between the batched pass and the
loop, each timed, and later calls take whichever had the fastest call (the batched pass is
not always faster: with few tasks on a CPU convolutional encoder the loop can win; not
measured in a stored experiment). An operation with no batching rule makes the batched
pass fail, and the loop is then used for that graph shape.
Neither way copies through host memory.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

__all__ = ["GradientMode", "flatten_like", "per_task_gradients", "unflatten_into"]

GradientMode = Literal["auto", "batched", "loop"]

_BATCHING_FAILED: set[tuple] = set()
_TIMINGS: dict[tuple, dict[str, list[float]]] = {}  # graph key -> seconds of each way, measured by "auto"
_PROBES = 6  # "auto" times 3 calls of each way, then keeps the faster (by its fastest call)


def _flat(grads: Sequence[Tensor | None], inputs: Sequence[Tensor], batch: int | None) -> Tensor:
    parts = []
    for g, x in zip(grads, inputs):
        if g is None:
            shape = (batch, x.numel()) if batch is not None else (x.numel(),)
            parts.append(x.new_zeros(shape))
        else:
            parts.append(g.reshape(batch, -1) if batch is not None else g.reshape(-1))
    return torch.cat(parts, dim=-1)


def per_task_gradients(
    losses: Tensor, inputs: Sequence[Tensor], mode: GradientMode = "auto", retain_graph: bool = True
) -> Tensor:
    """``[K, P]`` matrix of per-task gradients of ``losses`` [K] w.r.t. ``inputs``.

    Args:
        losses: the K per-task losses, one tensor of shape [K] with a graph.
        inputs: shared parameters, or the shared features (any tensors that require grad).
        mode: ``"batched"``, ``"loop"`` or ``"auto"`` (batched, loop where batching is unsupported).
        retain_graph: keep the graph for the update's own backward pass (default True).
    """
    if losses.dim() != 1:
        raise ValueError(f"per_task_gradients takes the K losses as one [K] tensor (got shape {tuple(losses.shape)}).")
    inputs = list(inputs)
    if not inputs:
        raise ValueError("per_task_gradients: no shared tensors were given (does the model have shared parameters?).")
    if mode not in ("auto", "batched", "loop"):
        raise ValueError(f"gradient mode must be 'auto', 'batched' or 'loop' (got {mode!r}).")
    k = losses.shape[0]
    key = (
        k,
        tuple(tuple(x.shape) for x in inputs),
        losses.grad_fn.__class__.__name__ if losses.grad_fn else None,
        str(losses.device),
    )
    if mode != "auto":
        return (
            _batched(losses, inputs, retain_graph, key, strict=True)
            if mode == "batched"
            else _loop(losses, inputs, retain_graph)
        )
    timings = _TIMINGS.setdefault(key, {"batched": [], "loop": []})
    if key in _BATCHING_FAILED:
        return _loop(losses, inputs, retain_graph)
    calls = len(timings["batched"]) + len(timings["loop"])
    if calls >= _PROBES:
        if min(timings["batched"]) <= min(timings["loop"]):
            return _batched(losses, inputs, retain_graph, key, strict=False)
        return _loop(losses, inputs, retain_graph)
    which = "batched" if calls % 2 == 0 else "loop"  # alternate; the minimum of each discards warm-up
    _synchronize(losses.device)
    start = time.perf_counter()
    grads = (
        _batched(losses, inputs, retain_graph, key, strict=False)
        if which == "batched"
        else _loop(losses, inputs, retain_graph)
    )
    _synchronize(losses.device)
    if key not in _BATCHING_FAILED:
        timings[which].append(time.perf_counter() - start)
    return grads


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batched(losses: Tensor, inputs: list[Tensor], retain_graph: bool, key: tuple, strict: bool) -> Tensor:
    k = losses.shape[0]
    try:
        eye = torch.eye(k, dtype=losses.dtype, device=losses.device)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*There is a performance drop.*")
            grads = torch.autograd.grad(
                losses, inputs, grad_outputs=eye, is_grads_batched=True, retain_graph=retain_graph, allow_unused=True
            )
        return _flat(grads, inputs, k)
    except RuntimeError:
        if strict:
            raise
        _BATCHING_FAILED.add(key)
    return _loop(losses, inputs, retain_graph)


def _loop(losses: Tensor, inputs: list[Tensor], retain_graph: bool) -> Tensor:
    k = losses.shape[0]
    rows = []
    for i in range(k):
        grads = torch.autograd.grad(losses[i], inputs, retain_graph=retain_graph or i < k - 1, allow_unused=True)
        rows.append(_flat(grads, inputs, None))
    return torch.stack(rows)


def flatten_like(tensors: Sequence[Tensor]) -> Tensor:
    """All tensors flattened and concatenated into one vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten_into(vector: Tensor, params: Sequence[Tensor], accumulate: bool = True) -> None:
    """Write ``vector`` (as from :func:`flatten_like`) into ``p.grad`` of each parameter
    (added to an existing gradient when ``accumulate``)."""
    offset = 0
    for p in params:
        n = p.numel()
        piece = vector[offset : offset + n].view_as(p).to(p.dtype)
        offset += n
        if p.grad is None or not accumulate:
            p.grad = piece.clone()
        else:
            p.grad.add_(piece)
    if offset != vector.numel():
        raise ValueError(f"update has {vector.numel()} entries but the shared parameters have {offset}.")
