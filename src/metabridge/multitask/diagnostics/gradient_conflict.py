"""Where in the shared network the tasks' gradients conflict, tracked over training.

At a step with per-task losses L_1..L_K, let ``g_i^l = dL_i / d theta_l`` be task i's gradient
with respect to the parameters of shared layer l (flattened). The tracker records, per layer:

* the pairwise cosine matrix ``C^l[i, j] = <g_i^l, g_j^l> / (||g_i^l|| ||g_j^l||)`` ([K, K]);
* the conflict rate: the fraction of the K(K-1)/2 unordered task pairs with ``C^l[i, j] < 0``.

Negative cosine between task gradients ("conflicting gradients") is the symptom PCGrad (Yu et
al. 2020, "Gradient Surgery for Multi-Task Learning") and CAGrad (Liu et al. 2021, "Conflict-Averse
Gradient Descent for Multi-task Learning") act on; measuring it per layer shows where in the
shared network the conflict sits. The same quantities over all shared parameters at once are
recorded under the key :data:`ALL_SHARED` (``"*"``).

A layer is a group of parameters: by default the module that owns the parameter (its
qualified name without the last component: ``encoder.0.weight`` -> ``encoder.0``); a custom
``group_fn(name) -> layer`` can coarsen or refine this. The K gradients are computed in one
batched backward pass (:func:`~metabridge.multitask.gradients.per_task_gradients`) over every
shared parameter and then split into layers; the graph is retained, so the training step's
own backward can follow.

A gradient that is exactly zero on a layer (a layer the task does not reach) has no direction:
its cosines with every task, itself included, are reported as 0 and never count as conflicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..gradients import GradientMode, per_task_gradients

__all__ = ["ALL_SHARED", "GradientConflictTracker", "cosine_matrix", "conflict_rate", "owning_module"]

ALL_SHARED = "*"
"""Key of the entry over all shared parameters at once (no module can be named ``*`` in practice)."""

NamedParams = nn.Module | Mapping[str, Tensor] | Iterable[tuple[str, Tensor]]


def owning_module(name: str) -> str:
    """The qualified name of the module owning parameter ``name`` (``"encoder.0.weight"`` ->
    ``"encoder.0"``); a parameter registered on the root module belongs to ``"(root)"``."""
    return name.rsplit(".", 1)[0] if "." in name else "(root)"


def cosine_matrix(grads: Tensor) -> Tensor:
    """``[K, K]`` cosine similarities of the rows of ``grads`` [K, P] (float64); a zero row has cosine 0
    with every row, itself included."""
    if grads.dim() != 2:
        raise ValueError(f"cosine_matrix takes a [K, P] matrix of gradients (got shape {tuple(grads.shape)}).")
    g = grads.detach().to(torch.float64)
    norms = g.norm(dim=1)
    unit = torch.where(
        norms[:, None] > 0, g / norms.clamp_min(torch.finfo(torch.float64).tiny)[:, None], torch.zeros_like(g)
    )
    return (unit @ unit.T).clamp(-1.0, 1.0)


def conflict_rate(cosines: Tensor) -> float:
    """Fraction of the unordered task pairs i < j with ``cosines[i, j] < 0`` (needs K >= 2)."""
    k = cosines.shape[0]
    if cosines.dim() != 2 or cosines.shape[1] != k:
        raise ValueError(f"conflict_rate takes a square [K, K] cosine matrix (got shape {tuple(cosines.shape)}).")
    if k < 2:
        raise ValueError("a conflict rate needs at least two tasks.")
    iu = torch.triu_indices(k, k, offset=1)
    return float((cosines[iu[0], iu[1]] < 0).to(torch.float64).mean())


def _named_shared(source: NamedParams) -> list[tuple[str, Tensor]]:
    named: list[tuple[str, Tensor]]
    if isinstance(source, nn.Module):
        named = list(source.named_parameters())
        if hasattr(source, "shared_parameters"):  # a MultiTaskModel: keep the shared ones only
            shared = {id(p) for p in source.shared_parameters()}  # type: ignore[operator]
            named = [(n, p) for n, p in named if id(p) in shared]
    elif isinstance(source, Mapping):
        named = list(source.items())
    else:
        named = list(source)
        if named and not all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in named):
            raise TypeError(
                "GradientConflictTracker takes a model, a {name: parameter} mapping or "
                "(name, parameter) pairs (e.g. model.named_parameters())."
            )
    for n, p in named:
        if not isinstance(p, Tensor):
            raise TypeError(f"shared parameter {n!r} is a {type(p).__name__}, not a tensor.")
    named = [(n, p) for n, p in named if p.requires_grad]
    if not named:
        raise ValueError("GradientConflictTracker: no shared parameters that require grad.")
    return named


class GradientConflictTracker:
    """Records per-layer pairwise task-gradient cosines and conflict rates at chosen training steps.

    Args:
        model_or_named_shared_params: a :class:`~metabridge.multitask.models.MultiTaskModel` (its
            :meth:`shared_parameters`, named), any ``nn.Module`` (all its parameters), a
            ``{name: tensor}`` mapping or ``(name, tensor)`` pairs.
        every: record the steps divisible by ``every`` (default 1: every step passed to :meth:`record`).
        steps: alternatively, the explicit set of steps to record (overrides ``every``).
        group_fn: parameter name -> layer name (default :func:`owning_module`).
        mode: how the per-task gradients are computed (``"auto"``: one batched pass, a loop only
            where batching is unsupported; see :func:`per_task_gradients`).
        task_names: optional names of the K tasks, stored in :meth:`history`.

    Usage, inside the training loop, before the update's backward::

        tracker.record(step, losses)   # losses: the [K] per-task losses, with their graph
    """

    def __init__(
        self,
        model_or_named_shared_params: NamedParams,
        *,
        every: int = 1,
        steps: Iterable[int] | None = None,
        group_fn: Callable[[str], str] = owning_module,
        mode: GradientMode = "auto",
        task_names: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer (got {every!r}).")
        self._named = _named_shared(model_or_named_shared_params)
        self.every = every
        self.steps = None if steps is None else frozenset(int(s) for s in steps)
        self.mode = mode
        self.task_names = list(task_names) if task_names is not None else None
        # contiguous column ranges of the flattened [K, P] gradient, per layer (first-seen order)
        self.layers: dict[str, list[str]] = {}
        self._slices: dict[str, list[tuple[int, int]]] = {}
        offset = 0
        for name, p in self._named:
            layer = group_fn(name)
            self.layers.setdefault(layer, []).append(name)
            self._slices.setdefault(layer, []).append((offset, offset + p.numel()))
            offset += p.numel()
        if ALL_SHARED in self.layers:
            raise ValueError(f"group_fn produced the reserved layer name {ALL_SHARED!r}.")
        self._num_params = offset
        self._records: dict[int, dict[str, dict[str, Any]]] = {}

    def wants(self, step: int) -> bool:
        """Whether ``step`` is one of the steps this tracker records."""
        return step in self.steps if self.steps is not None else step % self.every == 0

    def compute(self, losses: Tensor) -> dict[str, dict[str, Any]]:
        """Per-layer cosine matrices and conflict rates at the current parameters (nothing recorded).

        Returns ``{layer: {"cosine": [[K x K floats]], "conflict_rate": float}}``, plus the entry
        :data:`ALL_SHARED` over every shared parameter.
        """
        if losses.dim() != 1:
            raise ValueError(f"pass the K per-task losses as one [K] tensor (got shape {tuple(losses.shape)}).")
        k = losses.shape[0]
        if k < 2:
            raise ValueError("gradient conflict needs at least two tasks' losses.")
        if self.task_names is not None and len(self.task_names) != k:
            raise ValueError(f"{k} losses but {len(self.task_names)} task names.")
        if not losses.requires_grad:
            raise ValueError("the losses have no graph: compute them with gradients enabled (not under no_grad).")
        grads = per_task_gradients(losses, [p for _, p in self._named], mode=self.mode, retain_graph=True)
        out: dict[str, dict[str, Any]] = {}
        for layer, spans in self._slices.items():
            g = torch.cat([grads[:, a:b] for a, b in spans], dim=1)
            out[layer] = self._summary(g)
        out[ALL_SHARED] = self._summary(grads)
        return out

    @staticmethod
    def _summary(g: Tensor) -> dict[str, Any]:
        c = cosine_matrix(g)
        return {"cosine": c.cpu().tolist(), "conflict_rate": conflict_rate(c)}

    def record(self, step: int, losses: Tensor) -> dict[str, dict[str, Any]] | None:
        """Compute and store the step's per-layer cosines and conflict rates when :meth:`wants`
        ``step`` (returns them), else do nothing and return None (no gradient is computed)."""
        step = int(step)
        if not self.wants(step):
            return None
        if step in self._records:
            raise ValueError(f"step {step} was already recorded.")
        result = self.compute(losses)
        self._records[step] = result
        return result

    def conflict_rates(self, layer: str = ALL_SHARED) -> tuple[list[int], list[float]]:
        """``(steps, conflict rates)`` of one layer over the recorded steps, in step order."""
        if layer != ALL_SHARED and layer not in self.layers:
            raise KeyError(f"no layer {layer!r}; layers: {list(self.layers)} (or {ALL_SHARED!r} for all).")
        steps = sorted(self._records)
        return steps, [self._records[s][layer]["conflict_rate"] for s in steps]

    def history(self) -> dict[str, Any]:
        """Everything recorded, as plain JSON types::

            {"layers": {layer: [parameter names]},
             "tasks": [task names] or None,
             "steps": {"<step>": {layer: {"cosine": [[...]], "conflict_rate": r}, "*": {...}}}}

        Steps are string keys (in increasing order) so that ``json.loads(json.dumps(h)) == h``.
        """
        return {
            "layers": {layer: list(names) for layer, names in self.layers.items()},
            "tasks": list(self.task_names) if self.task_names is not None else None,
            "steps": {
                str(s): {
                    layer: {"cosine": [list(r) for r in v["cosine"]], "conflict_rate": v["conflict_rate"]}
                    for layer, v in self._records[s].items()
                }
                for s in sorted(self._records)
            },
        }

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return (
            f"GradientConflictTracker(layers={len(self.layers)}, params={self._num_params}, "
            f"recorded_steps={len(self._records)})"
        )
